// The model's op shapes now live in lib/bench/shapes.ts (the per-op bench is part of `c3gan bench`).
export * from "../lib/bench/shapes";
export { BENCH_CONFIGS, BenchConfig } from "../lib/bench/configs";
