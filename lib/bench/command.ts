// `c3gan bench`: seconds per training iteration at the named configs, optionally alternating
// with the same iteration in PyTorch (benchmarks/torch_iteration.py through /usr/bin/python3).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Command } from "commander";
import { native, packageRoot, DeviceName } from "../native";
import { IterationBench, ITERATION_CONFIGS, summarize, Timing } from "./iteration";

export function cpuModel(): string {
  try {
    const m = /model name\s*:\s*(.+)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1].trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? "unknown CPU";
}

function torchRun(cfg: (typeof ITERATION_CONFIGS)[number], threads: number, python: string): number[] {
  const script = path.join(packageRoot(), "benchmarks", "torch_iteration.py");
  const s = cfg.spec;
  const r = spawnSync(python, [script, "--size", String(s.imageSize), "--ngf", String(s.ngf), "--ndf", String(s.ndf),
    "--k", String(s.numClusters), "--batch", String(cfg.batch), "--threads", String(threads), "--runs", "1",
    "--zdim", String(s.zDim), "--czdim", String(s.czDim)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`the PyTorch comparison failed (${python} ${script}): ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!).seconds;
}

const fmt = (t: Timing) => `${t.median.toFixed(3)} s (${t.min.toFixed(3)}–${t.max.toFixed(3)})`;

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("seconds per training iteration at named configs (optionally side by side with PyTorch)")
    .option("--configs <names>", `comma-separated, from: ${ITERATION_CONFIGS.map((c) => c.name).join(", ")}`,
      "32px-ngf128-ndf32-K20-b64,64px-ngf256-ndf64-K20-b32")
    .option("--runs <n>", "timed runs per config (after one warm-up)", "3")
    .option("--compare <what>", "also time PyTorch: 'torch'")
    .option("--python <path>", "python with torch for --compare", "/usr/bin/python3")
    .option("--device <device>", "cpu or cuda", "cpu")
    .option("--json", "print JSON")
    .action((opts) => {
      const N = native();
      const device = opts.device as DeviceName;
      if (device !== "cpu" && device !== "cuda") throw new Error(`--device must be cpu or cuda, got ${opts.device}`);
      if (device === "cuda" && !N.cudaAvailable()) throw new Error(`--device cuda: cuda is ${N.cudaStatus()}`);
      const runs = Number(opts.runs);
      if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${opts.runs}`);
      const names = String(opts.configs).split(",").map((s) => s.trim()).filter(Boolean);
      const configs = names.map((n) => {
        const c = ITERATION_CONFIGS.find((x) => x.name === n);
        if (!c) throw new Error(`unknown config '${n}' (known: ${ITERATION_CONFIGS.map((x) => x.name).join(", ")})`);
        return c;
      });
      if (opts.compare && opts.compare !== "torch") throw new Error(`--compare takes 'torch', got ${opts.compare}`);
      const threads = N.numThreads();
      const machine = { cpu: cpuModel(), cores: os.cpus().length, threads, device, cuda: N.cudaStatus() };
      if (!opts.json) console.log(`machine: ${machine.cpu}, ${machine.cores} cores; c3gan threads ${threads}; device ${device}`);
      const results = [];
      for (const cfg of configs) {
        const bench = new IterationBench(cfg, device);
        const ours: number[] = [];
        const theirs: number[] = [];
        try {
          bench.run(); // warm-up
          if (opts.compare) torchRun(cfg, threads, opts.python);
          // alternate, so both see the same machine noise
          for (let i = 0; i < runs; i++) {
            ours.push(bench.run());
            if (opts.compare) theirs.push(...torchRun(cfg, threads, opts.python));
          }
        } finally {
          bench.dispose();
        }
        const o = summarize(ours);
        const t = theirs.length ? summarize(theirs) : null;
        results.push({ config: cfg.name, c3gan: o, torch: t, ratio: t ? o.median / t.median : null });
        if (!opts.json) {
          console.log(`${cfg.name.padEnd(28)} c3gan ${fmt(o)}` +
            (t ? `   torch ${fmt(t)}   c3gan/torch ${(o.median / t.median).toFixed(2)}x` : ""));
        }
      }
      if (opts.json) console.log(JSON.stringify({ machine, results }, null, 2));
    });
}
