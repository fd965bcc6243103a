// `npm run bench:data`: training pairs per second at 128 px from ~500 x 375 JPEGs, c3gan's loader
// against the same pipeline in torchvision (PIL, DataLoader with the same number of workers), in
// the same run: on one core (taskset -c 0) and on all cores, with and without the decode cache.
//   node dist/benchmarks/data.bench.js [--images N] [--epochs E] [--size S] [--batch B] [--skip-torch]
// Each measurement runs in its own process (so it can be pinned), after one warm-up epoch (which
// also fills the decode caches), and reports its best timed epoch. "Per core" is measured pinned
// to one core, as pairs per CPU-second of the whole run (all threads, worker processes included):
// on a shared machine wall time also counts other people's work.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { configureSharp } from "../lib/data/decode";
import { openDataset } from "../lib/data/formats";
import { DataLoader } from "../lib/data/loader";
import type { Resampler } from "../lib/data/transforms";
import { writeJpeg } from "../test/helpers/images";
import { packageRoot } from "../lib/native";

interface RunConfig {
  root: string;
  size: number;
  batch: number;
  workers: number;
  epochs: number;
  cache: boolean;
  resampler: Resampler;
}

/** per timed epoch; the table shows the best epoch (this machine is shared, noise only slows) */
interface Result {
  pairs: number[];
  seconds: number[];
  /** CPU time of the whole process (all threads and worker processes) per epoch */
  cpuSeconds: number[];
}

const best = (r: Result) => ({
  pairsPerSecond: Math.max(...r.pairs.map((p, i) => p / r.seconds[i])),
  pairsPerCpuSecond: Math.max(...r.pairs.map((p, i) => p / r.cpuSeconds[i])),
});

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

async function child(cfg: RunConfig): Promise<void> {
  const ds = await openDataset({ format: "lists", root: cfg.root }, "train");
  const loader = new DataLoader(ds, {
    mode: "train", batchSize: cfg.batch, imageSize: cfg.size, workers: cfg.workers, seed: 0,
    decodeCache: cfg.cache ? { size: Math.ceil(1.5 * cfg.size) } : false, resampler: cfg.resampler,
  });
  const epoch = async (e: number) => {
    let n = 0;
    for await (const b of loader.epoch(e)) n += b.real.shape[0];
    return n;
  };
  await epoch(0);
  const r: Result = { pairs: [], seconds: [], cpuSeconds: [] };
  for (let e = 1; e <= cfg.epochs; e++) {
    const t = performance.now();
    const c = process.cpuUsage();
    r.pairs.push(await epoch(e));
    const cu = process.cpuUsage(c);
    r.seconds.push((performance.now() - t) / 1000);
    r.cpuSeconds.push((cu.user + cu.system) / 1e6);
  }
  await loader.close();
  console.log(JSON.stringify(r));
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-c", "0", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], pinned: boolean, env: NodeJS.ProcessEnv = {}): Result {
  const [file, argv] = pinned ? ["taskset", ["-c", "0", cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) {
    throw new Error(`benchmark run failed: ${file} ${argv.join(" ")}\n${r.stderr}${r.stdout}`);
  }
  return JSON.parse(line) as Result;
}

async function makeData(root: string, n: number): Promise<void> {
  const list = path.join(root, "trainset.txt");
  if (fs.existsSync(list) && fs.readFileSync(list, "utf8").trim().split("\n").length === n) return;
  fs.mkdirSync(path.join(root, "images"), { recursive: true });
  const sizes: [number, number][] = [[500, 375], [375, 500], [500, 333], [500, 400], [450, 375]];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const [w, h] = sizes[i % sizes.length];
    const rel = `c${i % 10}/img_${i}.jpg`;
    await writeJpeg(path.join(root, "images", rel), w, h, i, 85);
    lines.push(`${rel} ${i % 10}`);
  }
  fs.writeFileSync(list, lines.join("\n") + "\n");
}

async function main(): Promise<void> {
  const ci = process.argv.indexOf("--child");
  if (ci >= 0) {
    configureSharp(); // as the c3gan command does
    return child(JSON.parse(process.argv[ci + 1]) as RunConfig);
  }

  const images = arg("images", 256);
  const epochs = arg("epochs", 3);
  const size = arg("size", 128);
  const batch = arg("batch", 32);
  const skipTorch = process.argv.includes("--skip-torch");
  const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  const root = path.join(os.tmpdir(), `c3gan-bench-data-${images}`);
  console.log(`generating ${images} JPEGs of about 500x375 in ${root} ...`);
  await makeData(root, images);
  const pin = hasTaskset();
  if (!pin) console.log("taskset not found: the 1-core rows run unpinned with one worker");
  const python = "/usr/bin/python3";
  const torchOk = !skipTorch && spawnSync(python, ["-c", "import torchvision"], { stdio: "ignore" }).status === 0;
  if (!skipTorch && !torchOk) console.log(`torchvision not importable with ${python}: its rows are skipped`);

  const rows: { name: string; config: string; r: Result }[] = [];
  const ours = (config: string, pinned: boolean, workers: number, cache: boolean, resampler: Resampler = "pil") => {
    const cfg: RunConfig = { root, size, batch, workers, epochs, cache, resampler };
    const r = run(process.execPath, [__filename, "--child", JSON.stringify(cfg)], pinned && pin);
    const name = `c3gan${resampler === "sharp" ? " (sharp resize)" : ""}`;
    rows.push({ name, config, r });
    console.log(`  ${name.padEnd(21)} ${config.padEnd(34)} ${fmt(r)}`);
  };
  const torch = (config: string, pinned: boolean, workers: number, cache: boolean) => {
    if (!torchOk) return;
    const script = path.join(packageRoot(), "benchmarks", "torchvision_data.py");
    const a = [script, "--root", root, "--size", String(size), "--batch", String(batch), "--workers", String(workers),
      "--epochs", String(epochs), "--cache-size", String(Math.ceil(1.5 * size)), ...(cache ? ["--cache"] : [])];
    const r = run(python, a, pinned && pin, { OMP_NUM_THREADS: "1", OPENBLAS_NUM_THREADS: "1" });
    rows.push({ name: "torchvision", config, r });
    console.log(`  ${"torchvision".padEnd(21)} ${config.padEnd(34)} ${fmt(r)}`);
  };

  const fmt = (r: Result) => {
    const b = best(r);
    return `${b.pairsPerSecond.toFixed(1).padStart(7)} pairs/s ${b.pairsPerCpuSecond.toFixed(1).padStart(7)} pairs/CPU-s`;
  };
  console.log(`training pairs, ${size} px, batch ${batch}, ${images} images, ${epochs} timed epoch(s); ` +
    "pairs/s is wall-clock throughput, pairs/CPU-s divides by the CPU time of all the run's threads and processes; " +
    "best epoch of each run:");
  ours("1 core, 1 worker", true, 1, false);
  ours("1 core, in-thread", true, 0, false);
  torch("1 core, 0 workers (in-process)", true, 0, false);
  ours("1 core, 1 worker, decode cache", true, 1, true);
  torch("1 core, 0 workers, decode cache", true, 0, true);
  ours(`${cores} cores, ${cores} workers`, false, cores, false);
  torch(`${cores} cores, ${cores} workers`, false, cores, false);
  ours(`${cores} cores, ${cores} workers, decode cache`, false, cores, true);
  torch(`${cores} cores, ${cores} workers, decode cache`, false, cores, true);
  ours("1 core, 1 worker", true, 1, false, "sharp");

  const get = (name: string, config: string) => {
    const r = rows.find((x) => x.name === name && x.config === config)?.r;
    return r && (config.startsWith("1 core") ? best(r).pairsPerCpuSecond : best(r).pairsPerSecond);
  };
  console.log("\nc3gan / torchvision (1 core: pairs per CPU-second; all cores: pairs per second):");
  for (const [ours1, theirs] of [
    ["1 core, 1 worker", "1 core, 0 workers (in-process)"],
    ["1 core, 1 worker, decode cache", "1 core, 0 workers, decode cache"],
    [`${cores} cores, ${cores} workers`, `${cores} cores, ${cores} workers`],
    [`${cores} cores, ${cores} workers, decode cache`, `${cores} cores, ${cores} workers, decode cache`],
  ]) {
    const a = get("c3gan", ours1);
    const b = get("torchvision", theirs);
    if (a !== undefined && b !== undefined) console.log(`  ${ours1.padEnd(34)} ${(a / b).toFixed(2)}x`);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
