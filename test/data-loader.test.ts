// The loader: every image once per epoch, deterministic for a seed whatever the worker count,
// prefetch depth or resume point; drop-last; in-order test batches; channels; the decode cache.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { DataLoader, PairBatch, TestBatch } from "../lib/data/loader";
import { Dataset, openDataset } from "../lib/data/formats";
import { syntheticDataset } from "../lib/data/synthetic";
import { encodeIdxU8 } from "../lib/data/idx";
import { writeJpeg } from "./helpers/images";
import sharp from "sharp";
import { configureSharp } from "../lib/data/decode";

// sharp's process-wide settings: the library must leave them as the host program set them
const sharpSettings = () => ({ concurrency: sharp.concurrency(), cacheItems: sharp.cache().items.max });

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function digest(b: PairBatch): string {
  // exact: the first and a spread of values of both views, with the indices
  const pick = (a: Float32Array) => Array.from({ length: 32 }, (_, k) => a[Math.floor((k * a.length) / 32)]).join(",");
  return `${[...b.indices].join(",")}|${pick(b.real.images)}|${pick(b.aug.images)}`;
}

test("every image exactly once per epoch, drop-last, shapes, value range, labels", async () => {
  const ds = syntheticDataset({ numClasses: 5, perClass: 7, size: 20, seed: 2 });
  const L = new DataLoader(ds, { mode: "train", batchSize: 8, imageSize: 16, workers: 0, seed: 11 });
  try {
    assert.equal(L.batchesPerEpoch, 4); // 35 images, 4 full batches of 8, 3 dropped
    for (const epoch of [0, 1]) {
      const batches = await collect(L.epoch(epoch));
      assert.equal(batches.length, 4);
      const seen = new Set<number>();
      for (const b of batches) {
        assert.deepEqual(b.real.shape, [8, 3, 16, 16]);
        assert.deepEqual(b.aug.shape, [8, 3, 16, 16]);
        assert.equal(b.real.images.length, 8 * 3 * 16 * 16);
        for (const v of b.real.images) assert.ok(v >= -1 && v <= 1);
        for (const v of b.aug.images) assert.ok(v >= -1 && v <= 1);
        b.indices.forEach((i, k) => {
          assert.ok(!seen.has(i), `image ${i} twice in epoch ${epoch}`);
          seen.add(i);
          assert.equal(b.labels[k], ds.labels[i]);
        });
        assert.equal(b.real.labels, b.labels);
        assert.equal(b.epoch, epoch);
      }
      assert.equal(seen.size, 32);
      // the dropped ones are exactly the last 3 of the epoch's order
      const order = L.order(epoch);
      assert.deepEqual([...order.subarray(0, 32)].sort((a, b) => a - b), [...seen].sort((a, b) => a - b));
    }
    assert.notDeepEqual([...L.order(0)], [...L.order(1)], "epochs are shuffled differently");
    assert.deepEqual(L.lastReport?.skipped, []);
  } finally {
    await L.close();
  }
});

test("batches are identical for a seed across worker counts, prefetch depths and resumes", async () => {
  const ds = syntheticDataset({ numClasses: 4, perClass: 6, size: 24, seed: 9 });
  const opts = { mode: "train" as const, batchSize: 6, imageSize: 16, seed: 5 };
  const a = new DataLoader(ds, { ...opts, workers: 0, prefetch: 1 });
  const b = new DataLoader(ds, { ...opts, workers: 2, prefetch: 3 });
  const c = new DataLoader(ds, { ...opts, seed: 6, workers: 0 });
  try {
    const ea = (await collect(a.epoch(3))).map(digest);
    const eb = (await collect(b.epoch(3))).map(digest);
    assert.deepEqual(eb, ea);
    const resumed = (await collect(b.epoch(3, 2))).map(digest);
    assert.deepEqual(resumed, ea.slice(2));
    const other = (await collect(c.epoch(3))).map(digest);
    assert.notDeepEqual(other, ea);
    const next = (await collect(a.epoch(4))).map(digest);
    assert.notDeepEqual(next, ea);
    // the real and augmented views of an image differ (different crops, jitter)
    const first = (await collect(a.epoch(3)))[0];
    assert.notDeepEqual([...first.real.images.subarray(0, 768)], [...first.aug.images.subarray(0, 768)]);
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

test("test mode: the test view, in order, the last partial batch kept, no randomness", async () => {
  const ds = syntheticDataset({ numClasses: 3, perClass: 5, size: 20, seed: 1 });
  const L = new DataLoader(ds, { mode: "test", batchSize: 4, imageSize: 16, workers: 0 });
  try {
    const e0 = await collect(L.epoch(0));
    assert.deepEqual(e0.map((b: TestBatch) => b.shape[0]), [4, 4, 4, 3]);
    assert.deepEqual(e0.flatMap((b) => [...b.indices]), Array.from({ length: 15 }, (_, i) => i));
    const e7 = await collect(L.epoch(7));
    assert.deepEqual([...e7[1].images], [...e0[1].images]);
    assert.deepEqual([...e0[0].labels], [0, 1, 2, 0]);
  } finally {
    await L.close();
  }
});

test("1-channel data as 1 or 3 channels (IDX), and 3-channel files as 1", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-loader-idx-"));
  try {
    const n = 10;
    const px = new Uint8Array(n * 12 * 12);
    for (let i = 0; i < px.length; i++) px[i] = (i * 13) & 255;
    fs.writeFileSync(path.join(root, "t10k-images-idx3-ubyte.gz"), zlib.gzipSync(encodeIdxU8([n, 12, 12], px)));
    fs.writeFileSync(path.join(root, "t10k-labels-idx1-ubyte.gz"), zlib.gzipSync(encodeIdxU8([n], Uint8Array.from({ length: n }, (_, i) => i % 2))));
    const ds = await openDataset({ format: "idx", root }, "test");
    const one = new DataLoader(ds, { mode: "test", batchSize: 5, imageSize: 12, workers: 0 });
    const three = new DataLoader(ds, { mode: "test", batchSize: 5, imageSize: 12, workers: 0, channels: 3 });
    const [b1] = await collect(one.epoch(0));
    const [b3] = await collect(three.epoch(0));
    assert.deepEqual(b1.shape, [5, 1, 12, 12]);
    assert.deepEqual(b3.shape, [5, 3, 12, 12]);
    // same size: no resampling, so the values are the pixels, normalised
    for (let k = 0; k < 144; k++) assert.equal(b1.images[k], Math.fround(Math.fround(Math.fround(px[k] / 255) - 0.5) / 0.5));
    for (let c = 0; c < 3; c++) assert.deepEqual([...b3.images.subarray(c * 144, (c + 1) * 144)], [...b1.images.subarray(0, 144)]);
    await Promise.all([one.close(), three.close()]);
    // an upscaled IDX training pair (28 -> 32 style enlargement)
    const up = new DataLoader(ds, { mode: "train", batchSize: 4, imageSize: 16, workers: 0 });
    const pairs = await collect(up.epoch(0));
    assert.equal(pairs.length, 2);
    assert.deepEqual(pairs[0].aug.shape, [4, 1, 16, 16]);
    await up.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("files through workers, with and without the decode cache, channels 1 and 3", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-loader-files-"));
  try {
    const lines: string[] = [];
    for (let i = 0; i < 12; i++) {
      await writeJpeg(path.join(root, "images", `c${i % 3}`, `im ${i}.jpg`), 40 + 3 * i, 30 + 2 * i, i);
      lines.push(`c${i % 3}/im ${i}.jpg ${i % 3}`);
    }
    fs.writeFileSync(path.join(root, "trainset.txt"), lines.join("\n"));
    const settings = sharpSettings();
    const ds: Dataset = await openDataset({ format: "lists", root }, "train");
    const opts = { mode: "train" as const, batchSize: 4, imageSize: 24, seed: 1 };
    const inThread = new DataLoader(ds, { ...opts, workers: 0 });
    const pooled = new DataLoader(ds, { ...opts, workers: 2 });
    const cachedA = new DataLoader(ds, { ...opts, workers: 0, decodeCache: { size: 28 } });
    const cachedB = new DataLoader(ds, { ...opts, workers: 2, decodeCache: { size: 28 } });
    const gray = new DataLoader(ds, { ...opts, workers: 0, channels: 1 });
    try {
      const ref = (await collect(inThread.epoch(0))).map(digest);
      assert.equal(ref.length, 3);
      assert.deepEqual((await collect(pooled.epoch(0))).map(digest), ref);
      // cached: first epoch fills the cache, the second reads it; equal across worker counts
      const c0 = (await collect(cachedA.epoch(0))).map(digest);
      const c1 = (await collect(cachedA.epoch(1))).map(digest);
      assert.deepEqual((await collect(cachedB.epoch(0))).map(digest), c0);
      assert.deepEqual((await collect(cachedB.epoch(1))).map(digest), c1);
      assert.deepEqual((await collect(cachedA.epoch(0))).map(digest), c0, "a cache hit gives the pixels a miss gave");
      assert.notDeepEqual(c0, ref, "views from the reduced image are not those from the file");
      const g = await collect(gray.epoch(0));
      assert.deepEqual(g[0].real.shape, [4, 1, 24, 24]);
      assert.deepEqual(g.map((b) => [...b.indices]), (await collect(inThread.epoch(0))).map((b) => [...b.indices]));
      assert.deepEqual(sharpSettings(), settings, "decoding (in this thread and in workers) left sharp's settings alone");
    } finally {
      await Promise.all([inThread.close(), pooled.close(), cachedA.close(), cachedB.close(), gray.close()]);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("configureSharp (what the c3gan command calls at start) tunes sharp for the loaders", () => {
  const before = sharpSettings();
  const cache = sharp.cache();
  try {
    configureSharp();
    assert.deepEqual(sharpSettings(), { concurrency: 1, cacheItems: 0 });
  } finally {
    sharp.concurrency(before.concurrency);
    sharp.cache({ memory: cache.memory.max, files: cache.files.max, items: cache.items.max });
  }
  assert.deepEqual(sharpSettings(), before);
});

test("loader options are checked", () => {
  const ds = syntheticDataset({ numClasses: 2, perClass: 2, size: 16 });
  assert.throws(() => new DataLoader(ds, { mode: "train", batchSize: 8, imageSize: 16, workers: 0 }), /holds 4 images, fewer than one batch of 8/);
  assert.throws(() => new DataLoader(ds, { mode: "train", batchSize: 0, imageSize: 16, workers: 0 }), /batchSize must be a positive integer/);
  assert.throws(() => new DataLoader(ds, { mode: "bogus" as "train", batchSize: 2, imageSize: 16, workers: 0 }), /mode must be/);
  assert.throws(() => new DataLoader(ds, { mode: "test", batchSize: 2, imageSize: 16, workers: 0, decodeCache: { size: 8 } }), /smaller than imageSize/);
});

test("the trainer's data source (lib/train/data-source.ts) from a config", async () => {
  const { parseConfig } = await import("../lib/train/config");
  const { openDatasetsForTraining } = await import("../lib/data/training");
  const cfg = parseConfig({
    numGtClasses: 3, imageSize: 32, batchSize: 4, workers: 0, seed: 7,
    dataset: { format: "synthetic", perClass: 4, testPerClass: 2 },
  }, "<test>");
  const td = await openDatasetsForTraining(cfg);
  try {
    assert.equal(td.batchesPerEpoch, 3);
    const pairs = await collect(td.trainEpoch(0));
    assert.equal(pairs.length, 3);
    assert.deepEqual(pairs[0].shape, [4, 3, 32, 32]);
    assert.equal(pairs[0].real.length, 4 * 3 * 32 * 32);
    assert.equal(pairs[0].aug.length, pairs[0].real.length);
    const again = await collect(td.trainEpoch(0));
    assert.deepEqual([...again[2].aug], [...pairs[2].aug]);
    const test = await collect(td.testBatches());
    assert.deepEqual(test.map((b) => b.shape[0]), [4, 2]);
    assert.deepEqual(test.flatMap((b) => [...b.labels]), [0, 1, 2, 0, 1, 2]);
    // test images are other images than the training ones
    assert.notDeepEqual([...test[0].images.subarray(0, 100)], [...pairs[0].real.subarray(0, 100)]);
  } finally {
    await td.close();
  }
});
