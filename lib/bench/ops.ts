// `c3gan bench --ops`: every conv shape of the model (forward, backward-data, backward-weight) in
// GFLOP/s next to the machine's measured fp32 peak, and the memory-bound ops (batch norm, GLU,
// LeakyReLU, broadcast binaries) in GB/s; with --compare torch, the same rows in PyTorch
// (benchmarks/torch_ops.py), alternating row by row. Calls the addon directly (no autograd) and
// disposes every handle it makes.
import type { NativeAddon, NativeGenerator, NativeTensor, DeviceName } from "../native";
import type { BenchConfig } from "./configs";
import { convActualFlops, convFlops, convLabel, ConvShape, modelShapes, shapeLabel } from "./shapes";
import { Timing, timeIt, TimingOptions } from "./stats";

export type OpKind = "conv" | "bn" | "glu" | "leaky_relu" | "add" | "mul" | "copy";
export type PassName = "forward" | "backward-data" | "backward-weight" | "backward";

/** One row: an op at one shape, as the model runs it; pure data (what torch_ops.py is sent). */
export interface OpRow {
  /** "<tag> <kind> ...": unique within a run, what --filter matches */
  label: string;
  config: string;
  kind: OpKind;
  net: "G" | "D" | "-";
  /** per G forward (both nets) for G rows, per D call for D rows; 0 = reference, not in the model */
  uses: number;
  where: string[];
  conv?: ConvShape;
  /** the input (memory-bound ops; binaries: the left operand) */
  shape?: number[];
  /** a binary's right operand */
  b?: number[];
  passes: PassName[];
  /** work per pass: direct-conv FLOPs (effective, for const-channel convs) or bytes moved */
  work: Partial<Record<PassName, number>>;
  unit: "flop" | "byte";
  /** const-channel convs: the FLOPs of the conv over the non-constant channels */
  actualFlops?: number;
}

const numel = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const CONV_PASSES: PassName[] = ["forward", "backward-data", "backward-weight"];

/**
 * The rows of one config, in model order: convs, then batch norms, GLUs, LeakyReLUs, binaries and
 * a plain copy of the largest activation (the bandwidth the memory-bound ops can be read against).
 * Bytes are the minimal passes' reads + writes, 4 per float (see BYTE_LEGEND).
 */
export function buildRows(cfg: BenchConfig, batch: number): OpRow[] {
  const sh = modelShapes(cfg.spec, batch);
  const t = cfg.tag;
  const rows: OpRow[] = [];
  for (const s of sh.convs) {
    rows.push({
      label: `${t} conv ${convLabel(s)}`, config: t, kind: "conv", net: s.net, uses: s.uses, where: s.where, conv: s,
      passes: CONV_PASSES, work: Object.fromEntries(CONV_PASSES.map((p) => [p, convFlops(s)])), unit: "flop", ...(s.constChannels > 0 ? { actualFlops: convActualFlops(s) } : {}),
    });
  }
  for (const m of sh.batchNorms) {
    rows.push({ label: `${t} bn ${m.net} ${shapeLabel(m.shape)}`, config: t, kind: "bn", net: m.net, uses: m.uses, where: m.where,
      shape: m.shape, passes: ["forward", "backward"], work: {}, unit: "byte" });
  }
  for (const g of sh.glus) {
    rows.push({ label: `${t} glu ${g.net} ${shapeLabel(g.shape)}`, config: t, kind: "glu", net: g.net, uses: g.uses, where: g.where,
      shape: g.shape, passes: ["forward", "backward"], work: {}, unit: "byte" });
  }
  for (const l of sh.leakyRelus) {
    rows.push({ label: `${t} leaky_relu ${l.net} ${shapeLabel(l.shape)}`, config: t, kind: "leaky_relu", net: l.net, uses: l.uses,
      where: l.where, shape: l.shape, passes: ["forward", "backward"], work: {}, unit: "byte" });
  }
  for (const b of sh.binaries) {
    const bcast = shapeLabel(b.a) !== shapeLabel(b.b);
    rows.push({
      label: `${t} ${b.op} ${b.net} ${shapeLabel(b.a)} ${b.op === "add" ? "+" : "*"} ${shapeLabel(b.b)}${bcast ? " (bcast)" : ""}`,
      config: t, kind: b.op, net: b.net, uses: b.uses, where: b.where, shape: b.a, b: b.b,
      passes: bcast ? ["forward", "backward"] : ["forward"], work: {}, unit: "byte",
    });
  }
  const largest = sh.glus.reduce((m, g) => (numel(g.shape) > numel(m) ? g.shape : m), [batch, 1]);
  rows.push({ label: `${t} copy (reference) ${shapeLabel(largest)}`, config: t, kind: "copy", net: "-", uses: 0, where: ["clone()"],
    shape: largest, passes: ["forward"], work: {}, unit: "byte" });
  for (const r of rows) if (r.unit === "byte") for (const p of r.passes) r.work[p] = passBytes(r, p);
  return rows;
}

/** Bytes one pass of a memory-bound row moves (its minimal reads + writes, 4 bytes a float). */
export function passBytes(row: OpRow, pass: PassName): number {
  const n = numel(row.shape ?? []);
  const fwd = pass === "forward";
  switch (row.kind) {
    case "bn": return (fwd ? 3 : 5) * n * 4;
    case "glu": return (fwd ? 1.5 : 2.5) * n * 4;
    case "leaky_relu": return (fwd ? 2 : 3) * n * 4;
    case "add":
    case "mul": {
      const nb = numel(row.b ?? []);
      return (fwd ? 2 * n + nb : n + nb) * 4;
    }
    case "copy": return 2 * n * 4;
    default: throw new Error(`passBytes: ${row.kind} is not a memory-bound op`);
  }
}

/** Work (FLOPs or bytes) of one pass of a row. */
export function passWork(row: OpRow, pass: PassName): number {
  const w = row.work[pass];
  if (w === undefined) throw new Error(`ops bench: row '${row.label}' has no ${pass} pass`);
  return w;
}

export const BYTE_LEGEND = `bytes = reads + writes of the minimal passes, 4 per float, each tensor element once per pass:
  bn fwd 3n (stats read x; normalise read x, write y), bn bwd 5n (sums read dy, x; dx read dy, x, write dx);
  glu fwd 1.5n (read x, write y = n/2), glu bwd 2.5n (read dy, x, write dx); leaky_relu fwd 2n, bwd 3n (read dy, x, write dx);
  binary fwd 2|a| + |b| (read a, b, write y), bwd of a broadcast operand = sumTo(dy -> b's shape): |a| + |b|; copy 2n.
uses = times per G forward (both nets together) for G rows, per D call for D rows (a training step makes 4 D calls);
0 = not in the model, for reference. The conv FLOP count is the direct one, 2*N*K*C*R*S*OH*OW, for every pass;
a conv marked "up" follows a 2x upsample and runs as conv2dUp on the half-size map (PyTorch: the plain conv
on the upsampled map; FLOPs are that conv's);
a "(c+Kconst)" conv (the image head) runs as conv2dConstChannels, and its GFLOP/s are effective: the plain conv's
FLOPs over all c + K channels (what PyTorch computes) per second of what c3gan runs. Winograd convs multiply less
than the direct count too, so an effective %peak can pass 100%.`;

/** Case-insensitive: a row is wanted when no filter is given or its label contains one of them. */
export function wanted(label: string, filters: string[]): boolean {
  const l = label.toLowerCase();
  return filters.length === 0 || filters.some((f) => l.includes(f.toLowerCase()));
}

export function parseFilters(s: string | undefined): string[] {
  return (s ?? "").split(",").map((x) => x.trim().toLowerCase()).filter((x) => x.length > 0);
}

// ---------------------------------------------------------------- timing rules

export interface OpTiming {
  /** convs are long per run: few runs; memory-bound ops are short: many runs in little time */
  conv: TimingOptions;
  mem: TimingOptions;
}

export function opTiming(quick: boolean, runs?: number, seconds?: number): OpTiming {
  return {
    conv: { warmup: 1, minRuns: runs ?? (quick ? 1 : 2), minSeconds: seconds ?? (quick ? 0.05 : 0.3) },
    mem: quick ? { warmup: 1, minRuns: 2, minSeconds: 0.02 } : { warmup: 1, minRuns: 3, minSeconds: 0.1 },
  };
}

export function rowTiming(row: OpRow, t: OpTiming): TimingOptions {
  return row.kind === "conv" ? t.conv : t.mem;
}

/** The request benchmarks/torch_ops.py answers for a row (snake_case, as the script reads it). */
export function torchRequest(row: OpRow, timing: TimingOptions): Record<string, unknown> {
  const req: Record<string, unknown> = { id: row.label, kind: row.kind, passes: row.passes, timing };
  if (row.conv) {
    const s = row.conv;
    req.conv = { n: s.n, c: s.c, h: s.h, w: s.w, k: s.k, r: s.r, stride: s.stride, pad: s.pad, bias: s.bias, const_channels: s.constChannels };
  } else {
    req.shape = row.shape;
    if (row.b) req.b = row.b;
  }
  return req;
}

/** A torch_ops.py reply as one Timing per pass, checked against the request. */
export function parseTorchRow(reply: Record<string, unknown>, row: OpRow): Map<PassName, Timing> {
  const what = `torch_ops.py reply for '${row.label}'`;
  if (reply.id !== row.label) throw new Error(`${what}: has id ${JSON.stringify(reply.id)}`);
  if (!Array.isArray(reply.passes)) throw new Error(`${what}: has no "passes" list`);
  const out = new Map<PassName, Timing>();
  for (const p of reply.passes as Record<string, unknown>[]) {
    const name = p?.name as PassName;
    if (!row.passes.includes(name)) throw new Error(`${what}: unexpected pass ${JSON.stringify(p?.name)}`);
    const nums = ["runs", "median", "min", "max", "total"].map((k) => p[k]);
    if (!nums.every((x) => typeof x === "number" && Number.isFinite(x) && x >= 0) || (p.runs as number) < 1) {
      throw new Error(`${what}: pass ${name} needs finite runs >= 1, median, min, max, total; got ${JSON.stringify(p)}`);
    }
    const [runs, median, min, max, total] = nums as number[];
    out.set(name, { runs, median, min, max, total });
  }
  for (const name of row.passes) if (!out.has(name)) throw new Error(`${what}: pass ${name} is missing`);
  return out;
}

// ---------------------------------------------------------------- c3gan side

/** Times a row's passes on the addon; every tensor it makes is disposed before it returns. */
export class OpRunner {
  private readonly gen: NativeGenerator;
  private readonly syncTensor: NativeTensor | null;

  constructor(private readonly addon: NativeAddon, private readonly device: DeviceName) {
    this.gen = new addon.Generator(1234);
    // CUDA runs asynchronously: reading one float back waits for everything queued before it
    this.syncTensor = device === "cpu" ? null : addon.full([1], 0, device);
  }

  dispose(): void {
    if (this.syncTensor && !this.syncTensor.disposed) this.syncTensor.dispose();
  }

  private randn(shape: number[], std = 1): NativeTensor {
    return this.addon.randn(shape, this.device, this.gen, 0, std);
  }

  measure(row: OpRow, timing: TimingOptions): Map<PassName, Timing> {
    const held: NativeTensor[] = [];
    const keep = (t: NativeTensor) => (held.push(t), t);
    try {
      const fns = this.passFunctions(row, keep);
      const out = new Map<PassName, Timing>();
      const sync = this.syncTensor;
      for (const name of row.passes) {
        const f = fns[name];
        if (!f) throw new Error(`ops bench: ${row.kind} has no ${name} pass`);
        const run = sync ? () => { const r = f(); this.addon.toFloat32(sync); return r; } : f;
        out.set(name, timeIt(run, disposeAll, timing));
      }
      return out;
    } finally {
      disposeAll(held);
    }
  }

  private passFunctions(row: OpRow, keep: (t: NativeTensor) => NativeTensor): Partial<Record<PassName, () => Result>> {
    const a = this.addon;
    const dev = this.device;
    if (row.kind === "conv") {
      const s = row.conv!;
      const cx = s.c - s.constChannels;
      const xShape = [s.n, cx, s.h, s.w];
      const x = keep(this.randn(xShape));
      const w = keep(this.randn([s.k, s.c, s.r, s.r], 1 / Math.sqrt(s.c * s.r * s.r)));
      const dy = keep(this.randn([s.n, s.k, s.oh, s.ow]));
      if (s.constChannels > 0) {
        // the image head: one-hot codes, as the model feeds it; the code needs no gradient there
        const oneHot = new Float32Array(s.n * s.constChannels);
        for (let i = 0; i < s.n; i++) oneHot[i * s.constChannels + (i % s.constChannels)] = 1;
        const code = keep(a.fromFloat32(oneHot, [s.n, s.constChannels], dev));
        return {
          forward: () => a.conv2dConstChannels(x, w, code, null, false, false, false),
          "backward-data": () => a.conv2dConstChannels(x, w, code, dy, true, false, false),
          "backward-weight": () => a.conv2dConstChannels(x, w, code, dy, false, true, false),
        };
      }
      const bias = s.bias ? keep(this.randn([s.k], 0.1)) : null;
      const wShape = [s.k, s.c, s.r, s.r];
      if (s.upsampled) {
        // the upsample block: conv2dUp on the half-size map, as the model runs it
        const halfShape = [s.n, s.c, s.h / 2, s.w / 2];
        const xh = keep(this.randn(halfShape));
        return {
          forward: () => a.conv2dUp(xh, w, bias),
          "backward-data": () => a.conv2dUpBackwardData(dy, w, halfShape),
          "backward-weight": () => a.conv2dUpBackwardWeight(dy, xh, wShape),
        };
      }
      return {
        forward: () => a.conv2d(x, w, bias, s.stride, s.pad),
        "backward-data": () => a.conv2dBackwardData(dy, w, xShape, s.stride, s.pad),
        "backward-weight": () => a.conv2dBackwardWeight(dy, x, wShape, s.stride, s.pad),
      };
    }
    const shape = row.shape!;
    switch (row.kind) {
      case "bn": {
        const C = shape[1];
        const x = keep(this.randn(shape));
        const dy = keep(this.randn(shape));
        const gamma = keep(a.full([C], 1, dev));
        const beta = keep(a.full([C], 0, dev));
        const rm = keep(a.full([C], 0, dev));
        const rv = keep(a.full([C], 1, dev));
        const saved = a.batchNorm(x, gamma, beta, rm, rv, true, 0.1, 1e-5);
        saved.forEach(keep);
        const [, mean, invstd] = saved;
        return {
          forward: () => a.batchNorm(x, gamma, beta, rm, rv, true, 0.1, 1e-5),
          backward: () => a.batchNormBackward(dy, x, gamma, mean, invstd, true),
        };
      }
      case "glu": {
        const x = keep(this.randn(shape));
        const dy = keep(this.randn([shape[0], shape[1] / 2, ...shape.slice(2)]));
        return { forward: () => a.glu(x, 1), backward: () => a.gluBackward(dy, x, 1) };
      }
      case "leaky_relu": {
        const x = keep(this.randn(shape));
        const dy = keep(this.randn(shape));
        const y = keep(a.unary("leaky_relu", x, 0.2));
        return {
          forward: () => a.unary("leaky_relu", x, 0.2),
          backward: () => a.unaryBackward("leaky_relu", dy, x, y, 0.2),
        };
      }
      case "add":
      case "mul": {
        const x = keep(this.randn(shape));
        const z = keep(this.randn(row.b!));
        const op = row.kind;
        return { forward: () => a.binary(op, x, z), backward: () => a.sumTo(x, row.b!) };
      }
      case "copy": {
        const x = keep(this.randn(shape));
        return { forward: () => a.clone(x) };
      }
    }
    throw new Error(`ops bench: unknown op kind ${row.kind}`);
  }
}

type Result = NativeTensor | (NativeTensor | null)[];

function disposeAll(r: Result): void {
  for (const t of Array.isArray(r) ? r : [r]) if (t && !t.disposed) t.dispose();
}

// ---------------------------------------------------------------- results

export interface PassResult {
  name: PassName;
  c3gan: Timing;
  torch: Timing | null;
  /** work / median second: GFLOP/s (convs) or GB/s */
  rate: number;
  torchRate: number | null;
  /** c3gan rate / PyTorch rate (same work: PyTorch's median time / c3gan's); > 1: c3gan is faster */
  ratio: number | null;
  /** % of the all-threads fp32 peak (convs; effective FLOPs) */
  pctPeak: number | null;
}

export interface RowResult extends OpRow {
  results: PassResult[];
}

export function combine(row: OpRow, ours: Map<PassName, Timing>, theirs: Map<PassName, Timing> | null, peakGflops: number | null): RowResult {
  const results = row.passes.map((name): PassResult => {
    const c = ours.get(name)!;
    const t = theirs?.get(name) ?? null;
    const work = passWork(row, name);
    const rate = work / c.median / 1e9;
    const torchRate = t ? work / t.median / 1e9 : null;
    return {
      name, c3gan: c, torch: t, rate, torchRate, ratio: t ? t.median / c.median : null,
      pctPeak: row.unit === "flop" && peakGflops ? (100 * rate) / peakGflops : null,
    };
  });
  return { ...row, results };
}
