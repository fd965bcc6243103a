// `c3gan prepare`: CUB's metadata to the official lists (on a small fake CUB tree), image folders
// with a held-out fraction, IDX files to PNGs and lists; and the command line around them.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Command } from "commander";
import { formatSummary, prepareCub, prepareIdx, prepareImageFolder } from "../lib/data/prepare";
import { parseList } from "../lib/data/lists";
import { openDataset } from "../lib/data/formats";
import { DataLoader } from "../lib/data/loader";
import { encodeIdxU8 } from "../lib/data/idx";
import { registerPrepareCommand } from "../lib/data/cli";
import { makeFakeCub, makeImageFolder } from "./helpers/images";
import { tempDir } from "./helpers/tmp";

function tmp(name: string): string {
  return tempDir(`prep-${name}`);
}

test("prepare cub: all images in the training list, the is_training_image == 0 ones in the test list", async () => {
  const root = tmp("cub");
  try {
    const cub = path.join(root, "CUB_200_2011");
    const { ids, testIds } = await makeFakeCub(cub, 3, 4);
    const out = path.join(root, "data");
    const s = prepareCub(cub, out);
    const train = parseList(fs.readFileSync(path.join(out, "trainset.txt"), "utf8"), "trainset.txt");
    const testList = parseList(fs.readFileSync(path.join(out, "testset.txt"), "utf8"), "testset.txt");
    assert.equal(train.length, ids);
    assert.equal(testList.length, testIds.length);
    // images.txt order, 0-based labels from image_class_labels.txt (1-based there)
    const imagesTxt = fs.readFileSync(path.join(cub, "images.txt"), "utf8").trim().split("\n").map((l) => l.split(" ")[1]);
    assert.deepEqual(train.map((e) => e.path), imagesTxt);
    assert.deepEqual(train.map((e) => e.label), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert.deepEqual(testList.map((e) => e.path), testIds.map((id) => imagesTxt[id - 1]));
    assert.equal(train[0].path, "001.Bird_1/Bird_1_0000_1001.jpg");
    assert.deepEqual(s.splits.map((x) => [x.name, x.count]), [["train", 12], ["test", 4]]);
    assert.deepEqual(s.splits[0].perClass, [4, 4, 4]);
    assert.deepEqual(s.classNames, ["001.Bird_1", "002.Bird_2", "003.Bird_3"]);
    const text = formatSummary(s);
    assert.match(text, /train: 12 images/);
    assert.match(text, /test: 4 images/);
    assert.match(text, /\n\s+2  003\.Bird_3\s+4\s+2/);
    assert.deepEqual(s.splits[1].perClass, [1, 1, 2]);
    // the output folder is a usable data folder (images/ is linked to CUB's)
    assert.ok(fs.lstatSync(path.join(out, "images")).isSymbolicLink());
    const ds = await openDataset({ format: "lists", root: out, numClasses: 3 }, "test");
    const L = new DataLoader(ds, { mode: "test", batchSize: 4, imageSize: 16, workers: 0 });
    for await (const b of L.epoch(0)) assert.deepEqual(b.shape, [4, 3, 16, 16]);
    await L.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("prepare cub: inconsistent metadata and missing images are errors with file and line", async () => {
  const root = tmp("cub-bad");
  try {
    const cub = path.join(root, "CUB_200_2011");
    await makeFakeCub(cub, 2, 2);
    const split = path.join(cub, "train_test_split.txt");
    const good = fs.readFileSync(split, "utf8");
    fs.writeFileSync(split, good.replace("3 0", "3 2"));
    assert.throws(() => prepareCub(cub, path.join(root, "o")), /train_test_split\.txt line 3: is_training_image must be 0 or 1, got "2"/);
    fs.writeFileSync(split, good.split("\n").slice(1).join("\n"));
    assert.throws(() => prepareCub(cub, path.join(root, "o")), /image id 1 \(images\.txt line 1\) has no row in train_test_split\.txt/);
    fs.writeFileSync(split, good);
    fs.rmSync(path.join(cub, "images", "002.Bird_2"), { recursive: true });
    assert.throws(() => prepareCub(cub, path.join(root, "o")), /image not found: .*Bird_2_0000_1003\.jpg/);
    assert.throws(() => prepareCub(path.join(root, "nothing"), path.join(root, "o")), /cannot read .*images\.txt/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("prepare imagefolder: a seeded per-class held-out fraction", async () => {
  const root = tmp("folder");
  try {
    const src = path.join(root, "flowers");
    await makeImageFolder(src, ["rose", "daisy"], 10);
    const a = prepareImageFolder(src, path.join(root, "a"), { heldOut: 0.3, seed: 4 });
    const b = prepareImageFolder(src, path.join(root, "b"), { heldOut: 0.3, seed: 4, trainAll: true });
    const read = (d: string, f: string) => parseList(fs.readFileSync(path.join(root, d, f), "utf8"), f);
    const trainA = read("a", "trainset.txt"), testA = read("a", "testset.txt");
    assert.deepEqual(a.splits.map((x) => x.perClass), [[7, 7], [3, 3]]);
    assert.equal(trainA.length + testA.length, 20);
    const testPaths = new Set(testA.map((e) => e.path));
    assert.ok(trainA.every((e) => !testPaths.has(e.path)), "held-out images are not in the training list");
    assert.deepEqual(read("b", "testset.txt"), testA, "same seed, same held-out images");
    assert.equal(read("b", "trainset.txt").length, 20);
    // labels from sorted class names: daisy 0, rose 1; paths keep their spaces
    assert.ok(testA.every((e) => e.label === (e.path.startsWith("daisy/") ? 0 : 1)));
    assert.ok(testA.every((e) => / \d+\.jpg$/.test(e.path)));
    const c = prepareImageFolder(src, path.join(root, "c"), { heldOut: 0.3, seed: 5 });
    assert.notDeepEqual(read("c", "testset.txt"), testA);
    assert.deepEqual(c.classNames, ["daisy", "rose"]);
    assert.throws(() => prepareImageFolder(src, path.join(root, "d"), { heldOut: 1 }), /held-out fraction must be in \[0, 1\)/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("prepare idx, through the command line: PNGs and lists, counts printed", async () => {
  const root = tmp("idx");
  try {
    const src = path.join(root, "mnist");
    fs.mkdirSync(src);
    const mk = (prefix: string, n: number) => {
      const px = Uint8Array.from({ length: n * 6 * 5 }, (_, i) => (i * 11) & 255);
      fs.writeFileSync(path.join(src, `${prefix}-images-idx3-ubyte`), encodeIdxU8([n, 6, 5], px));
      fs.writeFileSync(path.join(src, `${prefix}-labels-idx1-ubyte`), encodeIdxU8([n], Uint8Array.from({ length: n }, (_, i) => i % 3)));
    };
    mk("train", 7);
    mk("t10k", 4);
    const out = path.join(root, "out");
    const printed: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void printed.push(a.join(" "));
    try {
      const program = new Command().exitOverride();
      registerPrepareCommand(program);
      await program.parseAsync(["node", "c3gan", "prepare", "idx", src, "--out", out]);
    } finally {
      console.log = log;
    }
    const text = printed.join("\n");
    assert.match(text, /train: 7 images/);
    assert.match(text, /test: 4 images/);
    assert.match(text, /\n\s+0\s+3\s+2/);
    const ds = await openDataset({ format: "lists", root: out }, "train");
    assert.equal(ds.size, 7);
    assert.deepEqual([...ds.labels], [0, 1, 2, 0, 1, 2, 0]);
    // the PNGs hold the IDX pixels
    const { decodeImageFile } = await import("../lib/data/decode");
    const img = await decodeImageFile(path.join(out, "images", ds.names![1]), 1);
    assert.deepEqual([img.width, img.height], [5, 6]);
    assert.deepEqual([...img.data], Array.from({ length: 30 }, (_, i) => ((30 + i) * 11) & 255));
    const direct = await prepareIdx(src, path.join(root, "out2"));
    assert.deepEqual(direct.splits.map((s) => s.perClass), [[3, 2, 2], [2, 1, 1]]);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
