// Checkpoints: the model as one safetensors file whose tensor names are exactly the official
// state-dict names (G's bg_gen.* / fg_gen.* and D's base.* / info_head.* / rf_head.* /
// centroids.* never collide), plus a companion "<name>.state.safetensors" with both Adam states,
// the RNG state and the loop position, for --resume. Both are written atomically.
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../native";
import { readSafetensorsSync, TensorRecord, writeSafetensorsSync, checkpointMetadata } from "../io/safetensors";
import { C3GAN } from "../model/c3gan";
import { Module } from "../nn";
import { Adam, AdamParamState } from "../optim/adam";
import { Generator, noGrad, Tensor } from "../tensor";

export const VERSION: string = JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")).version;

export interface TrainState {
  epoch: number;
  step: number;
  bestAcc: number;
  rng: { key: string; offset: string };
}

function records(m: Module, into: Map<string, TensorRecord>, prefix = ""): void {
  const integers = m.integerStateKeys(); // num_batches_tracked: int64 in the file, as in PyTorch's state dict
  for (const [name, t] of m.stateDict()) {
    into.set(prefix + name, { dtype: integers.has(name) ? "I64" : "F32", shape: t.shape, data: t.toArray() });
  }
}

/** The model's tensors by official name (G's then D's). */
export function modelRecords(model: C3GAN): Map<string, TensorRecord> {
  const out = new Map<string, TensorRecord>();
  records(model.G, out);
  records(model.D, out);
  return out;
}

export function saveModel(file: string, model: C3GAN, config: unknown, epoch: number, step: number,
  extra: Record<string, string> = {}): void {
  writeSafetensorsSync(file, modelRecords(model), checkpointMetadata(config, epoch, step, VERSION, extra));
}

/** Every name or shape of the modules' state dicts that the file's tensors do not match. */
function mismatches(mods: Module[], tensors: Map<string, TensorRecord>): string[] {
  const problems: string[] = [];
  const own = new Set<string>();
  for (const m of mods) {
    for (const [name, t] of m.stateDict()) {
      own.add(name);
      const r = tensors.get(name);
      if (!r) problems.push(`missing ${name} ${JSON.stringify(t.shape)}`);
      else if (JSON.stringify(r.shape) !== JSON.stringify(t.shape))
        problems.push(`${name}: shape ${JSON.stringify(r.shape)} in the file, ${JSON.stringify(t.shape)} in the model`);
    }
  }
  for (const name of tensors.keys()) if (!own.has(name)) problems.push(`unexpected ${name}`);
  return problems;
}

function loadInto(m: Module, tensors: Map<string, TensorRecord>): void {
  noGrad(() => {
    const sd = new Map<string, Tensor>();
    for (const [name, t] of m.stateDict()) {
      const r = tensors.get(name)!;
      sd.set(name, Tensor.fromArray(r.data, r.shape, { device: t.device }));
    }
    try {
      m.loadStateDict(sd);
    } finally {
      for (const t of sd.values()) t.dispose();
    }
  });
}

/** Loads weights and buffers into a model built from the same config; returns the file's metadata. */
export function loadModel(file: string, model: C3GAN): Record<string, string> {
  if (!fs.existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  const f = readSafetensorsSync(file);
  const problems = mismatches([model.G, model.D], f.tensors);
  if (problems.length) {
    throw new Error(`checkpoint ${file} does not fit the model built from the config (${problems.length} problems): ` +
      problems.slice(0, 12).join("; ") + (problems.length > 12 ? `; and ${problems.length - 12} more` : ""));
  }
  loadInto(model.G, f.tensors);
  loadInto(model.D, f.tensors);
  return f.metadata;
}

export function statePath(modelFile: string): string {
  return modelFile.replace(/\.safetensors$/, "") + ".state.safetensors";
}

function optimizerRecords(opt: Adam, tag: string, names: string[], into: Map<string, TensorRecord>): void {
  const sd = opt.stateDict();
  for (const [i, s] of sd.state) {
    into.set(`${tag}.${names[i]}.exp_avg`, { dtype: "F32", shape: s.exp_avg.shape, data: s.exp_avg.toArray() });
    into.set(`${tag}.${names[i]}.exp_avg_sq`, { dtype: "F32", shape: s.exp_avg_sq.shape, data: s.exp_avg_sq.toArray() });
    into.set(`${tag}.${names[i]}.step`, { dtype: "F32", shape: [1], data: Float32Array.of(s.step) });
  }
}

export function saveTrainState(file: string, model: C3GAN, optG: Adam, optD: Adam, state: TrainState): void {
  const out = new Map<string, TensorRecord>();
  optimizerRecords(optG, "optG", model.G.namedParameters().map(([n]) => n), out);
  optimizerRecords(optD, "optD", model.D.namedParameters().map(([n]) => n), out);
  writeSafetensorsSync(file, out, { format: "c3gan-train-state", c3gan_version: VERSION, state: JSON.stringify(state) });
}

function loadOptimizer(opt: Adam, tag: string, names: string[], tensors: Map<string, TensorRecord>, device: string): void {
  const state = new Map<number, AdamParamState>();
  const made: Tensor[] = [];
  names.forEach((n, i) => {
    const m = tensors.get(`${tag}.${n}.exp_avg`);
    const v = tensors.get(`${tag}.${n}.exp_avg_sq`);
    const s = tensors.get(`${tag}.${n}.step`);
    if (!m || !v || !s) return;
    const mt = Tensor.fromArray(m.data, m.shape, { device: device as "cpu" | "cuda" });
    const vt = Tensor.fromArray(v.data, v.shape, { device: device as "cpu" | "cuda" });
    made.push(mt, vt);
    state.set(i, { exp_avg: mt, exp_avg_sq: vt, step: s.data[0] });
  });
  opt.loadStateDict({ state, paramGroups: opt.stateDict().paramGroups });
  for (const t of made) t.dispose();
}

export function loadTrainState(file: string, model: C3GAN, optG: Adam, optD: Adam, gen: Generator): TrainState {
  if (!fs.existsSync(file)) throw new Error(`training state ${file} does not exist (needed by --resume)`);
  const f = readSafetensorsSync(file);
  if (f.metadata.format !== "c3gan-train-state" || !f.metadata.state)
    throw new Error(`${file} is not a c3gan training state file`);
  const state = JSON.parse(f.metadata.state) as TrainState;
  loadOptimizer(optG, "optG", model.G.namedParameters().map(([n]) => n), f.tensors, model.device);
  loadOptimizer(optD, "optD", model.D.namedParameters().map(([n]) => n), f.tensors, model.device);
  gen.setState(state.rng);
  return state;
}
