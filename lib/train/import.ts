// `c3gan import`: the official naver-ai/c3-gan checkpoints (train.py's save(): torch.save of
// {'netG': netG.state_dict(), 'netD': netD.state_dict()}, both wrapped in nn.DataParallel, so
// every name starts with "module.") turned into our safetensors model file. Our parameter names
// are the official ones, so the import is a strict name-for-name, shape-for-shape copy.
import * as path from "node:path";
import { asStateDict, readTorchCheckpoint, tensorToFloat32, TorchTensor } from "../io/torch-checkpoint";
import { C3GAN } from "../model/c3gan";
import type { Module } from "../nn";
import { Generator, noGrad, Tensor } from "../tensor";
import { saveModel } from "./checkpoint";
import { C3Config, clusterCount, loadConfig } from "./config";
import { specFromConfig } from "./trainer";

export interface ImportedModel {
  /** the model holding the checkpoint's weights (the caller disposes it) */
  model: C3GAN;
  /** tensors copied (G's and D's) */
  tensors: number;
  /** whether DataParallel's "module." prefix was removed */
  strippedPrefix: boolean;
  /** the safetensors file written, if one was asked for */
  out: string | null;
}

const PREFIX = "module.";

/** Removes DataParallel's prefix when every name has it (a partial prefix is left to be reported). */
function stripPrefix(sd: Map<string, TorchTensor>): { sd: Map<string, TorchTensor>; stripped: boolean } {
  if (sd.size === 0 || ![...sd.keys()].every((k) => k.startsWith(PREFIX))) return { sd, stripped: false };
  return { sd: new Map([...sd].map(([k, t]) => [k.slice(PREFIX.length), t])), stripped: true };
}

function shapeOf(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/** Every problem between a module's state dict and the checkpoint's, as lines. */
function compare(who: string, m: Module, sd: Map<string, TorchTensor>): string[] {
  const own = m.stateDict();
  const out: string[] = [];
  for (const [name, t] of own) {
    const c = sd.get(name);
    if (!c) out.push(`${who}: missing ${name} ${shapeOf(t.shape)}`);
    else if (shapeOf(c.shape) !== shapeOf(t.shape)) {
      out.push(`${who}: ${name} is ${shapeOf(c.shape)} in the checkpoint, ${shapeOf(t.shape)} in the model`);
    }
  }
  for (const [name, c] of sd) if (!own.has(name)) out.push(`${who}: unexpected ${name} ${shapeOf(c.shape)}`);
  return out;
}

/**
 * The sizes the checkpoint was trained with, read off tensors whose shapes give them away
 * (see lib/model: bg_gen.fc.0 is (32 ngf, zDim), fg_gen.emb_c.0 is (4 cz, K), base.0 is
 * (ndf, channels, 4, 4), one bg_gen.layers.<i>.1 conv per up block, centroids is (8 ndf, K)).
 */
function inferredSizes(g: Map<string, TorchTensor>, d: Map<string, TorchTensor>): Record<string, number> {
  const out: Record<string, number> = {};
  const fc = g.get("bg_gen.fc.0.weight")?.shape;
  if (fc?.length === 2) {
    out.ngf = fc[0] / 32;
    out.zDim = fc[1];
  }
  const emb = g.get("fg_gen.emb_c.0.weight")?.shape;
  if (emb?.length === 2) {
    out.czDim = emb[0] / 4;
    out.clusters = emb[1];
  }
  const cen = d.get("centroids.weight")?.shape;
  if (cen?.length === 2) out.clusters = cen[1];
  const b0 = d.get("base.0.weight")?.shape;
  if (b0?.length === 4) {
    out.ndf = b0[0];
    out.channels = b0[1];
  }
  const ups = [...g.keys()].filter((k) => /^bg_gen\.layers\.\d+\.1\.weight$/.test(k)).length;
  if (ups > 0) out.imageSize = 4 * 2 ** ups;
  return out;
}

function sizeHint(cfg: C3Config, g: Map<string, TorchTensor>, d: Map<string, TorchTensor>): string {
  const got = inferredSizes(g, d);
  const want: Record<string, number> = {
    imageSize: cfg.imageSize, channels: cfg.channels, ngf: cfg.ngf, ndf: cfg.ndf, zDim: cfg.zDim, czDim: cfg.czDim,
    clusters: clusterCount(cfg),
  };
  const diffs = Object.keys(got).filter((k) => got[k] !== want[k]).map((k) =>
    k === "clusters"
      ? `${got[k]} clusters (the config has numGtClasses ${cfg.numGtClasses} x over ${cfg.over} = ${want[k]})`
      : `${k} ${got[k]} (the config has ${want[k]})`);
  const base = "did you set numGtClasses / over / imageSize (and ngf, ndf, zDim, czDim, channels) to match the checkpoint?";
  return diffs.length ? `${base} The checkpoint's shapes say: ${diffs.join(", ")}.` : base;
}

function copyInto(m: Module, sd: Map<string, TorchTensor>): number {
  let n = 0;
  noGrad(() => {
    const own = m.stateDict();
    const made = new Map<string, Tensor>();
    try {
      // num_batches_tracked (int64 in torch) becomes a float like every buffer of ours (int64 again in the file)
      for (const [name, t] of own) made.set(name, Tensor.fromArray(tensorToFloat32(sd.get(name)!), t.shape, { device: t.device }));
      m.loadStateDict(made);
      n = made.size;
    } finally {
      for (const t of made.values()) t.dispose();
    }
  });
  return n;
}

/**
 * Reads an official C3-GAN checkpoint into a model built from `cfg`, checking every name and
 * shape first (all mismatches reported in one Error); with `outFile`, also saves it as our
 * safetensors model file.
 */
export function importOfficialCheckpoint(ptFile: string, cfg: C3Config, outFile?: string): ImportedModel {
  const top = readTorchCheckpoint(ptFile);
  const missing = ["netG", "netD"].filter((k) => !top.has(k));
  if (missing.length) {
    throw new Error(`${ptFile} has no ${missing.join(" or ")}: it holds ${[...top.keys()].map((k) => JSON.stringify(k)).join(", ") || "nothing"}; ` +
      "an official C3-GAN checkpoint (train.py's save) is {'netG': state_dict, 'netD': state_dict}");
  }
  const g = stripPrefix(asStateDict(top.get("netG"), `${ptFile}: netG`));
  const d = stripPrefix(asStateDict(top.get("netD"), `${ptFile}: netD`));
  // every weight and buffer is copied from the checkpoint (compare refuses a missing one)
  const model = new C3GAN(specFromConfig(cfg), "cpu", new Generator(0n), { officialInit: false });
  try {
    const problems = [...compare("netG", model.G, g.sd), ...compare("netD", model.D, d.sd)];
    if (problems.length) {
      throw new Error(`${ptFile} does not fit the model built from config "${cfg.name}" ` +
        `(${problems.length} problem${problems.length > 1 ? "s" : ""}):\n  ${problems.join("\n  ")}\n${sizeHint(cfg, g.sd, d.sd)}`);
    }
    const tensors = copyInto(model.G, g.sd) + copyInto(model.D, d.sd);
    if (outFile) saveModel(outFile, model, cfg, 0, 0, { source: ptFile });
    return { model, tensors, strippedPrefix: g.stripped || d.stripped, out: outFile ?? null };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** The default output: the checkpoint's name with .safetensors. */
export function defaultImportOut(ptFile: string): string {
  const ext = path.extname(ptFile);
  return (ext ? ptFile.slice(0, -ext.length) : ptFile) + ".safetensors";
}

/** `c3gan import <official.pt> --config F [--out model.safetensors]`; returns a summary line. */
export function importCommand(ptFile: string, opts: { out?: string; config?: string }): string {
  if (!opts.config) {
    throw new Error("c3gan import needs --config: the checkpoint's sizes (numGtClasses, over, imageSize, ...) " +
      "come from the config it was trained with (see examples/)");
  }
  const cfg = loadConfig(opts.config);
  const out = opts.out ?? defaultImportOut(ptFile);
  if (path.resolve(out) === path.resolve(ptFile)) throw new Error(`--out ${out} would overwrite the checkpoint`);
  const r = importOfficialCheckpoint(ptFile, cfg, out);
  r.model.dispose();
  return `imported ${r.tensors} tensors from ${ptFile}${r.strippedPrefix ? ' (DataParallel "module." prefix removed)' : ""} into ${out}`;
}
