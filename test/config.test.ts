import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { packageRoot } from "../lib/native";
import {
  parseConfig, parseConfigText, loadConfig, clusterCount, describeConfig, suggestField, ConfigError, C3Config, defaultWorkers,
} from "../lib/train/config";

const examples = path.join(packageRoot(), "examples");

test("examples/cub.json holds the official CUB settings", () => {
  const cfg = loadConfig(path.join(examples, "cub.json"));
  assert.equal(cfg.name, "cub");
  assert.equal(cfg.dataDir, "data/cub");
  assert.deepEqual(cfg.dataset, { format: "lists", trainList: "trainset.txt", testList: "testset.txt", imageDir: "images" });
  assert.equal(cfg.numGtClasses, 200);
  assert.equal(cfg.over, 2);
  assert.equal(clusterCount(cfg), 400);
  assert.equal(cfg.batchSize, 64);
  assert.equal(cfg.temperature, 0.1);
  assert.equal(cfg.perturbation, "s");
  assert.equal(cfg.maxEpoch, 1000);
  assert.equal(cfg.evalInterval, 20);
  assert.equal(cfg.imageSize, 128);
  assert.equal(cfg.ngf, 512);
  assert.equal(cfg.ndf, 64);
  assert.equal(cfg.zDim, 64);
  assert.equal(cfg.czDim, 8);
  assert.equal(cfg.saveDir, "runs/cub");
  assert.equal(cfg.modelPath, null);
});

test("examples/fashion-mnist-32.json and tiny-synthetic.json parse", () => {
  const fm = loadConfig(path.join(examples, "fashion-mnist-32.json"));
  assert.equal(fm.dataset.format, "idx");
  assert.equal(fm.dataDir, "/usr/share/datasets/fashion-mnist");
  assert.equal(fm.channels, 1);
  assert.equal(fm.imageSize, 32);
  assert.equal(clusterCount(fm), 20);
  assert.equal(fm.ngf % 32, 0);
  const tiny = loadConfig(path.join(examples, "tiny-synthetic.json"));
  assert.equal(tiny.dataset.format, "synthetic");
  assert.equal(tiny.device, "cpu");
  if (tiny.dataset.format === "synthetic") assert.equal(tiny.dataset.numClasses, tiny.numGtClasses);
});

test("defaults follow the official config.py", () => {
  const cfg = parseConfig({ dataDir: "data/cub" }, "cub-min.json");
  const expected: C3Config = {
    name: "cub-min", description: "", dataDir: "data/cub", saveDir: "runs/cub-min", modelPath: null,
    numGtClasses: 200, over: 1, batchSize: 64, temperature: 0.1, perturbation: "s", maxEpoch: 1000,
    evalInterval: 20, logInterval: 500, zDim: 64, czDim: 8, imageSize: 128, ngf: 512, ndf: 64, channels: 3,
    dataset: { format: "lists", trainList: "trainset.txt", testList: "testset.txt", imageDir: "images" },
    device: "auto", cudaMath: null, cudaTile: null, cudaConv: null, seed: 0, workers: defaultWorkers(), threads: 0, lr: 2e-4, beta1: 0.5, beta2: 0.999,
    skipBadImages: false, decodeCache: false,
  };
  assert.deepEqual(cfg, expected);
  // loader workers: a core left to the training loop, at most the official's 8
  const cores = os.availableParallelism();
  assert.equal(defaultWorkers(), Math.min(8, Math.max(1, cores - 1)));
  assert.equal(parseConfig({ dataDir: "x", workers: 0 }).workers, 0);
  assert.equal(parseConfig({ dataDir: "x" }).name, "c3gan");
  assert.equal(parseConfig({ dataDir: "x", modelPath: "" }).modelPath, null);
  assert.equal(parseConfig({ dataDir: "x", cudaMath: "fp32" }).cudaMath, "fp32");
  assert.equal(parseConfig({ dataDir: "x", cudaTile: "wgmma" }).cudaTile, "wgmma");
  assert.equal(parseConfig({ dataDir: "x", cudaConv: "cudnn" }).cudaConv, "cudnn");
  assert.equal(parseConfig({ dataDir: "x", cudaConv: "auto" }).cudaConv, "auto");
});

test("a resolved config parses back to itself (it is saved in checkpoints)", () => {
  for (const f of fs.readdirSync(examples).filter((n) => n.endsWith(".json"))) {
    const cfg = loadConfig(path.join(examples, f));
    assert.deepEqual(parseConfig(JSON.parse(JSON.stringify(cfg)), "again"), cfg, f);
  }
  const folder = parseConfig({ dataDir: "d", dataset: { format: "imagefolder", testDir: null } });
  assert.deepEqual(parseConfig(JSON.parse(JSON.stringify(folder))), folder);
});

function rejects(input: unknown, pattern: RegExp): void {
  assert.throws(() => parseConfig(input, "my.json"), (e: unknown) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
    assert.match(e.message, /^my\.json: /);
    assert.match(e.message, pattern);
    return true;
  });
}

test("impossible values are rejected with field, value and what is allowed", () => {
  const base = { dataDir: "d" };
  rejects({ ...base, batchSize: 1 }, /^my\.json: batchSize: expected an integer >= 2, got 1$/);
  rejects({ ...base, batchSize: 2.5 }, /batchSize: expected an integer >= 2, got 2\.5/);
  rejects({ ...base, batchSize: "64" }, /batchSize: expected an integer >= 2, got "64"/);
  rejects({ ...base, imageSize: 100 }, /imageSize: expected one of 32, 64, 128, 256, got 100/);
  rejects({ ...base, channels: 2 }, /channels: expected one of 1, 3, got 2/);
  rejects({ ...base, over: 0 }, /over: expected an integer >= 1, got 0/);
  rejects({ ...base, numGtClasses: 1 }, /over: numGtClasses \* over must be >= 2 clusters \(got 1 \* 1\)/);
  rejects({ ...base, numGtClasses: 0 }, /numGtClasses: expected an integer >= 1, got 0/);
  rejects({ ...base, temperature: 0 }, /temperature: expected a number in \(0, inf\), got 0/);
  rejects({ ...base, temperature: -0.1 }, /temperature: expected a number in \(0, inf\), got -0\.1/);
  rejects({ ...base, temperature: NaN }, /temperature: expected a finite number in \(0, inf\), got NaN/);
  rejects({ ...base, beta2: 1 }, /beta2: expected a number in \[0, 1\), got 1/);
  rejects({ ...base, perturbation: "strong" }, /perturbation: expected one of "s", "w", "none", got "strong"/);
  rejects({ ...base, device: "gpu" }, /device: expected "cpu", "cuda", "cuda:N" \(N: a CUDA device index, as `c3gan info` lists them\) or "auto", got "gpu"/);
  rejects({ ...base, device: "cuda:01" }, /device: expected "cpu", "cuda", "cuda:N" .* got "cuda:01"/);
  rejects({ ...base, cudaMath: "fp16" }, /cudaMath: expected one of "tf32", "fp32", got "fp16"/);
  rejects({ ...base, cudaTile: "tma" }, /cudaTile: expected one of "registers", "async", "wgmma", got "tma"/);
  rejects({ ...base, cudaConv: "cublas" }, /cudaConv: expected one of "native", "cudnn", "auto", got "cublas"/);
  rejects({ ...base, ngf: 100 }, /ngf: must be a multiple of 32/);
  rejects({ ...base, ngf: 16 }, /ngf: expected an integer >= 32, got 16/);
  rejects({ ...base, skipBadImages: "yes" }, /skipBadImages: expected true or false, got "yes"/);
  rejects({ ...base, name: "a/b" }, /name: expected letters/);
  rejects({ ...base, modelPath: 3 }, /modelPath: expected a string or null, got 3/);
  rejects({}, /^my\.json: dataDir: required: a string$/);
  rejects([1, 2], /expected a JSON object, got an array/);
  rejects(null, /expected a JSON object, got null/);
});

test("dataset sections are validated by format", () => {
  rejects({ dataDir: "d", dataset: { format: "csv" } },
    /dataset\.format: expected one of "lists", "imagefolder", "idx", "synthetic", "folder", got "csv"/);
  rejects({ dataDir: "d", dataset: "lists" }, /dataset: expected a JSON object, got "lists"/);
  rejects({ dataDir: "d", dataset: { format: "idx", trainImages: 5 } }, /dataset\.trainImages: expected a string, got 5/);
  rejects({ dataDir: "d", dataset: { format: "idx", trainList: "x" } }, /dataset\.trainList: unknown field; allowed here: format, trainImages/);
  rejects({ numGtClasses: 4, dataset: { format: "synthetic", numClasses: 5 } }, /dataset\.numClasses: must equal numGtClasses \(4\), got 5/);
  rejects({ dataDir: "d", dataset: { format: "imagefolder", testDir: "" } }, /dataset\.testDir: expected a non-empty string or null/);
  const syn = parseConfig({ numGtClasses: 3, seed: 9, dataset: { format: "synthetic", perClass: 10 } });
  assert.deepEqual(syn.dataset, { format: "synthetic", numClasses: 3, perClass: 10, testPerClass: 3, seed: 9 });
  assert.equal(syn.dataDir, "");
  // images without labels: every image below dataDir/dir
  assert.deepEqual(parseConfig({ dataDir: "/x", dataset: { format: "folder" } }).dataset, { format: "folder", dir: "." });
  assert.deepEqual(parseConfig({ dataDir: "/x", dataset: { format: "folder", dir: "photos" } }).dataset, { format: "folder", dir: "photos" });
  rejects({ dataDir: "d", dataset: { format: "folder", dir: "" } }, /dataset\.dir: /);
  rejects({ dataDir: "d", dataset: { format: "folder", trainDir: "x" } }, /dataset\.trainDir: unknown field; allowed here: format, dir/);
  rejects({ dataset: { format: "folder" } }, /dataDir: required/);
  const idx = parseConfig({ dataDir: "/x", dataset: { format: "idx" } });
  assert.deepEqual(idx.dataset, {
    format: "idx", trainImages: "train-images-idx3-ubyte.gz", trainLabels: "train-labels-idx1-ubyte.gz",
    testImages: "t10k-images-idx3-ubyte.gz", testLabels: "t10k-labels-idx1-ubyte.gz",
  });
});

test("unknown fields get a did-you-mean suggestion", () => {
  rejects({ dataDir: "d", batchsize: 8 }, /^my\.json: batchsize: unknown field \(did you mean "batchSize"\?\)$/);
  rejects({ dataDir: "d", BATCH_SIZE: 8 }, /BATCH_SIZE: unknown field \(did you mean "batchSize"\?\)/);
  rejects({ dataDir: "d", TEMP: 0.1 }, /TEMP: unknown field \(did you mean "temperature"\?\)/);
  rejects({ dataDir: "d", maxEpochs: 3 }, /did you mean "maxEpoch"/);
  rejects({ dataDir: "d", dataset: { fromat: "lists" } }, /dataset\.fromat: unknown field \(did you mean "format"\?\)/);
  rejects({ dataDir: "d", xyzzy: 1 }, /xyzzy: unknown field; allowed here: name, description, dataDir/);
  assert.equal(suggestField("ngff", ["ngf", "ndf"]), "ngf");
  assert.equal(suggestField("completelydifferent", ["ngf", "ndf"]), null);
});

test("JSON syntax errors name the file, line and column", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-config-"));
  try {
    const file = path.join(dir, "bad.json");
    fs.writeFileSync(file, '{\n  "dataDir": "d",\n  "batchSize": 64,,\n}\n');
    assert.throws(() => loadConfig(file), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.ok(e.message.startsWith(`${file}: invalid JSON at line 3, column 19 (offset 38)`), e.message);
      return true;
    });
    assert.throws(() => parseConfigText('{"dataDir": "d"', "cut.json"), /ConfigError: cut\.json: invalid JSON at line 1, column 16/);
    assert.throws(() => loadConfig(path.join(dir, "missing.json")), /cannot read config file .*missing\.json/);
    fs.writeFileSync(file, JSON.stringify({ dataDir: "d", over: 0 }));
    assert.throws(() => loadConfig(file), new RegExp(`ConfigError: ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: over: `));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("describeConfig summarises the run", () => {
  const text = describeConfig(loadConfig(path.join(examples, "cub.json")));
  assert.match(text, /c3gan run "cub"/);
  assert.match(text, /200 classes x over 2 = 400 clusters/);
  assert.match(text, /128x128 x 3 ch/);
  assert.match(text, /perturbation strong \(s\)/);
  assert.match(text, /lists in data\/cub/);
  assert.match(text, /output +runs\/cub/);
  // the official's evaluation epochs (after the first, then every 20th) and the last
  assert.match(text, /eval after epochs 1, 21, 41, \.\.\., 981 and 1000,/);
  const short = (maxEpoch: number, evalInterval: number) =>
    describeConfig(parseConfig({ dataset: { format: "synthetic" }, numGtClasses: 2, maxEpoch, evalInterval }, "t"))
      .match(/eval after .*?(?=, log every)/)![0];
  assert.equal(short(12, 3), "eval after epochs 1, 4, 7, 10 and 12");
  assert.equal(short(1, 20), "eval after epoch 1");
  assert.equal(short(5, 2), "eval after epochs 1, 3 and 5");
});
