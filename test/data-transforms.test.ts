// lib/data transforms against torchvision 0.14 + Pillow (test/fixtures/data_fixtures.json, made by
// test/fixtures/make_data_fixtures.py) and against values computed here independently.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { packageRoot } from "../lib/native";
import { RawImage, decodeImageFile } from "../lib/data/decode";
import {
  adjustBrightness, adjustContrast, adjustHue, adjustHueJs, adjustSaturation, grayscaleInPlace, rgbToL,
} from "../lib/data/color";
import { resampleBilinear } from "../lib/data/resample";
import {
  NORMALIZE_LUT, OFFICIAL_AUGMENT, ViewConfig, centreFallback, pyRound, randomResizedCropParams,
  renderAugView, renderTestView, renderTrainView, resizeShorterDims, sampleAugView, sampleTrainView,
  testViewParams, writeNormalized,
} from "../lib/data/transforms";
import { Rng } from "../lib/data/rng";

interface FxImage { width: number; height: number; channels: 1 | 3; data: string }
const fx = JSON.parse(fs.readFileSync(path.join(packageRoot(), "test/fixtures/data_fixtures.json"), "utf8"));

function bytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, "base64"));
}
function raw(e: FxImage): RawImage {
  return { data: bytes(e.data), width: e.width, height: e.height, channels: e.channels };
}
function diffStats(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  assert.equal(a.length, b.length);
  let s = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    s += d;
    if (d > m) m = d;
  }
  return { mean: s / a.length, max: m };
}
function assertBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const d = diffStats(actual, expected);
  assert.ok(d.max === 0, `${what}: differs from torchvision (mean |d| ${d.mean.toFixed(3)}, max ${d.max})`);
}

test("ToTensor + Normalize(0.5, 0.5) table equals torchvision's float32 values", () => {
  assert.equal(fx.normalize.length, 256);
  for (let v = 0; v < 256; v++) assert.equal(NORMALIZE_LUT[v], fx.normalize[v], `value ${v}`);
  assert.equal(NORMALIZE_LUT[0], -1);
  assert.equal(NORMALIZE_LUT[255], 1);
});

test("colour jitter steps and grayscale are bit-exact with PIL", () => {
  const images: Record<string, RawImage> = { rgb: raw(fx.color.rgb), l: raw(fx.color.l) };
  const ops = { brightness: adjustBrightness, contrast: adjustContrast, saturation: adjustSaturation, hue: adjustHue };
  for (const c of fx.color.cases as { op: keyof typeof ops; factor: number; image: string; out: string }[]) {
    const img = images[c.image];
    const buf = new Uint8Array(img.data);
    ops[c.op](buf, img.channels, c.factor);
    assertBytesEqual(buf, bytes(c.out), `${c.op}(${c.factor}) on ${c.image}`);
  }
  const g = new Uint8Array(images.rgb.data);
  grayscaleInPlace(g, 3);
  assertBytesEqual(g, bytes(fx.color.grayscale), "rgb_to_grayscale(3)");
  assertBytesEqual(rgbToL(images.rgb.data), bytes(fx.color.gray1), "rgb_to_grayscale(1)");
});

test("grayscale matches 0.299/0.587/0.114 and replicates to 3 channels", () => {
  const px = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30]);
  grayscaleInPlace(px, 3);
  const expect = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]].map(([r, g, b]) => Math.round(0.299 * r + 0.587 * g + 0.114 * b));
  for (let i = 0; i < 4; i++) {
    assert.ok(Math.abs(px[3 * i] - expect[i]) <= 1, `pixel ${i}: ${px[3 * i]} vs ${expect[i]}`);
    assert.equal(px[3 * i], px[3 * i + 1]);
    assert.equal(px[3 * i], px[3 * i + 2]);
  }
});

test("PIL-exact bilinear resize equals Pillow, sharp's stays within a small tolerance", async () => {
  const { resizeRegion } = await import("../lib/data/transforms");
  const images: Record<string, RawImage> = { rgb: raw(fx.resize.rgb), l: raw(fx.resize.l) };
  const sharpStats: string[] = [];
  let sharpOk = true;
  for (const c of fx.resize.cases) {
    const img = images[c.image];
    const expected = bytes(c.out.data);
    let box = { left: 0, top: 0, width: img.width, height: img.height };
    let ow: number, oh: number;
    if (c.kind === "resize") {
      [ow, oh] = resizeShorterDims(img.width, img.height, c.size);
      assert.deepEqual([ow, oh], [c.out.width, c.out.height], `Resize(${c.size}) size`);
    } else {
      const [i, j, h, w] = c.box;
      box = { left: j, top: i, width: w, height: h };
      ow = oh = c.size;
    }
    const win = { left: 0, top: 0, width: ow, height: oh };
    const exact = resampleBilinear(img.data, img.width, img.channels, box, ow, oh, win);
    assertBytesEqual(exact, expected, `${c.kind} ${JSON.stringify(c.box ?? c.size)} on ${c.image}`);
    const viaSharp = await resizeRegion(img, box, ow, oh, win, "sharp");
    const d = diffStats(viaSharp, expected);
    sharpStats.push(`${c.kind} ${JSON.stringify(c.box ?? c.size)} on ${c.image}: mean ${d.mean.toFixed(3)}, max ${d.max}`);
    // enlargements are routed to the exact port, so only reductions may differ at all
    if (ow > box.width || oh > box.height) assert.equal(d.max, 0, sharpStats[sharpStats.length - 1]);
    sharpOk &&= d.mean < 1 && d.max <= 16;
  }
  if (process.env.C3GAN_DEBUG) console.log(sharpStats.join("\n"));
  assert.ok(sharpOk, `sharp's resize is too far from PIL's on this noisy image:\n${sharpStats.join("\n")}`);
});

test("resampling a window equals resampling all and cropping", () => {
  const img = raw(fx.resize.rgb);
  const full = resampleBilinear(img.data, img.width, 3, { left: 2, top: 1, width: 33, height: 25 }, 21, 16);
  const win = { left: 4, top: 3, width: 9, height: 11 };
  const part = resampleBilinear(img.data, img.width, 3, { left: 2, top: 1, width: 33, height: 25 }, 21, 16, win);
  for (let y = 0; y < win.height; y++) {
    for (let x = 0; x < win.width * 3; x++) {
      assert.equal(part[y * win.width * 3 + x], full[((y + win.top) * 21 + win.left) * 3 + x]);
    }
  }
});

test("Resize(int) sizes and CenterCrop offsets as torchvision computes them", () => {
  for (const d of fx.dims) {
    assert.deepEqual(resizeShorterDims(d.width, d.height, d.size), d.resized, `${d.width}x${d.height} -> ${d.size}`);
    const p = testViewParams(d.width, d.height, d.size);
    assert.deepEqual([p.top, p.left], d.crop, `centre crop of ${d.width}x${d.height}`);
  }
  assert.equal(pyRound(2.5), 2);
  assert.equal(pyRound(3.5), 4);
  assert.ok(pyRound(-0.5) === 0 && pyRound(0.5) === 0 && pyRound(1.5) === 2);
  assert.equal(pyRound(1.4999), 1);
});

test("complete views for fixed parameters equal torchvision's (PIL resampler)", async () => {
  for (const [k, v] of (fx.views as any[]).entries()) {
    const img = raw(v.image);
    const cfg: ViewConfig = { size: v.size, channels: 3, augment: { ...OFFICIAL_AUGMENT }, resampler: "pil" };
    const S = v.size;
    const t = v.train;
    const real = await renderTrainView(img, { width: t.width, height: t.height, top: t.top, left: t.left, flip: t.flip }, cfg);
    const realOut = new Float32Array(3 * S * S);
    writeNormalized(real, S, 3, t.flip, realOut, 0);
    const expectReal = bytes(t.out);
    for (let c = 0; c < 3; c++) for (let i = 0; i < S * S; i++) {
      assert.equal(realOut[c * S * S + i], NORMALIZE_LUT[expectReal[i * 3 + c]], `view ${k} train c${c} px${i}`);
    }
    const a = v.aug;
    const [ci, cj, ch, cw] = a.crop;
    const aug = await renderAugView(img, { crop: { top: ci, left: cj, height: ch, width: cw }, flip: a.flip, jitter: a.jitter, grayscale: a.grayscale }, cfg);
    const augOut = new Float32Array(3 * S * S);
    writeNormalized(aug, S, 3, a.flip, augOut, 0);
    const expectAug = bytes(a.out);
    for (let c = 0; c < 3; c++) for (let i = 0; i < S * S; i++) {
      assert.equal(augOut[c * S * S + i], NORMALIZE_LUT[expectAug[i * 3 + c]], `view ${k} aug c${c} px${i}`);
    }
    for (let i = 0; i < v.normalized_aug.length; i++) assert.equal(augOut[i], v.normalized_aug[i]);
    const test = await renderTestView(img, testViewParams(img.width, img.height, S), cfg);
    assertBytesEqual(test, bytes(v.test.out), `view ${k} test`);
  }
});

test("horizontal flip and crop geometry, checked on a coordinate-coded image", async () => {
  // pixel (x, y) = (x, y, x + y): after crop (top, left) and flip, output (X, Y) must hold
  // source (left + S - 1 - X, top + Y)
  const W = 60, H = 40, S = 16;
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data.set([x, y, x + y], (y * W + x) * 3);
  // a source whose shorter side is S: Resize is the identity, so the view is a pure crop
  const img: RawImage = { data, width: W, height: H, channels: 3 };
  const small: RawImage = { data: resampleBilinear(data, W, 3, { left: 0, top: 0, width: W, height: S }, W, S), width: W, height: S, channels: 3 };
  const cfg: ViewConfig = { size: S, channels: 3, augment: { ...OFFICIAL_AUGMENT }, resampler: "sharp" };
  const p = { width: W, height: S, top: 0, left: 23, flip: true };
  const view = await renderTrainView(small, p, cfg);
  const out = new Float32Array(3 * S * S);
  writeNormalized(view, S, 3, true, out, 0);
  for (let Y = 0; Y < S; Y++) for (let X = 0; X < S; X++) {
    const sx = p.left + S - 1 - X;
    assert.equal(out[Y * S + X], NORMALIZE_LUT[sx], `R at ${X},${Y}`);
    assert.equal(out[S * S + Y * S + X], NORMALIZE_LUT[Y], `G at ${X},${Y}`);
  }
  // RandomResizedCrop with a crop of exactly S x S copies the box
  const aug = await renderAugView(img, { crop: { top: 7, left: 30, width: S, height: S }, flip: false, jitter: null, grayscale: false }, cfg);
  for (let Y = 0; Y < S; Y++) for (let X = 0; X < S; X++) {
    assert.deepEqual([...aug.subarray((Y * S + X) * 3, (Y * S + X) * 3 + 3)], [30 + X, 7 + Y, 37 + X + Y]);
  }
});

test("sampled parameters stay in torchvision's ranges", () => {
  const cfg: ViewConfig = { size: 128, channels: 3, augment: { ...OFFICIAL_AUGMENT }, resampler: "sharp" };
  let flips = 0, jittered = 0, grays = 0, fallbacks = 0;
  const N = 3000;
  const seen = new Set<string>();
  for (let i = 0; i < N; i++) {
    const rng = new Rng(7, 2, 0, i);
    const w = 200 + (i % 300), h = 150 + ((i * 7) % 350);
    const t = sampleTrainView(rng, w, h, cfg);
    assert.deepEqual([t.width, t.height], resizeShorterDims(w, h, 128));
    assert.ok(t.top >= 0 && t.top <= t.height - 128 && t.left >= 0 && t.left <= t.width - 128);
    if (t.flip) flips++;
    const a = sampleAugView(rng, w, h, cfg);
    const { crop } = a;
    assert.ok(crop.left >= 0 && crop.top >= 0 && crop.left + crop.width <= w && crop.top + crop.height <= h);
    const area = (crop.width * crop.height) / (w * h);
    const ratio = crop.width / crop.height;
    const inRange = area >= 0.2 - 0.02 && area <= 1 && ratio >= 0.75 * 0.97 && ratio <= (4 / 3) * 1.03;
    if (!inRange) fallbacks++;
    if (a.jitter) {
      jittered++;
      const j = a.jitter;
      for (const f of [j.brightness, j.contrast, j.saturation]) assert.ok(f >= 0.6 && f <= 1.4, `factor ${f}`);
      assert.ok(j.hue >= -0.1 && j.hue <= 0.1);
      assert.deepEqual([...j.order].sort(), [0, 1, 2, 3]);
      seen.add(j.order.join(""));
    }
    if (a.grayscale) grays++;
  }
  const near = (k: number, p: number) => Math.abs(k / N - p) < 4 * Math.sqrt((p * (1 - p)) / N);
  assert.ok(near(flips, 0.5), `flip rate ${flips / N}`);
  assert.ok(near(jittered, 0.8), `jitter rate ${jittered / N}`);
  assert.ok(near(grays, 0.2), `grayscale rate ${grays / N}`);
  assert.equal(seen.size, 24, "all 24 jitter orders occur");
  assert.equal(fallbacks, 0, "aspect ratios within range never need the fallback for these sizes");
});

test("RandomResizedCrop falls back to the centre crop clamped to the ratio range", () => {
  // a 1000 x 10 strip: no crop of area >= 20% fits the ratio range, all ten tries fail
  const rng = new Rng(1);
  const r = randomResizedCropParams(rng, 1000, 10, [0.2, 1], [3 / 4, 4 / 3]);
  assert.deepEqual(r, { width: pyRound(10 * (4 / 3)), height: 10, top: 0, left: Math.floor((1000 - 13) / 2) });
  assert.deepEqual(centreFallback(10, 1000, [3 / 4, 4 / 3]), { width: 10, height: 13, top: Math.floor((1000 - 13) / 2), left: 0 });
  assert.deepEqual(centreFallback(100, 90, [3 / 4, 4 / 3]), { width: 100, height: 90, top: 0, left: 0 });
});

test("jitter factor extremes: brightness 0 is black, contrast 0 is the mean gray, saturation 0 is L", () => {
  const img = new Uint8Array([10, 200, 30, 250, 250, 250, 0, 0, 0, 90, 60, 30]);
  const b = new Uint8Array(img);
  adjustBrightness(b, 3, 0);
  assert.ok(b.every((v) => v === 0));
  const c = new Uint8Array(img);
  adjustContrast(c, 3, 0);
  const ls = [0, 1, 2, 3].map((i) => (img[3 * i] * 19595 + img[3 * i + 1] * 38470 + img[3 * i + 2] * 7471 + 0x8000) >> 16);
  const mean = Math.trunc(ls.reduce((a, x) => a + x, 0) / 4 + 0.5);
  assert.ok(c.every((v) => v === mean));
  const s = new Uint8Array(img);
  adjustSaturation(s, 3, 0);
  for (let i = 0; i < 4; i++) assert.deepEqual([...s.subarray(3 * i, 3 * i + 3)], [ls[i], ls[i], ls[i]]);
  // gray pixels have no hue: any shift leaves them alone
  const h = new Uint8Array(img);
  adjustHue(h, 3, 0.37);
  assert.deepEqual([...h.subarray(3, 9)], [250, 250, 250, 0, 0, 0]);
  assert.throws(() => adjustHue(h, 3, 0.6), /hue factor/);
});

test("sharp decodes the fixture JPEG as Pillow does", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-jpeg-"));
  try {
    const file = path.join(dir, "x.jpg");
    fs.writeFileSync(file, Buffer.from(fx.jpeg.file, "base64"));
    const img = await decodeImageFile(file, 3);
    assert.deepEqual([img.width, img.height, img.channels], [fx.jpeg.decoded.width, fx.jpeg.decoded.height, 3]);
    const d = diffStats(img.data, bytes(fx.jpeg.decoded.data));
    assert.ok(d.max <= 2, `JPEG decode differs from Pillow: mean ${d.mean}, max ${d.max}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the WebAssembly resampling kernels give the JavaScript reference's bytes", async () => {
  const { resampleBilinearFast, wasmResampleAvailable } = await import("../lib/data/resample-wasm");
  assert.ok(wasmResampleAvailable(), "WebAssembly SIMD is available on Node 20");
  const rng = new Rng(42);
  for (let t = 0; t < 200; t++) {
    const C = t % 3 === 0 ? 1 : 3;
    const w = rng.randint(2, 90), h = rng.randint(2, 90);
    const src = new Uint8Array(w * h * C);
    for (let i = 0; i < src.length; i++) src[i] = rng.randint(0, 256);
    const bw = rng.randint(1, w + 1), bh = rng.randint(1, h + 1);
    const box = { left: rng.randint(0, w - bw + 1), top: rng.randint(0, h - bh + 1), width: bw, height: bh };
    const ow = rng.randint(1, 70), oh = rng.randint(1, 70);
    const ww = rng.randint(1, ow + 1), wh = rng.randint(1, oh + 1);
    const win = { left: rng.randint(0, ow - ww + 1), top: rng.randint(0, oh - wh + 1), width: ww, height: wh };
    const a = resampleBilinear(src, w, C, box, ow, oh, win);
    const b = resampleBilinearFast(src, w, C, box, ow, oh, win);
    assert.deepEqual(b, a, `case ${t}: ${JSON.stringify({ w, h, C, box, ow, oh, win })}`);
  }
});

/** Pillow's rgb2hsv_row + hsv2rgb (Convert.c) and adjust_hue's shift, transcribed directly */
function hueReference(r: number, g: number, b: number, shift: number): [number, number, number] {
  const f = Math.fround;
  const maxc = Math.max(r, g, b), minc = Math.min(r, g, b);
  let h = 0, s = 0;
  const v = maxc;
  if (minc !== maxc) {
    const cr = maxc - minc;
    const sf = f(cr / maxc);
    const rc = f((maxc - r) / cr), gc = f((maxc - g) / cr), bc = f((maxc - b) / cr);
    let hf = r === maxc ? f(bc - gc) : g === maxc ? f(2.0 + rc - bc) : f(4.0 + gc - rc);
    hf = f((hf / 6.0 + 1.0) % 1.0);
    h = Math.min(255, Math.max(0, Math.trunc(hf * 255.0)));
    s = Math.min(255, Math.max(0, Math.trunc(sf * 255.0)));
  }
  h = (h + shift) & 255;
  if (s === 0) return [v, v, v];
  const i = Math.floor((h * 6.0) / 255.0);
  const fr = f((h * 6.0) / 255.0 - i);
  const fs = f(s / 255.0);
  const clip = (x: number) => Math.min(255, Math.max(0, x));
  const p = clip(Math.round(v * (1.0 - fs)));
  const q = clip(Math.round(v * (1.0 - f(fs * fr))));
  const t = clip(Math.round(v * (1.0 - fs * (1.0 - fr))));
  return [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6] as [number, number, number];
}

test("the tabulated hue shift (WebAssembly and JavaScript) equals Pillow's formulas on a grid of colours, ties included", () => {
  const colours: number[] = [];
  for (let r = 0; r < 256; r += 5) for (let g = 0; g < 256; g += 5) for (let b = 0; b < 256; b += 5) colours.push(r, g, b);
  for (const extra of [[255, 255, 0], [1, 0, 0], [0, 1, 1], [254, 255, 255], [128, 128, 129], [7, 3, 7]]) colours.push(...extra);
  const base = new Uint8Array(colours);
  for (const factor of [-0.5, -0.1, -0.013, 0, 0.004, 0.1, 0.5]) {
    const shift = ((Math.trunc(factor * 255) % 256) + 256) % 256;
    const img = new Uint8Array(base);
    adjustHue(img, 3, factor); // the WebAssembly kernel
    const js = new Uint8Array(base);
    adjustHueJs(js, shift);
    for (let i = 0; i < base.length; i += 3) {
      const want = hueReference(base[i], base[i + 1], base[i + 2], shift);
      for (const [name, got] of [["wasm", img], ["js", js]] as const) {
        if (got[i] !== want[0] || got[i + 1] !== want[1] || got[i + 2] !== want[2]) {
          assert.fail(`${name} hue ${factor} of (${base[i]}, ${base[i + 1]}, ${base[i + 2]}): got ${[...got.subarray(i, i + 3)]}, want ${want}`);
        }
      }
    }
  }
});
