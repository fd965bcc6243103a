// Image generators for the data tests and the data benchmark: photo-like RGB content, files in
// the formats and colour layouts the decoder must handle, and small fake dataset trees.
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";

/** mulberry32: deterministic test content */
function mulberry(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Smooth colour fields, edges and grain: compresses and resizes like a photograph. */
export function photoPixels(width: number, height: number, seed: number): Buffer {
  const r = mulberry(seed);
  const f = [r() * 0.05 + 0.01, r() * 0.05 + 0.01, r() * 0.05 + 0.01];
  const ph = [r() * 6, r() * 6, r() * 6];
  const cx = width * (0.3 + 0.4 * r()), cy = height * (0.3 + 0.4 * r()), rad = Math.min(width, height) * (0.15 + 0.2 * r());
  const fg = [r() * 255, r() * 255, r() * 255];
  const out = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inDisc = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
      for (let c = 0; c < 3; c++) {
        const base = inDisc ? fg[c] : 128 + 90 * Math.sin(x * f[c] + ph[c]) * Math.cos(y * f[(c + 1) % 3] + ph[c]);
        out[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(base + (r() - 0.5) * 24)));
      }
    }
  }
  return out;
}

export async function writeJpeg(file: string, width: number, height: number, seed: number, quality = 90): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(photoPixels(width, height, seed), { raw: { width, height, channels: 3 } }).jpeg({ quality }).toFile(file);
}

export async function writePng(file: string, pixels: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let p = sharp(Buffer.from(pixels), { raw: { width, height, channels } });
  if (channels === 1) p = p.toColourspace("b-w");
  await p.png().toFile(file);
}

/** The colour layouts the decoder converts; returns the files it wrote, by kind. */
export async function writeImageVariants(dir: string): Promise<Record<string, string>> {
  fs.mkdirSync(dir, { recursive: true });
  const w = 24, h = 18;
  const rgb = photoPixels(w, h, 5);
  const base = () => sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
  const files: Record<string, string> = {
    rgb: path.join(dir, "rgb.png"),
    cmyk: path.join(dir, "cmyk.jpg"),
    rgb16: path.join(dir, "rgb16.png"),
    gray: path.join(dir, "gray.png"),
    gray16: path.join(dir, "gray16.png"),
    rgba: path.join(dir, "rgba.png"),
    grayAlpha: path.join(dir, "gray-alpha.png"),
    palette: path.join(dir, "palette.png"),
  };
  await base().png().toFile(files.rgb);
  await base().toColourspace("cmyk").jpeg({ quality: 100 }).toFile(files.cmyk);
  await base().toColourspace("rgb16").png().toFile(files.rgb16);
  const gray = Buffer.alloc(w * h);
  for (let i = 0; i < gray.length; i++) gray[i] = (i * 7) & 255;
  await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).toColourspace("b-w").png().toFile(files.gray);
  await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).toColourspace("grey16").png().toFile(files.gray16);
  const rgba = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    rgba.set([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], i % 3 === 0 ? 0 : i % 3 === 1 ? 128 : 255], 4 * i);
  }
  await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toFile(files.rgba);
  const ga = Buffer.alloc(w * h * 2);
  for (let i = 0; i < w * h; i++) ga.set([gray[i], i % 2 === 0 ? 255 : 64], 2 * i);
  await sharp(ga, { raw: { width: w, height: h, channels: 2 } }).png().toFile(files.grayAlpha);
  await base().png({ palette: true, colours: 16 }).toFile(files.palette);
  return files;
}

/** A fake CUB_200_2011 tree: `classes` classes, `perClass` images each, every third image in the test split. */
export async function makeFakeCub(root: string, classes: number, perClass: number): Promise<{ ids: number; testIds: number[] }> {
  const images: string[] = [];
  const labels: string[] = [];
  const split: string[] = [];
  const names: string[] = [];
  const testIds: number[] = [];
  let id = 0;
  for (let k = 1; k <= classes; k++) {
    const cls = `${String(k).padStart(3, "0")}.Bird_${k}`;
    names.push(`${k} ${cls}`);
    for (let j = 0; j < perClass; j++) {
      id++;
      const rel = `${cls}/Bird_${k}_${String(j).padStart(4, "0")}_${1000 + id}.jpg`;
      await writeJpeg(path.join(root, "images", rel), 40 + (id % 7) * 3, 30 + (id % 5) * 4, id);
      images.push(`${id} ${rel}`);
      labels.push(`${id} ${k}`);
      const isTrain = id % 3 === 0 ? 0 : 1;
      if (!isTrain) testIds.push(id);
      split.push(`${id} ${isTrain}`);
    }
  }
  // CUB's files end with a newline and use LF; one of ours uses CRLF to check that too
  fs.writeFileSync(path.join(root, "images.txt"), images.join("\n") + "\n");
  fs.writeFileSync(path.join(root, "image_class_labels.txt"), labels.join("\r\n") + "\r\n");
  fs.writeFileSync(path.join(root, "train_test_split.txt"), split.join("\n") + "\n");
  fs.writeFileSync(path.join(root, "classes.txt"), names.join("\n") + "\n");
  return { ids: id, testIds };
}

/** class-per-folder tree of small JPEGs; returns the relative paths by class */
export async function makeImageFolder(root: string, classes: string[], perClass: number, seed = 0): Promise<string[][]> {
  const out: string[][] = [];
  for (const [k, cls] of classes.entries()) {
    const files: string[] = [];
    for (let j = 0; j < perClass; j++) {
      const rel = `${cls}/img ${j}.jpg`;
      await writeJpeg(path.join(root, rel), 36 + j, 28 + k, seed + 100 * k + j);
      files.push(rel);
    }
    out.push(files);
  }
  return out;
}
