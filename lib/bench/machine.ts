// What a benchmark report says about the machine: CPU, cores, threads, features, load, and the
// measured fp32 peak the per-op GFLOP/s are read against.
import * as fs from "node:fs";
import * as os from "node:os";
import { addonFilePath, NativeAddon } from "../native";

export interface Machine {
  cpuModel: string;
  cores: number;
  /** native threads c3gan uses (and PyTorch is given) */
  threads: number;
  features: string;
  loadAverage: number[];
  node: string;
  addonVersion: string;
  /** the addon file loaded (C3GAN_ADDON's, or node-gyp-build's choice), and when it was built (its mtime): other work may rebuild it */
  addonFile: string | null;
  addonBuilt: string | null;
  cuda: string;
}

function addonFile(): { file: string | null; built: string | null } {
  try {
    const file = addonFilePath();
    return { file, built: fs.statSync(file).mtime.toISOString() };
  } catch {
    return { file: null, built: null };
  }
}

export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1].trim();
  } catch {
    // not Linux: fall through to what Node reports
  }
  return os.cpus()[0]?.model ?? "unknown CPU";
}

export function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

export function machineInfo(addon: NativeAddon): Machine {
  const file = addonFile();
  return {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    threads: addon.numThreads(),
    features: (typeof addon.cpuFeatures === "function" ? addon.cpuFeatures() : "") +
      (typeof addon.gemmKernel === "function" ? `; gemm kernel ${addon.gemmKernel()}` : ""),
    loadAverage: loadAverage(),
    node: process.version,
    addonVersion: addon.version,
    addonFile: file.file,
    addonBuilt: file.built,
    cuda: cudaText(addon),
  };
}

// the CUDA status and, on a device, the modes the timings ran in (math, tile pipeline, who runs
// the convolutions: cuDNN's version and file when it does)
function cudaText(addon: NativeAddon): string {
  const status = addon.cudaStatus();
  if (!addon.cudaAvailable() || typeof addon.cudaConv !== "function") return status;
  const engine = addon.cudaConv();
  const conv = engine === "native" ? "native" : engine === "cudnn" ? `cudnn ${addon.cudnnStatus()}`
    : `auto (the faster per pass and shape; cudnn ${addon.cudnnStatus()})`;
  return `${status}; math ${addon.cudaMath()}, tiles ${addon.cudaTile()}, convs ${conv}`;
}

export interface Peak {
  /** GFLOP/s of an FMA loop on all `threads` threads and on one */
  allThreads: number;
  oneThread: number;
  threads: number;
  trials: number;
  seconds: number;
}

export const PEAK_TRIALS = 5;

/**
 * The best of several short trials: on a shared machine other processes take cores for a while,
 * and the peak is what the cores do when they are ours. Null when the addon has no peakGflops.
 */
export function measurePeak(addon: NativeAddon, threads: number, seconds: number): Peak | null {
  const f = addon.peakGflops;
  if (typeof f !== "function") return null;
  const best = (t: number) => Math.max(...Array.from({ length: PEAK_TRIALS }, () => f.call(addon, seconds / PEAK_TRIALS, t)));
  return { allThreads: best(threads), oneThread: best(1), threads, trials: PEAK_TRIALS, seconds };
}

/** The better of two peak measurements (trials add up): the run's peak is the best the cores did. */
export function bestPeak(a: Peak | null, b: Peak | null): Peak | null {
  if (!a || !b) return a ?? b;
  return { ...a, allThreads: Math.max(a.allThreads, b.allThreads), oneThread: Math.max(a.oneThread, b.oneThread), trials: a.trials + b.trials };
}
