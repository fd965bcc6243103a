// Images per cluster from a trained generator (eval mode, no perturbation).
import { sampleCodes, oneHot } from "../model/c3gan";
import * as F from "../ops";
import { Generator, noGrad, tidy } from "../tensor";
import type { ImageBatch } from "../train/samples";
import type { C3Model } from "./model";

export interface GenerateOptions {
  /** cluster indices (default: all) */
  clusters?: number[];
  perCluster?: number;
  seed?: number;
  /** also return background, mask and foreground */
  parts?: boolean;
  /**
   * share the noise across clusters (the official "fixed z, varying c"): sample i of every cluster
   * then uses the same z and cz
   */
  sharedNoise?: boolean;
  /**
   * images per generator call (default 64): bounds the memory of a call, not the result (the
   * noise is drawn per cluster first, so any batch size gives the same images)
   */
  batchSize?: number;
}

export interface GeneratedCluster {
  cluster: number;
  final: ImageBatch;
  background?: ImageBatch;
  /** values in [0, 1] */
  mask?: ImageBatch;
  foreground?: ImageBatch;
}

const PARTS = ["final", "background", "mask", "foreground"] as const;

/**
 * The clusters' images one cluster at a time (memory for one cluster's images, however many
 * clusters): what generateImages returns, as an iterator. Finish it, or leave a for-of loop, to
 * put the generator back in its mode.
 */
export function generateClusters(model: C3Model, opts: GenerateOptions = {}): IterableIterator<GeneratedCluster> {
  const K = model.numClusters;
  const clusters = opts.clusters ?? Array.from({ length: K }, (_, i) => i);
  for (const c of clusters)
    if (!Number.isInteger(c) || c < 0 || c >= K) throw new Error(`generate: cluster ${c} out of range [0, ${K})`);
  const n = opts.perCluster ?? 8;
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new Error(`generate: perCluster must be in 1..100000, got ${n}`);
  const B = opts.batchSize ?? 64;
  if (!Number.isInteger(B) || B < 1) throw new Error(`generate: batchSize must be a positive integer, got ${B}`);
  return clusterImages(model, clusters, n, B, opts);
}

// the iterator behind generateClusters (its arguments checked: a generator function runs nothing
// until the first next(), and errors belong at the call)
function* clusterImages(model: C3Model, clusters: number[], n: number, B: number, opts: GenerateOptions):
  IterableIterator<GeneratedCluster> {
  const K = model.numClusters;
  const gen = new Generator(BigInt(opts.seed ?? 0));
  const { G } = model.gan;
  const device = model.device;
  const spec = model.gan.spec;
  const shared = opts.sharedNoise ? sampleCodes(gen, spec, n, device) : null;
  const wasTraining = G.training;
  G.eval();
  try {
    for (const k of clusters) {
      const codes = shared ?? sampleCodes(gen, spec, n, device);
      const out: Partial<Record<(typeof PARTS)[number], ImageBatch>> = {};
      try {
        for (let s = 0; s < n; s += B) {
          const e = Math.min(n, s + B);
          noGrad(() => tidy(() => {
            const c = oneHot(new Int32Array(e - s).fill(k), K, device);
            const o = G.forward(F.slice(codes.z, 0, s, e), F.slice(codes.cz, 0, s, e), c, null);
            for (const part of opts.parts ? PARTS : PARTS.slice(0, 1)) {
              const t = o[part];
              const [, C, H, W] = t.shape;
              const dst = (out[part] ??= { data: new Float32Array(n * C * H * W), shape: [n, C, H, W] });
              dst.data.set(t.toArray(), s * C * H * W);
            }
          }));
        }
      } finally {
        if (!shared) for (const t of [codes.z, codes.cz, codes.c]) t.dispose();
      }
      const g: GeneratedCluster = { cluster: k, final: out.final! };
      if (opts.parts) {
        g.background = out.background;
        g.mask = out.mask;
        g.foreground = out.foreground;
      }
      yield g;
    }
  } finally {
    G.train(wasTraining);
    if (shared) for (const t of [shared.z, shared.cz, shared.c]) t.dispose();
  }
}

/** Images per cluster, every cluster's at once (see generateClusters for one at a time). */
export function generateImages(model: C3Model, opts: GenerateOptions = {}): GeneratedCluster[] {
  return [...generateClusters(model, opts)];
}
