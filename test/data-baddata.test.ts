// Bad data: each case is an error naming the file and the list line, or, with skipBadImages, a
// warning at the end of the epoch listing what was left out. Nothing is dropped silently.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataLoader } from "../lib/data/loader";
import { oneLine } from "../lib/data/pipeline";
import { openDataset } from "../lib/data/formats";
import { openDatasetsForTraining } from "../lib/data/training";
import { parseConfig } from "../lib/train/config";
import { writeJpeg } from "./helpers/images";
import { tempDir } from "./helpers/tmp";

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

async function withTree(fn: (root: string) => Promise<void>): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-bad-"));
  try {
    for (let i = 0; i < 6; i++) await writeJpeg(path.join(root, "images", `ok${i}.jpg`), 30, 24, i);
    await fn(root);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function list(root: string, name: string, text: string): void {
  fs.writeFileSync(path.join(root, name), text);
}

test("a malformed line, a non-integer or out-of-range label, an empty list: errors with file and line", async () => {
  await withTree(async (root) => {
    const file = path.join(root, "trainset.txt");
    list(root, "trainset.txt", "ok0.jpg 0\nok1.jpg\n");
    await assert.rejects(openDataset({ format: "lists", root }, "train"), (e: Error) => e.message.includes(file) && /line 2: expected/.test(e.message));
    list(root, "trainset.txt", "ok0.jpg 0\r\nok1.jpg one\r\n");
    await assert.rejects(openDataset({ format: "lists", root }, "train"), /line 2: label "one" is not an integer/);
    list(root, "trainset.txt", "ok0.jpg 0\nok1.jpg 3\n");
    await assert.rejects(openDataset({ format: "lists", root, numClasses: 3 }, "train"), /trainset\.txt:\n  line 2: label 3 is out of range for 3 classes/);
    list(root, "trainset.txt", "ok0.jpg -2\n");
    await assert.rejects(openDataset({ format: "lists", root }, "train"), /line 1: label -2 is out of range/);
    list(root, "trainset.txt", "\n\n");
    await assert.rejects(openDataset({ format: "lists", root, skipBadImages: true }, "train"), /trainset\.txt:\n  the list holds no images/);
    await assert.rejects(openDataset({ format: "lists", root }, "test"), /cannot read the test list .*testset\.txt/);
  });
});

test("a missing image or a directory in its place: error at open, or skipped and reported", async () => {
  await withTree(async (root) => {
    fs.mkdirSync(path.join(root, "images", "adir.jpg"));
    list(root, "trainset.txt", "ok0.jpg 0\nmissing.jpg 1\nok1.jpg 1\nadir.jpg 0\nok2.jpg 0\n");
    await assert.rejects(openDataset({ format: "lists", root }, "train"), (e: Error) => {
      assert.match(e.message, /2 problems in .*trainset\.txt/);
      assert.match(e.message, /line 2: image not found: .*missing\.jpg/);
      assert.match(e.message, /line 4: not a regular file: .*adir\.jpg/);
      return true;
    });
    const ds = await openDataset({ format: "lists", root, skipBadImages: true }, "train");
    assert.equal(ds.size, 3);
    const warnings: string[] = [];
    const L = new DataLoader(ds, { mode: "test", batchSize: 2, imageSize: 16, workers: 0, onWarning: (m) => warnings.push(m) });
    try {
      assert.equal(await drain(L.epoch(0)), 2);
      assert.equal(L.lastReport!.skipped.length, 2);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /c3gan data: evaluation: 2 bad images skipped/);
      assert.match(warnings[0], /missing\.jpg \(.*trainset\.txt line 2\): image not found/);
      assert.match(warnings[0], /adir\.jpg \(.*trainset\.txt line 4\): not a regular file/);
    } finally {
      await L.close();
    }
  });
});

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
test("an unreadable image (no read permission): error at open naming file and line", { skip: isRoot ? "root reads anything" : false }, async () => {
  await withTree(async (root) => {
    fs.chmodSync(path.join(root, "images", "ok1.jpg"), 0o000);
    list(root, "trainset.txt", "ok0.jpg 0\nok1.jpg 1\n");
    await assert.rejects(openDataset({ format: "lists", root }, "train"), /line 2: image not readable \(permission denied\): .*ok1\.jpg/);
  });
});

test("a corrupt or truncated image: error naming file and line, or skipped with skipBadImages", async () => {
  await withTree(async (root) => {
    fs.writeFileSync(path.join(root, "images", "garbage.jpg"), Buffer.from("this is not an image at all"));
    const good = fs.readFileSync(path.join(root, "images", "ok3.jpg"));
    fs.writeFileSync(path.join(root, "images", "cut.jpg"), good.subarray(0, Math.floor(good.length / 2)));
    list(root, "trainset.txt", "ok0.jpg 0\nok1.jpg 1\ngarbage.jpg 0\nok2.jpg 1\ncut.jpg 0\nok4.jpg 1\nok5.jpg 0\nok3.jpg 1\n");
    for (const workers of [0, 1]) {
      const ds = await openDataset({ format: "lists", root }, "train");
      const L = new DataLoader(ds, { mode: "test", batchSize: 4, imageSize: 16, workers });
      try {
        await assert.rejects(drain(L.epoch(0)), (e: Error) => {
          assert.match(e.message, /cannot read image .*garbage\.jpg \(.*trainset\.txt line 3\): .*unsupported image format/);
          return true;
        });
      } finally {
        await L.close();
      }
    }
    const ds = await openDataset({ format: "lists", root, skipBadImages: true }, "train");
    const warnings: string[] = [];
    const L = new DataLoader(ds, { mode: "train", batchSize: 4, imageSize: 16, workers: 1, onWarning: (m) => warnings.push(m) });
    try {
      const sizes: number[] = [];
      const seen: number[] = [];
      for await (const b of L.epoch(0)) {
        sizes.push(b.real.shape[0]);
        assert.equal(b.real.images.length, b.real.shape[0] * 3 * 16 * 16);
        assert.equal(b.aug.images.length, b.real.images.length);
        seen.push(...b.indices);
      }
      assert.equal(sizes.reduce((a, x) => a + x, 0), 6, "the two bad images are left out of their batches");
      assert.ok(!seen.includes(2) && !seen.includes(4));
      assert.deepEqual(L.lastReport!.skipped.map((s) => s.where.replace(/.*line /, "line ")).sort(), ["line 3", "line 5"]);
      assert.match(warnings[0], /c3gan data: epoch 1: 2 bad images skipped/);
      assert.match(warnings[0], /cut\.jpg .*line 5\): .*(premature end|truncated|JPEG)/i);
    } finally {
      await L.close();
    }
    // a training run's data: the error says which config field leaves such images out
    const cfg = parseConfig({ dataDir: root, dataset: { format: "lists" }, numGtClasses: 2, batchSize: 4, imageSize: 32, workers: 0 }, "bad.json");
    const data = await openDatasetsForTraining(cfg);
    try {
      await assert.rejects(drain(data.trainEpoch(0)),
        /cannot read image .*garbage\.jpg .*\("skipBadImages": true in the config leaves such images out\)/);
    } finally {
      await data.close();
    }
  });
});

test("IDX labels out of range are errors naming the file", async () => {
  const { encodeIdxU8 } = await import("../lib/data/idx");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-bad-idx-"));
  try {
    fs.writeFileSync(path.join(root, "train-images-idx3-ubyte"), encodeIdxU8([2, 4, 4], new Uint8Array(32)));
    fs.writeFileSync(path.join(root, "train-labels-idx1-ubyte"), encodeIdxU8([2], new Uint8Array([0, 9])));
    await assert.rejects(openDataset({ format: "idx", root, numClasses: 5 }, "train"), /train-labels-idx1-ubyte: label 9 of item 1 is out of range for 5 classes/);
    await assert.rejects(openDataset({ format: "idx", root }, "test"), /no IDX test images file in .*t10k-images-idx3-ubyte\.gz/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("a failed decode among concurrent ones names its own fault: libvips' one error buffer is retried past", async () => {
  // each decode clears libvips' process-wide error buffer as it ends, and another's failure may
  // write into it: without the retries ~1 in 4 of these failures read "Unknown error" or carried
  // the other bad file's detail
  const { decodeImageFile } = await import("../lib/data/decode");
  const dir = tempDir("decode-race");
  const good = path.join(dir, "good.jpg");
  await writeJpeg(good, 40, 30, 1);
  const bytes = fs.readFileSync(good);
  const cut = path.join(dir, "cut.jpg");
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
  const garbage = path.join(dir, "garbage.jpg");
  fs.writeFileSync(garbage, "this is not an image at all, just text bytes......");
  const kind = new Map([[cut, /premature end|truncated|JPEG/i], [garbage, /unsupported image format/i]]);
  const wrong: string[] = [];
  let failures = 0;
  for (let round = 0; round < 25; round++) {
    const files = Array.from({ length: 12 }, (_, i) => [good, cut, garbage][i % 3]);
    await Promise.all(files.map((f) => decodeImageFile(f, 3).then(() => assert.equal(f, good), (e: Error) => {
      failures++;
      if (!kind.get(f)?.test(e.message)) wrong.push(`${path.basename(f)}: ${e.message}`);
    })));
  }
  assert.equal(failures, 200);
  assert.deepEqual(wrong, []);
});

test("a decoder's message on one line: libvips's repeated warning lines kept once", () => {
  assert.equal(oneLine("Input file has corrupt header: VipsJpeg: Unsupported marker type 0x20\nVipsJpeg: Unsupported marker type 0x20\nVipsJpeg: Unsupported marker type 0x20\n"),
    "Input file has corrupt header: VipsJpeg: Unsupported marker type 0x20");
  assert.equal(oneLine("pngload: end of stream\nlibpng: read error\n"), "pngload: end of stream; libpng: read error");
  assert.equal(oneLine("unsupported image format"), "unsupported image format");
});
