// `npm run bench:results`: runs the iteration bench and the per-op bench with --compare torch and
// writes benchmarks/RESULTS.md (machine, date, threads, tables, ratios against the targets, noise).
//   node dist/benchmarks/results.js [--cub-b64] [--runs N] [--rounds N] [--threads N] [--python P] [--out FILE]
//     [--git-dir DIR] [--quick]
// --runs: timed iterations per config (default 5); --rounds: c3gan / PyTorch alternations per
// per-op row (default 3); --git-dir: the checkout whose revision the file names (default the package
// root; for a run from a copy); --quick: a smoke run of the whole pipeline (1 run, small per-op batches).
// The default run fits in about 20 minutes on a 2-core machine; --cub-b64 adds the CUB config at
// batch 64 to the iterations (a PyTorch iteration there takes minutes: about 8 more minutes here).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { benchOptions, runIterations, runOps } from "../lib/bench/command";
import { BENCH_CONFIGS } from "../lib/bench/configs";
import { resultsMarkdown } from "../lib/bench/results";
import { nowSeconds } from "../lib/bench/stats";
import { packageRoot } from "../lib/native";

/** "a7ef2c9 (+ uncommitted changes in 12 files)": the source the numbers belong to (read-only git calls). */
function revision(root: string): string {
  const git = (...args: string[]) => spawnSync("git", ["-C", root, ...args], { encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return "unknown (not a git checkout)";
  const dirty = git("status", "--porcelain").stdout.split("\n").filter((l) => l.trim()).length;
  return `${head.stdout.trim()}${dirty ? ` (+ uncommitted changes in ${dirty} files)` : ""}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "cub-b64": { type: "boolean", default: false },
      runs: { type: "string" },
      rounds: { type: "string" },
      threads: { type: "string" },
      python: { type: "string" },
      out: { type: "string" },
      "git-dir": { type: "string" },
      quick: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log("usage: node dist/benchmarks/results.js [--cub-b64] [--runs N] [--rounds N] [--threads N] [--python P] [--out FILE] [--git-dir DIR] [--quick]");
    return;
  }
  const out = path.resolve(values.out ?? path.join(packageRoot(), "benchmarks", "RESULTS.md"));
  const optIn = BENCH_CONFIGS.filter((c) => c.optIn);
  const iterNames = BENCH_CONFIGS.filter((c) => !c.optIn || values["cub-b64"]).map((c) => c.name);
  const common = { compare: "torch", python: values.python, threads: values.threads, quick: values.quick };
  const itOpts = benchOptions({ ...common, configs: iterNames.join(","), runs: values.runs ?? (values.quick ? "1" : "5") });
  // per conv pass: >= 2 runs and 0.2 s, three times alternating with PyTorch
  const opsOpts = benchOptions({ ...common, ops: true, rounds: values.rounds ?? (values.quick ? "1" : "3"), seconds: values.quick ? undefined : "0.2" });
  const log = (s: string) => process.stderr.write(s);
  const rev = revision(values["git-dir"] ?? packageRoot()); // at the start: the tree may change while it runs
  const t0 = nowSeconds();
  log(`iterations: ${iterNames.join(", ")} (${itOpts.runs} runs each, alternating with PyTorch)\n`);
  const iterations = await runIterations(itOpts, log);
  log(`per-op rows: ${opsOpts.configs.map((c) => c.name).join(", ")}\n`);
  const ops = await runOps(opsOpts, log);
  // where the file goes and which checkout names the revision change nothing measured: left out of the command shown
  const argv = process.argv.slice(2).filter((a, i, all) => !["--out", "--git-dir"].includes(a) && !["--out", "--git-dir"].includes(all[i - 1]) &&
    !/^--(out|git-dir)=/.test(a));
  const md = resultsMarkdown({
    command: `npm run bench:results${argv.length ? ` -- ${argv.join(" ")}` : ""}`,
    date: new Date(),
    revision: rev,
    iterations,
    ops,
    left: values["cub-b64"] ? [] : optIn.map((c) => ({ name: `${c.name} iterations`, flag: "npm run bench:results -- --cub-b64", why: "a PyTorch iteration takes minutes on this machine" })),
    wallSeconds: nowSeconds() - t0,
  });
  fs.writeFileSync(out, md);
  log(`wrote ${out} (${((nowSeconds() - t0) / 60).toFixed(1)} min)\n`);
  if (ops.leakedHandles !== 0) throw new Error(`${ops.leakedHandles} tensor handles were left undisposed`);
}

main().catch((e: unknown) => {
  console.error(`results: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
