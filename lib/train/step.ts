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

/**
 * A step's loss values left on the device in one tensor (outside every tidy scope) until read:
 * read() downloads them at once, waiting for the work queued before it. On CUDA the trainer and
 * the bench read a D step's losses only after the G step is queued too, so the host stops for
 * the GPU once per iteration (as a PyTorch loop without .item() calls), not after each step;
 * each .item() would download one value. Read or dispose it (read frees the tensor).
 */
export class PendingLosses<T extends object> {
  private values: Tensor | null;

  constructor(private readonly keys: (keyof T & string)[], losses: Tensor[]) {
    if (keys.length !== losses.length) throw new Error(`PendingLosses: ${keys.length} names for ${losses.length} losses`);
    this.values = noGrad(() => F.concat(losses.map((l) => F.reshape(l, [1])), 0)).keep();
  }

  /** The losses by name; frees the device tensor. */
  read(): T {
    if (this.values === null) throw new Error("PendingLosses.read: already read or disposed");
    let a: Float32Array;
    try {
      a = this.values.toArray();
    } finally {
      this.dispose();
    }
    const out: Record<string, number> = {};
    this.keys.forEach((k, i) => (out[k] = a[i]));
    return out as T;
  }

  dispose(): void {
    this.values?.dispose();
    this.values = null;
  }
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
  return discriminatorStepQueued(model, opt, real, aug, gen, o).read();
}

/** discriminatorStep with its losses left on the device until read (PendingLosses). */
function discriminatorStepQueued(model: C3GAN, opt: Adam, real: Tensor, aug: Tensor, gen: Generator,
  o: StepOptions): PendingLosses<DLosses> {
  try {
    return tidy(() => discriminatorStepQueuedWith(model, opt, real, aug, sampleStepInputs(gen, model, real.shape[0], o.perturbation), o));
  } finally {
    opt.zeroGrad();
  }
}

/** The D step with given random inputs (parity tests feed PyTorch's). */
export function discriminatorStepWith(model: C3GAN, opt: Adam, real: Tensor, aug: Tensor, inputs: StepInputs,
  o: StepOptions): DLosses {
  return discriminatorStepQueuedWith(model, opt, real, aug, inputs, o).read();
}

function discriminatorStepQueuedWith(model: C3GAN, opt: Adam, real: Tensor, aug: Tensor, inputs: StepInputs,
  o: StepOptions): PendingLosses<DLosses> {
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
    return new PendingLosses<DLosses>(["real", "fake", "info", "infoAug", "contrastive", "entropy1", "entropy2", "total"],
      [lReal, lFake, lInfo, lInfoAug, lCon, reg1, reg2, total]);
  });
}

/** The G step: fresh codes and perturbation, D in training mode but not updated; G's gradients freed after. */
export function generatorStep(model: C3GAN, opt: Adam, batch: number, gen: Generator, o: StepOptions): GLosses {
  return generatorStepQueued(model, opt, batch, gen, o).read();
}

/** generatorStep with its losses left on the device until read (PendingLosses). */
function generatorStepQueued(model: C3GAN, opt: Adam, batch: number, gen: Generator,
  o: StepOptions): PendingLosses<GLosses> {
  try {
    return tidy(() => generatorStepQueuedWith(model, opt, sampleStepInputs(gen, model, batch, o.perturbation), o));
  } finally {
    opt.zeroGrad();
  }
}

/** The G step with given random inputs. */
export function generatorStepWith(model: C3GAN, opt: Adam, inputs: StepInputs, o: StepOptions): GLosses {
  return generatorStepQueuedWith(model, opt, inputs, o).read();
}

function generatorStepQueuedWith(model: C3GAN, opt: Adam, inputs: StepInputs, o: StepOptions): PendingLosses<GLosses> {
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
      return new PendingLosses<GLosses>(["adv", "info", "infoAug", "mask", "total"], [lAdv, lInfo, lInfoAug, lMask, total]);
    });
  } finally {
    for (const p of dParams) p.requiresGrad = true;
  }
}

/**
 * One training iteration (a D step, then a G step) whose losses are read once both steps are
 * queued: one wait for the device per iteration instead of one per step.
 */
export function queuedIteration(model: C3GAN, optD: Adam, optG: Adam, real: Tensor, aug: Tensor, gen: Generator,
  o: StepOptions): { d: DLosses; g: GLosses } {
  const d = discriminatorStepQueued(model, optD, real, aug, gen, o);
  let g: PendingLosses<GLosses>;
  try {
    g = generatorStepQueued(model, optG, real.shape[0], gen, o);
  } catch (e) {
    d.dispose();
    throw e;
  }
  try {
    return { d: d.read(), g: g.read() };
  } finally {
    d.dispose();
    g.dispose();
  }
}

/** Cluster of each image: argmax over clusters of cos(D feature, centroid), in eval mode. */
export interface ClusterScores {
  clusters: Int32Array;
  /** cosine similarity to the assigned centroid */
  similarity: Float32Array;
  /** per image, the three closest clusters (best first) and their similarities */
  top: { cluster: number; similarity: number }[][];
  /** with `features`: the L2-normalised D features (B, 8*ndf), row-major, whose cosines decide */
  features?: Float32Array;
}

export function assignClusters(model: C3GAN, images: Tensor, opts: { features?: boolean } = {}): ClusterScores {
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
        return opts.features ? { clusters, similarity, top, features: f.toArray() } : { clusters, similarity, top };
      } finally {
        model.D.train(wasTraining);
      }
    }),
  );
}
