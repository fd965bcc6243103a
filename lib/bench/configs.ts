// The named configurations the speed targets measure: one list for the iteration bench and the
// per-op bench, so both describe the same models.
import { ModelSpec, officialSpec, validateSpec } from "../model/spec";

export interface BenchConfig {
  /** the name `--configs` takes */
  name: string;
  /** short tag at the start of per-op row names (and so in --filter), e.g. "128px" */
  tag: string;
  spec: ModelSpec;
  batch: number;
  /** the per-op bench's batch with --quick */
  quickBatch: number;
  /** not in the default set: too slow for a routine run (CUB at batch 64: minutes per PyTorch iteration) */
  optIn: boolean;
}

const small = (imageSize: ModelSpec["imageSize"], ngf: number, ndf: number): ModelSpec =>
  validateSpec({ imageSize, channels: 3, ngf, ndf, zDim: 64, czDim: 8, numClusters: 20 });

/** CUB: the official model with K = 200 classes x over 2. */
export const BENCH_CONFIGS: BenchConfig[] = [
  { name: "32px-ngf128-ndf32-K20-b64", tag: "32px", spec: small(32, 128, 32), batch: 64, quickBatch: 8, optIn: false },
  { name: "64px-ngf256-ndf64-K20-b32", tag: "64px", spec: small(64, 256, 64), batch: 32, quickBatch: 4, optIn: false },
  { name: "cub-128px-b8", tag: "128px", spec: validateSpec(officialSpec(400)), batch: 8, quickBatch: 2, optIn: false },
  { name: "cub-128px-b64", tag: "128px-b64", spec: validateSpec(officialSpec(400)), batch: 64, quickBatch: 8, optIn: true },
];

export const DEFAULT_CONFIG_NAMES = BENCH_CONFIGS.filter((c) => !c.optIn).map((c) => c.name);

/** Resolves a comma-separated list of names (or "all"); an unknown name is an error listing the known ones. */
export function resolveConfigs(list: string): BenchConfig[] {
  const names = list.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new Error(`--configs is empty (known: ${BENCH_CONFIGS.map((c) => c.name).join(", ")})`);
  if (names.length === 1 && names[0] === "all") return [...BENCH_CONFIGS];
  return names.map((n) => {
    const c = BENCH_CONFIGS.find((x) => x.name === n || x.tag === n);
    if (!c) throw new Error(`unknown config '${n}' (known: ${BENCH_CONFIGS.map((x) => x.name).join(", ")}, or all)`);
    return c;
  });
}
