// Seconds per C3-GAN training iteration (one D step + one G step) at named configurations, on
// random inputs: what `c3gan bench` reports, optionally side by side with PyTorch.
import { C3GAN } from "../model/c3gan";
import { ModelSpec } from "../model/spec";
import { BENCH_CONFIGS } from "./configs";
import type { DeviceName } from "../native";
import { Adam } from "../optim/adam";
import { Generator, Tensor, tidy } from "../tensor";
import { queuedIteration } from "../train/step";

export interface IterationConfig {
  name: string;
  spec: ModelSpec;
  batch: number;
}

/** The configurations the speed targets name (lib/bench/configs.ts). */
export const ITERATION_CONFIGS: IterationConfig[] = BENCH_CONFIGS;

export interface IterationTiming {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(runs: number[]): IterationTiming {
  const s = [...runs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], runs };
}

/** A model and its optimisers, kept between timed runs. */
export class IterationBench {
  private readonly model: C3GAN;
  private readonly optG: Adam;
  private readonly optD: Adam;
  private readonly gen = new Generator(1n);
  constructor(readonly cfg: IterationConfig, readonly device: DeviceName) {
    this.model = new C3GAN(cfg.spec, device, new Generator(0n));
    this.optG = new Adam(this.model.G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] });
    this.optD = new Adam(this.model.D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] });
  }

  /** one iteration; returns seconds (random real/aug images, the official step) */
  run(): number {
    const { imageSize: S, channels: C } = this.cfg.spec;
    const B = this.cfg.batch;
    const o = { temperature: 0.1, perturbation: "s" as const };
    return tidy(() => {
      const real = Tensor.rand([B, C, S, S], this.gen, -1, 1, { device: this.device });
      const aug = Tensor.rand([B, C, S, S], this.gen, -1, 1, { device: this.device });
      const t0 = process.hrtime.bigint();
      queuedIteration(this.model, this.optD, this.optG, real, aug, this.gen, o);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    });
  }

  dispose(): void {
    this.optG.dispose();
    this.optD.dispose();
    this.model.dispose();
  }
}
