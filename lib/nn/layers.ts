// The layers: Conv2d, Linear, BatchNorm1d/2d, GLU, LeakyReLU, Sequential, with PyTorch's parameter names
// and default initialisation.
import { DeviceName, native } from "../native";
import { add, batchNorm, batchNormGlu, conv2d, conv2dMoments, conv2dUp, conv2dUpMoments, glu, leakyRelu, linear, upsample2x, WithMoments } from "../ops";
import { defaultGenerator, Generator, shapeStr, Tensor, tidyMade } from "../tensor";
import { defaultUniform_ } from "./init";
import { Layer, Module } from "./module";

function posInt(v: unknown, where: string, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new Error(`${where}: ${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  generator?: Generator;
  device?: DeviceName;
}

export class Conv2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;

  constructor(inChannels: number, outChannels: number, kernel: number | [number, number], opts: Conv2dOptions = {}) {
    super();
    posInt(inChannels, "Conv2d", "inChannels");
    posInt(outChannels, "Conv2d", "outChannels");
    const [kh, kw] = typeof kernel === "number" ? [kernel, kernel] : kernel;
    posInt(kh, "Conv2d", "kernel height");
    posInt(kw, "Conv2d", "kernel width");
    this.stride = posInt(opts.stride ?? 1, "Conv2d", "stride");
    const pad = opts.padding ?? 0;
    if (!Number.isInteger(pad) || pad < 0) throw new Error(`Conv2d: padding must be an integer >= 0, got ${pad}`);
    this.padding = pad;
    const gen = opts.generator ?? defaultGenerator();
    const device = opts.device ?? "cpu";
    const fanIn = inChannels * kh * kw;
    // kaiming_uniform(a = sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the same bound
    this.weight = this.registerParameter("weight", defaultUniform_(Tensor.zeros([outChannels, inChannels, kh, kw], { device }), fanIn, gen));
    this.bias = this.registerParameter("bias",
      (opts.bias ?? true) ? defaultUniform_(Tensor.zeros([outChannels], { device }), fanIn, gen) : null);
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.stride, this.padding);
  }

  /** leakyRelu(this.forward(x), slope) as one op (ops.conv2d's leakySlope; slope >= 0) */
  forwardLeaky(x: Tensor, slope: number): Tensor {
    return conv2d(x, this.weight, this.bias, this.stride, this.padding, slope);
  }

  /** whether forwardUp applies: a 3x3 kernel, stride 1, padding 1 */
  get upsampleFusable(): boolean {
    return this.stride === 1 && this.padding === 1 && this.weight.shape[2] === 3 && this.weight.shape[3] === 3;
  }

  /** this.forward(upsample2x(x)) without the upsampled tensor (ops.conv2dUp) */
  forwardUp(x: Tensor): Tensor {
    if (!this.upsampleFusable) return this.forward(upsample2x(x));
    return conv2dUp(x, this.weight, this.bias);
  }

  /** this.forward(x) and its output's per-channel moments, for a batch norm after it (ops.conv2dMoments) */
  forwardMoments(x: Tensor): WithMoments {
    return conv2dMoments(x, this.weight, this.bias, this.stride, this.padding);
  }

  /** forwardUp(x) and its output's moments (ops.conv2dUpMoments); upsampleFusable only */
  forwardUpMoments(x: Tensor): WithMoments {
    if (!this.upsampleFusable) throw new Error("Conv2d.forwardUpMoments: needs a 3x3 kernel, stride 1, padding 1");
    return conv2dUpMoments(x, this.weight, this.bias);
  }
}

/** Parameterless nearest 2x upsample (nn.Upsample(scale_factor=2, mode='nearest')). */
export class Upsample2x extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return upsample2x(x);
  }
}

export interface LinearOptions {
  bias?: boolean;
  generator?: Generator;
  device?: DeviceName;
}

export class Linear extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    posInt(inFeatures, "Linear", "inFeatures");
    posInt(outFeatures, "Linear", "outFeatures");
    const gen = opts.generator ?? defaultGenerator();
    const device = opts.device ?? "cpu";
    this.weight = this.registerParameter("weight", defaultUniform_(Tensor.zeros([outFeatures, inFeatures], { device }), inFeatures, gen));
    this.bias = this.registerParameter("bias",
      (opts.bias ?? true) ? defaultUniform_(Tensor.zeros([outFeatures], { device }), inFeatures, gen) : null);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
  device?: DeviceName;
}

abstract class BatchNormBase extends Module implements Layer {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number;
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  private readonly batchCount: Tensor;
  // batches counted since the count was last written: the tensor is brought up to date when read
  // (numBatchesTracked, stateDict, buffers), not with a native call and a kernel per batch
  private pendingBatches = 0;
  protected abstract readonly rank: number;

  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super();
    const where = this.constructor.name;
    posInt(numFeatures, where, "numFeatures");
    const eps = opts.eps ?? 1e-5;
    const momentum = opts.momentum ?? 0.1;
    if (typeof eps !== "number" || !Number.isFinite(eps) || eps <= 0) throw new Error(`${where}: eps must be a finite number > 0, got ${eps}`);
    if (typeof momentum !== "number" || !(momentum >= 0 && momentum <= 1)) {
      throw new Error(`${where}: momentum must be a number in [0, 1], got ${momentum}`);
    }
    this.numFeatures = numFeatures;
    this.eps = eps;
    this.momentum = momentum;
    const device = opts.device ?? "cpu";
    this.weight = this.registerParameter("weight", Tensor.ones([numFeatures], { device }));
    this.bias = this.registerParameter("bias", Tensor.zeros([numFeatures], { device }));
    this.runningMean = this.registerBuffer("running_mean", Tensor.zeros([numFeatures], { device }));
    this.runningVar = this.registerBuffer("running_var", Tensor.ones([numFeatures], { device }));
    // PyTorch keeps this as a 0-dim int64 tensor; here a 0-dim float, written to checkpoints as int64
    this.batchCount = this.registerBuffer("num_batches_tracked", Tensor.zeros([], { device }), { integer: true });
  }

  /** The batches seen in training (PyTorch's num_batches_tracked), up to date. */
  get numBatchesTracked(): Tensor {
    this.syncBuffers();
    return this.batchCount;
  }

  protected override syncBuffers(): void {
    if (this.pendingBatches === 0 || this.batchCount.disposed) return;
    native().affineInPlace(this.batchCount.use(this.constructor.name), 1, this.pendingBatches);
    this.pendingBatches = 0;
    this.batchCount._version++;
  }

  /**
   * `moments` (training): x's own statistics from the conv that made it (Conv2d.forwardMoments);
   * `residual`: added to the result in the same pass (ops.batchNorm)
   */
  forward(x: Tensor, moments: Tensor | null = null, residual: Tensor | null = null): Tensor {
    this.checkInput(x);
    const y = batchNorm(x, this.weight, this.bias, this.runningMean, this.runningVar, this.training, this.momentum, this.eps,
      moments, residual);
    this.countBatch();
    return y;
  }

  /** leakyRelu(this.forward(x), slope) in the batch norm's passes (ops.batchNorm's leakySlope) */
  forwardLeaky(x: Tensor, slope: number, moments: Tensor | null = null): Tensor {
    this.checkInput(x);
    const y = batchNorm(x, this.weight, this.bias, this.runningMean, this.runningVar, this.training, this.momentum, this.eps,
      moments, null, slope);
    this.countBatch();
    return y;
  }

  /** glu(this.forward(x), dim) without keeping the normalised tensor (ops.batchNormGlu) */
  forwardGlu(x: Tensor, dim = 1, moments: Tensor | null = null): Tensor {
    this.checkInput(x);
    const y = batchNormGlu(x, this.weight, this.bias, this.runningMean, this.runningVar, this.training, this.momentum,
      this.eps, dim, moments);
    this.countBatch();
    return y;
  }

  private checkInput(x: Tensor): void {
    const where = this.constructor.name;
    if (!(x instanceof Tensor)) throw new Error(`${where}: input must be a Tensor`);
    if (x.ndim !== this.rank) {
      throw new Error(`${where}: expects a rank-${this.rank} input, got shape ${shapeStr(x.shape)}`);
    }
    if (x.shape[1] !== this.numFeatures) {
      throw new Error(`${where}(${this.numFeatures}): input ${shapeStr(x.shape)} has ${x.shape[1]} channels`);
    }
  }

  private countBatch(): void {
    if (this.training) this.pendingBatches++;
  }
}

export class BatchNorm1d extends BatchNormBase {
  protected readonly rank = 2;
}

export class BatchNorm2d extends BatchNormBase {
  protected readonly rank = 4;
}

export class GLU extends Module implements Layer {
  constructor(readonly dim = 1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return glu(x, this.dim);
  }
}

/** nn.LeakyReLU(slope) */
export class LeakyReLU extends Module implements Layer {
  constructor(readonly slope: number) {
    super();
    if (typeof slope !== "number" || !Number.isFinite(slope)) throw new Error(`LeakyReLU: slope must be a finite number, got ${String(slope)}`);
  }
  forward(x: Tensor): Tensor {
    return leakyRelu(x, this.slope);
  }
}

/**
 * x through `layers` in order, keeping only what is still needed. Each layer runs in its own tidy
 * scope (what it makes besides its result is freed when it returns), and each result is
 * disposed as soon as the next layer has used it, unless the layer did not make it (it returned
 * its input, a kept tensor or one from elsewhere). That is safe under autograd: a tape node holds
 * its own handles on what its backward needs, so disposing frees only memory nothing needs (in
 * a no-grad forward, every activation but the current one). x itself is disposed only with
 * `disposeInput` (the caller hands it over). A BatchNorm followed by a GLU runs as one op that
 * does not keep the normalised tensor (ops.batchNormGlu: one pass, equal to float rounding), a
 * BatchNorm followed by a LeakyReLU as one op (ops.batchNorm's leakySlope: equal to the bit), an
 * Upsample2x followed by a 3x3 stride-1 pad-1 Conv2d as one that never makes the upsampled tensor
 * (ops.conv2dUp), and a Conv2d followed by a BatchNorm in training hands the conv's output
 * statistics to the batch norm (ops.conv2dMoments), which then does not sum them again. A layer
 * here must not keep its input or result past its forward call. With `residual` the result is
 * add(chain(x), residual) (a residual block), summed by the last batch norm's pass when the chain
 * ends with one.
 */
export function forwardChain(x: Tensor, layers: readonly Layer[], disposeInput = false,
  residual: Tensor | null = null): Tensor {
  if (residual !== null && layers.length === 0) {
    const sum = add(x, residual);
    if (disposeInput) x.dispose();
    return sum;
  }
  let y = x;
  let owned = disposeInput;
  for (let i = 0; i < layers.length; ) {
    const prev = y;
    const step = fusedStep(layers, i);
    const last = i + step.count === layers.length;
    const [r, made] = tidyMade(() => {
      if (!last || residual === null) return step.run(prev);
      return step.runResidual ? step.runResidual(prev, residual) : add(step.run(prev), residual);
    });
    i += step.count;
    y = r;
    if (y !== prev) {
      if (owned) prev.dispose();
      owned = made;
    }
  }
  return y;
}

// Whether l is a `cls` whose `method` is the library's own (a subclass overriding it runs as it is).
function own<T>(l: Layer | undefined, cls: abstract new (...args: never[]) => T, method = "forward"): l is Layer & T {
  return l instanceof cls && (l as unknown as Record<string, unknown>)[method] === (cls.prototype as Record<string, unknown>)[method];
}

// The layers from i that run as one step of forwardChain, longest match first: [Upsample2x]
// Conv2d BatchNorm [GLU | LeakyReLU] with the conv's moments (BatchNorm in training), Upsample2x
// Conv2d, Conv2d LeakyReLU, BatchNorm GLU, BatchNorm LeakyReLU (LeakyReLU slopes >= 0), or layer
// i alone. A step ending with a batch norm (nothing fused after it) can also add a residual in its
// pass (runResidual).
interface Step {
  count: number;
  run: (x: Tensor) => Tensor;
  runResidual?: (x: Tensor, residual: Tensor) => Tensor;
}

function fusedStep(layers: readonly Layer[], i: number): Step {
  const l = layers[i];
  const up = own(l, Upsample2x) && own(layers[i + 1], Conv2d) && (layers[i + 1] as Conv2d).upsampleFusable;
  const at = up ? i + 1 : i;
  const conv = own(layers[at], Conv2d) ? (layers[at] as Conv2d) : null;
  const bnAt = conv ? at + 1 : i;
  const bnLayer = layers[bnAt];
  const bn = own(bnLayer, BatchNormBase) && (bnLayer as BatchNormBase).training ? (bnLayer as BatchNormBase) : null;
  const gluAt = bnAt + 1;
  const gluLayer = layers[gluAt];
  const isBn = own(bnLayer, BatchNormBase);
  const glu = isBn && own(gluLayer, GLU) ? (gluLayer as GLU) : null;
  const leaky = isBn && own(gluLayer, LeakyReLU) && (gluLayer as LeakyReLU).slope >= 0 ? (gluLayer as LeakyReLU) : null;
  if (conv && bn) {
    const convMoments = (x: Tensor) => (up ? conv.forwardUpMoments(x) : conv.forwardMoments(x));
    return {
      count: gluAt - i + (glu || leaky ? 1 : 0),
      run: (x) => {
        const { y, moments } = convMoments(x);
        if (glu) return bn.forwardGlu(y, glu.dim, moments);
        return leaky ? bn.forwardLeaky(y, leaky.slope, moments) : bn.forward(y, moments);
      },
      runResidual: glu || leaky ? undefined : (x, residual) => {
        const { y, moments } = convMoments(x);
        return bn.forward(y, moments, residual);
      },
    };
  }
  if (up) return { count: 2, run: (x) => (layers[i + 1] as Conv2d).forwardUp(x) };
  const next = layers[i + 1];
  if (conv && own(next, LeakyReLU) && (next as LeakyReLU).slope >= 0) {
    const slope = (next as LeakyReLU).slope;
    return { count: 2, run: (x) => conv.forwardLeaky(x, slope) };
  }
  if (!conv && glu) return { count: 2, run: (x) => (bnLayer as BatchNormBase).forwardGlu(x, glu.dim) };
  if (!conv && leaky) return { count: 2, run: (x) => (bnLayer as BatchNormBase).forwardLeaky(x, leaky.slope) };
  const alone = own(l, BatchNormBase) ? (l as BatchNormBase) : null;
  return { count: 1, run: (x) => l.forward(x), runResidual: alone ? (x, r) => alone.forward(x, null, r) : undefined };
}

/** Chains layers; children are named "0", "1", ... as in PyTorch. forward() is forwardChain(). */
export class Sequential extends Module implements Layer {
  private readonly layers: (Module & Layer)[] = [];

  constructor(...layers: (Module & Layer)[]) {
    super();
    for (const l of layers) this.append(l);
  }

  append(l: Module & Layer): this {
    if (!(l instanceof Module) || typeof (l as Layer).forward !== "function") {
      throw new Error(`Sequential: item ${this.layers.length} must be a Module with forward(x)`);
    }
    this.registerModule(String(this.layers.length), l);
    this.layers.push(l);
    return this;
  }

  get length(): number {
    return this.layers.length;
  }

  get(i: number): Module & Layer {
    const l = this.layers[i];
    if (!l) throw new Error(`Sequential.get: index ${i} out of range (length ${this.layers.length})`);
    return l;
  }

  /** the layers in order */
  items(): readonly (Module & Layer)[] {
    return this.layers;
  }

  forward(x: Tensor): Tensor {
    return forwardChain(x, this.layers);
  }
}
