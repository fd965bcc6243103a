// Long-run memory check: trains N iterations (random inputs, the official D and G steps) at a
// named config on a device and records the allocator after each. Steady state means the
// tensors live after an iteration and the allocator's in-use bytes stop changing once the first
// iterations have grown the caches, and no fresh system/driver allocation happens after that.
//   node dist/benchmarks/memory-flat.js [--device cuda] [--config NAME] [--iterations 1000]
//     [--seconds T] [--batch B] [--json]
// Exit status 1 when memory is not flat (2 on bad arguments), so device-check scripts can tell.
import { parseArgs } from "node:util";
import { resolveConfigs } from "../lib/bench/configs";
import { IterationBench } from "../lib/bench/iteration";
import { DeviceName, MemoryStats, native } from "../lib/native";

interface Sample {
  iteration: number;
  seconds: number;
  liveBytes: number;
  inUseBytes: number | null;
  cachedBytes: number | null;
  systemAllocs: number | null;
  scratchBytes: number | null;
}

function main(): number {
  const { values } = parseArgs({
    options: {
      device: { type: "string", default: "cpu" },
      config: { type: "string", default: "32px-ngf128-ndf32-K20-b64" },
      iterations: { type: "string", default: "1000" },
      seconds: { type: "string", default: "0" },
      batch: { type: "string" },
      warmup: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const device = values.device as DeviceName;
  if (device !== "cpu" && device !== "cuda") throw new Error(`--device must be cpu or cuda, got '${values.device}'`);
  const N = native();
  if (device === "cuda" && !N.cudaAvailable()) throw new Error(`--device cuda: cuda is ${N.cudaStatus()}`);
  const iterations = Number(values.iterations), limit = Number(values.seconds), warmup = Number(values.warmup);
  if (!Number.isInteger(iterations) || iterations < 2) throw new Error(`--iterations must be an integer >= 2, got '${values.iterations}'`);
  if (!(limit >= 0)) throw new Error(`--seconds must be a number >= 0 (0: no limit), got '${values.seconds}'`);
  if (!Number.isInteger(warmup) || warmup < 1) throw new Error(`--warmup must be an integer >= 1, got '${values.warmup}'`);
  const [base] = resolveConfigs(values.config!);
  const batch = values.batch === undefined ? base.batch : Number(values.batch);
  if (!Number.isInteger(batch) || batch < 2) throw new Error(`--batch must be an integer >= 2, got '${values.batch}'`);

  const bench = new IterationBench({ name: base.name, spec: base.spec, batch }, device);
  const samples: Sample[] = [];
  const t0 = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
  let done = 0;
  try {
    for (; done < iterations; done++) {
      const seconds = bench.run();
      const m: MemoryStats = N.memoryStats(device);
      samples.push({ iteration: done + 1, seconds, liveBytes: m.liveBytes, inUseBytes: m.inUseBytes ?? null,
        cachedBytes: m.cachedBytes ?? null, systemAllocs: m.systemAllocs ?? null, scratchBytes: m.scratchBytes ?? null });
      if (!values.json && ((done + 1) % 100 === 0 || done < warmup)) {
        console.log(`iteration ${done + 1}: ${seconds.toFixed(3)} s, live ${mib(m.liveBytes)}, in use ${mib(m.inUseBytes)}, ` +
          `cached ${mib(m.cachedBytes)}, system allocations ${m.systemAllocs ?? "?"}` +
          (m.scratchBytes === undefined ? "" : `, kernel scratch ${mib(m.scratchBytes)}`));
      }
      if (limit > 0 && elapsed() > limit) {
        done++;
        break;
      }
    }
  } finally {
    bench.dispose();
  }
  const steady = samples.slice(Math.min(warmup, samples.length - 1));
  const first = steady[0], last = steady[steady.length - 1];
  const varies = (k: keyof Sample) => steady.some((s) => s[k] !== first[k]);
  const problems: string[] = [];
  if (steady.length < 2) problems.push(`only ${samples.length} iterations ran: too few to judge`);
  if (varies("liveBytes")) problems.push(`live tensor bytes change after iteration ${first.iteration}: ${first.liveBytes} -> ${last.liveBytes}`);
  if (varies("inUseBytes")) problems.push(`allocator in-use bytes change after iteration ${first.iteration}: ${first.inUseBytes} -> ${last.inUseBytes}`);
  if (varies("scratchBytes")) problems.push(`kernel scratch grows after iteration ${first.iteration}: ${first.scratchBytes} -> ${last.scratchBytes}`);
  if (first.systemAllocs !== null && last.systemAllocs !== first.systemAllocs) {
    problems.push(`${(last.systemAllocs ?? 0) - first.systemAllocs} fresh system/driver allocations after iteration ${first.iteration}`);
  }
  const sorted = samples.map((s) => s.seconds).sort((a, b) => a - b);
  const report = {
    device, config: base.name, batch, iterations: samples.length, elapsedSeconds: elapsed(),
    medianIterationSeconds: sorted[sorted.length >> 1], flat: problems.length === 0, problems,
    steadyFrom: first.iteration, liveBytes: last.liveBytes, inUseBytes: last.inUseBytes, cachedBytes: last.cachedBytes,
  };
  if (values.json) console.log(JSON.stringify({ ...report, samples }, null, 2));
  else {
    console.log(`${device} ${base.name} batch ${batch}: ${samples.length} iterations in ${report.elapsedSeconds.toFixed(1)} s ` +
      `(median ${report.medianIterationSeconds.toFixed(3)} s/iteration)`);
    console.log(problems.length ? `memory NOT flat:\n  ${problems.join("\n  ")}` :
      `memory flat from iteration ${first.iteration}: live ${mib(last.liveBytes)}, in use ${mib(last.inUseBytes)}, cached ${mib(last.cachedBytes)}`);
  }
  return problems.length ? 1 : 0;
}

function mib(b: number | undefined | null): string {
  return b === undefined || b === null ? "?" : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

try {
  process.exitCode = main();
} catch (e) {
  console.error(`memory-flat: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 2;
}
