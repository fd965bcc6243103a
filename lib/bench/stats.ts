// Timing helpers for the benchmarks: warm-up, then repeat until enough runs and enough time,
// report the median (robust on a shared machine) and the min-max spread.

export interface TimingOptions {
  /** untimed runs first (thread pool wake-up, first-touch of allocator pages) */
  warmup: number;
  /** at least this many timed runs ... */
  minRuns: number;
  /** ... and at least this many seconds of timed runs in total */
  minSeconds: number;
}

export interface Timing {
  runs: number;
  /** seconds per run */
  median: number;
  min: number;
  max: number;
  total: number;
}

export function nowSeconds(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function median(xs: number[]): number {
  if (xs.length === 0) throw new Error("stats: median of no samples");
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function checkTimingOptions(o: TimingOptions): TimingOptions {
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error(`stats: warmup must be an integer >= 0, got ${o.warmup}`);
  if (!Number.isInteger(o.minRuns) || o.minRuns < 1) throw new Error(`stats: minRuns must be an integer >= 1, got ${o.minRuns}`);
  if (!(o.minSeconds >= 0) || !Number.isFinite(o.minSeconds)) throw new Error(`stats: minSeconds must be >= 0, got ${o.minSeconds}`);
  return o;
}

/**
 * Times run() (only run, not cleanup: cleanup frees what run made, e.g. disposes output handles,
 * after every call, so memory does not pile up across runs).
 */
export function timeIt<T>(run: () => T, cleanup: (result: T) => void, options: TimingOptions): Timing {
  checkTimingOptions(options);
  for (let i = 0; i < options.warmup; i++) cleanup(run());
  const samples: number[] = [];
  let total = 0;
  while (samples.length < options.minRuns || total < options.minSeconds) {
    const t0 = nowSeconds();
    const r = run();
    const dt = nowSeconds() - t0;
    cleanup(r);
    samples.push(dt);
    total += dt;
  }
  return { runs: samples.length, median: median(samples), min: Math.min(...samples), max: Math.max(...samples), total };
}

/** Work per second (work units / median seconds), e.g. GFLOP/s when work is in GFLOP. */
export function rate(work: number, t: Timing): number {
  return work / t.median;
}

/**
 * One Timing from several rounds of the same measurement (c3gan and PyTorch alternate round by
 * round): the median of the round medians (a busy round moves it less than pooling would), the
 * overall min and max, runs and time added up.
 */
export function mergeTimings(rounds: Timing[]): Timing {
  if (rounds.length === 0) throw new Error("stats: no rounds to merge");
  return {
    runs: rounds.reduce((s, t) => s + t.runs, 0),
    median: median(rounds.map((t) => t.median)),
    min: Math.min(...rounds.map((t) => t.min)),
    max: Math.max(...rounds.map((t) => t.max)),
    total: rounds.reduce((s, t) => s + t.total, 0),
  };
}
