// A C3-GAN: generator, discriminator, the official initialisation, and the random inputs of one
// iteration (codes and the perturbation grid).
import { BatchNorm1d, BatchNorm2d, Conv2d, init, Linear, Module } from "../nn";
import * as F from "../ops";
import { Generator, noGrad, Tensor } from "../tensor";
import type { DeviceName } from "../native";
import { C3Discriminator } from "./discriminator";
import { C3Generator } from "./generator";
import { ModelSpec, validateSpec } from "./spec";

export type Perturbation = "s" | "w" | "none";

/** The official ranges: 's' (strong, the default) and 'w' (weak). */
export const PERTURBATION_RANGES = {
  s: { scale: [0.8, 1.5], degrees: [-15, 15], translate: [-0.15, 0.15] },
  w: { scale: [0.9, 1.1], degrees: [-2, 2], translate: [-0.08, 0.08] },
} as const;

/**
 * utils.weights_init applied to every module: orthogonal (gain 1) conv and linear weights, linear
 * biases 0 (conv biases keep PyTorch's default), BatchNorm weight N(1, 0.02) and bias 0.
 */
export function officialInit(m: Module, gen: Generator): void {
  noGrad(() => {
    for (const [, mod] of m.namedModules()) {
      if (mod instanceof Conv2d) {
        init.orthogonal_(mod.weight, gen, 1);
      } else if (mod instanceof BatchNorm1d || mod instanceof BatchNorm2d) {
        init.normal_(mod.weight, gen, 1, 0.02);
        init.zeros_(mod.bias);
      } else if (mod instanceof Linear) {
        init.orthogonal_(mod.weight, gen, 1);
        if (mod.bias) init.zeros_(mod.bias);
      }
    }
  });
}

export interface C3GANOptions {
  /**
   * Apply the official initialisation (default true). False leaves the layers' own default
   * initialisation: for a model whose every weight and buffer is loaded next (a checkpoint), since
   * the official one costs seconds at the CUB size (QR factorisations of the conv weights: 5.3 s
   * on 2 cores).
   */
  officialInit?: boolean;
}

export class C3GAN {
  readonly G: C3Generator;
  readonly D: C3Discriminator;
  constructor(readonly spec: ModelSpec, readonly device: DeviceName, gen: Generator, opts: C3GANOptions = {}) {
    validateSpec(spec);
    const initialise = opts.officialInit ?? true;
    // as the official: build G, initialise it, then build D and initialise it, all from one stream
    this.G = new C3Generator(spec, { generator: gen, device });
    if (initialise) officialInit(this.G, gen);
    this.D = new C3Discriminator(spec, { generator: gen, device });
    if (initialise) officialInit(this.D, gen);
  }

  train(on = true): void {
    this.G.train(on);
    this.D.train(on);
  }

  dispose(): void {
    this.G.dispose();
    this.D.dispose();
  }
}

export interface Codes {
  z: Tensor;
  cz: Tensor;
  /** one-hot (B, K) */
  c: Tensor;
  /** the cluster index of each row of c */
  clusters: Int32Array;
}

/**
 * z, cz ~ N(0, 1) and one-hot cluster codes. With K >= B the clusters are the first B of a
 * random permutation (distinct, as the official); with K < B, where the official would leave
 * rows without a code, each row draws its cluster uniformly with replacement.
 */
export function sampleCodes(gen: Generator, spec: ModelSpec, batch: number, device: DeviceName): Codes {
  const z = Tensor.randn([batch, spec.zDim], gen, { device });
  const cz = Tensor.randn([batch, spec.czDim], gen, { device });
  const K = spec.numClusters;
  const u = gen.uniform(Math.max(K, batch));
  const clusters = new Int32Array(batch);
  if (K >= batch) {
    const perm = Array.from({ length: K }, (_, i) => i);
    for (let i = K - 1; i > 0; i--) {
      const j = Math.min(i, Math.floor(u[i] * (i + 1)));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    for (let i = 0; i < batch; i++) clusters[i] = perm[i];
  } else {
    for (let i = 0; i < batch; i++) clusters[i] = Math.min(K - 1, Math.floor(u[i] * K));
  }
  return { z, cz, c: oneHot(clusters, K, device), clusters };
}

export function oneHot(indices: Int32Array, K: number, device: DeviceName): Tensor {
  const a = new Float32Array(indices.length * K);
  indices.forEach((k, i) => (a[i * K + k] = 1));
  return Tensor.fromArray(a, [indices.length, K], { device });
}

/**
 * The random affine perturbation of mask and foreground: per sample theta =
 * [[s cos r, -s sin r, tx], [s sin r, s cos r, ty]], with s, degrees, tx, ty drawn in that order
 * (each B values), and its affine_grid (align_corners = true).
 */
export function randomGrid(gen: Generator, batch: number, size: number, pert: Exclude<Perturbation, "none">,
  device: DeviceName): Tensor {
  const r = PERTURBATION_RANGES[pert];
  const s = gen.uniform(batch, r.scale[0], r.scale[1]);
  const deg = gen.uniform(batch, r.degrees[0], r.degrees[1]);
  const tx = gen.uniform(batch, r.translate[0], r.translate[1]);
  const ty = gen.uniform(batch, r.translate[0], r.translate[1]);
  const theta = new Float32Array(batch * 6);
  for (let i = 0; i < batch; i++) {
    const rad = (deg[i] / 180) * Math.PI;
    const [c, sn] = [Math.cos(rad) * s[i], Math.sin(rad) * s[i]];
    theta.set([c, -sn, tx[i], sn, c, ty[i]], i * 6);
  }
  return noGrad(() => F.affineGrid(Tensor.fromArray(theta, [batch, 2, 3], { device }), size, size));
}
