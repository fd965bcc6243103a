// The training loop: epochs of (D step, G step) per batch; after the first epoch, every
// evalInterval-th after it (as the official) and the last, cluster the test set, log ACC/NMI
// (with labels) and how the images spread over the clusters, save the best-ACC checkpoint and a
// sample grid; the last checkpoint after every epoch. The loop yields to the event loop between
// steps, so an embedding app stays responsive.
import * as fs from "node:fs";
import * as path from "node:path";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { ClusterUsage, clusterUsage, describeUsage, evaluateClustering, EvalResult } from "../eval";
import { SummaryWriter } from "../io/tensorboard";
import { writeFileAtomicSync } from "../io/atomic";
import { C3GAN, sampleCodes } from "../model/c3gan";
import { ModelSpec } from "../model/spec";
import { resolveDevice } from "../device";
import { native, DeviceName } from "../native";
import { Adam } from "../optim/adam";
import { Generator, noGrad, Tensor, tidy } from "../tensor";
import { C3Config, clusterCount } from "./config";
import { loadModel, loadTrainState, saveModel, saveTrainState, statePath, TrainState } from "./checkpoint";
import { openTrainingData, TrainingData } from "./data-source";
import { gridPng, stackBatches } from "./samples";
import { assignClusters, DLosses, GLosses, queuedIteration } from "./step";

export interface TrainProgress {
  epoch: number;
  maxEpoch: number;
  step: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  itPerSec: number;
  etaSec: number;
  d: DLosses;
  g: GLosses;
}

export interface EvalRecord {
  epoch: number;
  step: number;
  d: DLosses;
  g: GLosses;
  /** ACC and NMI over the test labels; null for images without labels (dataset format "folder") */
  acc: number | null;
  nmiOfficial: number | null;
  nmiSklearn: number | null;
  /** adjusted Rand index (sklearn's), beside the official scores */
  ari: number | null;
  /** how the test images spread over the clusters */
  usage: ClusterUsage;
  imagesPerSec: number;
  seconds: number;
}

export interface TrainOptions {
  resume?: boolean;
  onProgress?: (p: TrainProgress) => void;
  onEval?: (r: EvalRecord) => void;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** data to train on instead of the config's dataset (tests, embedding apps) */
  data?: TrainingData;
}

export interface TrainResult {
  saveDir: string;
  epochs: number;
  steps: number;
  /** the evaluation with the best ACC (what best_acc.safetensors holds); null without labels */
  best: EvalRecord | null;
  last: EvalRecord | null;
  aborted: boolean;
  device: DeviceName;
}

// What a run writes into its folder (config.json: the config as it ran, every default filled in, which
// `c3gan train --config` takes as it is; a resumed run rewrites it with its own). A fresh run in a folder that holds an earlier run moves
// these aside, into earlier-run-<time>/ (nothing is lost to a run started by mistake, and an
// interrupted fresh run leaves no old checkpoint for --resume to pick up nor old lines in its
// metrics log), once the new run has trained its first step: a run that fails before that (a bad
// image in its first batch, a diverging first step) leaves the folder as it found it.
const RUN_FILES = ["config.json", "last.safetensors", "last.state.safetensors", "best_acc.safetensors", "metrics.jsonl", "samples.png"];

function moveEarlierRun(saveDir: string, log: (line: string) => void): void {
  const old = fs.readdirSync(saveDir).filter((f) => RUN_FILES.includes(f) || f.startsWith("events.out.tfevents."));
  if (old.length === 0) return;
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, "").replace(/:/g, "-");
  let dest = path.join(saveDir, `earlier-run-${stamp}`);
  for (let k = 2; fs.existsSync(dest); k++) dest = path.join(saveDir, `earlier-run-${stamp}-${k}`);
  fs.mkdirSync(dest);
  for (const f of old) fs.renameSync(path.join(saveDir, f), path.join(dest, f));
  log(`moved the earlier run's files in ${saveDir} (${old.length}: config, checkpoints, metrics, TensorBoard events) to ${dest}; ` +
    "--resume continues a run instead");
}

export function specFromConfig(cfg: C3Config): ModelSpec {
  return {
    imageSize: cfg.imageSize, channels: cfg.channels, ngf: cfg.ngf, ndf: cfg.ndf, zDim: cfg.zDim,
    czDim: cfg.czDim, numClusters: clusterCount(cfg),
  };
}

function zeroD(): DLosses {
  return { real: 0, fake: 0, info: 0, infoAug: 0, contrastive: 0, entropy1: 0, entropy2: 0, total: 0 };
}
function zeroG(): GLosses {
  return { adv: 0, info: 0, infoAug: 0, mask: 0, total: 0 };
}
function accumulate<T extends object>(sum: T, x: T): void {
  for (const k of Object.keys(x) as (keyof T)[]) (sum[k] as number) += x[k] as number;
}
function scaled<T extends object>(x: T, s: number): T {
  const o = { ...x };
  for (const k of Object.keys(o) as (keyof T)[]) (o[k] as number) *= s;
  return o;
}

export interface ModelScore {
  /** ACC / NMI where every test image has a label, else null */
  metrics: EvalResult | null;
  usage: ClusterUsage;
}

/** Clusters the whole test set with D (eval mode): ACC / NMI where it has labels, and the spread. */
export async function scoreModel(model: C3GAN, data: TrainingData, cfg: C3Config): Promise<ModelScore> {
  const labels: number[] = [];
  const clusters: number[] = [];
  const similarity: number[] = [];
  for await (const b of data.testBatches()) {
    const r = tidy(() => assignClusters(model, Tensor.fromArray(b.images, b.shape, { device: model.device })));
    labels.push(...b.labels);
    clusters.push(...r.clusters);
    similarity.push(...r.similarity);
  }
  if (!labels.length) throw new Error("evaluation: the test set is empty");
  const labelled = labels.every((l) => l >= 0);
  return {
    metrics: labelled ? evaluateClustering(labels, clusters, { numGtClasses: cfg.numGtClasses, over: cfg.over }) : null,
    usage: clusterUsage(clusters, model.spec.numClusters, similarity),
  };
}

/** ACC / NMI of the model on the test set; an error naming why for images without labels. */
export async function evaluateModel(model: C3GAN, data: TrainingData, cfg: C3Config): Promise<EvalResult> {
  const r = await scoreModel(model, data, cfg);
  if (!r.metrics) {
    throw new Error(`evaluation: the test images have no labels (dataset format "${cfg.dataset.format}"), so ACC / NMI ` +
      `cannot be computed; they spread as: ${describeUsage(r.usage)}`);
  }
  return r.metrics;
}

/**
 * The official visualisation: 4 samples sharing z with different clusters, then 4 sharing a
 * cluster with different z; rows background, mask, foreground, final. Fixed seed, so grids of
 * successive evaluations are comparable.
 */
export async function sampleGrid(model: C3GAN, seed: number): Promise<Buffer> {
  const gen = new Generator(BigInt(seed) + 7919n);
  const wasTraining = model.G.training;
  model.G.eval();
  try {
    const rows = noGrad(() =>
      tidy(() => {
        const codes = sampleCodes(gen, model.spec, 5, model.device);
        const pick = (t: Tensor, idx: number[]) => {
          const a = t.toArray();
          const w = t.shape[1];
          const out = new Float32Array(idx.length * w);
          idx.forEach((r, i) => out.set(a.subarray(r * w, (r + 1) * w), i * w));
          return Tensor.fromArray(out, [idx.length, w], { device: model.device });
        };
        const z = pick(codes.z, [0, 0, 0, 0, 1, 2, 3, 4]);
        const cz = pick(codes.cz, [0, 0, 0, 0, 1, 2, 3, 4]);
        const c = pick(codes.c, [0, 1, 2, 3, 4, 4, 4, 4]);
        const o = model.G.forward(z, cz, c, null);
        return [o.background, o.mask, o.foreground, o.final].map((t) => ({
          data: t.toArray(), shape: t.shape as [number, number, number, number],
        }));
      }),
    );
    // the mask is in [0, 1]; the grid maps [-1, 1], so show it as 2m - 1
    rows[1].data = rows[1].data.map((m) => 2 * m - 1);
    return await gridPng(stackBatches(rows), 8, 2);
  } finally {
    model.G.train(wasTraining);
  }
}

export async function train(cfg: C3Config, opts: TrainOptions = {}): Promise<TrainResult> {
  const log = opts.log ?? (() => {});
  const N = native();
  if (cfg.threads > 0) N.setNumThreads(cfg.threads);
  const device = resolveDevice(cfg.device);
  if (device === "cuda" && cfg.cudaMath) N.setCudaMath(cfg.cudaMath);
  if (device === "cuda" && cfg.cudaTile) N.setCudaTile(cfg.cudaTile);
  if (device === "cuda" && cfg.cudaConv) N.setCudaConv(cfg.cudaConv);
  const saveDir = cfg.saveDir;
  fs.mkdirSync(saveDir, { recursive: true });
  const lastFile = path.join(saveDir, "last.safetensors");
  const bestFile = path.join(saveDir, "best_acc.safetensors");
  const metricsFile = path.join(saveDir, "metrics.jsonl");

  if (opts.resume && !fs.existsSync(lastFile)) throw new Error(`--resume: ${lastFile} does not exist (nothing to resume)`);
  // the data first: a missing or bad dataset fails before the (slow, at 128 px) model build
  const data = opts.data ?? (await openTrainingData(cfg));
  const ownsData = !opts.data;
  if (data.batchesPerEpoch < 1) {
    if (ownsData) await data.close();
    throw new Error(`the training set has fewer images than one batch (${cfg.batchSize})`);
  }
  const gen = new Generator(BigInt(cfg.seed));
  const model = new C3GAN(specFromConfig(cfg), device, gen);
  const optG = new Adam(model.G.parameters(), { lr: cfg.lr, betas: [cfg.beta1, cfg.beta2] });
  const optD = new Adam(model.D.parameters(), { lr: cfg.lr, betas: [cfg.beta1, cfg.beta2] });
  let state: TrainState = { epoch: 0, step: 0, bestAcc: -1, rng: gen.getState() };
  try {
    if (opts.resume) {
      loadModel(lastFile, model);
      state = loadTrainState(statePath(lastFile), model, optG, optD, gen);
      log(`resumed from ${lastFile} at epoch ${state.epoch}, step ${state.step}`);
      // a resumed run continues the same metrics log; drop lines past the checkpoint
      if (fs.existsSync(metricsFile)) {
        const kept = fs.readFileSync(metricsFile, "utf8").split("\n").filter((l) => l && JSON.parse(l).epoch < state.epoch);
        fs.writeFileSync(metricsFile, kept.map((l) => l + "\n").join(""));
      }
    } else if (cfg.modelPath) {
      loadModel(cfg.modelPath, model);
      log(`started from weights in ${cfg.modelPath}`);
    }
  } catch (e) {
    optG.dispose();
    optD.dispose();
    model.dispose();
    if (ownsData) await data.close();
    throw e;
  }
  // the earlier run moved aside and this run's event file opened at its first trained step
  let tb = null as SummaryWriter | null;
  const started = (): SummaryWriter => {
    if (!tb) {
      if (!opts.resume) moveEarlierRun(saveDir, log);
      writeFileAtomicSync(path.join(saveDir, "config.json"), Buffer.from(JSON.stringify(cfg, null, 2) + "\n"));
      tb = new SummaryWriter(saveDir);
    }
    return tb;
  };
  const stepOpts = { temperature: cfg.temperature, perturbation: cfg.perturbation };
  let best: EvalRecord | null = null;
  let last: EvalRecord | null = null;
  let aborted = false;
  let tensorCoresNoted = false;
  const B = cfg.batchSize;
  try {
    for (let epoch = state.epoch; epoch < cfg.maxEpoch && !aborted; epoch++) {
      const t0 = Date.now();
      const dSum = zeroD();
      const gSum = zeroG();
      let n = 0;
      for await (const batch of data.trainEpoch(epoch)) {
        if (opts.signal?.aborted) {
          aborted = true;
          break;
        }
        const { d, g } = tidy(() => {
          const real = Tensor.fromArray(batch.real, batch.shape, { device });
          const aug = Tensor.fromArray(batch.aug, batch.shape, { device });
          return queuedIteration(model, optD, optG, real, aug, gen, stepOpts);
        });
        if (!Number.isFinite(d.total) || !Number.isFinite(g.total))
          throw new Error(`training diverged at epoch ${epoch}, step ${state.step}: D loss ${d.total}, G loss ${g.total}`);
        started();  // this run is under way: the earlier one's files go aside now
        if (device === "cuda" && !tensorCoresNoted) {
          // the first products asked the device whether its tensor cores read as the kernels assume
          tensorCoresNoted = true;
          const fallback = N.cudaTensorCoreFallback();
          if (fallback) log(`warning: ${fallback}`);
        }
        accumulate(dSum, d);
        accumulate(gSum, g);
        n++;
        // the official's points (train.py logs before counting the step): steps 0, logInterval, ...
        if (state.step % cfg.logInterval === 0) {
          const events = started();
          for (const [k, v] of Object.entries(d)) events.addScalar(`D/${k}`, v, state.step);
          for (const [k, v] of Object.entries(g)) events.addScalar(`G/${k}`, v, state.step);
        }
        state.step++;
        const secs = (Date.now() - t0) / 1000;
        const itPerSec = n / Math.max(secs, 1e-9);
        const remaining = (cfg.maxEpoch - epoch) * data.batchesPerEpoch - n;
        opts.onProgress?.({
          epoch, maxEpoch: cfg.maxEpoch, step: state.step, stepInEpoch: n, stepsPerEpoch: data.batchesPerEpoch,
          itPerSec, etaSec: remaining / Math.max(itPerSec, 1e-9), d, g,
        });
        await yieldToEventLoop();
      }
      if (aborted) break;
      const seconds = (Date.now() - t0) / 1000;
      state.epoch = epoch + 1;
      state.rng = gen.getState();
      // the official's schedule (train.py: `epoch % EVAL_INTERVAL == 0`): after the first epoch and
      // every evalInterval-th after it, so its best-ACC pick has the same candidates; and after the
      // last epoch, which the official leaves unscored
      const isEval = epoch % cfg.evalInterval === 0 || epoch + 1 === cfg.maxEpoch;
      const events = started();  // (an epoch whose images were all skipped still evaluates and saves)
      if (isEval) {
        const { metrics: r, usage } = await scoreModel(model, data, cfg);
        const rec: EvalRecord = {
          epoch, step: state.step, d: scaled(dSum, 1 / Math.max(n, 1)), g: scaled(gSum, 1 / Math.max(n, 1)),
          acc: r?.acc ?? null, nmiOfficial: r?.nmiOfficial ?? null, nmiSklearn: r?.nmiSklearn ?? null, ari: r?.ari ?? null,
          usage, imagesPerSec: (n * B) / seconds, seconds,
        };
        last = rec;
        fs.appendFileSync(metricsFile, JSON.stringify(rec) + "\n");
        if (r) {
          events.addScalar("test/ACC", r.acc, state.step);
          events.addScalar("test/NMI", r.nmiOfficial, state.step);
          events.addScalar("test/ARI", r.ari, state.step);
        }
        events.addScalar("test/clusters_used", usage.used, state.step);
        events.addScalar("test/cluster_balance", usage.balance, state.step);
        events.addScalar("test/largest_cluster", usage.largest, state.step);
        events.addScalar("test/mean_cosine", usage.meanSimilarity, state.step);
        const png = await sampleGrid(model, cfg.seed);
        fs.writeFileSync(path.join(saveDir, "samples.png"), png);
        const meta = await import("sharp").then((s) => s.default(png).metadata());
        events.addImage("Image_sample", png, meta.height!, meta.width!, 3, state.step);
        if (r && r.acc > state.bestAcc) {
          state.bestAcc = r.acc;
          best = rec;
          saveModel(bestFile, model, cfg, epoch + 1, state.step, { acc: String(r.acc), nmi: String(r.nmiOfficial) });
        }
        opts.onEval?.(rec);
        log(`epoch ${epoch + 1}/${cfg.maxEpoch}: ` + (r
          ? `ACC ${r.acc.toFixed(4)}  NMI ${r.nmiOfficial.toFixed(4)} (official) ${r.nmiSklearn.toFixed(4)} (sklearn)  ARI ${r.ari.toFixed(4)}`
          : `${describeUsage(usage)} (no labels: no ACC / NMI)`) + `  ${rec.imagesPerSec.toFixed(1)} img/s`);
      }
      // the last checkpoint after every epoch: --resume then replays exactly what would have run
      saveModel(lastFile, model, cfg, state.epoch, state.step);
      saveTrainState(statePath(lastFile), model, optG, optD, state);
    }
  } finally {
    tb?.close();
    if (ownsData) await data.close();
    optG.dispose();
    optD.dispose();
    model.dispose();
  }
  if (!best && opts.resume && fs.existsSync(metricsFile)) {
    // resumed past the best epoch: recover it from the log
    for (const l of fs.readFileSync(metricsFile, "utf8").split("\n").filter(Boolean)) {
      const r = JSON.parse(l) as EvalRecord;
      if (r.acc !== null && (!best || r.acc > best.acc!)) best = r;
      last = r;
    }
  }
  return { saveDir, epochs: state.epoch, steps: state.step, best, last, aborted, device };
}
