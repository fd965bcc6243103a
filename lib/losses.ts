// The C3-GAN loss terms, each exactly as the official train.py computes it.
import * as F from "./ops";
import { Tensor } from "./tensor";

/** mean(relu(1 - d)): the hinge loss on real logits */
export function hingeReal(d: Tensor): Tensor {
  return F.mean(F.relu(F.affine(d, -1, 1)));
}

/** mean(relu(1 + d)): the hinge loss on fake logits */
export function hingeFake(d: Tensor): Tensor {
  return F.mean(F.relu(F.affine(d, 1, 1)));
}

/** -mean(d): the generator's adversarial loss */
export function generatorAdversarial(d: Tensor): Tensor {
  return F.neg(F.mean(d));
}

/**
 * Cosine similarity of each feature to each centroid, divided by the temperature: (B, K) logits.
 * `centroidsNormed` is F.normalize(class_emb) (K, D).
 */
export function clusterLogits(features: Tensor, centroidsNormed: Tensor, temperature: number): Tensor {
  const f = F.normalize(features);
  return F.mul(F.matmul(f, centroidsNormed, false, true), 1 / temperature);
}

/** CE(cos(f, c) / T, target): the info loss (the official weighs the fake term by 5) */
export function infoLoss(features: Tensor, centroidsNormed: Tensor, targets: Int32Array, temperature: number): Tensor {
  return F.crossEntropy(clusterLogits(features, centroidsNormed, temperature), targets);
}

/** NT-Xent between the real and augmented-real views (rows i and i+B are positives). */
export function contrastiveLoss(realFeatures: Tensor, augFeatures: Tensor, temperature: number): Tensor {
  return F.ntXent(F.concat([realFeatures, augFeatures], 0), temperature);
}

/**
 * The two entropy regularisers on real images' cluster posteriors p = softmax(cos / T):
 * reg1 = 0.1 * mean_i H(p_i) (confident assignments), reg2 = -0.1 * H(mean_i p_i) (balanced use).
 * Natural log and no epsilon, as the official.
 */
export function entropyRegularizers(realFeatures: Tensor, centroidsNormed: Tensor, temperature: number): {
  reg1: Tensor;
  reg2: Tensor;
} {
  const p = F.softmax(clusterLogits(realFeatures, centroidsNormed, temperature));
  const reg1 = F.mul(F.mean(F.sum(F.mul(p, F.log(p)), 1)), -0.1);
  const pbar = F.mean(p, 0);
  const reg2 = F.mul(F.sum(F.mul(pbar, F.log(pbar))), 0.1);
  return { reg1, reg2 };
}

/** -p log2(p + 1e-6) - (1 - p) log2(1 - p + 1e-6), elementwise */
export function binaryEntropy(p: Tensor): Tensor {
  const inv = 1 / Math.LN2;
  const a = F.mul(p, F.mul(F.log(F.add(p, 1e-6)), inv));
  const q = F.affine(p, -1, 1);
  const b = F.mul(q, F.mul(F.log(F.add(q, 1e-6)), inv));
  return F.neg(F.add(a, b));
}

/**
 * The mask regularisers: each sample's mean mask m is pushed into [0.1, 0.9], and every mask value
 * towards 0 or 1: mean(relu(0.1 - m)) + mean(relu(m - 0.9)) + mean(binary entropy(mask)).
 */
export function maskRegularizer(mask: Tensor): Tensor {
  const B = mask.shape[0];
  const m = F.mean(F.reshape(mask, [B, -1]), 1);
  const low = F.mean(F.relu(F.affine(m, -1, 0.1)));
  const high = F.mean(F.relu(F.add(m, -0.9)));
  return F.add(F.add(low, high), F.mean(binaryEntropy(mask)));
}
