// `npm run bench:ops`: the per-op bench, which lives in lib/bench/ as `c3gan bench --ops`; this
// wrapper takes the same options, e.g.
//   node dist/benchmarks/ops.bench.js --configs cub-128px-b8 --filter "conv" --compare torch
import { benchCommand } from "../lib/bench/command";

benchCommand()
  .name("ops.bench")
  .parseAsync(["--ops", ...process.argv.slice(2)], { from: "user" })
  .catch((e: unknown) => {
    console.error(`ops.bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
