// The training loop end to end on generated labelled images: it learns (ACC well above chance),
// resuming an interrupted run reproduces the uninterrupted one, and bad configs or data fail clearly.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { parseConfig } from "../lib/train/config";
import { train, EvalRecord } from "../lib/train/trainer";
import { readEventFile } from "../lib/io/tensorboard";
import { native } from "../lib/native";
import { tempDir } from "./helpers/tmp";
import sharp from "sharp";
import { syntheticImages } from "../lib/data/synthetic";
import { evaluate, score } from "../lib";

const tmp = tempDir;

function tinyRaw(saveDir: string, extra: object = {}) {
  return {
    name: "tiny",
    dataset: { format: "synthetic", numClasses: 4, perClass: 48, testPerClass: 16, seed: 3 },
    numGtClasses: 4, over: 1, batchSize: 16, temperature: 0.1, perturbation: "w",
    maxEpoch: 4, evalInterval: 2, logInterval: 4, zDim: 16, czDim: 4, imageSize: 32, channels: 3,
    ngf: 32, ndf: 8, device: "cpu", seed: 5, workers: 0, saveDir, ...extra,
  };
}

function tinyConfig(saveDir: string, extra: object = {}) {
  return parseConfig(tinyRaw(saveDir, extra), "tiny test config");
}

const metrics = (dir: string): EvalRecord[] =>
  fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));

test("a tiny config trains: losses finite, ACC well above chance, files written, memory flat", async () => {
  const dir = tmp("train");
  const live: number[] = [];
  const r = await train(tinyConfig(dir), { onEval: () => live.push(native().liveBytes("cpu")) });
  assert.equal(r.epochs, 4);
  assert.equal(r.steps, 4 * 12);
  assert.ok(r.last, "evaluated");
  // 4 balanced classes: a random assignment scores about 0.3 after Hungarian matching
  assert.ok(r.best!.acc! >= 0.5, `ACC ${r.best!.acc} should be well above chance`);
  assert.ok(r.best!.nmiOfficial! > 0.2, `NMI ${r.best!.nmiOfficial}`);
  for (const f of ["config.json", "last.safetensors", "last.state.safetensors", "best_acc.safetensors", "metrics.jsonl", "samples.png"])
    assert.ok(fs.existsSync(path.join(dir, f)), f);
  // the config as it ran, every default filled in, which parses back to itself
  const ran = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.deepEqual(parseConfig(ran, "config.json"), tinyConfig(dir));
  assert.equal(ran.evalInterval, tinyConfig(dir).evalInterval);
  const m = metrics(dir);
  // the official's schedule (after the first epoch, then every second) and the last epoch
  assert.deepEqual(m.map((x) => x.epoch), [0, 2, 3]);
  for (const rec of m) for (const v of [...Object.values(rec.d), ...Object.values(rec.g)]) assert.ok(Number.isFinite(v));
  for (const rec of m) assert.ok(rec.usage.images === 64 && rec.usage.used >= 1 && rec.usage.used <= 4, JSON.stringify(rec.usage));
  // TensorBoard scalars for every loss term and the test metrics
  const ev = fs.readdirSync(dir).find((f) => f.startsWith("events.out.tfevents."))!;
  const events = readEventFile(path.join(dir, ev));
  const tags = new Set(events.flatMap((e) => (e.values ?? []).map((v) => v.tag)));
  for (const t of ["D/contrastive", "D/entropy1", "G/mask", "test/ACC", "test/NMI", "Image_sample"]) assert.ok(tags.has(t), t);
  // the losses at the official's points: steps 0, logInterval, ... (the step's number before it counts)
  const lossSteps = events.filter((e) => (e.values ?? []).some((v) => v.tag === "D/total")).map((e) => Number(e.step));
  assert.deepEqual(lossSteps, Array.from({ length: 12 }, (_, i) => 4 * i));
  // the model and optimisers are released at the end: what is left is what was live before
  assert.equal(live[0], live[1], "native memory is the same at both evaluations");
  // `c3gan eval` on the best checkpoint scores what the run scored when it saved it
  const cfgFile = path.join(dir, "tiny.json");
  fs.writeFileSync(cfgFile, JSON.stringify(tinyRaw(dir)));
  const cli = spawnSync(process.execPath, [path.join(__dirname, "../bin/c3gan.js"), "eval", "--config", cfgFile, "--checkpoint",
    path.join(dir, "best_acc.safetensors"), "--json"], { encoding: "utf8" });
  assert.equal(cli.status, 0, cli.stderr);
  const ev2 = JSON.parse(cli.stdout);
  assert.equal(ev2.acc, r.best!.acc);
  assert.equal(ev2.nmiOfficial, r.best!.nmiOfficial);
  assert.equal(ev2.ari, r.best!.ari);
  assert.equal(ev2.images, 4 * 16);
  // the ACC matching: over (1) cluster a class, every class once
  assert.deepEqual([...ev2.clusterToClass].sort(), [0, 1, 2, 3]);
});

test("images without labels (format folder) train; evaluations report how they spread; a fresh run moves the folder's run aside", async () => {
  const dir = tmp("unlabelled");
  const images = path.join(dir, "photos");
  fs.mkdirSync(path.join(images, "nested"), { recursive: true });
  const imgs = syntheticImages({ numClasses: 3, perClass: 8, size: 32, channels: 3, seed: 4 });
  const per = 32 * 32 * 3;
  for (let i = 0; i < imgs.count; i++) {
    await sharp(Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per)), { raw: { width: 32, height: 32, channels: 3 } })
      .png().toFile(path.join(images, i % 2 ? "nested" : ".", `img${i}.png`));
  }
  const run = path.join(dir, "run");
  const raw = {
    ...tinyRaw(run, { maxEpoch: 2, evalInterval: 1, batchSize: 8, numGtClasses: 3 }),
    dataDir: dir, dataset: { format: "folder", dir: "photos" },
  };
  const r = await train(parseConfig(raw, "unlabelled"));
  assert.equal(r.best, null, "no ACC, so no best-ACC checkpoint");
  assert.equal(r.last!.acc, null);
  assert.equal(r.last!.nmiOfficial, null);
  const u = r.last!.usage;
  assert.ok(u.images === 24 && u.clusters === 3 && u.used >= 1 && u.used <= 3, JSON.stringify(u));
  assert.ok(u.largest >= 1 / 3 && u.largest <= 1 && u.balance >= 0 && u.balance <= 1 && Math.abs(u.meanSimilarity) <= 1);
  assert.ok(!fs.existsSync(path.join(run, "best_acc.safetensors")));
  for (const f of ["last.safetensors", "last.state.safetensors", "metrics.jsonl", "samples.png"]) assert.ok(fs.existsSync(path.join(run, f)), f);
  const m = metrics(run);
  assert.deepEqual(m.map((x) => [x.epoch, x.acc, x.usage.images]), [[0, null, 24], [1, null, 24]]);
  const events = () => fs.readdirSync(run).filter((f) => f.startsWith("events.out.tfevents."));
  const tags = new Set(readEventFile(path.join(run, events()[0])).flatMap((e) => (e.values ?? []).map((v) => v.tag)));
  for (const t of ["test/clusters_used", "test/cluster_balance", "test/largest_cluster", "test/mean_cosine"]) assert.ok(tags.has(t), t);
  assert.ok(!tags.has("test/ACC"));
  // `c3gan eval` prints the spread; the library's evaluate() says why it has no ACC, score() gives the spread
  const cfgFile = path.join(dir, "unlabelled.json");
  fs.writeFileSync(cfgFile, JSON.stringify(raw));
  const evalCli = (...extra: string[]) => spawnSync(process.execPath, [path.join(__dirname, "../bin/c3gan.js"), "eval", "--config", cfgFile,
    "--checkpoint", path.join(run, "last.safetensors"), ...extra], { encoding: "utf8" });
  const text = evalCli();
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /^\d of 3 clusters used, largest [\d.]+% of 24 images, balance [\d.]+, mean cosine -?[\d.]+ \(images without labels: no ACC \/ NMI\)$/m);
  const json = JSON.parse(evalCli("--json").stdout);
  assert.deepEqual([json.acc, json.images, json.usage], [null, 24, u], "the checkpoint spreads the images as the run's last evaluation");
  const stored = spawnSync(process.execPath, [path.join(__dirname, "../bin/c3gan.js"), "eval", "--checkpoint", path.join(run, "last.safetensors"),
    "--json"], { encoding: "utf8" });
  assert.deepEqual(JSON.parse(stored.stdout), json, "without --config: the config stored in the checkpoint");
  await assert.rejects(evaluate(path.join(run, "last.safetensors"), raw), /the test images have no labels \(dataset format "folder"\)/);
  assert.deepEqual(await score(path.join(run, "last.safetensors"), raw), { metrics: null, usage: u });
  // a fresh run (not --resume) in the same folder moves the earlier run's files aside
  fs.writeFileSync(path.join(run, "best_acc.safetensors"), "from an even earlier labelled run");
  const logs: string[] = [];
  await train(parseConfig({ ...raw, maxEpoch: 1 }, "unlabelled"), { log: (l) => logs.push(l) });
  assert.deepEqual(metrics(run).map((x) => x.epoch), [0]);
  assert.equal(events().length, 1);
  assert.ok(!fs.existsSync(path.join(run, "best_acc.safetensors")));
  const aside = fs.readdirSync(run).filter((f) => f.startsWith("earlier-run-"));
  assert.equal(aside.length, 1);
  assert.deepEqual(metrics(path.join(run, aside[0])).map((x) => x.epoch), [0, 1], "the earlier run's log, whole");
  assert.equal(fs.readFileSync(path.join(run, aside[0], "best_acc.safetensors"), "utf8"), "from an even earlier labelled run");
  assert.match(logs.join("\n"), /moved the earlier run's files in \S+ \(7: config, checkpoints, metrics, TensorBoard events\) to \S+earlier-run-\S+; --resume continues a run instead/);
  // a fresh run that fails in its first batch (an unreadable image; one batch holds them all)
  // leaves the folder as it found it: the run before it in place, no event file of its own
  const before = fs.readdirSync(run).sort();
  fs.writeFileSync(path.join(images, "broken.png"), "not a png");
  await assert.rejects(train(parseConfig({ ...raw, batchSize: 25, maxEpoch: 1 }, "unlabelled")),
    /cannot read image \S*broken\.png .*\("skipBadImages": true in the config leaves such images out\)/);
  assert.deepEqual(fs.readdirSync(run).sort(), before);
});

test("the train command: a run from a config file, then --resume with more --epochs, and Ctrl-C", async () => {
  const dir = tmp("cli-train");
  const cfgFile = path.join(dir, "tiny.json");
  fs.writeFileSync(cfgFile, JSON.stringify(tinyRaw(path.join(dir, "ignored"), { maxEpoch: 5, evalInterval: 1 })));
  const cli = path.join(__dirname, "../bin/c3gan.js");
  const runDir = path.join(dir, "run");
  const first = spawnSync(process.execPath, [cli, "train", "--config", cfgFile, "--save-dir", runDir, "--epochs", "1"], { encoding: "utf8" });
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /1 epoch, 12 steps; run folder /);
  assert.match(first.stdout, /final: ACC \d\.\d{4}  NMI \d\.\d{4} \(official formula\)/);
  assert.ok(fs.existsSync(path.join(runDir, "last.safetensors")) && !fs.existsSync(path.join(dir, "ignored")), "--save-dir replaces saveDir");
  const second = spawnSync(process.execPath, [cli, "train", "--config", cfgFile, "--save-dir", runDir, "--epochs", "2", "--resume"],
    { encoding: "utf8" });
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /2 epochs, 24 steps/);
  assert.deepEqual(metrics(runDir).map((m) => m.epoch), [0, 1]);

  // SIGINT stops after the current step and exits with 130 (128 + SIGINT), as an interrupted command does
  const child = spawn(process.execPath, [cli, "train", "--config", cfgFile, "--save-dir", path.join(dir, "stopped")],
    { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => {
    out += d;
    // once training has stepped (the progress line names the epoch), interrupt it
    if (/epoch 1\/5 step \d+/.test(out) && !child.killed) child.kill("SIGINT");
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 130, out);
  assert.match(out, /interrupted: stopping after this step/);
  assert.match(out, /device cpu; 0 epochs, \d+ steps; run folder /);
});

test("resume after an interrupted run reproduces the uninterrupted metrics", async () => {
  const whole = tmp("whole");
  await train(tinyConfig(whole, { maxEpoch: 3, evalInterval: 1 }));
  const parts = tmp("parts");
  await train(tinyConfig(parts, { maxEpoch: 1, evalInterval: 1 }));
  const r = await train(tinyConfig(parts, { maxEpoch: 3, evalInterval: 1 }), { resume: true });
  assert.equal(r.epochs, 3);
  const a = metrics(whole);
  const b = metrics(parts);
  assert.equal(b.length, 3);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual({ ...b[i], imagesPerSec: 0, seconds: 0 }, { ...a[i], imagesPerSec: 0, seconds: 0 }, `epoch ${i}`);
  }
});

test("an aborted run stops cleanly and can be resumed", async () => {
  const dir = tmp("abort");
  const ac = new AbortController();
  const r = await train(tinyConfig(dir, { maxEpoch: 3 }), {
    signal: ac.signal,
    onProgress: (p) => p.epoch === 1 && p.stepInEpoch === 2 && ac.abort(),
  });
  assert.equal(r.aborted, true);
  assert.equal(r.epochs, 1, "the checkpoint is the last finished epoch");
  const again = await train(tinyConfig(dir, { maxEpoch: 2 }), { resume: true });
  assert.equal(again.epochs, 2);
});

test("missing data and impossible settings fail with clear errors", async () => {
  const dir = tmp("bad");
  await assert.rejects(
    train(parseConfig({ dataDir: path.join(dir, "nope"), dataset: { format: "lists" }, numGtClasses: 2, saveDir: dir }, "bad.json")),
    /nope.*does not exist|does not exist.*nope/,
  );
  await assert.rejects(train(tinyConfig(dir), { resume: true }), /last\.safetensors does not exist/);
  assert.throws(() => tinyConfig(dir, { imageSize: 48 }), /imageSize/);
  await assert.rejects(train(tinyConfig(dir, { batchSize: 512 })), /fewer images than one batch|batch/);
});
