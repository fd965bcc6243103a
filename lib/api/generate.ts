// Images per cluster from a trained generator (eval mode, no perturbation).
import { sampleCodes, oneHot } from "../model/c3gan";
import { Generator, noGrad, Tensor, tidy } from "../tensor";
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
}

export interface GeneratedCluster {
  cluster: number;
  final: ImageBatch;
  background?: ImageBatch;
  /** values in [0, 1] */
  mask?: ImageBatch;
  foreground?: ImageBatch;
}

function batch(t: Tensor): ImageBatch {
  return { data: t.toArray(), shape: t.shape as [number, number, number, number] };
}

export function generateImages(model: C3Model, opts: GenerateOptions = {}): GeneratedCluster[] {
  const K = model.numClusters;
  const clusters = opts.clusters ?? Array.from({ length: K }, (_, i) => i);
  for (const c of clusters)
    if (!Number.isInteger(c) || c < 0 || c >= K) throw new Error(`generate: cluster ${c} out of range [0, ${K})`);
  const n = opts.perCluster ?? 8;
  if (!Number.isInteger(n) || n < 1 || n > 4096) throw new Error(`generate: perCluster must be in 1..4096, got ${n}`);
  const gen = new Generator(BigInt(opts.seed ?? 0));
  const { G } = model.gan;
  const device = model.device;
  const shared = opts.sharedNoise ? sampleCodes(gen, model.gan.spec, n, device) : null;
  const wasTraining = G.training;
  G.eval();
  try {
    return clusters.map((k) =>
      noGrad(() =>
        tidy(() => {
          const codes = shared ?? sampleCodes(gen, model.gan.spec, n, device);
          const c = oneHot(new Int32Array(n).fill(k), K, device);
          const o = G.forward(codes.z, codes.cz, c, null);
          const out: GeneratedCluster = { cluster: k, final: batch(o.final) };
          if (opts.parts) {
            out.background = batch(o.background);
            out.mask = batch(o.mask);
            out.foreground = batch(o.foreground);
          }
          return out;
        }),
      ),
    );
  } finally {
    G.train(wasTraining);
    if (shared) for (const t of [shared.z, shared.cz, shared.c]) t.dispose();
  }
}
