// Dataset formats: the official lists, image folders, IDX files, and the colour layouts decoding
// converts (CMYK, alpha, 16-bit, grayscale).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { formatList, parseList } from "../lib/data/lists";
import { encodeIdxU8, loadIdxImages, parseIdx, readIdxFile } from "../lib/data/idx";
import { openDataset, itemWhere } from "../lib/data/formats";
import { decodeImageFile } from "../lib/data/decode";
import { luma } from "../lib/data/color";
import { syntheticDataset, syntheticImages } from "../lib/data/synthetic";
import { makeImageFolder, photoPixels, writeImageVariants, writeJpeg } from "./helpers/images";
import { tempDir } from "./helpers/tmp";

const tmpdir = tempDir;

test("list lines: CRLF, BOM, blank lines, paths with spaces, the label is the last field", () => {
  const text = "\ufeffa/b.jpg 0\r\nc/with space/d e.jpg 12\r\n\r\n   \n  f.png\t3  \r\nlast.jpg 1";
  const e = parseList(text, "list.txt");
  assert.deepEqual(e, [
    { path: "a/b.jpg", label: 0, line: 1 },
    { path: "c/with space/d e.jpg", label: 12, line: 2 },
    { path: "f.png", label: 3, line: 5 },
    { path: "last.jpg", label: 1, line: 6 },
  ]);
  assert.deepEqual(parseList(formatList(e), "again.txt"), e.map((x, i) => ({ ...x, line: i + 1 })));
});

test("list errors name the file and every bad line", () => {
  const bad = "ok.jpg 0\nnolabel.jpg\nx.jpg 1.5\ny.jpg -1\nz.jpg abc\nw.jpg 7\n";
  assert.throws(() => parseList(bad, "/d/trainset.txt", 5), (e: Error) => {
    assert.match(e.message, /5 problems in \/d\/trainset\.txt/);
    assert.match(e.message, /line 2: expected `relative\/path label`/);
    assert.match(e.message, /line 3: label "1\.5" is not an integer/);
    assert.match(e.message, /line 4: label -1 is out of range/);
    assert.match(e.message, /line 5: label "abc" is not an integer/);
    assert.match(e.message, /line 6: label 7 is out of range for 5 classes/);
    return true;
  });
  assert.throws(() => parseList("\r\n\n  \n", "/d/empty.txt"), /\/d\/empty\.txt:\n  the list holds no images/);
  assert.throws(() => parseList("", "/d/empty.txt"), /no images/);
});

test("lists format: images under images/, missing files are errors with file and line", async () => {
  const root = tmpdir("lists");
  try {
    await writeJpeg(path.join(root, "images", "cls a", "one 1.jpg"), 30, 20, 1);
    await writeJpeg(path.join(root, "images", "b", "two.jpg"), 20, 30, 2);
    fs.writeFileSync(path.join(root, "trainset.txt"), "cls a/one 1.jpg 0\r\nb/two.jpg 1\r\n");
    fs.writeFileSync(path.join(root, "testset.txt"), "b/two.jpg 1\nb/missing.jpg 0\n");
    const ds = await openDataset({ format: "lists", root }, "train");
    assert.equal(ds.size, 2);
    assert.deepEqual([...ds.labels], [0, 1]);
    assert.equal(ds.numClasses, 2);
    assert.deepEqual(ds.names, ["cls a/one 1.jpg", "b/two.jpg"]);
    assert.equal(itemWhere(ds, 1), `${path.join(root, "trainset.txt")} line 2`);
    assert.ok(ds.source.kind === "files" && ds.source.files[0] === path.join(root, "images", "cls a", "one 1.jpg"));
    await assert.rejects(openDataset({ format: "lists", root }, "test"), (e: Error) => {
      assert.match(e.message, /testset\.txt/);
      assert.match(e.message, /line 2: image not found: .*missing\.jpg/);
      return true;
    });
    const skipped = await openDataset({ format: "lists", root, skipBadImages: true }, "test");
    assert.equal(skipped.size, 1);
    assert.equal(skipped.skipped.length, 1);
    assert.match(skipped.skipped[0].where, /testset\.txt line 2/);
    await assert.rejects(openDataset({ format: "lists", root, numClasses: 1 }, "train"), /line 2: label 1 is out of range for 1 classes/);
    await assert.rejects(openDataset({ format: "lists", root: path.join(root, "nope") }, "train"),
      /nope does not exist \(`c3gan prepare cub <CUB_200_2011 folder> --out \S*nope`, or `prepare imagefolder`/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("image folders: labels from sorted class folders; flat folders are unlabelled", async () => {
  const root = tmpdir("folders");
  try {
    await makeImageFolder(root, ["zebra", "Apple", "mango"], 2);
    fs.writeFileSync(path.join(root, "mango", "notes.txt"), "not an image");
    const ds = await openDataset({ format: "imagefolder", root }, "train");
    // code-point order as Python's sorted(): uppercase first
    assert.deepEqual(ds.classNames, ["Apple", "mango", "zebra"]);
    assert.equal(ds.size, 6);
    assert.deepEqual([...ds.labels], [0, 0, 1, 1, 2, 2]);
    assert.deepEqual(ds.names!.slice(0, 2), ["Apple/img 0.jpg", "Apple/img 1.jpg"]);
    assert.match(ds.notes.join(), /1 file under .* not used \(not image files c3gan reads\): 1 \.txt$/);
    const flat = await openDataset({ format: "folder", root }, "train");
    assert.equal(flat.size, 6);
    assert.equal(flat.numClasses, 0);
    assert.ok(flat.labels.every((l) => l === -1));
    fs.mkdirSync(path.join(root, "empty"));
    await assert.rejects(openDataset({ format: "imagefolder", root }, "train"), /class folder "empty" .* hold no images/);
    await assert.rejects(openDataset({ format: "imagefolder", root: path.join(root, "Apple") }, "train"), /no class subfolders/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("IDX files, gzip or not, and their errors", () => {
  const root = tmpdir("idx");
  try {
    const px = Uint8Array.from({ length: 3 * 4 * 5 }, (_, i) => i);
    const images = encodeIdxU8([3, 4, 5], px);
    const labels = encodeIdxU8([3], new Uint8Array([2, 0, 1]));
    fs.writeFileSync(path.join(root, "train-images-idx3-ubyte.gz"), zlib.gzipSync(images));
    fs.writeFileSync(path.join(root, "train-labels-idx1-ubyte"), labels);
    const im = loadIdxImages(path.join(root, "train-images-idx3-ubyte.gz"), path.join(root, "train-labels-idx1-ubyte"));
    assert.deepEqual([im.count, im.height, im.width, im.channels], [3, 4, 5, 1]);
    assert.deepEqual([...im.pixels], [...px]);
    assert.ok(im.pixels.buffer instanceof SharedArrayBuffer);
    assert.deepEqual([...im.labels!], [2, 0, 1]);
    assert.throws(() => parseIdx(images.subarray(0, images.length - 1), "t.idx"), /t\.idx: IDX dims \[3, 4, 5\] need 76 bytes, the file has 75 \(truncated\)/);
    assert.throws(() => parseIdx(Buffer.from([1, 2, 3, 4]), "bad.idx"), /bad\.idx is not an IDX file/);
    assert.throws(() => parseIdx(Buffer.from([0, 0, 0x42, 1, 0, 0, 0, 0]), "t.idx"), /unknown IDX data type 0x42/);
    fs.writeFileSync(path.join(root, "bad.gz"), Buffer.from([0x1f, 0x8b, 1, 2, 3]));
    assert.throws(() => readIdxFile(path.join(root, "bad.gz")), /looks gzipped but does not decompress/);
    fs.writeFileSync(path.join(root, "few-labels"), encodeIdxU8([2], new Uint8Array([0, 1])));
    assert.throws(() => loadIdxImages(path.join(root, "train-images-idx3-ubyte.gz"), path.join(root, "few-labels")), /holds 2 labels but .* holds 3 images/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

const FASHION = "/usr/share/datasets/fashion-mnist";
test("Fashion-MNIST from Debian's dataset-fashion-mnist", { skip: !fs.existsSync(path.join(FASHION, "t10k-images-idx3-ubyte.gz")) }, async () => {
  const ds = await openDataset({ format: "idx", root: FASHION }, "test");
  assert.equal(ds.size, 10000);
  assert.equal(ds.numClasses, 10);
  assert.equal(ds.channels, 1);
  const counts = new Array(10).fill(0);
  for (const l of ds.labels) counts[l]++;
  assert.deepEqual(counts, new Array(10).fill(1000));
  assert.ok(ds.source.kind === "pixels" && ds.source.width === 28 && ds.source.height === 28);
  const { DataLoader } = await import("../lib/data/loader");
  const L = new DataLoader(ds, { mode: "train", batchSize: 16, imageSize: 32, workers: 0 });
  let n = 0;
  for await (const b of L.epoch(0, L.batchesPerEpoch - 2)) {
    assert.deepEqual(b.aug.shape, [16, 1, 32, 32]);
    n++;
  }
  assert.equal(n, 2);
  await L.close();
});

test("decoding converts CMYK, alpha, 16-bit, grayscale and palette images to 8-bit RGB or L", async () => {
  const dir = tmpdir("variants");
  try {
    const f = await writeImageVariants(dir);
    const rgb = await decodeImageFile(f.rgb, 3);
    const ref = photoPixels(24, 18, 5);
    assert.deepEqual([rgb.width, rgb.height, rgb.channels], [24, 18, 3]);
    assert.deepEqual(Buffer.from(rgb.data), ref);
    // 16-bit: the same picture at 16 bits decodes to within rounding of the 8-bit one
    const r16 = await decodeImageFile(f.rgb16, 3);
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(r16.data[i] - ref[i]) <= 1, `rgb16 byte ${i}`);
    // CMYK through an ICC round trip: close to the original colours, not the naive formula
    const cmyk = await decodeImageFile(f.cmyk, 3);
    let err = 0;
    for (let i = 0; i < ref.length; i++) err += Math.abs(cmyk.data[i] - ref[i]);
    assert.ok(err / ref.length < 12, `CMYK mean error ${err / ref.length}`);
    // grayscale replicated to RGB, and kept as is with 1 channel
    const gray = Buffer.alloc(24 * 18);
    for (let i = 0; i < gray.length; i++) gray[i] = (i * 7) & 255;
    const g3 = await decodeImageFile(f.gray, 3);
    for (let i = 0; i < gray.length; i++) assert.deepEqual([...g3.data.subarray(3 * i, 3 * i + 3)], [gray[i], gray[i], gray[i]]);
    const g1 = await decodeImageFile(f.gray, 1);
    assert.deepEqual(Buffer.from(g1.data), gray);
    const g16 = await decodeImageFile(f.gray16, 1);
    for (let i = 0; i < gray.length; i++) assert.ok(Math.abs(g16.data[i] - gray[i]) <= 1);
    // RGB to 1 channel with PIL's L formula
    const l = await decodeImageFile(f.rgb, 1);
    for (let i = 0; i < 24 * 18; i++) assert.equal(l.data[i], luma(ref[3 * i], ref[3 * i + 1], ref[3 * i + 2]));
    // alpha is flattened onto black: colour * alpha / 255
    const rgba = await decodeImageFile(f.rgba, 3);
    for (let i = 0; i < 24 * 18; i++) {
      const a = i % 3 === 0 ? 0 : i % 3 === 1 ? 128 : 255;
      for (let c = 0; c < 3; c++) {
        const want = (ref[3 * i + c] * a) / 255;
        assert.ok(Math.abs(rgba.data[3 * i + c] - want) <= 1, `rgba pixel ${i} channel ${c}: ${rgba.data[3 * i + c]} vs ${want}`);
      }
    }
    const ga = await decodeImageFile(f.grayAlpha, 3);
    for (let i = 0; i < 24 * 18; i++) {
      const want = (gray[i] * (i % 2 === 0 ? 255 : 64)) / 255;
      assert.ok(Math.abs(ga.data[3 * i] - want) <= 1, `gray+alpha pixel ${i}`);
    }
    // palette (16 colours): expanded to RGB, near the original colours
    const pal = await decodeImageFile(f.palette, 3);
    assert.equal(pal.channels, 3);
    let perr = 0;
    for (let i = 0; i < ref.length; i++) perr += Math.abs(pal.data[i] - ref[i]);
    assert.ok(perr / ref.length < 30, `palette mean error ${perr / ref.length}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the synthetic dataset: deterministic, labelled by class, distinct classes", () => {
  const a = syntheticImages({ numClasses: 5, perClass: 4, size: 24, seed: 3 });
  const b = syntheticImages({ numClasses: 5, perClass: 4, size: 24, seed: 3 });
  assert.deepEqual(Buffer.from(a.pixels), Buffer.from(b.pixels));
  assert.equal(a.count, 20);
  assert.deepEqual([...a.labels.subarray(0, 7)], [0, 1, 2, 3, 4, 0, 1]);
  const c = syntheticImages({ numClasses: 5, perClass: 4, size: 24, seed: 4 });
  assert.notDeepEqual(Buffer.from(a.pixels), Buffer.from(c.pixels));
  // class means differ more between classes than within one (shape and colour are the class)
  const plane = 24 * 24 * 3;
  const mean = (i: number) => {
    const m = [0, 0, 0];
    for (let p = 0; p < 24 * 24; p++) for (let ch = 0; ch < 3; ch++) m[ch] += a.pixels[i * plane + 3 * p + ch];
    return m.map((v) => v / (24 * 24));
  };
  const gray = syntheticDataset({ numClasses: 3, perClass: 2, size: 16, channels: 1 });
  assert.equal(gray.channels, 1);
  assert.equal(gray.source.kind === "pixels" && gray.source.pixels.length, 6 * 16 * 16);
  assert.ok(mean(0).some((v, ch) => v !== mean(1)[ch]));
});
