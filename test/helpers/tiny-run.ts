// The smallest training run the CLI tests start in a child process: 2 synthetic classes, one
// epoch of two batches of 4 at 32 px, tiny nets. Its config file and its evaluations.
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "./tmp";

/** Writes the run's config (the fields in `extra` replace or add to the tiny ones) in a fresh directory; its path. */
export function tinyRunConfig(name: string, extra: Record<string, unknown>): { cfgFile: string; runDir: string } {
  const dir = tempDir(name);
  const runDir = path.join(dir, "run");
  const cfgFile = path.join(dir, "run.json");
  fs.writeFileSync(cfgFile, JSON.stringify({
    name, dataset: { format: "synthetic", numClasses: 2, perClass: 4, testPerClass: 2, seed: 3 },
    numGtClasses: 2, over: 1, batchSize: 4, maxEpoch: 1, evalInterval: 1, logInterval: 1, zDim: 8, czDim: 4,
    imageSize: 32, channels: 3, ngf: 32, ndf: 8, seed: 5, workers: 0, saveDir: runDir, ...extra,
  }));
  return { cfgFile, runDir };
}

/** The run's metrics.jsonl records, one per evaluation, as parsed (the tests check their fields). */
export function runMetrics(runDir: string): any[] {
  return fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
}
