// The discriminator (model.py): a conv encoder to a 4x4 map, the info head (the feature used
// for clustering), the real/fake head, and the centroid layer (one embedding per cluster).
import { BatchNorm2d, Conv2d, Linear, Module, Sequential } from "../nn";
import * as F from "../ops";
import { Tensor } from "../tensor";
import { BuildOptions, LeakyReLU } from "./blocks";
import { discriminatorWidths, ModelSpec } from "./spec";

/**
 * encode_img: conv4x4 s2 p1 + LeakyReLU, then (conv4x4 s2 p1, BN, LeakyReLU) per further width,
 * then conv3x3 to 8*ndf, BN, LeakyReLU; no conv biases. Indices match the official Sequential.
 */
function encoder(spec: ModelSpec, o: BuildOptions): Sequential {
  const widths = discriminatorWidths(spec);
  const conv = (i: number, out: number, k: number, s: number, p: number) =>
    new Conv2d(i, out, k, { stride: s, padding: p, bias: false, generator: o.generator, device: o.device });
  const seq = new Sequential(conv(spec.channels, widths[0], 4, 2, 1), new LeakyReLU(0.2));
  let c = widths[0];
  for (const w of widths.slice(1)) {
    seq.append(conv(c, w, 4, 2, 1)).append(new BatchNorm2d(w, { device: o.device })).append(new LeakyReLU(0.2));
    c = w;
  }
  const top = spec.ndf * 8;
  seq.append(conv(c, top, 3, 1, 1)).append(new BatchNorm2d(top, { device: o.device })).append(new LeakyReLU(0.2));
  return seq;
}

export class C3Discriminator extends Module {
  readonly base: Sequential;
  readonly info_head: Sequential;
  readonly rf_head: Sequential;
  readonly centroids: Linear;
  private eye: Tensor | null = null;

  constructor(readonly spec: ModelSpec, o: BuildOptions) {
    super();
    const top = spec.ndf * 8;
    this.base = this.registerModule("base", encoder(spec, o));
    this.info_head = this.registerModule(
      "info_head",
      new Sequential(
        new Conv2d(top, top, 3, { padding: 1, bias: false, generator: o.generator, device: o.device }),
        new BatchNorm2d(top, { device: o.device }),
        new LeakyReLU(0.2),
        new Conv2d(top, top, 4, { stride: 4, bias: true, generator: o.generator, device: o.device }),
      ),
    );
    this.rf_head = this.registerModule(
      "rf_head",
      new Sequential(new Conv2d(top, 1, 4, { stride: 4, bias: true, generator: o.generator, device: o.device })),
    );
    this.centroids = this.registerModule("centroids", new Linear(spec.numClusters, top, { bias: true, generator: o.generator, device: o.device }));
  }

  /** the 4x4 feature map (one BatchNorm batch per call, as each official D call) */
  encode(x: Tensor): Tensor {
    return this.base.forward(x);
  }

  /** (B, 8*ndf): the clustering feature */
  info(h: Tensor): Tensor {
    return F.reshape(this.info_head.forward(h), [h.shape[0], -1]);
  }

  /** (B, 1): the real/fake logit */
  realFake(h: Tensor): Tensor {
    return F.reshape(this.rf_head.forward(h), [h.shape[0], 1]);
  }

  /** (K, 8*ndf): the centroid layer applied to the identity, as the official class_emb */
  centroidEmbeddings(): Tensor {
    if (!this.eye || this.eye.disposed) {
      const K = this.spec.numClusters;
      const eye = new Float32Array(K * K);
      for (let i = 0; i < K; i++) eye[i * K + i] = 1;
      this.eye = Tensor.fromArray(eye, [K, K], { device: this.centroids.weight.device }).keep();
    }
    return this.centroids.forward(this.eye);
  }

  /** Cluster assignment logits' source: L2-normalised centroids (K, 8*ndf). */
  normalizedCentroids(): Tensor {
    return F.normalize(this.centroidEmbeddings());
  }

  override dispose(): void {
    this.eye?.dispose();
    this.eye = null;
    super.dispose();
  }
}
