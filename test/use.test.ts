// Using a trained model: checkpoint round trip, the library API, and the cluster / generate CLI.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { loadModel } from "../lib/api/model";
import { readNpy } from "../lib/io/npy";
import { readSafetensorsSync, writeSafetensorsSync } from "../lib/io/safetensors";
import { syntheticImages } from "../lib/data/synthetic";
import { evaluateClustering } from "../lib/eval";
import { C3GAN, sampleCodes } from "../lib/model/c3gan";
import { packageRoot } from "../lib/native";
import { Generator, noGrad, Tensor, tidy } from "../lib/tensor";
import { parseConfig } from "../lib/train/config";
import { saveModel } from "../lib/train/checkpoint";
import { specFromConfig } from "../lib/train/trainer";
import { tempDir } from "./helpers/tmp";

const root = packageRoot();
const cli = path.join(root, "dist", "bin", "c3gan.js");
const work = tempDir("use");

const cfg = parseConfig({
  name: "use-test", dataset: { format: "synthetic", numClasses: 3, perClass: 8, testPerClass: 4, seed: 2 },
  numGtClasses: 3, over: 2, batchSize: 8, imageSize: 32, channels: 3, ngf: 32, ndf: 8, zDim: 8, czDim: 4,
  device: "cpu", workers: 0, saveDir: path.join(work, "run"),
}, "use test config");

// a model with non-trivial BatchNorm statistics, saved as a checkpoint
const ckpt = path.join(work, "model.safetensors");
const model = new C3GAN(specFromConfig(cfg), "cpu", new Generator(4n));
tidy(() => {
  const gen = new Generator(5n);
  const c = sampleCodes(gen, model.spec, 8, "cpu");
  model.G.forward(c.z, c.cz, c.c, null);
  model.D.info(model.D.encode(Tensor.rand([8, 3, 32, 32], gen, -1, 1)));
});
saveModel(ckpt, model, cfg, 3, 42);

function outputs(m: C3GAN): Float32Array[] {
  return noGrad(() => tidy(() => {
    m.train(false);
    const gen = new Generator(9n);
    const c = sampleCodes(gen, m.spec, 4, "cpu");
    const o = m.G.forward(c.z, c.cz, c.c, null);
    const f = m.D.info(m.D.encode(o.final));
    return [o.final.toArray(), o.mask.toArray(), f.toArray(), m.D.centroidEmbeddings().toArray()];
  }));
}

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd: work });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("a saved checkpoint loads back to identical outputs, with its config", async () => {
  const m = await loadModel(ckpt);
  try {
    assert.equal(m.config.name, "use-test");
    assert.equal(m.numClusters, 6);
    const a = outputs(model);
    const b = outputs(m.gan);
    for (let i = 0; i < a.length; i++) assert.deepEqual(b[i], a[i], `output ${i}`);
  } finally {
    m.dispose();
  }
});

function stateOf(m: C3GAN): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const mod of [m.G, m.D]) for (const [k, t] of mod.stateDict()) out.set(k, Array.from(t.toArray()));
  return out;
}

test("checkpoints keep PyTorch's dtypes (num_batches_tracked int64, the rest float32); float counts of older files load too", async () => {
  const file = readSafetensorsSync(ckpt);
  const saved = stateOf(model);
  const counts = [...file.tensors.keys()].filter((k) => k.endsWith(".num_batches_tracked"));
  assert.ok(counts.length >= 10, counts.join(", "));
  assert.ok(counts.some((k) => file.tensors.get(k)!.data[0] > 0), "some batch norm counted a batch");
  for (const [k, t] of file.tensors) {
    assert.equal(t.dtype, counts.includes(k) ? "I64" : "F32", k);
    assert.deepEqual(Array.from(t.data), saved.get(k), k);
  }
  const older = path.join(work, "float-counts.safetensors");
  writeSafetensorsSync(older, new Map([...file.tensors].map(([k, t]) => [k, { ...t, dtype: "F32" as const }])), file.metadata);
  assert.equal(readSafetensorsSync(older).tensors.get(counts[0])!.dtype, "F32");
  for (const f of [ckpt, older]) {
    const m = await loadModel(f);
    try {
      assert.deepEqual(stateOf(m.gan), saved, f);
    } finally {
      m.dispose();
    }
  }
});

test("officialInit: false leaves the layers' defaults (what loadModel builds before it loads every weight)", () => {
  const spec = specFromConfig(cfg);
  const plain = new C3GAN(spec, "cpu", new Generator(4n), { officialInit: false });
  const again = new C3GAN(spec, "cpu", new Generator(4n));
  try {
    // D's first BatchNorm weight: PyTorch's default ones, where the official init draws N(1, 0.02)
    const name = "base.3.weight";
    const w = (m: C3GAN) => m.D.stateDict().get(name)!.toArray();
    assert.ok(w(plain).every((v) => v === 1), `${name} keeps its default ones`);
    assert.ok(w(again).some((v) => v !== 1), `${name} is drawn by the official init`);
    assert.deepEqual(w(again), w(model), "the default is the official init (the saved checkpoint's)");
  } finally {
    plain.dispose();
    again.dispose();
  }
});

test("loading into a different architecture lists the mismatches", async () => {
  const other = { ...cfg, numGtClasses: 4 };
  await assert.rejects(loadModel(ckpt, { config: other }), /does not fit the model[\s\S]*centroids\.weight/);
});

test("cluster: CSV for labelled image folders, ACC/NMI printed, galleries written", async () => {
  // 3 classes x 4 images written as PNG files in class folders
  const imgs = syntheticImages({ numClasses: 3, perClass: 4, size: 32, channels: 3, seed: 7 });
  const dir = path.join(work, "images");
  const per = 32 * 32 * 3;
  for (let i = 0; i < imgs.count; i++) {
    const cls = path.join(dir, imgs.classNames[imgs.labels[i]]);
    fs.mkdirSync(cls, { recursive: true });
    await sharp(Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per)), { raw: { width: 32, height: 32, channels: 3 } })
      .png().toFile(path.join(cls, `img ${i}.png`));
  }
  const out = path.join(work, "clusters.csv");
  const gallery = path.join(work, "gallery");
  const r = run(["cluster", dir, "--checkpoint", ckpt, "--out", out, "--gallery", gallery]);
  assert.equal(r.status, 0, r.stderr);
  const lines = fs.readFileSync(out, "utf8").trim().split("\n");
  assert.equal(lines[0], "path,cluster,similarity,top1,top1_similarity,top2,top2_similarity,top3,top3_similarity,label");
  assert.equal(lines.length, 1 + 12);
  const rows = lines.slice(1).map((l) => l.split(","));
  for (const row of rows) {
    const k = Number(row[1]);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 6);
    assert.equal(Number(row[3]), k, "the assigned cluster is the closest");
    assert.ok(Number(row[4]) >= Number(row[6]) && Number(row[6]) >= Number(row[8]), "top-3 sorted");
    assert.ok(row[0].includes("img "), "paths with spaces survive");
  }
  // the printed metrics are the official ones over the CSV's labels and clusters
  const ev = evaluateClustering(rows.map((x) => Number(x[9])), rows.map((x) => Number(x[1])), { numGtClasses: 3, over: 2 });
  assert.match(r.stderr, new RegExp(`ACC ${ev.acc.toFixed(4)}`));
  const used = new Set(rows.map((x) => Number(x[1])));
  assert.equal(fs.readdirSync(gallery).length, used.size);
});

test("cluster: a bad image stops it by name unless --skip-bad-images, which lists it and clusters the rest; --features and --centroids", async () => {
  const imgs = syntheticImages({ numClasses: 1, perClass: 3, size: 32, channels: 3, seed: 9 });
  const dir = path.join(work, "flat-with-bad");
  fs.mkdirSync(dir, { recursive: true });
  const per = 32 * 32 * 3;
  for (let i = 0; i < imgs.count; i++) {
    await sharp(Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per)), { raw: { width: 32, height: 32, channels: 3 } })
      .png().toFile(path.join(dir, `good${i}.png`));
  }
  fs.writeFileSync(path.join(dir, "broken.png"), "not a png");
  const bad = run(["cluster", dir, "--checkpoint", ckpt]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^c3gan: data: cannot read image \S*broken\.png .*--skip-bad-images/m);
  const out = path.join(work, "skip.json");
  const ok = run(["cluster", dir, "--checkpoint", ckpt, "--skip-bad-images", "--out", out]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, /1 image skipped \(--skip-bad-images\):\n {2}\S*broken\.png: /);
  const r = JSON.parse(fs.readFileSync(out, "utf8"));
  assert.deepEqual(r.assignments.map((a: { path: string }) => path.basename(a.path)).sort(), ["good0.png", "good1.png", "good2.png"]);
  assert.equal(r.skipped.length, 1);
  assert.equal(path.basename(r.skipped[0].path), "broken.png");
  // D's features and the centroids as .npy: their cosines are the CSV's clusters and similarities
  const csv = path.join(work, "skip.csv"), feats = path.join(work, "f.npy"), cents = path.join(work, "c.npy");
  const withF = run(["cluster", dir, "--checkpoint", ckpt, "--skip-bad-images", "--out", csv, "--features", feats, "--centroids", cents]);
  assert.equal(withF.status, 0, withF.stderr);
  const f = readNpy(fs.readFileSync(feats)), cnt = readNpy(fs.readFileSync(cents));
  assert.deepEqual(f.shape, [3, 64]);
  assert.deepEqual(cnt.shape, [6, 64]);
  const rows = fs.readFileSync(csv, "utf8").trim().split("\n").slice(1).map((l) => l.split(","));
  rows.forEach((row, i) => {
    const cos = Array.from({ length: 6 }, (_, k) => {
      let s = 0;
      for (let d = 0; d < 64; d++) s += f.values[i * 64 + d] * cnt.values[k * 64 + d];
      return s;
    });
    const best = cos.indexOf(Math.max(...cos));
    assert.equal(Number(row[1]), best, `row ${i}: the cluster is the feature's closest centroid`);
    assert.ok(Math.abs(Number(row[2]) - cos[best]) < 1e-5, `row ${i}: similarity ${row[2]} vs ${cos[best]}`);
  });
  const notNpy = run(["cluster", dir, "--checkpoint", ckpt, "--features", path.join(work, "f.csv")]);
  assert.equal(notNpy.status, 1);
  assert.match(notNpy.stderr, /--features writes a NumPy \.npy file/);
  // the library reports the same; given files that are missing are skipped too
  const m = await loadModel(ckpt);
  try {
    const rep = await m.cluster([path.join(dir, "good0.png"), path.join(dir, "gone.png")], { skipBadImages: true });
    assert.deepEqual(rep.assignments.map((a) => path.basename(a.path)), ["good0.png"]);
    assert.deepEqual(rep.skipped.map((x) => [path.basename(x.path), x.reason]), [["gone.png", "does not exist"]]);
    await assert.rejects(m.cluster([path.join(dir, "broken.png")], { skipBadImages: true }), /none of the 1 images could be read/);
  } finally {
    m.dispose();
  }
});

test("cluster: files that are not images c3gan reads are noted by kind; an image under another name clusters; other bytes are refused", async () => {
  const dir = path.join(work, "phone");
  fs.mkdirSync(dir, { recursive: true });
  const imgs = syntheticImages({ numClasses: 1, perClass: 2, size: 32, channels: 3, seed: 11 });
  const per = 32 * 32 * 3;
  for (let i = 0; i < imgs.count; i++) {
    await sharp(Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per)), { raw: { width: 32, height: 32, channels: 3 } })
      .jpeg().toFile(path.join(dir, i ? "download.jfif" : "photo.jpg"));
  }
  // an iPhone photo: an ftyp box of brand heic (what sniffing reads), then data this build cannot decode
  const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypheic"), Buffer.alloc(4), Buffer.from("mif1heic"), Buffer.alloc(256, 1)]);
  fs.writeFileSync(path.join(dir, "IMG_0001.HEIC"), heic);
  fs.writeFileSync(path.join(dir, "notes.txt"), "holiday\n");
  const out = path.join(work, "phone.json");
  const r = run(["cluster", dir, "--checkpoint", ckpt, "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /note: 3 files under \S*phone not used \(not image files c3gan reads\): 1 \.heic, 1 \.jfif, 1 \.txt; HEIC\/HEIF photos .*convert them to JPEG or PNG.*rename them \.jpg/);
  assert.match(r.stderr, /^1 image in 1 of 6 clusters/m);
  assert.equal(JSON.parse(fs.readFileSync(out, "utf8")).notes.length, 1);
  // one file: a JPEG named .jfif is an image (by its bytes), the HEIC photo is refused with advice,
  // other bytes are neither an image nor a list file
  const one = run(["cluster", path.join(dir, "download.jfif"), "--checkpoint", ckpt]);
  assert.equal(one.status, 0, one.stderr);
  assert.equal(one.stdout.trim().split("\n").length, 2);
  const h = run(["cluster", path.join(dir, "IMG_0001.HEIC"), "--checkpoint", ckpt]);
  assert.equal(h.status, 1);
  assert.match(h.stderr, /IMG_0001\.HEIC.*HEIC\/HEIF photos \(HEVC\) cannot be decoded here/);
  fs.writeFileSync(path.join(dir, "blob.dat"), Buffer.from([0, 1, 2, 3, 255, 0]));
  const b = run(["cluster", path.join(dir, "blob.dat"), "--checkpoint", ckpt]);
  assert.equal(b.status, 1);
  assert.match(b.stderr, /blob\.dat is neither an image c3gan reads .* nor a list file/);
});

// four 40 px images, one each of PNG, JPEG, WebP and binary PPM (decoded by pnm.ts), as files
// under memory/ and as their bytes; made once, for whichever of the tests below runs first
let four: Promise<{ files: string[]; buffers: Buffer[] }> | null = null;
function fourImages(): Promise<{ files: string[]; buffers: Buffer[] }> {
  four ??= (async () => {
    const dir = path.join(work, "memory");
    fs.mkdirSync(dir, { recursive: true });
    const imgs = syntheticImages({ numClasses: 2, perClass: 2, size: 40, channels: 3, seed: 13 });
    const per = 40 * 40 * 3;
    const files: string[] = [];
    const buffers: Buffer[] = [];
    for (let i = 0; i < imgs.count; i++) {
      const raw = Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per));
      const img = sharp(raw, { raw: { width: 40, height: 40, channels: 3 } });
      // PNG, JPEG, WebP, and a binary PPM (decoded by pnm.ts, as its file is)
      const bytes = i === 3 ? Buffer.concat([Buffer.from("P6\n40 40\n255\n"), raw])
        : await (i === 0 ? img.png() : i === 1 ? img.jpeg() : img.webp({ lossless: true })).toBuffer();
      const file = path.join(dir, `img${i}.${["png", "jpg", "webp", "ppm"][i]}`);
      fs.writeFileSync(file, bytes);
      files.push(file);
      buffers.push(bytes);
    }
    return { files, buffers };
  })();
  return four;
}

test("cluster from memory: encoded images (Buffers) give what their files give; bad bytes are named by their index", async () => {
  const { files, buffers } = await fourImages();
  const m = await loadModel(ckpt);
  try {
    const fromFiles = await m.cluster(files);
    const pick = (r: { assignments: { path: string; cluster: number; similarity: number }[] }) =>
      r.assignments.map((a) => [a.cluster, a.similarity]);
    const fromMemory = await m.cluster(buffers);
    assert.deepEqual(fromMemory.assignments.map((a) => a.path), ["#0", "#1", "#2", "#3"]);
    assert.deepEqual(pick(fromMemory), pick(fromFiles));
    // Uint8Arrays, one Buffer alone, and loader worker threads (the bytes cross to them)
    assert.deepEqual(pick(await m.cluster(buffers.map((b) => new Uint8Array(b)), { workers: 2 })), pick(fromFiles));
    assert.deepEqual(pick(await m.cluster(buffers[2])), pick(fromFiles).slice(2, 3));

    const bad = [buffers[0], Buffer.from("not an image"), Buffer.alloc(0)];
    await assert.rejects(m.cluster(bad), /cannot read image #1 \(3 encoded images item 1\): not an image: 12 bytes of text \(and 1 more in this batch\)/);
    const kept = await m.cluster(bad, { skipBadImages: true });
    assert.deepEqual(kept.assignments.map((a) => a.path), ["#0"]);
    assert.deepEqual(kept.skipped.map((x) => [x.path, x.reason]), [["#1", "not an image: 12 bytes of text"], ["#2", "no bytes (an empty image)"]]);
    const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from("ftypheic"), Buffer.alloc(4), Buffer.from("mif1heic"), Buffer.alloc(64, 1)]);
    await assert.rejects(m.cluster([heic]), /cannot read image #0 .*HEIC\/HEIF photos \(HEVC\) cannot be decoded here/);
    await assert.rejects(m.cluster([files[0], buffers[1]] as unknown as string[]), /the array mixes paths and encoded images: give one kind/);
    await assert.rejects(m.cluster([42] as unknown as string[]), /item 0 of the array is a number: give image paths/);
    await assert.rejects(m.cluster([]), /no images given/);
    await assert.rejects(m.cluster(undefined as unknown as string), /expected a path, paths, encoded images, decoded pixels, or \{ images: Float32Array, shape: \[N, C, S, S\] \}, got undefined/);
    await assert.rejects(m.cluster({ images: [1, 2] } as unknown as string), /got an Object/);
  } finally {
    m.dispose();
  }
});

test("cluster from decoded pixels of any size (gray, RGB, RGBA as a canvas holds them): what the same pixels in a PNG give", async () => {
  const dir = path.join(work, "raw");
  fs.mkdirSync(dir, { recursive: true });
  // 45 x 37 (resized and cropped by the test transform), RGBA with varied alpha, RGB and gray
  const W = 45, H = 37;
  const rgba = Uint8ClampedArray.from({ length: W * H * 4 }, (_, i) => (i % 4 === 3 ? (i * 7) % 256 : (i * 13 + (i >> 7)) % 256));
  const rgb = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 29 + (i >> 5)) % 256);
  const gray = Uint8Array.from({ length: W * H }, (_, i) => (i * 3) % 256);
  const raws = [
    { data: rgba, width: W, height: H, channels: 4 as const },
    { data: rgb, width: W, height: H, channels: 3 as const },
    { data: gray, width: W, height: H, channels: 1 as const },
  ];
  const files: string[] = [];
  for (const [i, r] of raws.entries()) {
    const file = path.join(dir, `p${i}.png`);
    await sharp(Buffer.from(r.data.buffer), { raw: { width: W, height: H, channels: r.channels } }).png().toFile(file);
    files.push(file);
  }
  const m = await loadModel(ckpt);
  try {
    const pick = (r: { assignments: { cluster: number; similarity: number }[] }) => r.assignments.map((a) => [a.cluster, a.similarity]);
    const fromRaw = await m.cluster(raws, { features: true });
    const fromFiles = await m.cluster(files, { features: true });
    assert.deepEqual(fromRaw.assignments.map((a) => [a.path, a.file]), [["#0", null], ["#1", null], ["#2", null]]);
    assert.deepEqual(pick(fromRaw), pick(fromFiles));
    assert.deepEqual(Array.from(fromRaw.features!.values), Array.from(fromFiles.features!.values));
    assert.deepEqual(pick(await m.cluster(raws[1])), pick(fromFiles).slice(1, 2));
    assert.deepEqual(pick(await m.cluster(raws, { workers: 2 })), pick(fromFiles), "the pixels cross to loader threads");
    await assert.rejects(m.cluster([{ data: rgb, width: W, height: H + 1, channels: 3 }]),
      /cluster: pixels #0: 4995 bytes for 45 x 38 x 3 \(5130 expected, rows without padding\)/);
    await assert.rejects(m.cluster([raws[0], { data: rgb, width: W, height: H, channels: 2 }] as never),
      /pixels #1: width and height must be positive integers and channels 1, 3 or 4, got 45 x 37 x 2/);
    await assert.rejects(m.cluster([raws[0], files[0]] as never), /the array mixes decoded pixels and paths: give one kind/);
  } finally {
    m.dispose();
  }
});

test("cluster: several image files as arguments (a shell glob), or their paths on standard input with -", async () => {
  const { files } = await fourImages();
  const dir = path.dirname(files[0]);
  const rows = (csv: string) => csv.trim().split("\n").slice(1).map((l) => l.split(",").slice(0, 3).join(","));
  const args = run(["cluster", ...files, "--checkpoint", ckpt]);
  assert.equal(args.status, 0, args.stderr);
  assert.deepEqual(rows(args.stdout).map((r) => r.split(",")[0]), files);
  const piped = spawnSync(process.execPath, [cli, "cluster", "-", "--checkpoint", ckpt], {
    encoding: "utf8", cwd: work, input: files.map((f) => path.relative(work, f)).join("\r\n") + "\n\n",
  });
  assert.equal(piped.status, 0, piped.stderr);
  assert.deepEqual(rows(piped.stdout), rows(args.stdout).map((r) => path.relative(work, r.split(",")[0]) + r.slice(r.indexOf(","))));
  const empty = spawnSync(process.execPath, [cli, "cluster", "-", "--checkpoint", ckpt], { encoding: "utf8", cwd: work, input: "\n" });
  assert.equal(empty.status, 1);
  assert.match(empty.stderr, /cluster -: no image paths on standard input/);
  const folder = run(["cluster", files[0], dir, "--checkpoint", ckpt]);
  assert.equal(folder.status, 1);
  assert.match(folder.stderr, /cluster: \S*memory is a folder: give a folder on its own, or image files/);
});

test("cluster --sort-into links (or --copy copies) each image into a folder per cluster; names that meet get -2", async () => {
  const { buffers } = await fourImages();
  const src = path.join(work, "sort-src");
  for (const [rel, b] of [["a/x.png", buffers[0]], ["b/x.png", buffers[0]], ["b/y.jpg", buffers[1]]] as const) {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), b);
  }
  const into = path.join(work, "sorted");
  const r = run(["cluster", src, "--checkpoint", ckpt, "--sort-into", into]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`; 3 linked into ${into.replace(/[.\\/]/g, "\\$&")}/cluster_NNNN/`));
  const rows = r.stdout.trim().split("\n").slice(1).map((l) => l.split(","));
  const placed: string[] = [];
  for (const folder of fs.readdirSync(into).sort()) {
    for (const name of fs.readdirSync(path.join(into, folder)).sort()) {
      const link = path.join(into, folder, name);
      assert.ok(fs.lstatSync(link).isSymbolicLink(), link);
      const target = fs.readlinkSync(link);
      assert.ok(path.isAbsolute(target) && target.startsWith(src), target);
      const row = rows.find((x) => path.resolve(src, x[0]) === target)!;
      assert.equal(folder, `cluster_${row[1].padStart(4, "0")}`, `${name} sits in its cluster's folder`);
      placed.push(name);
    }
  }
  // the two x.png hold the same pixels, so they share a cluster and one becomes x-2.png
  assert.deepEqual(placed.sort(), ["x-2.png", "x.png", "y.jpg"]);
  const again = run(["cluster", src, "--checkpoint", ckpt, "--sort-into", into]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /--sort-into \S*sorted already holds files: give a new or empty folder/);
  const copies = path.join(work, "sorted-copies");
  const c = run(["cluster", src, "--checkpoint", ckpt, "--sort-into", copies, "--copy"]);
  assert.equal(c.status, 0, c.stderr);
  const copied = fs.readdirSync(copies).flatMap((d) => fs.readdirSync(path.join(copies, d)).map((n) => path.join(copies, d, n)));
  assert.equal(copied.length, 3);
  for (const f of copied) assert.ok(fs.lstatSync(f).isFile() && !fs.lstatSync(f).isSymbolicLink(), f);
  const lone = run(["cluster", src, "--checkpoint", ckpt, "--copy"]);
  assert.equal(lone.status, 1);
  assert.match(lone.stderr, /--copy goes with --sort-into/);
});

test("cluster stops between batches when its signal aborts, rejecting with an AbortError; the model stays usable", async () => {
  const m = await loadModel(ckpt);
  try {
    const N = 10;
    const images = Float32Array.from({ length: N * 3 * 32 * 32 }, (_, i) => Math.sin(i) * 0.9);
    const shape: [number, number, number, number] = [N, 3, 32, 32];
    const ac = new AbortController();
    const seen: number[] = [];
    await assert.rejects(m.cluster({ images, shape }, {
      batchSize: 2, signal: ac.signal, onProgress: (done) => { seen.push(done); if (done === 4) ac.abort(); },
    }), { name: "AbortError" });
    assert.deepEqual(seen, [2, 4]);
    const { files } = await fourImages();
    const fromFiles = new AbortController();
    await assert.rejects(m.cluster(files, { batchSize: 1, signal: fromFiles.signal, onProgress: () => fromFiles.abort(new Error("enough")) }),
      /^Error: enough$/);
    await assert.rejects(m.cluster(files, { signal: AbortSignal.abort() }), { name: "AbortError" });
    assert.equal((await m.cluster({ images, shape }, { batchSize: 4 })).assignments.length, N);
  } finally {
    m.dispose();
  }
});

test("generate writes a grid per cluster, single files, parts and the official visualisation", () => {
  const out = path.join(work, "gen");
  const r = run(["generate", "--checkpoint", ckpt, "--out", out, "--clusters", "0,5", "--per-cluster", "3", "--parts", "--official-vis"]);
  assert.equal(r.status, 0, r.stderr);
  const files = fs.readdirSync(out).sort();
  assert.deepEqual(files, ["cluster_0000", "cluster_0000.png", "cluster_0005", "cluster_0005.png", "official_vis.png"]);
  assert.equal(fs.readdirSync(path.join(out, "cluster_0005")).length, 3 * 4);
  const bad = run(["generate", "--checkpoint", ckpt, "--out", out, "--clusters", "6"]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /cluster 6 out of range \[0, 6\)/);
});

test("generate in batches: the same images whatever the batch size, one cluster at a time too; large counts keep grids to 64 columns", async () => {
  const m = await loadModel(ckpt);
  try {
    const opts = { clusters: [1, 4], perCluster: 70, seed: 3, parts: true };
    const whole = m.generate({ ...opts, batchSize: 128 });
    const batched = m.generate({ ...opts, batchSize: 32 });
    for (let i = 0; i < whole.length; i++) {
      assert.equal(batched[i].cluster, whole[i].cluster);
      for (const part of ["final", "background", "mask", "foreground"] as const) {
        const a = whole[i][part]!, b = batched[i][part]!;
        assert.deepEqual(b.shape, a.shape, part);
        let worst = 0;
        for (let j = 0; j < a.data.length; j++) worst = Math.max(worst, Math.abs(a.data[j] - b.data[j]));
        assert.ok(worst < 1e-5, `cluster ${whole[i].cluster} ${part}: batches of 32 differ from one batch by ${worst}`);
      }
    }
    const each = [...m.generateEach({ ...opts, batchSize: 32 })];
    assert.deepEqual(each.map((g) => [g.cluster, Array.from(g.final.data.subarray(0, 50))]),
      batched.map((g) => [g.cluster, Array.from(g.final.data.subarray(0, 50))]));
    assert.throws(() => m.generateEach({ batchSize: 0 }), /generate: batchSize must be a positive integer, got 0/);
    assert.throws(() => m.generateEach({ perCluster: 100_001 }), /perCluster must be in 1\.\.100000/);
    assert.equal(m.gan.G.training, false, "the generator is back in eval mode");
  } finally {
    m.dispose();
  }
  const out = path.join(work, "gen-many");
  const r = run(["generate", "--checkpoint", ckpt, "--out", out, "--clusters", "2", "--per-cluster", "70"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /the grids show each cluster's first 64 of 70 images; the single files hold all\nwrote 71 PNG files for 1 cluster to /);
  const meta = await sharp(path.join(out, "cluster_0002.png")).metadata();
  assert.equal(meta.width, 64 * (32 + 2) + 2);
  const singles = fs.readdirSync(path.join(out, "cluster_0002")).sort();
  assert.equal(singles.length, 70);
  assert.deepEqual([singles[0], singles[69]], ["000_final.png", "069_final.png"]);
  // --flat: every image in one folder under a name that says its cluster, no grids (for FID tools)
  const flat = path.join(work, "gen-flat");
  const f = run(["generate", "--checkpoint", ckpt, "--out", flat, "--clusters", "1,3", "--per-cluster", "2", "--flat"]);
  assert.equal(f.status, 0, f.stderr);
  assert.deepEqual(fs.readdirSync(flat).sort(), ["c0001_000_final.png", "c0001_001_final.png", "c0003_000_final.png", "c0003_001_final.png"]);
  assert.match(f.stdout, /wrote 4 PNG files for 2 clusters/);
  const none = run(["generate", "--checkpoint", ckpt, "--out", flat, "--flat", "--no-singles"]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /--flat writes only single files, and --no-singles none: give one of them/);
});

test("the README's library example runs", () => {
  // resolve require("c3gan") to this package, as an installed dependency would
  const nm = path.join(work, "node_modules");
  fs.mkdirSync(nm, { recursive: true });
  fs.symlinkSync(root, path.join(nm, "c3gan"), "dir");
  const example = path.join(root, "examples", "library.js");
  const r = spawnSync(process.execPath, [example, path.join(work, "example-run")], {
    encoding: "utf8", env: { ...process.env, NODE_PATH: nm },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /best ACC/);
  assert.match(r.stdout, /generated for cluster 2 -> assigned/);
});
