// `npm run bench:ops`: the throughput of every conv shape of the C3-GAN model (forward,
// backward-data, backward-weight) next to this machine's measured fp32 peak, and the bandwidth of
// the memory-bound ops (batch norm, GLU, LeakyReLU, broadcast binaries). Calls the addon directly
// (no autograd) and disposes every handle it makes.
import * as fs from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { native, NativeAddon, NativeGenerator, NativeTensor } from "../lib/native";
import { BenchConfig, CONFIGS, convFlops, convLabel, ConvShape, modelShapes, shapeLabel } from "./shapes";
import { nowSeconds, Timing, timeIt, TimingOptions } from "./stats";

/** Added by native/napi/bench_binding.cc; absent from addons built before it was registered. */
interface BenchFunctions {
  peakGflops?: (seconds: number, threads: number) => number;
  cpuFeatures?: () => string;
}
type Addon = NativeAddon & BenchFunctions;

const USAGE = `usage: node dist/benchmarks/ops.bench.js [options]
  --batch N      batch size at 128 px (default 8; --quick: 2)
  --batch32 N    batch size at 32 px (default 64; --quick: 16)
  --threads N    native threads (default: the addon's pool size)
  --quick        small batches, fewer runs: a smoke run in well under a minute
  --runs N       convs: at least N timed runs per pass (default 2, --quick 1; memory-bound ops: 3)
  --seconds T    convs: at least T seconds of timed runs per pass (default 0.3, --quick 0.05; memory-bound ops: 0.1)
  --filter S     only rows whose name contains S (case-insensitive; comma-separated alternatives),
                 e.g. "128px conv", "bn", "32px", "G 3x3"
  --json         print one JSON object instead of the tables
  --help`;

interface Options {
  batch128: number;
  batch32: number;
  threads: number | null;
  quick: boolean;
  filters: string[];
  json: boolean;
  /** convs are long per run: fewer runs; memory-bound ops are short: many runs in little time */
  convTiming: TimingOptions;
  memTiming: TimingOptions;
  peakSeconds: number;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      batch: { type: "string" },
      batch32: { type: "string" },
      threads: { type: "string" },
      quick: { type: "boolean", default: false },
      filter: { type: "string" },
      json: { type: "boolean", default: false },
      runs: { type: "string" },
      seconds: { type: "string" },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const int = (name: string, v: string | undefined, fallback: number, min: number): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const quick = values.quick === true;
  let seconds = quick ? 0.05 : 0.3;
  if (values.seconds !== undefined) {
    seconds = Number(values.seconds);
    if (!(seconds >= 0 && seconds <= 600)) throw new Error(`--seconds must be a number in [0, 600], got "${values.seconds}"`);
  }
  return {
    batch128: int("batch", values.batch, quick ? CONFIGS[0].quickBatch : CONFIGS[0].defaultBatch, 2),
    batch32: int("batch32", values.batch32, quick ? CONFIGS[1].quickBatch : CONFIGS[1].defaultBatch, 2),
    threads: values.threads === undefined ? null : int("threads", values.threads, 1, 1),
    quick,
    filters: (values.filter ?? "").split(",").map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0),
    json: values.json === true,
    convTiming: { warmup: 1, minRuns: int("runs", values.runs, quick ? 1 : 2, 1), minSeconds: seconds },
    memTiming: quick ? { warmup: 1, minRuns: 2, minSeconds: 0.02 } : { warmup: 1, minRuns: 3, minSeconds: 0.1 },
    peakSeconds: quick ? 0.25 : 1,
  };
}

// ---------------------------------------------------------------- machine

interface Machine {
  cpuModel: string;
  cores: number;
  threads: number;
  features: string;
  featuresFrom: "addon" | "/proc/cpuinfo";
  loadAverage: number[];
  node: string;
  addonVersion: string;
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1].trim();
  } catch {
    // not Linux: fall through to what Node reports
  }
  return os.cpus()[0]?.model ?? "unknown";
}

function procFeatures(): string {
  try {
    const m = /^flags\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (!m) return "";
    const flags = new Set(m[1].split(/\s+/));
    const names: [string, string][] = [["sse4_2", "sse4.2"], ["avx", "avx"], ["avx2", "avx2"], ["fma", "fma"], ["avx512f", "avx512f"]];
    return names.filter(([f]) => flags.has(f)).map(([, n]) => n).join(" ");
  } catch {
    return "";
  }
}

function machineInfo(addon: Addon): Machine {
  const fromAddon = typeof addon.cpuFeatures === "function";
  return {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    threads: addon.numThreads(),
    features: fromAddon ? addon.cpuFeatures!() : procFeatures(),
    featuresFrom: fromAddon ? "addon" : "/proc/cpuinfo",
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version,
    addonVersion: addon.version,
  };
}

interface Peak {
  allThreads: number;
  oneThread: number;
  threads: number;
}

const PEAK_TRIALS = 5;

/**
 * The best of several short trials: on a shared machine other processes take cores for a while,
 * and the peak is what the cores do when they are ours.
 */
function measurePeak(addon: Addon, threads: number, seconds: number): Peak | null {
  const f = addon.peakGflops;
  if (typeof f !== "function") return null;
  const best = (t: number) => Math.max(...Array.from({ length: PEAK_TRIALS }, () => f(seconds / PEAK_TRIALS, t)));
  return { allThreads: best(threads), oneThread: best(1), threads };
}

// ---------------------------------------------------------------- measurement

interface Pass {
  name: string;
  timing: Timing;
  /** GFLOP/s for convs, GB/s for memory-bound ops, from the median */
  rate: number;
  /** % of the all-threads fp32 peak (convs only) */
  pctPeak: number | null;
}

interface Row {
  config: string;
  kind: "conv" | "bn" | "glu" | "leaky_relu" | "add" | "mul" | "copy";
  label: string;
  net: "G" | "D" | "-";
  uses: number;
  where: string[];
  /** FLOP per pass (convs) */
  flops?: number;
  /** bytes moved per pass, by pass name (memory-bound ops) */
  bytes?: Record<string, number>;
  passes: Pass[];
}

class Bench {
  private readonly gen: NativeGenerator;
  readonly rows: Row[] = [];
  constructor(readonly addon: Addon, readonly opts: Options, readonly peak: Peak | null) {
    this.gen = new addon.Generator(1234);
  }

  wanted(label: string): boolean {
    const l = label.toLowerCase();
    return this.opts.filters.length === 0 || this.opts.filters.some((f) => l.includes(f));
  }

  randn(shape: number[], std = 1): NativeTensor {
    return this.addon.randn(shape, "cpu", this.gen, 0, std);
  }

  private log(msg: string): void {
    // progress goes to stderr so --json output stays a clean JSON document
    process.stderr.write(msg);
  }

  /** Times one pass; run returns the handles it made (disposed after each run, untimed). */
  private pass(name: string, run: () => NativeTensor | (NativeTensor | null)[], work: number, isFlops: boolean): Pass {
    const timing = timeIt(run, disposeAll, isFlops ? this.opts.convTiming : this.opts.memTiming);
    const rate = work / timing.median / 1e9;
    const pctPeak = isFlops && this.peak ? (100 * rate) / this.peak.allThreads : null;
    return { name, timing, rate, pctPeak };
  }

  conv(cfg: BenchConfig, s: ConvShape): void {
    const label = `${cfg.tag} conv ${convLabel(s)}`;
    if (!this.wanted(label)) return;
    this.log(`  ${label} ...`);
    const t0 = nowSeconds();
    const a = this.addon;
    const xShape = [s.n, s.c, s.h, s.w];
    const wShape = [s.k, s.c, s.r, s.r];
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(xShape));
      const w = keep(held, this.randn(wShape, 1 / Math.sqrt(s.c * s.r * s.r)));
      const bias = s.bias ? keep(held, this.randn([s.k], 0.1)) : null;
      const dy = keep(held, this.randn([s.n, s.k, s.oh, s.ow]));
      const flops = convFlops(s);
      const passes = [
        this.pass("forward", () => a.conv2d(x, w, bias, s.stride, s.pad), flops, true),
        this.pass("backward-data", () => a.conv2dBackwardData(dy, w, xShape, s.stride, s.pad), flops, true),
        this.pass("backward-weight", () => a.conv2dBackwardWeight(dy, x, wShape, s.stride, s.pad), flops, true),
      ];
      this.rows.push({ config: cfg.tag, kind: "conv", label, net: s.net, uses: s.uses, where: s.where, flops, passes });
    } finally {
      disposeAll(held);
    }
    this.log(` ${(nowSeconds() - t0).toFixed(1)} s\n`);
  }

  batchNorm(cfg: BenchConfig, net: "G" | "D", shape: number[], uses: number, where: string[]): void {
    const label = `${cfg.tag} bn ${net} ${shapeLabel(shape)}`;
    if (!this.wanted(label)) return;
    const a = this.addon;
    const C = shape[1];
    const n = shape.reduce((p, q) => p * q, 1);
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(shape));
      const dy = keep(held, this.randn(shape));
      const gamma = keep(held, a.full([C], 1, "cpu"));
      const beta = keep(held, a.full([C], 0, "cpu"));
      const rm = keep(held, a.full([C], 0, "cpu"));
      const rv = keep(held, a.full([C], 1, "cpu"));
      const saved = a.batchNorm(x, gamma, beta, rm, rv, true, 0.1, 1e-5);
      held.push(...saved);
      const [, mean, invstd] = saved;
      // minimal passes: forward = statistics (read x) + normalise (read x, write y) = 3n floats;
      // backward = reductions (read dy, x) + dx (read dy, x, write dx) = 5n floats
      const bytes = { forward: 3 * n * 4, backward: 5 * n * 4 };
      const passes = [
        this.pass("forward", () => a.batchNorm(x, gamma, beta, rm, rv, true, 0.1, 1e-5), bytes.forward, false),
        this.pass("backward", () => a.batchNormBackward(dy, x, gamma, mean, invstd, true), bytes.backward, false),
      ];
      this.rows.push({ config: cfg.tag, kind: "bn", label, net, uses, where, bytes, passes });
    } finally {
      disposeAll(held);
    }
  }

  glu(cfg: BenchConfig, net: "G" | "D", shape: number[], uses: number, where: string[]): void {
    const label = `${cfg.tag} glu ${net} ${shapeLabel(shape)}`;
    if (!this.wanted(label)) return;
    const a = this.addon;
    const n = shape.reduce((p, q) => p * q, 1);
    const half = [shape[0], shape[1] / 2, ...shape.slice(2)];
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(shape));
      const dy = keep(held, this.randn(half));
      // forward reads x (n), writes y (n/2); backward reads dy (n/2) and x (n), writes dx (n)
      const bytes = { forward: 1.5 * n * 4, backward: 2.5 * n * 4 };
      const passes = [
        this.pass("forward", () => a.glu(x, 1), bytes.forward, false),
        this.pass("backward", () => a.gluBackward(dy, x, 1), bytes.backward, false),
      ];
      this.rows.push({ config: cfg.tag, kind: "glu", label, net, uses, where, bytes, passes });
    } finally {
      disposeAll(held);
    }
  }

  leakyRelu(cfg: BenchConfig, net: "G" | "D", shape: number[], uses: number, where: string[]): void {
    const label = `${cfg.tag} leaky_relu ${net} ${shapeLabel(shape)}`;
    if (!this.wanted(label)) return;
    const a = this.addon;
    const n = shape.reduce((p, q) => p * q, 1);
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(shape));
      const dy = keep(held, this.randn(shape));
      const y = keep(held, a.unary("leaky_relu", x, 0.2));
      // forward reads x, writes y; backward reads dy and x, writes dx (y is passed but not needed)
      const bytes = { forward: 2 * n * 4, backward: 3 * n * 4 };
      const passes = [
        this.pass("forward", () => a.unary("leaky_relu", x, 0.2), bytes.forward, false),
        this.pass("backward", () => a.unaryBackward("leaky_relu", dy, x, y, 0.2), bytes.backward, false),
      ];
      this.rows.push({ config: cfg.tag, kind: "leaky_relu", label, net, uses, where, bytes, passes });
    } finally {
      disposeAll(held);
    }
  }

  binary(cfg: BenchConfig, net: "G" | "D", op: "add" | "mul", aShape: number[], bShape: number[], uses: number, where: string[]): void {
    const broadcast = shapeLabel(aShape) !== shapeLabel(bShape);
    const label = `${cfg.tag} ${op} ${net} ${shapeLabel(aShape)} ${op === "add" ? "+" : "*"} ${shapeLabel(bShape)}${broadcast ? " (bcast)" : ""}`;
    if (!this.wanted(label)) return;
    const a = this.addon;
    const na = aShape.reduce((p, q) => p * q, 1);
    const nb = bShape.reduce((p, q) => p * q, 1);
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(aShape));
      const z = keep(held, this.randn(bShape));
      // forward reads a and b (each element once) and writes y (a's size); the broadcast operand's
      // gradient is a sumTo of dy to its shape: reads dy, writes b
      const bytes: Record<string, number> = { forward: (2 * na + nb) * 4 };
      const passes = [this.pass("forward", () => a.binary(op, x, z), bytes.forward, false)];
      if (broadcast) {
        bytes.backward = (na + nb) * 4;
        passes.push(this.pass("backward", () => a.sumTo(x, bShape), bytes.backward, false));
      }
      this.rows.push({ config: cfg.tag, kind: op, label, net, uses, where, bytes, passes });
    } finally {
      disposeAll(held);
    }
  }

  /** A plain copy of the largest activation: the bandwidth the memory-bound ops can be read against. */
  copy(cfg: BenchConfig, shape: number[]): void {
    const label = `${cfg.tag} copy (reference) ${shapeLabel(shape)}`;
    if (!this.wanted(label)) return;
    const n = shape.reduce((p, q) => p * q, 1);
    const held: NativeTensor[] = [];
    try {
      const x = keep(held, this.randn(shape));
      const bytes = { forward: 2 * n * 4 };
      const passes = [this.pass("forward", () => this.addon.clone(x), bytes.forward, false)];
      this.rows.push({ config: cfg.tag, kind: "copy", label, net: "-", uses: 0, where: ["clone()"], bytes, passes });
    } finally {
      disposeAll(held);
    }
  }

  config(cfg: BenchConfig, batch: number): void {
    const sh = modelShapes(cfg.spec, batch);
    const s = cfg.spec;
    this.log(`${cfg.tag} (ngf ${s.ngf}, ndf ${s.ndf}, K ${s.numClusters}, ${s.channels} ch), batch ${batch}\n`);
    for (const c of sh.convs) this.conv(cfg, c);
    this.log(`  memory-bound ops ...\n`);
    for (const b of sh.batchNorms) this.batchNorm(cfg, b.net, b.shape, b.uses, b.where);
    for (const g of sh.glus) this.glu(cfg, g.net, g.shape, g.uses, g.where);
    for (const l of sh.leakyRelus) this.leakyRelu(cfg, l.net, l.shape, l.uses, l.where);
    for (const b of sh.binaries) this.binary(cfg, b.net, b.op, b.a, b.b, b.uses, b.where);
    const largest = sh.glus.reduce((m, g) => (numel(g.shape) > numel(m) ? g.shape : m), [batch, 1]);
    this.copy(cfg, largest);
  }
}

function numel(shape: number[]): number {
  return shape.reduce((p, q) => p * q, 1);
}

function keep(held: NativeTensor[], t: NativeTensor): NativeTensor {
  held.push(t);
  return t;
}

function disposeAll(r: NativeTensor | (NativeTensor | null)[]): void {
  for (const t of Array.isArray(r) ? r : [r]) if (t && !t.disposed) t.dispose();
}

// ---------------------------------------------------------------- report

function table(headers: string[], rows: string[][], leftCols: number): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i < leftCols ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [fmt(headers), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)].join("\n");
}

const num = (x: number, digits = 1) => x.toFixed(digits);
const ms = (t: Timing) => `${num(t.median * 1e3, t.median < 0.01 ? 2 : 1)} (${num(t.min * 1e3, t.min < 0.01 ? 2 : 1)}-${num(t.max * 1e3, t.max < 0.01 ? 2 : 1)})`;
const pct = (p: number | null) => (p === null ? "-" : `${num(p, 0)}%`);
const whereCol = (w: string[]) => (w.length > 1 ? `${w[0]} (+${w.length - 1})` : w[0] ?? "");

function convTable(rows: Row[]): string {
  const convs = rows.filter((r) => r.kind === "conv");
  const body = convs.map((r) => {
    const cells = [r.label.replace(/^\S+ conv /, `${r.config} `), String(r.uses), num(r.flops! / 1e9, 3)];
    for (const p of r.passes) cells.push(ms(p.timing), num(p.rate), pct(p.pctPeak));
    cells.push(whereCol(r.where));
    return cells;
  });
  return table(
    ["conv (in NxCxHxW: see batch)", "uses", "GFLOP", "fwd ms (min-max)", "GF/s", "%pk", "bwd-data ms", "GF/s", "%pk",
      "bwd-weight ms", "GF/s", "%pk", "first module"],
    body, 1,
  );
}

/** Per config and net: time of all convs of one G forward (both nets) or one D call, weighted by uses. */
function convTotals(rows: Row[], peak: Peak | null): string {
  const groups = new Map<string, Row[]>();
  for (const r of rows.filter((x) => x.kind === "conv" && x.uses > 0)) {
    const k = `${r.config} ${r.net}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const body: string[][] = [];
  for (const [k, rs] of groups) {
    const flops = rs.reduce((s, r) => s + r.uses * r.flops!, 0);
    const cells = [k, num(flops / 1e9, 2)];
    for (const pass of ["forward", "backward-data", "backward-weight"]) {
      const secs = rs.reduce((s, r) => s + r.uses * r.passes.find((p) => p.name === pass)!.timing.median, 0);
      const rate = flops / secs / 1e9;
      cells.push(num(secs * 1e3, 0), num(rate), peak ? pct((100 * rate) / peak.allThreads) : "-");
    }
    body.push(cells);
  }
  return table(["all convs x uses (filtered)", "GFLOP", "fwd ms", "GF/s", "%pk", "bwd-data ms", "GF/s", "%pk", "bwd-weight ms", "GF/s", "%pk"], body, 1);
}

function memTable(rows: Row[]): string {
  const mem = rows.filter((r) => r.kind !== "conv");
  const body = mem.map((r) => {
    const f = r.passes.find((p) => p.name === "forward");
    const b = r.passes.find((p) => p.name === "backward");
    return [
      r.label, String(r.uses), num(r.bytes!.forward / 1e6, 1), f ? ms(f.timing) : "-", f ? num(f.rate, 2) : "-",
      r.bytes!.backward ? num(r.bytes!.backward / 1e6, 1) : "-", b ? ms(b.timing) : "-", b ? num(b.rate, 2) : "-",
      whereCol(r.where),
    ];
  });
  return table(["memory-bound op", "uses", "fwd MB", "fwd ms (min-max)", "GB/s", "bwd MB", "bwd ms (min-max)", "GB/s", "first module"], body, 1);
}

const BYTE_LEGEND = `bytes = reads + writes of the minimal passes, 4 per float, each tensor element once per pass:
  bn fwd 3n (stats read x; normalise read x, write y), bn bwd 5n (sums read dy, x; dx read dy, x, write dx);
  glu fwd 1.5n (read x, write y = n/2), glu bwd 2.5n (read dy, x, write dx); leaky_relu fwd 2n, bwd 3n (read dy, x, write dx);
  binary fwd 2|a| + |b| (read a, b, write y), bwd of a broadcast operand = sumTo(dy -> b's shape): |a| + |b|; copy 2n.
uses = times per G forward (both nets together) for G rows, per D call for D rows (a training step makes 4 D calls);
0 = not in the model, for reference. The conv FLOP count is the direct one, 2*N*K*C*R*S*OH*OW, for every pass.`;

function main(): number {
  let opts: Options | null;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(`ops.bench: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  if (!opts) {
    console.log(USAGE);
    return 0;
  }
  const addon = native() as Addon;
  if (opts.threads !== null) addon.setNumThreads(opts.threads);
  const liveBefore = addon.liveTensors();
  const machine = machineInfo(addon);
  const t0 = nowSeconds();
  const peak = measurePeak(addon, machine.threads, opts.peakSeconds);
  const peakNote = peak
    ? null
    : "fp32 peak not measured: this addon has no peakGflops() (native/napi/addon.cc must call register_bench); % of peak left out";

  if (!opts.json) {
    console.log(`machine   ${machine.cpuModel}, ${machine.cores} cores, ${machine.threads} threads used; load average ${machine.loadAverage.join(" ")}`);
    if (machine.loadAverage[0] > 0.5) console.log(`          (other processes are running: timings are shared-machine numbers; read the min next to the median)`);
    console.log(`features  ${machine.features || "(none reported)"} (from ${machine.featuresFrom})`);
    console.log(peak
      ? `fp32 peak ${num(peak.allThreads)} GFLOP/s on ${peak.threads} threads, ${num(peak.oneThread)} GFLOP/s on 1 thread (FMA loop, best of ${PEAK_TRIALS} in ${opts.peakSeconds} s)`
      : `fp32 peak -- ${peakNote}`);
    const t = (o: TimingOptions) => `${o.warmup} warm-up, then >= ${o.minRuns} runs and >= ${o.minSeconds} s`;
    console.log(`batch     ${opts.batch128} at 128 px, ${opts.batch32} at 32 px`);
    console.log(`timing    convs: ${t(opts.convTiming)}; memory-bound ops: ${t(opts.memTiming)}; median (min-max) per pass\n`);
  }

  const bench = new Bench(addon, opts, peak);
  bench.config(CONFIGS[0], opts.batch128);
  bench.config(CONFIGS[1], opts.batch32);
  const elapsed = nowSeconds() - t0;

  const leaked = addon.liveTensors() - liveBefore;
  if (opts.json) {
    console.log(JSON.stringify({ machine, peak, peakNote, options: opts, elapsedSeconds: elapsed, leakedHandles: leaked, rows: bench.rows }, null, 1));
  } else if (bench.rows.length === 0) {
    console.log(`no rows match --filter ${opts.filters.join(",")}`);
  } else {
    if (bench.rows.some((r) => r.kind === "conv")) {
      console.log(convTable(bench.rows) + "\n");
      console.log(convTotals(bench.rows, peak) + "\n");
    }
    if (bench.rows.some((r) => r.kind !== "conv")) console.log(memTable(bench.rows) + "\n");
    console.log(BYTE_LEGEND);
    console.log(`\n${bench.rows.length} rows in ${num(elapsed)} s`);
  }
  if (leaked !== 0) {
    console.error(`ops.bench: ${leaked} tensor handles were left undisposed`);
    return 1;
  }
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  console.error(`ops.bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exitCode = 1;
}
