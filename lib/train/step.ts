// One C3-GAN training iteration exactly as the official train.py: a D step, then a G step with
// fresh codes. Every D call is its own BatchNorm batch, in the official order.
import * as L from "../losses";
import { C3GAN, Codes, Perturbation, randomGrid, sampleCodes } from "../model/c3gan";
import * as F from "../ops";
import { Adam } from "../optim/adam";
import { Generator, noGrad, Tensor, tidy } from "../tensor";

export interface DLosses {
  real: number;
  fake: number;
  info: number;
  infoAug: number;
  contrastive: number;
  entropy1: number;
  entropy2: number;
  total: number;
}

export interface GLosses {
  adv: number;
  info: number;
  infoAug: number;
  mask: number;
  total: number;
}

export interface StepOptions {
  temperature: number;
  perturbation: Perturbation;
}

/** The random inputs of one D or G step: codes, then the perturbation grid (the official order). */
export interface StepInputs {
  codes: Codes;
  grid: Tensor | null;
}

export function sampleStepInputs(gen: Generator, model: C3GAN, B: number, pert: Perturbation): StepInputs {
  const codes = sampleCodes(gen, model.spec, B, model.device);
  const grid = pert === "none" ? null : randomGrid(gen, B, model.spec.imageSize, pert, model.device);
  return { codes, grid };
}

/**
 * The D step on a batch of real images and their augmented views (both (B, C, S, S)). D's
 * gradients are freed after its update (each step starts by zeroing them anyway), so they do
 * not stay alive through the G step; the *With variants keep them for inspection.
 */
export function discriminatorStep(model: C3GAN, opt: Adam, real: Tensor, aug: Tensor, gen: Generator,
  o: StepOptions): DLosses {
  try {
    return tidy(() => discriminatorStepWith(model, opt, real, aug, sampleStepInputs(gen, model, real.shape[0], o.perturbation), o));
  } finally {
    opt.zeroGrad();
  }
}

/** The D step with given random inputs (parity tests feed PyTorch's). */
export function discriminatorStepWith(model: C3GAN, opt: Adam, real: Tensor, aug: Tensor, inputs: StepInputs,
  o: StepOptions): DLosses {
  const { G, D } = model;
  const { codes, grid: g } = inputs;
  return tidy(() => {
    const fake = noGrad(() => G.forward(codes.z, codes.cz, codes.c, g));
    // D sees only the composite and the mask
    fake.background.dispose();
    fake.foreground.dispose();
    opt.zeroGrad();
    const hReal = D.encode(real);
    const realInfo = D.info(hReal);
    const realAdv = D.realFake(hReal);
    const hFake = D.encode(fake.final);
    const fakeInfo = D.info(hFake);
    const fakeAdv = D.realFake(hFake);
    const c = D.normalizedCentroids();
    const fgInfo = D.info(D.encode(noGrad(() => F.mul(fake.mask, fake.final))));
    const augInfo = D.info(D.encode(aug));

    const lReal = L.hingeReal(realAdv);
    const lFake = L.hingeFake(fakeAdv);
    const lInfo = F.mul(L.infoLoss(fakeInfo, c, codes.clusters, o.temperature), 5);
    const lInfoAug = L.infoLoss(fgInfo, c, codes.clusters, o.temperature);
    const lCon = L.contrastiveLoss(realInfo, augInfo, o.temperature);
    const { reg1, reg2 } = L.entropyRegularizers(realInfo, c, o.temperature);
    const total = [lFake, lInfo, lInfoAug, lCon, reg1, reg2].reduce((a, b) => F.add(a, b), lReal);
    total.backward();
    opt.step();
    return {
      real: lReal.item(), fake: lFake.item(), info: lInfo.item(), infoAug: lInfoAug.item(),
      contrastive: lCon.item(), entropy1: reg1.item(), entropy2: reg2.item(), total: total.item(),
    };
  });
}

/** The G step: fresh codes and perturbation, D in training mode but not updated; G's gradients freed after. */
export function generatorStep(model: C3GAN, opt: Adam, batch: number, gen: Generator, o: StepOptions): GLosses {
  try {
    return tidy(() => generatorStepWith(model, opt, sampleStepInputs(gen, model, batch, o.perturbation), o));
  } finally {
    opt.zeroGrad();
  }
}

/** The G step with given random inputs. */
export function generatorStepWith(model: C3GAN, opt: Adam, inputs: StepInputs, o: StepOptions): GLosses {
  const { G, D } = model;
  const { codes, grid: g } = inputs;
  const dParams = D.parameters();
  // D's parameters get no gradient in this step (the official zeroes them before the next D step)
  for (const p of dParams) p.requiresGrad = false;
  try {
    return tidy(() => {
      opt.zeroGrad();
      const fake = G.forward(codes.z, codes.cz, codes.c, g);
      const hFake = D.encode(fake.final);
      const fakeInfo = D.info(hFake);
      const fakeAdv = D.realFake(hFake);
      const c = D.normalizedCentroids();
      const fgInfo = D.info(D.encode(F.mul(fake.mask, fake.final)));
      const lAdv = L.generatorAdversarial(fakeAdv);
      const lInfo = F.mul(L.infoLoss(fakeInfo, c, codes.clusters, o.temperature), 5);
      const lInfoAug = L.infoLoss(fgInfo, c, codes.clusters, o.temperature);
      const lMask = L.maskRegularizer(fake.mask);
      const total = F.add(F.add(F.add(lAdv, lInfo), lInfoAug), lMask);
      total.backward();
      opt.step();
      return { adv: lAdv.item(), info: lInfo.item(), infoAug: lInfoAug.item(), mask: lMask.item(), total: total.item() };
    });
  } finally {
    for (const p of dParams) p.requiresGrad = true;
  }
}

/** Cluster of each image: argmax over clusters of cos(D feature, centroid), in eval mode. */
export interface ClusterScores {
  clusters: Int32Array;
  /** cosine similarity to the assigned centroid */
  similarity: Float32Array;
  /** per image, the three closest clusters (best first) and their similarities */
  top: { cluster: number; similarity: number }[][];
}

export function assignClusters(model: C3GAN, images: Tensor): ClusterScores {
  return noGrad(() =>
    tidy(() => {
      const wasTraining = model.D.training;
      model.D.eval();
      try {
        const f = F.normalize(model.D.info(model.D.encode(images)));
        const cos = F.matmul(f, model.D.normalizedCentroids(), false, true).toArray();
        const B = images.shape[0];
        const K = model.spec.numClusters;
        const clusters = new Int32Array(B);
        const similarity = new Float32Array(B);
        const top: { cluster: number; similarity: number }[][] = [];
        for (let i = 0; i < B; i++) {
          const row = cos.subarray(i * K, (i + 1) * K);
          const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
          clusters[i] = order[0];
          similarity[i] = row[order[0]];
          top.push(order.slice(0, Math.min(3, K)).map((k) => ({ cluster: k, similarity: row[k] })));
        }
        return { clusters, similarity, top };
      } finally {
        model.D.train(wasTraining);
      }
    }),
  );
}
