// `c3gan bench`: seconds per training iteration at the named configs, or with --ops the per-op
// rows (GFLOP/s against the measured peak, GB/s); --compare torch runs the same in PyTorch
// (benchmarks/torch_iteration.py, benchmarks/torch_ops.py through /usr/bin/python3 on the same
// number of threads), alternating with c3gan in the same run, and prints the ratios.
import { Command } from "commander";
import { native, CudaConvChoice, DeviceName, NativeAddon } from "../native";
import { cudaIndexOf, parseDeviceChoice, resolveDevice } from "../device";
import { OpProfile, READBACK_OPS } from "../profile";
import { BENCH_CONFIGS, BenchConfig, DEFAULT_CONFIG_NAMES, resolveConfigs } from "./configs";
import { IterationBench, summarize } from "./iteration";
import { bestPeak, loadAverage, Machine, machineInfo, measurePeak, Peak } from "./machine";
import {
  buildRows, combine, OpRunner, opTiming, parseFilters, parseTorchRow, PassName, RowResult, rowTiming, torchRequest, wanted, BYTE_LEGEND,
} from "./ops";
import {
  constChannelLines, convTable, convTotalsTable, iterationTable, IterationProfile, IterationResult, machineLines, memTable,
  profileTable, Render, renderText, targetResults, TargetResult, targetTable,
} from "./report";
import { mergeTimings, nowSeconds, Timing } from "./stats";
import { benchScript, TorchWorker } from "./torch";

export { cpuModel } from "./machine";

export interface BenchOptions {
  ops: boolean;
  configs: BenchConfig[];
  /** overrides every config's batch */
  batch: number | null;
  /** iterations: timed runs per config; --ops: at least this many timed runs per conv pass */
  runs: number;
  /** --ops: at least this many seconds of timed runs per conv pass */
  seconds: number | null;
  /** --ops: c3gan and PyTorch alternate this many times per row; a pass's median is the median of the round medians */
  rounds: number;
  quick: boolean;
  filters: string[];
  compare: "torch" | null;
  python: string;
  device: DeviceName;
  /** --device cuda:N: N (the device this process and its children start on); null for cuda or cpu */
  cudaIndex: number | null;
  threads: number | null;
  json: boolean;
  /**
   * iterations: time every native op call of the timed runs (lib/profile.ts): "ops" waits for each
   * call's kernels on CUDA (each op's device time), "host" waits for none (each op's host cost;
   * the device's backlog shows where results are read back)
   */
  profile: "ops" | "host" | null;
}

export const ITERATION_DEFAULT_CONFIGS = ["32px-ngf128-ndf32-K20-b64", "64px-ngf256-ndf64-K20-b32"];

/** What commander hands the action (strings and flags), checked and resolved; pure. */
export function benchOptions(raw: Record<string, unknown>): BenchOptions {
  const str = (k: string) => (raw[k] === undefined || raw[k] === null ? undefined : String(raw[k]));
  const int = (k: string, min: number): number | null => {
    const v = str(k);
    if (v === undefined) return null;
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min) throw new Error(`--${k} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const ops = raw.ops === true;
  const quick = raw.quick === true;
  for (const k of ["filter", "seconds", "rounds"]) {
    if (!ops && str(k) !== undefined) throw new Error(`--${k} applies to the per-op bench: add --ops`);
  }
  let profile: BenchOptions["profile"] = null;
  if (raw.profile === true || raw.profile === "ops") profile = "ops";
  else if (raw.profile === "host") profile = "host";
  else if (raw.profile !== undefined && raw.profile !== false) {
    throw new Error(`--profile takes 'ops' (the default: each op's time, on CUDA its kernels') or 'host' (each op's host cost, nothing waited for), got '${String(raw.profile)}'`);
  }
  if (profile && ops) throw new Error("--profile applies to the iteration bench (the per-op bench already times each op): leave out --ops");
  if (profile && raw.compare !== undefined) {
    throw new Error("--profile times every native call (on CUDA it waits for each), which slows the iterations it measures: leave out --compare");
  }
  let seconds: number | null = null;
  if (str("seconds") !== undefined) {
    seconds = Number(str("seconds"));
    if (str("seconds")!.trim() === "" || !(seconds >= 0 && seconds <= 600)) throw new Error(`--seconds must be a number in [0, 600], got '${str("seconds")}'`);
  }
  const choice = parseDeviceChoice(str("device") ?? "cpu");
  if (choice === null || choice === "auto") throw new Error(`--device must be cpu, cuda or cuda:N, got '${str("device")}'`);
  const device: DeviceName = choice === "cpu" ? "cpu" : "cuda";
  const compare = str("compare");
  if (compare !== undefined && compare !== "torch") throw new Error(`--compare takes 'torch', got '${compare}'`);
  const configs = resolveConfigs(str("configs") ?? (ops ? DEFAULT_CONFIG_NAMES : ITERATION_DEFAULT_CONFIGS).join(","));
  return {
    ops, configs, quick, device, cudaIndex: cudaIndexOf(choice), json: raw.json === true, profile,
    batch: int("batch", 2),
    runs: int("runs", 1) ?? (ops ? (quick ? 1 : 2) : quick ? 1 : 3),
    seconds,
    rounds: int("rounds", 1) ?? 1,
    filters: parseFilters(str("filter")),
    compare: compare === "torch" ? "torch" : null,
    python: str("python") ?? "/usr/bin/python3",
    threads: int("threads", 1),
  };
}

function prepareAddon(o: BenchOptions): NativeAddon {
  const N = native();
  if (o.device === "cuda") {
    resolveDevice(o.cudaIndex === null ? "cuda" : `cuda:${o.cudaIndex}`);
    // the bench's child processes (its per-op server) start on the same device
    if (o.cudaIndex !== null) process.env.C3GAN_CUDA_DEVICE = String(o.cudaIndex);
  }
  if (o.threads !== null) N.setNumThreads(o.threads);
  return N;
}

const batchOf = (o: BenchOptions, c: BenchConfig) => o.batch ?? (o.ops && o.quick ? c.quickBatch : c.batch);

// ---------------------------------------------------------------- iterations

export interface IterationReport {
  kind: "iterations";
  machine: Machine;
  device: DeviceName;
  torch: Record<string, unknown> | null;
  results: IterationResult[];
  /** with --profile: per config, where its timed iterations spent their time */
  profiles: IterationProfile[];
  /** on CUDA with the "auto" conv engine: what it chose per conv pass and shape, and both engines' times */
  convChoices: CudaConvChoice[];
  /** on CUDA: what gave way because the tensor cores disagreed with the kernels ("" for nothing) */
  tensorCoreFallback?: string;
  elapsedSeconds: number;
  loadAverageEnd: number[];
}

export async function runIterations(o: BenchOptions, log: (s: string) => void = () => {}): Promise<IterationReport> {
  const N = prepareAddon(o);
  const machine = machineInfo(N);
  const t0 = nowSeconds();
  const results: IterationResult[] = [];
  const profiles: IterationProfile[] = [];
  let torchInfo: Record<string, unknown> | null = null;
  for (const base of o.configs) {
    const cfg = { ...base, batch: batchOf(o, base) };
    const s = cfg.spec;
    log(`${cfg.name}${cfg.batch !== base.batch ? ` (batch ${cfg.batch})` : ""}: `);
    const bench = new IterationBench(cfg, o.device);
    let worker: TorchWorker | null = null;
    const ours: number[] = [];
    const theirs: number[] = [];
    const profile = o.profile ? new OpProfile(o.device, { waitForDevice: o.profile === "ops" }) : null;
    try {
      bench.run(); // warm-up
      if (o.compare) {
        // builds the model and runs its own warm-up iteration before it says ready
        const started = await TorchWorker.start(o.python, benchScript("torch_iteration.py"), ["--serve",
          "--size", String(s.imageSize), "--ngf", String(s.ngf), "--ndf", String(s.ndf), "--k", String(s.numClusters),
          "--batch", String(cfg.batch), "--threads", String(machine.threads), "--zdim", String(s.zDim), "--czdim", String(s.czDim),
          "--device", o.device],
        machine.threads);
        worker = started.worker;
        torchInfo = started.info;
      }
      // alternate, so both see the same machine noise
      for (let i = 0; i < o.runs; i++) {
        ours.push(profile ? profile.run(() => bench.run()) : bench.run());
        log(`c3gan ${ours[i].toFixed(2)} s `);
        if (worker) {
          const r = await worker.request({ runs: 1 });
          const secs = r.seconds;
          if (!Array.isArray(secs) || secs.length !== 1 || typeof secs[0] !== "number") {
            throw new Error(`${worker.what}: expected {"seconds": [one number]}, got ${JSON.stringify(r)}`);
          }
          theirs.push(secs[0]);
          log(`torch ${secs[0].toFixed(2)} s `);
        }
      }
    } finally {
      bench.dispose();
      if (worker) await worker.close();
    }
    log("\n");
    const c = summarize(ours);
    const t = theirs.length ? summarize(theirs) : null;
    const config = cfg.name + (cfg.batch !== base.batch ? ` (batch ${cfg.batch})` : "");
    results.push({ config, c3gan: c, torch: t, speedVsTorch: t ? t.median / c.median : null });
    if (profile) {
      profiles.push({ config, iterations: o.runs, mode: o.profile!, seconds: profile.totalSeconds / o.runs,
        opSeconds: profile.opSeconds / o.runs, readbackSeconds: profile.readbackSeconds / o.runs,
        kernelLaunches: profile.launches / o.runs, ops: profile.ops(), shapes: profile.shapes() });
    }
  }
  const convChoices = o.device === "cuda" ? N.cudaConvChoices() : [];
  const tensorCoreFallback = o.device === "cuda" ? N.cudaTensorCoreFallback() : "";
  return { kind: "iterations", machine, device: o.device, torch: torchInfo, results, profiles, convChoices, tensorCoreFallback,
    elapsedSeconds: nowSeconds() - t0, loadAverageEnd: loadAverage() };
}

export function formatIterations(r: IterationReport, render: Render = renderText): string {
  return [
    ...machineLines(r.machine, null, r.torch), `device    ${r.device}`, "",
    render(iterationTable(r.results)), "",
    `s/iteration = one D step + one G step (the official losses, Adam), random inputs; median (min-max) of the runs after one warm-up;` +
    (r.torch ? ` c3gan and PyTorch alternate run by run; speed / torch = torch's median / c3gan's (> 1: c3gan is faster).` : ""),
    ...r.profiles.flatMap((p) => profileLines(p, r.device, render)),
    ...convChoiceLines(r.convChoices ?? [], render),
    ...(r.tensorCoreFallback ? ["", `WARNING: ${r.tensorCoreFallback}`] : []),
  ].join("\n");
}

// the "auto" conv engine's choices: each pass and shape with both engines' times (best of two runs)
function convChoiceLines(choices: CudaConvChoice[], render: Render): string[] {
  if (choices.length === 0) return [];
  const ms = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  const onCudnn = choices.filter((c) => c.engine === "cudnn").length;
  const unusable = choices.filter((c) => c.cudnnMs === null);
  const native = choices.reduce((s, c) => s + c.nativeMs, 0);
  const chosen = choices.reduce((s, c) => s + (c.engine === "cudnn" ? c.cudnnMs! : c.nativeMs), 0);
  return ["", `conv engines (auto): cuDNN for ${onCudnn} of ${choices.length} conv passes and shapes; the chosen engines take ` +
    `${chosen.toFixed(3)} ms where the tile kernels alone take ${native.toFixed(3)} ms (one call of each)` +
    (unusable.length ? `; cuDNN could not run ${unusable.length} (${unusable[0].note})` : ""),
  render({
    headers: ["pass", "conv (input -> weight)", "engine", "tile kernels ms", "cuDNN ms"],
    rows: choices.map((c) => [c.pass, c.conv, c.engine, ms(c.nativeMs), ms(c.cudnnMs)]),
    align: "llrrr",
  })];
}

const PROFILE_ROWS = 20;

function profileLines(p: IterationProfile, device: DeviceName, render: Render): string[] {
  const pct = (s: number) => `${((100 * s) / p.seconds).toFixed(1)}%`;
  const outside = p.seconds - p.opSeconds;
  const head = `profile of ${p.config}: ${p.iterations} iteration${p.iterations > 1 ? "s" : ""}, ${p.seconds.toFixed(3)} s each (random inputs included); `;
  const js = `outside them (JS: autograd, tape, argument checks) ${outside.toFixed(3)} s (${pct(outside)}); the profiler's own bookkeeping is left out`;
  const issue = p.opSeconds - p.readbackSeconds;
  // calls summed over the iterations, seconds per iteration
  const issueCalls = p.ops.reduce((n, t) => n + (READBACK_OPS.has(t.op) ? 0 : t.calls), 0);
  const launches = device === "cuda" ? `; ${Math.round(p.kernelLaunches)} kernel launches an iteration` : "";
  const summary = p.mode === "host" && device === "cuda"
    ? head + `host mode (no op call waited for its kernels): issuing the ops ${issue.toFixed(3)} s (${pct(issue)}, ` +
      `${((1e6 * issue * p.iterations) / Math.max(1, issueCalls)).toFixed(1)} us a call), blocked reading results back while the GPU worked ` +
      `through its queue ${p.readbackSeconds.toFixed(3)} s (${pct(p.readbackSeconds)}), ${js}${launches}. Host-bound when the blocked ` +
      "share is small and a call takes microseconds (the GPU waits for the host); calls of milliseconds found the launch " +
      "queue full (the GPU set the pace)"
    : head + `native ops ${p.opSeconds.toFixed(3)} s (${pct(p.opSeconds)}), ${js}` +
      (device === "cuda" ? `${launches}; every op call waited for its kernels, so these iterations run slower than unprofiled ones` : "");
  return [
    "", summary,
    "", render(profileTable(p, false, PROFILE_ROWS)),
    "", render(profileTable(p, true, PROFILE_ROWS)),
    ...(p.shapes.length > PROFILE_ROWS ? [`(${p.shapes.length - PROFILE_ROWS} more op/shape rows: --json has them all)`] : []),
  ];
}

// ---------------------------------------------------------------- per-op

export interface OpsReport {
  kind: "ops";
  machine: Machine;
  device: DeviceName;
  peak: Peak | null;
  torch: Record<string, unknown> | null;
  configs: { name: string; tag: string; batch: number }[];
  timing: ReturnType<typeof opTiming>;
  rounds: number;
  rows: RowResult[];
  targets: TargetResult[];
  elapsedSeconds: number;
  leakedHandles: number;
  loadAverageEnd: number[];
}

export async function runOps(o: BenchOptions, log: (s: string) => void = () => {}): Promise<OpsReport> {
  const N = prepareAddon(o);
  const liveBefore = N.liveTensors();
  const machine = machineInfo(N);
  const t0 = nowSeconds();
  // measured before the rows and again after each config, keeping the best: on a shared machine
  // one measurement can fall in a busy moment
  const peakSeconds = o.quick ? 0.25 : 1;
  const samplePeak = () => (o.device === "cpu" ? measurePeak(N, machine.threads, peakSeconds) : null);
  let peak: Peak | null = samplePeak();
  const timing = opTiming(o.quick, o.runs, o.seconds ?? undefined);
  const configs = o.configs.map((c) => ({ cfg: c, batch: batchOf(o, c) }));
  const planned = configs.map(({ cfg, batch }) => ({ cfg, batch, rows: buildRows(cfg, batch).filter((r) => wanted(r.label, o.filters)) }));
  let worker: TorchWorker | null = null;
  let torchInfo: Record<string, unknown> | null = null;
  const runner = new OpRunner(N, o.device);
  const rows: RowResult[] = [];
  try {
    if (o.compare && planned.some((p) => p.rows.length > 0)) {
      const started = await TorchWorker.start(o.python, benchScript("torch_ops.py"),
        ["--serve", "--threads", String(machine.threads), "--device", o.device], machine.threads);
      worker = started.worker;
      torchInfo = started.info;
    }
    for (const { cfg, batch, rows: todo } of planned) {
      if (todo.length === 0) continue;
      const s = cfg.spec;
      log(`${cfg.name} (ngf ${s.ngf}, ndf ${s.ndf}, K ${s.numClusters}, ${s.channels} ch), batch ${batch}: ${todo.length} rows\n`);
      for (let i = 0; i < todo.length; i++) {
        const row = todo[i];
        const t = rowTiming(row, timing);
        const tr = nowSeconds();
        const ours: Map<PassName, Timing>[] = [];
        const theirs: Map<PassName, Timing>[] = [];
        for (let round = 0; round < o.rounds; round++) {
          // alternate which side goes first, so neither always meets the other's after-effects
          const torchFirst = worker !== null && (i + round) % 2 === 1;
          if (torchFirst) theirs.push(parseTorchRow(await worker!.request(torchRequest(row, t)), row));
          ours.push(runner.measure(row, t));
          if (worker && !torchFirst) theirs.push(parseTorchRow(await worker.request(torchRequest(row, t)), row));
        }
        const res = combine(row, mergeRounds(row.passes, ours), worker ? mergeRounds(row.passes, theirs) : null, null);
        rows.push(res);
        if (row.kind === "conv") {
          const f = (x: number | null) => (x === null ? "" : ` ${x.toFixed(2)}x`);
          log(`  ${row.label}: ${res.results.map((p) => `${p.rate.toFixed(1)}${f(p.ratio)}`).join(" | ")} GFLOP/s (${(nowSeconds() - tr).toFixed(1)} s)\n`);
        }
      }
      peak = bestPeak(peak, samplePeak());
    }
    if (peak) for (const r of rows) if (r.unit === "flop") for (const p of r.results) p.pctPeak = (100 * p.rate) / peak.allThreads;
  } finally {
    runner.dispose();
    if (worker) await worker.close();
  }
  return {
    kind: "ops", machine, device: o.device, peak, torch: torchInfo,
    configs: configs.map(({ cfg, batch }) => ({ name: cfg.name, tag: cfg.tag, batch })), timing, rounds: o.rounds, rows, targets: targetResults(rows),
    elapsedSeconds: nowSeconds() - t0, leakedHandles: N.liveTensors() - liveBefore, loadAverageEnd: loadAverage(),
  };
}

function mergeRounds(passes: PassName[], rounds: Map<PassName, Timing>[]): Map<PassName, Timing> {
  return new Map(passes.map((p) => [p, mergeTimings(rounds.map((r) => r.get(p)!))]));
}

export function formatOps(r: OpsReport, render: Render = renderText): string {
  const out = [...machineLines(r.machine, r.peak, r.torch)];
  if (!r.peak) out.push(`fp32 peak not measured (${r.device === "cpu" ? "the addon has no peakGflops()" : `device ${r.device}`}): % of peak left out`);
  const t = (x: { warmup: number; minRuns: number; minSeconds: number }) => `${x.warmup} warm-up, then >= ${x.minRuns} runs and >= ${x.minSeconds} s`;
  out.push(`configs   ${r.configs.map((c) => `${c.tag} = ${c.name} at batch ${c.batch}`).join("; ")}`);
  out.push(`timing    convs: ${t(r.timing.conv)}; memory-bound ops: ${t(r.timing.mem)}; median (min-max) per pass` +
    (r.rounds > 1 ? `; ${r.rounds} rounds a row (median of the round medians)` : "") +
    (r.torch ? `; c3gan and PyTorch alternate ${r.rounds > 1 ? "round by round" : "row by row"}` : ""), "");
  if (r.rows.length === 0) return [...out, "no rows match --filter"].join("\n");
  if (r.rows.some((x) => x.kind === "conv")) out.push(render(convTable(r.rows)), "", render(convTotalsTable(r.rows, r.peak)), "");
  if (r.rows.some((x) => x.kind !== "conv")) out.push(render(memTable(r.rows)), "");
  if (r.targets.length) out.push(render(targetTable(r.targets)), "");
  out.push(...constChannelLines(r.rows));
  out.push(BYTE_LEGEND, `c3gan/torch = c3gan's rate / PyTorch's for the same work (PyTorch's median time / c3gan's): > 1 means c3gan is faster.`);
  out.push(`\n${r.rows.length} rows in ${r.elapsedSeconds.toFixed(1)} s; load average at the end ${r.loadAverageEnd.join(" ")}`);
  return out.join("\n");
}

// ---------------------------------------------------------------- the command

export function benchCommand(): Command {
  return new Command("bench")
    .description("seconds per training iteration at named configs, or (--ops) per-op GFLOP/s and GB/s; --compare torch: side by side with PyTorch")
    .option("--ops", "per-op bench: every conv shape (forward, backward-data, backward-weight), batch norm, GLU, LeakyReLU, add/mul")
    .option("--configs <names>", `comma-separated names or tags, or all: ${BENCH_CONFIGS.map((c) => `${c.name} (${c.tag})`).join(", ")}; ` +
      `default the first two (32px, 64px); with --ops all but the opt-in ${BENCH_CONFIGS.filter((c) => c.optIn).map((c) => c.tag).join(", ")}`)
    .option("--batch <n>", "override every config's batch size")
    .option("--runs <n>", "timed runs per config (default 3), or with --ops at least n runs per conv pass (default 2)")
    .option("--seconds <t>", "--ops: at least t seconds of timed runs per conv pass (default 0.3)")
    .option("--rounds <n>", "--ops: c3gan and PyTorch alternate n times a row; the median of the round medians is reported (default 1)")
    .option("--filter <s>", "--ops: only rows whose name contains s (case-insensitive, comma-separated alternatives), e.g. '128px conv', 'bn', 'G 3x3'")
    .option("--quick", "a smoke run: 1 iteration run; with --ops small batches and short timing")
    .option("--compare <what>", "also time PyTorch ('torch'), alternating with c3gan, and print the ratios")
    .option("--python <path>", "python with torch for --compare", "/usr/bin/python3")
    .option("--threads <n>", "native threads (PyTorch gets the same)")
    .option("--device <device>", "cpu, cuda or cuda:N", "cpu")
    .option("--profile [mode]", "time every native op call of the timed iterations and print where the time goes (per op and per op and shapes); " +
      "'host': on CUDA, wait for no kernels, so each op's time is its host cost and the GPU's backlog shows in reading results back")
    .option("--json", "print one JSON object (progress goes to stderr)")
    .action(async (raw) => {
      const o = benchOptions(raw);
      const log = (s: string) => process.stderr.write(s);
      if (o.ops) {
        const r = await runOps(o, log);
        console.log(o.json ? JSON.stringify(r, null, 1) : formatOps(r));
        if (r.leakedHandles !== 0) throw new Error(`bench: ${r.leakedHandles} tensor handles were left undisposed`);
      } else {
        const r = await runIterations(o, log);
        console.log(o.json ? JSON.stringify(r, null, 1) : formatIterations(r));
      }
    });
}

export function registerBenchCommand(program: Command): void {
  program.addCommand(benchCommand());
}
