// Differentiable ops: each is a native forward plus, when an input requires grad, a tape node
// whose backward calls the native backward kernels. Arguments are checked here where the
// message is clearer than the native one (the native layer checks everything again).
import { native, NativeAddon, NativeTensor, UnaryOpName, BinaryOpName } from "./native";
import { BackwardFn, isGradEnabled, Node, retainInputs } from "./autograd";
import { checkShape, numelOf, shapeStr, Tensor } from "./tensor";

type Grads = (NativeTensor | null)[];

/** What a recording op keeps for its backward: handles it shares or owns, disposed with the node. */
class Ctx {
  readonly saved: NativeTensor[] = [];
  constructor(readonly N: NativeAddon, readonly needs: boolean[]) {}
  /** a second handle on the same storage, owned by the node */
  share(h: NativeTensor): NativeTensor {
    const s = this.N.share(h);
    this.saved.push(s);
    return s;
  }
}

/**
 * Wraps the forward result `out` of `op`; when recording, `setup` saves what backward needs and
 * returns the backward closure. `own` are temporaries (e.g. saved statistics) that the node takes
 * over, or that are disposed right away when nothing is recorded.
 */
function finish(op: string, out: NativeTensor, inputs: (Tensor | null)[], setup: (c: Ctx) => BackwardFn,
  own: NativeTensor[] = []): Tensor {
  const grad = isGradEnabled();
  const needs = inputs.map((t) => grad && t !== null && t.requiresGrad);
  const t = new Tensor(out, op);
  if (!needs.some(Boolean)) {
    for (const h of own) h.dispose();
    return t;
  }
  const N = native();
  const ctx = new Ctx(N, needs);
  let fn: BackwardFn;
  try {
    fn = setup(ctx);
  } catch (e) {
    for (const h of [...ctx.saved, ...own]) h.dispose();
    t.dispose();
    throw e;
  }
  ctx.saved.push(...own);
  const node = new Node(op, inputs, needs, ctx.saved, fn, t.shape);
  node.output = t;
  retainInputs(node);
  t._node = node;
  return t;
}

/** A batch-norm backward's [dx, dgamma, dbeta], keeping the ones a node needs and freeing the others. */
function neededGrads(needs: boolean[], grads: NativeTensor[]): Grads {
  return grads.map((g, i) => {
    if (needs[i]) return g;
    g.dispose();
    return null;
  });
}

function normDim(dim: number, ndim: number, op: string, shape: number[]): number {
  if (!Number.isInteger(dim) || dim < -ndim || dim >= ndim) {
    throw new Error(`${op}: dim ${dim} is out of range for shape ${shapeStr(shape)}`);
  }
  return dim < 0 ? dim + ndim : dim;
}

/** A fused LeakyReLU's slope (null: none): >= 0, as its backward reads the output's sign. */
function checkLeakySlope(op: string, v: number | null | undefined): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new Error(`${op}: leakySlope must be a finite number >= 0, got ${String(v)}`);
  }
  return v;
}

function checkInt(v: number, op: string, what: string, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new Error(`${op}: ${what} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

function checkFinite(v: number, op: string, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${op}: ${what} must be a finite number, got ${String(v)}`);
  return v;
}

function checkRank(t: Tensor, ranks: number[], op: string, what: string): void {
  if (!ranks.includes(t.ndim)) {
    throw new Error(`${op}: ${what} must have rank ${ranks.join(" or ")}, got shape ${shapeStr(t.shape)}`);
  }
}

function checkTensor(t: unknown, op: string, what: string): asserts t is Tensor {
  if (!(t instanceof Tensor)) throw new Error(`${op}: ${what} must be a Tensor, got ${t === null ? "null" : typeof t}`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** numpy broadcasting of two shapes */
export function broadcastShapes(a: number[], b: number[], op = "broadcast"): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} are not broadcastable (dim ${i}: ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** g (of a broadcast shape) summed down to `shape`: g itself when already that shape, else a new handle */
function reduceTo(N: NativeAddon, g: NativeTensor, shape: number[]): NativeTensor {
  const gs = g.shape;
  if (sameShape(gs, shape)) return g;
  const padded = new Array(gs.length - shape.length).fill(1).concat(shape);
  const r = N.sumTo(g, padded);
  if (padded.length === shape.length) return r;
  const rr = N.reshape(r, shape);
  r.dispose();
  return rr;
}

/** reduceTo for a temporary g: disposes g unless it is the result */
function reduceOwned(N: NativeAddon, g: NativeTensor, shape: number[]): NativeTensor {
  const r = reduceTo(N, g, shape);
  if (r !== g) g.dispose();
  return r;
}

// ---- elementwise ------------------------------------------------------------------------------

export function affine(x: Tensor, scale: number, shift: number): Tensor {
  checkTensor(x, "affine", "x");
  if (typeof scale !== "number" || typeof shift !== "number") throw new Error("affine: scale and shift must be numbers");
  const N = native();
  const y = N.affine(x.use("affine"), scale, shift);
  return finish("affine", y, [x], () => (dy) => [N.affine(dy, scale, 0)]);
}

/**
 * Which of x and y the backward of `op` reads (native unary_backward): a node keeps only that
 * one (neither for neg). relu and leaky relu with slope >= 0 test x > 0, and y > 0 exactly where
 * x > 0 (-0, NaN and an underflowing slope * x included), so they keep y, which the next layer
 * usually keeps too; a negative slope flips the sign, so it keeps x.
 */
function unarySaves(op: UnaryOpName, alpha: number): "x" | "y" | "none" {
  switch (op) {
    case "relu":
    case "tanh":
    case "sigmoid":
    case "exp":
    case "sqrt":
      return "y";
    case "leaky_relu":
      return alpha >= 0 ? "y" : "x";
    case "neg":
      return "none";
    default:
      return "x";
  }
}

function unaryOp(op: UnaryOpName, name: string, x: Tensor, alpha = 0): Tensor {
  checkTensor(x, name, "x");
  const N = native();
  const xh = x.use(name);
  const y = N.unary(op, xh, alpha);
  return finish(name, y, [x], (c) => {
    const what = unarySaves(op, alpha);
    const s = what === "none" ? null : c.share(what === "x" ? xh : y);
    // the kernel gets the saved tensor (or dy, same shape, unread) for both x and y
    return (dy) => [N.unaryBackward(op, dy, s ?? dy, s ?? dy, alpha)];
  });
}

export const relu = (x: Tensor): Tensor => unaryOp("relu", "relu", x);
export const tanh = (x: Tensor): Tensor => unaryOp("tanh", "tanh", x);
export const sigmoid = (x: Tensor): Tensor => unaryOp("sigmoid", "sigmoid", x);
export const exp = (x: Tensor): Tensor => unaryOp("exp", "exp", x);
export const log = (x: Tensor): Tensor => unaryOp("log", "log", x);
export const neg = (x: Tensor): Tensor => unaryOp("neg", "neg", x);
export const square = (x: Tensor): Tensor => unaryOp("square", "square", x);
export const sqrt = (x: Tensor): Tensor => unaryOp("sqrt", "sqrt", x);
export const abs = (x: Tensor): Tensor => unaryOp("abs", "abs", x);

export function leakyRelu(x: Tensor, slope = 0.01): Tensor {
  checkFinite(slope, "leakyRelu", "slope");
  return unaryOp("leaky_relu", "leakyRelu", x, slope);
}

function binaryTensors(op: BinaryOpName, a: Tensor, b: Tensor): Tensor {
  const N = native();
  const ah = a.use(op);
  const bh = b.use(op);
  const aShape = a.shape;
  const bShape = b.shape;
  broadcastShapes(aShape, bShape, op);
  if (a.device !== b.device) {
    throw new Error(`${op}: tensors are on different devices (${a.device} ${shapeStr(aShape)}, ${b.device} ${shapeStr(bShape)})`);
  }
  const y = N.binary(op, ah, bh);
  return finish(op, y, [a, b], (c) => {
    const [na, nb] = c.needs;
    switch (op) {
      case "add":
        return (dy) => [na ? reduceTo(N, dy, aShape) : null, nb ? reduceTo(N, dy, bShape) : null];
      case "sub":
        return (dy) => {
          const gb = nb ? reduceOwned(N, N.affine(dy, -1, 0), bShape) : null;
          return [na ? reduceTo(N, dy, aShape) : null, gb];
        };
      case "mul": {
        const as = nb ? c.share(ah) : null;
        const bs = na ? c.share(bh) : null;
        return (dy) => [
          na ? reduceOwned(N, N.binary("mul", dy, bs!), aShape) : null,
          nb ? reduceOwned(N, N.binary("mul", dy, as!), bShape) : null,
        ];
      }
      case "div": {
        // da = dy / b; db = -dy * y / b
        const bs = c.share(bh);
        const ys = nb ? c.share(y) : null;
        return (dy) => {
          const ga = na ? reduceOwned(N, N.binary("div", dy, bs), aShape) : null;
          let gb: NativeTensor | null = null;
          if (nb) {
            const t1 = N.binary("mul", dy, ys!);
            const t2 = N.binary("div", t1, bs);
            t1.dispose();
            const t3 = N.affine(t2, -1, 0);
            t2.dispose();
            gb = reduceOwned(N, t3, bShape);
          }
          return [ga, gb];
        };
      }
    }
  });
}

function binary(op: BinaryOpName, a: Tensor | number, b: Tensor | number): Tensor {
  const aT = a instanceof Tensor;
  const bT = b instanceof Tensor;
  if (!aT && typeof a !== "number") throw new Error(`${op}: a must be a Tensor or a number, got ${String(a)}`);
  if (!bT && typeof b !== "number") throw new Error(`${op}: b must be a Tensor or a number, got ${String(b)}`);
  if (aT && bT) return binaryTensors(op, a, b);
  if (aT) {
    const s = b as number;
    if (op === "add") return affine(a, 1, s);
    if (op === "sub") return affine(a, 1, -s);
    if (op === "mul") return affine(a, s, 0);
    return affine(a, 1 / s, 0);
  }
  if (bT) {
    const s = a as number;
    if (op === "add") return affine(b, 1, s);
    if (op === "sub") return affine(b, -1, s);
    if (op === "mul") return affine(b, s, 0);
    // s / b: broadcast a one-element tensor
    const st = Tensor.full([], s, { device: b.device });
    const r = binaryTensors("div", st, b);
    st.dispose();
    return r;
  }
  throw new Error(`${op}: at least one argument must be a Tensor (got two numbers)`);
}

export const add = (a: Tensor | number, b: Tensor | number): Tensor => binary("add", a, b);
export const sub = (a: Tensor | number, b: Tensor | number): Tensor => binary("sub", a, b);
export const mul = (a: Tensor | number, b: Tensor | number): Tensor => binary("mul", a, b);
export const div = (a: Tensor | number, b: Tensor | number): Tensor => binary("div", a, b);

// ---- reductions and shapes --------------------------------------------------------------------

function normDims(dims: number | number[] | undefined, shape: number[], op: string): number[] {
  if (dims === undefined || dims === null) return shape.map((_, i) => i);
  const list = typeof dims === "number" ? [dims] : dims;
  if (!Array.isArray(list)) throw new Error(`${op}: dims must be a number or an array of numbers`);
  if (list.length === 0) return shape.map((_, i) => i);
  const out = list.map((d) => normDim(d, shape.length, op, shape));
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated dim in ${shapeStr(list)}`);
  return out.sort((p, q) => p - q);
}

export function sum(x: Tensor, dims?: number | number[], keepdim = false): Tensor {
  checkTensor(x, "sum", "x");
  const N = native();
  const xShape = x.shape;
  const ds = normDims(dims, xShape, "sum");
  const kept = xShape.map((d, i) => (ds.includes(i) ? 1 : d));
  const y = N.sum(x.use("sum"), ds, keepdim);
  return finish("sum", y, [x], () => (dy) => {
    if (keepdim) return [N.expand(dy, xShape)];
    const r = N.reshape(dy, kept);
    const g = N.expand(r, xShape);
    r.dispose();
    return [g];
  });
}

export function mean(x: Tensor, dims?: number | number[], keepdim = false): Tensor {
  checkTensor(x, "mean", "x");
  const xShape = x.shape;
  const ds = normDims(dims, xShape, "mean");
  const n = ds.reduce((p, d) => p * xShape[d], 1);
  const s = sum(x, ds, keepdim);
  const m = affine(s, 1 / n, 0);
  s.dispose();
  return m;
}

/** sums x down to a shape x broadcasts from (the reverse of expand) */
export function sumTo(x: Tensor, shape: number[]): Tensor {
  checkTensor(x, "sumTo", "x");
  const N = native();
  const xShape = x.shape;
  const s = checkShape(shape, "sumTo");
  const b = broadcastShapes(s, xShape, "sumTo");
  if (!sameShape(b, xShape)) throw new Error(`sumTo: shape ${shapeStr(s)} does not broadcast to ${shapeStr(xShape)}`);
  const xh = x.use("sumTo");
  const r = reduceTo(N, xh, s);
  const y = r === xh ? N.clone(xh) : r;
  return finish("sumTo", y, [x], () => (dy) => [N.expand(dy, xShape)]);
}

export function reshape(x: Tensor, shape: number[]): Tensor {
  checkTensor(x, "reshape", "x");
  const N = native();
  const xShape = x.shape;
  if (!Array.isArray(shape)) throw new Error("reshape: shape must be an array");
  const free = shape.filter((d) => d === -1).length;
  if (free > 1) throw new Error(`reshape: at most one -1 in ${shapeStr(shape)}`);
  const known = shape.map((d) => (d === -1 ? 1 : d));
  checkShape(known, "reshape");
  const n = x.numel;
  const k = numelOf(known);
  let s = shape.slice();
  if (free) {
    if (k === 0 || n % k !== 0) throw new Error(`reshape: cannot reshape ${shapeStr(xShape)} to ${shapeStr(shape)}`);
    s = shape.map((d) => (d === -1 ? n / k : d));
  } else if (k !== n) {
    throw new Error(`reshape: cannot reshape ${shapeStr(xShape)} (${n} elements) to ${shapeStr(shape)} (${k} elements)`);
  }
  const y = N.reshape(x.use("reshape"), s);
  return finish("reshape", y, [x], () => (dy) => [N.reshape(dy, xShape)]);
}

export function expand(x: Tensor, shape: number[]): Tensor {
  checkTensor(x, "expand", "x");
  const N = native();
  const xShape = x.shape;
  const s = checkShape(shape, "expand");
  const b = broadcastShapes(xShape, s, "expand");
  if (!sameShape(b, s)) throw new Error(`expand: shape ${shapeStr(xShape)} cannot be expanded to ${shapeStr(s)}`);
  const y = N.expand(x.use("expand"), s);
  return finish("expand", y, [x], () => (dy) => [reduceTo(N, dy, xShape)]);
}

export function concat(xs: Tensor[], dim: number): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) throw new Error("concat: expects a non-empty array of tensors");
  xs.forEach((t, i) => checkTensor(t, "concat", `xs[${i}]`));
  const N = native();
  const shapes = xs.map((t) => t.shape);
  const s0 = shapes[0];
  const d = normDim(dim, s0.length, "concat", s0);
  shapes.forEach((s, i) => {
    if (s.length !== s0.length || s.some((v, j) => j !== d && v !== s0[j])) {
      throw new Error(`concat: xs[${i}] has shape ${shapeStr(s)}, which does not match xs[0] ${shapeStr(s0)} ` +
        `outside dim ${d}`);
    }
  });
  const y = N.concat(xs.map((t) => t.use("concat")), d);
  return finish("concat", y, xs, (c) => (dy) => {
    let off = 0;
    return shapes.map((s, i) => {
      const start = off;
      off += s[d];
      return c.needs[i] ? N.slice(dy, d, start, start + s[d]) : null;
    });
  });
}

export function slice(x: Tensor, dim: number, start: number, end: number): Tensor {
  checkTensor(x, "slice", "x");
  const N = native();
  const xShape = x.shape;
  const d = normDim(dim, xShape.length, "slice", xShape);
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > xShape[d]) {
    throw new Error(`slice: range [${start}, ${end}) is invalid for dim ${d} of shape ${shapeStr(xShape)}`);
  }
  const y = N.slice(x.use("slice"), d, start, end);
  return finish("slice", y, [x], () => (dy) => [N.sliceBackward(dy, xShape, d, start)]);
}

// ---- layers -----------------------------------------------------------------------------------

/**
 * 2-D convolution (NCHW input, KCRS weight). `leakySlope` (>= 0): leakyRelu(conv2d(...), leakySlope)
 * as one op, equal to the two (on CUDA the conv's epilogue applies it, so the conv's own output
 * is never stored); its backward takes LeakyReLU's gradient from the output, as leakyRelu's does.
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null = null, stride = 1, padding = 0,
  leakySlope: number | null = null): Tensor {
  checkConv2d(x, w, bias, stride, padding);
  const leaky = checkLeakySlope("conv2d", leakySlope);
  const y = native().conv2d(x.use("conv2d"), w.use("conv2d"), bias ? bias.use("conv2d") : null, stride, padding, leaky);
  return conv2dResult("conv2d", y, x, w, bias, stride, padding, leaky);
}

/** A conv's output and its per-channel statistics, for a batch norm in training after it. */
export interface WithMoments {
  y: Tensor;
  /**
   * (K, 2): per output channel the mean and the biased variance of y over batch and positions
   * (no gradient), for batchNorm's / batchNormGlu's `moments`. On CUDA the conv kernel's epilogue
   * sums them while the values are in registers, so the batch norm does not read y for them.
   */
  moments: Tensor;
}

/** conv2d and its output's moments (WithMoments); y is the same as conv2d's */
export function conv2dMoments(x: Tensor, w: Tensor, bias: Tensor | null = null, stride = 1, padding = 0): WithMoments {
  checkConv2d(x, w, bias, stride, padding);
  const [y, m] = native().conv2dMoments(x.use("conv2d"), w.use("conv2d"), bias ? bias.use("conv2d") : null, stride, padding);
  return withMoments(m, () => conv2dResult("conv2d", y, x, w, bias, stride, padding));
}

function withMoments(m: NativeTensor, result: () => Tensor): WithMoments {
  let y: Tensor;
  try {
    y = result();
  } catch (e) {
    m.dispose();
    throw e;
  }
  return { y, moments: new Tensor(m, "moments") };
}

function conv2dResult(op: string, y: NativeTensor, x: Tensor, w: Tensor, bias: Tensor | null, stride: number,
  padding: number, leaky: number | null = null): Tensor {
  const N = native();
  const xShape = x.shape;
  const wShape = w.shape;
  return convResult(op, y, x, w, bias, (dy, ws) => N.conv2dBackwardData(dy, ws, xShape, stride, padding),
    (dy, xs) => N.conv2dBackwardWeight(dy, xs, wShape, stride, padding),
    (into, dy, ws) => N.conv2dBackwardDataAdd(into, dy, ws, stride, padding), leaky);
}

/**
 * A conv's output as a tape node: gradients by backData(dy, w), backWeight(dy, x) and the bias's
 * sum; with backDataAdd, an input gradient the tape already holds takes the new one in place.
 * With leaky, y is LeakyReLU(conv): dy first goes through LeakyReLU's backward, read off y.
 */
function convResult(op: string, y: NativeTensor, x: Tensor, w: Tensor, bias: Tensor | null,
  backData: (dy: NativeTensor, w: NativeTensor) => NativeTensor,
  backWeight: (dy: NativeTensor, x: NativeTensor) => NativeTensor,
  backDataAdd?: (into: NativeTensor, dy: NativeTensor, w: NativeTensor) => void, leaky: number | null = null): Tensor {
  const N = native();
  const xh = x.use(op);
  const wh = w.use(op);
  return finish(op, y, [x, w, bias], (c) => {
    const [nx, nw, nb] = c.needs;
    const ws = nx ? c.share(wh) : null;
    const xs = nw ? c.share(xh) : null;
    const ys = leaky !== null ? c.share(y) : null;
    const dataGrad = (g: NativeTensor, held: NativeTensor | null | undefined): NativeTensor => {
      if (!held || !backDataAdd) return backData(g, ws!);
      backDataAdd(held, g, ws!);
      return held;
    };
    const grads = (g: NativeTensor, into?: (NativeTensor | null)[]): (NativeTensor | null)[] => [
      nx ? dataGrad(g, into?.[0]) : null,
      nw ? backWeight(g, xs!) : null,
      nb ? N.sum(g, [0, 2, 3], false) : null,
    ];
    if (!ys) return grads;
    return (dy, into) => {
      const g = N.unaryBackward("leaky_relu", dy, ys, ys, leaky!);
      try {
        return grads(g, into);
      } finally {
        g.dispose();
      }
    };
  });
}

function checkConv2d(x: Tensor, w: Tensor, bias: Tensor | null, stride: number, padding: number): void {
  checkTensor(x, "conv2d", "input");
  checkTensor(w, "conv2d", "weight");
  const xShape = x.shape;
  const wShape = w.shape;
  checkRank(x, [4], "conv2d", "input (N, C, H, W)");
  checkRank(w, [4], "conv2d", "weight (K, C, R, S)");
  checkInt(stride, "conv2d", "stride", 1);
  checkInt(padding, "conv2d", "padding", 0);
  if (xShape[1] !== wShape[1]) {
    throw new Error(`conv2d: input ${shapeStr(xShape)} has ${xShape[1]} channels but weight ${shapeStr(wShape)} ` +
      `expects ${wShape[1]}`);
  }
  if (bias !== null) {
    checkTensor(bias, "conv2d", "bias");
    if (bias.ndim !== 1 || bias.shape[0] !== wShape[0]) {
      throw new Error(`conv2d: bias shape ${shapeStr(bias.shape)} does not match weight ${shapeStr(wShape)} (needs [${wShape[0]}])`);
    }
  }
  const oh = Math.floor((xShape[2] + 2 * padding - wShape[2]) / stride) + 1;
  const ow = Math.floor((xShape[3] + 2 * padding - wShape[3]) / stride) + 1;
  if (oh < 1 || ow < 1) {
    throw new Error(`conv2d: kernel ${wShape[2]}x${wShape[3]} with padding ${padding} does not fit input ${shapeStr(xShape)}`);
  }
}

/**
 * conv2d(concat([x, code tiled over H x W], 1), w) with stride 1 and 'same' padding, computed
 * without the tiled input (the code channels become a per-position bias): x (N, Cx, H, W),
 * code (N, Kc), w (K, Cx + Kc, R, R) with R odd. Differentiable in x, w and code.
 */
export function conv2dConstChannels(x: Tensor, w: Tensor, code: Tensor): Tensor {
  const op = "conv2dConstChannels";
  checkTensor(x, op, "input");
  checkTensor(w, op, "weight");
  checkTensor(code, op, "code");
  checkRank(x, [4], op, "input (N, Cx, H, W)");
  checkRank(w, [4], op, "weight (K, Cx + Kc, R, R)");
  checkRank(code, [2], op, "code (N, Kc)");
  const [xShape, wShape, cShape] = [x.shape, w.shape, code.shape];
  if (cShape[0] !== xShape[0]) {
    throw new Error(`${op}: code ${shapeStr(cShape)} has ${cShape[0]} rows but input ${shapeStr(xShape)} has batch ${xShape[0]}`);
  }
  if (wShape[1] !== xShape[1] + cShape[1]) {
    throw new Error(`${op}: weight ${shapeStr(wShape)} expects ${wShape[1]} input channels, but input ${shapeStr(xShape)} ` +
      `and code ${shapeStr(cShape)} give ${xShape[1]} + ${cShape[1]}`);
  }
  if (wShape[2] !== wShape[3] || wShape[2] % 2 !== 1) {
    throw new Error(`${op}: needs an odd square kernel for 'same' padding, got weight ${shapeStr(wShape)}`);
  }
  const pad = (wShape[2] - 1) / 2;
  if (xShape[2] + 2 * pad < wShape[2] || xShape[3] + 2 * pad < wShape[3]) {
    throw new Error(`${op}: kernel ${wShape[2]}x${wShape[3]} does not fit input ${shapeStr(xShape)}`);
  }
  const N = native();
  const xh = x.use(op);
  const wh = w.use(op);
  const ch = code.use(op);
  const [y] = N.conv2dConstChannels(xh, wh, ch, null, false, false, false);
  return finish(op, y!, [x, w, code], (c) => {
    const [nx, nw, nc] = c.needs;
    // the backward reads all three (x for dw, w for dx and dcode, code for dw)
    const xs = c.share(xh), ws = c.share(wh), cs = c.share(ch);
    return (dy) => N.conv2dConstChannels(xs, ws, cs, dy, nx, nw, nc);
  });
}

/** y = x W^T + b for x (M, K), W (N, K), b (N) */
export function linear(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  checkTensor(x, "linear", "input");
  checkTensor(w, "linear", "weight");
  const N = native();
  checkRank(x, [2], "linear", "input (M, K)");
  checkRank(w, [2], "linear", "weight (N, K)");
  const xShape = x.shape;
  const wShape = w.shape;
  if (xShape[1] !== wShape[1]) {
    throw new Error(`linear: input ${shapeStr(xShape)} has ${xShape[1]} features but weight ${shapeStr(wShape)} ` +
      `expects ${wShape[1]}`);
  }
  if (bias !== null) {
    checkTensor(bias, "linear", "bias");
    if (bias.ndim !== 1 || bias.shape[0] !== wShape[0]) {
      throw new Error(`linear: bias shape ${shapeStr(bias.shape)} does not match weight ${shapeStr(wShape)} (needs [${wShape[0]}])`);
    }
  }
  const xh = x.use("linear");
  const wh = w.use("linear");
  const y = N.linear(xh, wh, bias ? bias.use("linear") : null);
  return finish("linear", y, [x, w, bias], (c) => {
    const [nx, nw, nb] = c.needs;
    const ws = nx ? c.share(wh) : null;
    const xs = nw ? c.share(xh) : null;
    return (dy) => [
      nx ? N.linearBackwardData(dy, ws!) : null,
      nw ? N.linearBackwardWeight(dy, xs!) : null,
      nb ? N.sum(dy, [0], false) : null,
    ];
  });
}

/** C = op(A) op(B) for 2-D tensors */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  checkTensor(a, "matmul", "a");
  checkTensor(b, "matmul", "b");
  const N = native();
  checkRank(a, [2], "matmul", "a");
  checkRank(b, [2], "matmul", "b");
  const as = a.shape;
  const bs = b.shape;
  const ka = transA ? as[0] : as[1];
  const kb = transB ? bs[1] : bs[0];
  if (ka !== kb) {
    throw new Error(`matmul: inner dimensions differ: a ${shapeStr(as)}${transA ? "^T" : ""} and b ${shapeStr(bs)}` +
      `${transB ? "^T" : ""}`);
  }
  const ah = a.use("matmul");
  const bh = b.use("matmul");
  const y = N.matmul(ah, bh, transA, transB);
  return finish("matmul", y, [a, b], (c) => {
    const [na, nb] = c.needs;
    const aS = nb ? c.share(ah) : null;
    const bS = na ? c.share(bh) : null;
    return (dy) => {
      let ga: NativeTensor | null = null;
      let gb: NativeTensor | null = null;
      if (!transA && !transB) {
        if (na) ga = N.matmul(dy, bS!, false, true);
        if (nb) gb = N.matmul(aS!, dy, true, false);
      } else if (transA && !transB) {
        if (na) ga = N.matmul(bS!, dy, false, true);
        if (nb) gb = N.matmul(aS!, dy, false, false);
      } else if (!transA && transB) {
        if (na) ga = N.matmul(dy, bS!, false, false);
        if (nb) gb = N.matmul(dy, aS!, true, false);
      } else {
        if (na) ga = N.matmul(bS!, dy, true, true);
        if (nb) gb = N.matmul(dy, aS!, true, true);
      }
      return [ga, gb];
    };
  });
}

function checkBatchNorm(op: string, x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
  training: boolean, momentum: number, eps: number): void {
  checkTensor(x, op, "input");
  checkTensor(weight, op, "weight");
  checkTensor(bias, op, "bias");
  checkTensor(runningMean, op, "runningMean");
  checkTensor(runningVar, op, "runningVar");
  checkRank(x, [2, 4], op, "input (N, C) or (N, C, H, W)");
  const xShape = x.shape;
  const C = xShape[1];
  for (const [name, t] of [["weight", weight], ["bias", bias], ["runningMean", runningMean], ["runningVar", runningVar]] as const) {
    if (t.ndim !== 1 || t.shape[0] !== C) {
      throw new Error(`${op}: ${name} has shape ${shapeStr(t.shape)} but input ${shapeStr(xShape)} has ${C} channels`);
    }
  }
  if (typeof momentum !== "number" || !(momentum >= 0 && momentum <= 1)) {
    throw new Error(`${op}: momentum must be a number in [0, 1], got ${String(momentum)}`);
  }
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps <= 0) {
    throw new Error(`${op}: eps must be a finite number > 0, got ${String(eps)}`);
  }
  if (training && numelOf(xShape) / Math.max(C, 1) <= 1) {
    throw new Error(`${op}: training needs more than one value per channel, got input ${shapeStr(xShape)}`);
  }
}

// The conv's moments handed to a batch norm: (C, 2), training only. Not checked against x (that
// would cost the pass they save): they must be x's own, as conv2dMoments gives them.
function momentsHandle(op: string, moments: Tensor | null, x: Tensor, training: boolean): NativeTensor | null {
  if (moments === null || moments === undefined) return null;
  checkTensor(moments, op, "moments");
  const C = x.shape[1];
  if (moments.ndim !== 2 || moments.shape[0] !== C || moments.shape[1] !== 2) {
    throw new Error(`${op}: moments must be (${C}, 2) (mean and variance per channel of input ${shapeStr(x.shape)}), got ${shapeStr(moments.shape)}`);
  }
  if (!training) throw new Error(`${op}: moments are batch statistics and apply in training only`);
  return moments.use(op);
}

/**
 * Batch norm of (N, C) or (N, C, H, W) over all dims but C. Training uses the batch statistics and
 * updates runningMean/runningVar in place (momentum, unbiased variance); eval uses the running ones.
 * `moments` (training only): x's own statistics from the conv that made it (conv2dMoments), so
 * they are not summed again. `residual` (x's shape): add(batchNorm(...), residual) in the same
 * pass (a residual block's sum); `leakySlope` (>= 0): leakyRelu(batchNorm(...), leakySlope) in
 * the same pass, and a backward that takes LeakyReLU's gradient in batch norm's own passes. Each
 * equal to the separate ops; not both at once.
 */
export function batchNorm(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
  training: boolean, momentum = 0.1, eps = 1e-5, moments: Tensor | null = null, residual: Tensor | null = null,
  leakySlope: number | null = null): Tensor {
  const op = "batchNorm";
  checkBatchNorm(op, x, weight, bias, runningMean, runningVar, training, momentum, eps);
  const mh = momentsHandle(op, moments, x, Boolean(training));
  const rh = residualHandle(op, residual, x);
  const leaky = checkLeakySlope(op, leakySlope);
  if (leaky !== null && rh) throw new Error(`${op}: a residual and a LeakyReLU together are not supported`);
  const N = native();
  const xh = x.use(op);
  const gh = weight.use(op);
  const [y, saveMean, saveInvstd] = N.batchNorm(xh, gh, bias.use(op), runningMean.use(op), runningVar.use(op),
    Boolean(training), momentum, eps, mh, rh, leaky);
  return finish(op, y, [x, weight, bias, residual], (c) => {
    const [nx, nw, nb, nr] = c.needs;
    const bnNeeded = nx || nw || nb;
    const xs = bnNeeded ? c.share(xh) : null;
    const gs = bnNeeded ? c.share(gh) : null;
    const ys = bnNeeded && leaky !== null ? c.share(y) : null;
    return (dy) => {
      // the residual's gradient is dy itself, as add's
      const grads = !xs ? [null, null, null]
        : neededGrads([nx, nw, nb], ys
          ? N.batchNormLeakyBackward(dy, ys, leaky!, xs, gs!, saveMean, saveInvstd, Boolean(training))
          : N.batchNormBackward(dy, xs, gs!, saveMean, saveInvstd, Boolean(training)));
      return [...grads, nr ? dy : null];
    };
  }, [saveMean, saveInvstd]);
}

function residualHandle(op: string, residual: Tensor | null, x: Tensor): NativeTensor | null {
  if (residual === null || residual === undefined) return null;
  checkTensor(residual, op, "residual");
  if (!sameShape(residual.shape, x.shape)) {
    throw new Error(`${op}: residual ${shapeStr(residual.shape)} does not match the input ${shapeStr(x.shape)}`);
  }
  if (residual.device !== x.device) {
    throw new Error(`${op}: residual is on ${residual.device}, the input on ${x.device}`);
  }
  return residual.use(op);
}

/**
 * conv2d(upsample2x(x), w, bias, 1, 1) for a 3x3 kernel (the generator's upsample blocks) as one
 * op: the native kernels work on x's four output phases (backend.h conv2d_up_*), so the
 * upsampled tensor is neither made nor kept for backward, and the CPU multiplies 2x2 kernels
 * (the 3x3 one's taps summed per phase) instead of 3x3 ones. Equal to the two ops to float rounding.
 */
export function conv2dUp(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  checkConv2dUp(x, w, bias);
  const y = native().conv2dUp(x.use("conv2dUp"), w.use("conv2dUp"), bias ? bias.use("conv2dUp") : null);
  return conv2dUpResult(y, x, w, bias);
}

/** conv2dUp and its output's moments (WithMoments) */
export function conv2dUpMoments(x: Tensor, w: Tensor, bias: Tensor | null = null): WithMoments {
  checkConv2dUp(x, w, bias);
  const [y, m] = native().conv2dUpMoments(x.use("conv2dUp"), w.use("conv2dUp"), bias ? bias.use("conv2dUp") : null);
  return withMoments(m, () => conv2dUpResult(y, x, w, bias));
}

function conv2dUpResult(y: NativeTensor, x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  const N = native();
  const xShape = x.shape;
  const wShape = w.shape;
  return convResult("conv2dUp", y, x, w, bias, (dy, ws) => N.conv2dUpBackwardData(dy, ws, xShape),
    (dy, xs) => N.conv2dUpBackwardWeight(dy, xs, wShape));
}

function checkConv2dUp(x: Tensor, w: Tensor, bias: Tensor | null): void {
  const op = "conv2dUp";
  checkTensor(x, op, "input");
  checkTensor(w, op, "weight");
  checkRank(x, [4], op, "input (N, C, H, W)");
  checkRank(w, [4], op, "weight (K, C, 3, 3)");
  const xShape = x.shape;
  const wShape = w.shape;
  if (wShape[2] !== 3 || wShape[3] !== 3) throw new Error(`${op}: weight ${shapeStr(wShape)} must be 3x3`);
  if (xShape[1] !== wShape[1]) {
    throw new Error(`${op}: input ${shapeStr(xShape)} has ${xShape[1]} channels but weight ${shapeStr(wShape)} expects ${wShape[1]}`);
  }
  if (bias !== null) {
    checkTensor(bias, op, "bias");
    if (bias.ndim !== 1 || bias.shape[0] !== wShape[0]) {
      throw new Error(`${op}: bias shape ${shapeStr(bias.shape)} does not match weight ${shapeStr(wShape)} (needs [${wShape[0]}])`);
    }
  }
}

/**
 * glu(batchNorm(x, ...), dim) as one op that keeps x but not the batch-norm output. Over the
 * channels (dim 1, the model's conv -> BN -> GLU blocks) it runs the native one-pass kernel: the
 * statistics, then one pass reading x and writing the GLU's output (backend.h bn_glu_forward),
 * where the two ops write and re-read the full-size normalised tensor; backward recomputes the
 * normalised values from x and the saved statistics and feeds their gradient to batch norm's
 * backward. Its values match the two ops to float rounding (the affine map is rounded from the
 * saved statistics). Over another dim it is the two ops, recomputing the batch-norm output in
 * backward. Either way it saves a full-size tensor per block for as long as the tape lives.
 * `moments` as batchNorm's.
 */
export function batchNormGlu(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
  training: boolean, momentum = 0.1, eps = 1e-5, dim = 1, moments: Tensor | null = null): Tensor {
  const op = "batchNormGlu";
  checkTensor(x, op, "input");
  checkBatchNorm(op, x, weight, bias, runningMean, runningVar, training, momentum, eps);
  const xShape = x.shape;
  const d = normDim(dim, xShape.length, op, xShape);
  if (xShape[d] % 2 !== 0) throw new Error(`${op}: dim ${d} of shape ${shapeStr(xShape)} has odd size ${xShape[d]}`);
  const mh = momentsHandle(op, moments, x, Boolean(training));
  return d === 1
    ? fusedBatchNormGlu(x, weight, bias, runningMean, runningVar, Boolean(training), momentum, eps, mh)
    : batchNormThenGlu(x, weight, bias, runningMean, runningVar, Boolean(training), momentum, eps, d, mh);
}

function fusedBatchNormGlu(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
  train: boolean, momentum: number, eps: number, moments: NativeTensor | null): Tensor {
  const op = "batchNormGlu";
  const N = native();
  const xh = x.use(op);
  const gh = weight.use(op);
  const bh = bias.use(op);
  const [y, saveMean, saveInvstd] = N.batchNormGlu(xh, gh, bh, runningMean.use(op), runningVar.use(op), train, momentum,
    eps, moments);
  return finish(op, y, [x, weight, bias], (c) => {
    // shared, not copied: backward refuses parameters written in place since (autograd.ts checkVersions)
    const xs = c.share(xh);
    const gs = c.share(gh);
    const bs = c.share(bh);
    return (dy) => {
      return neededGrads(c.needs, N.batchNormGluBackward(dy, xs, gs, bs, saveMean, saveInvstd, train));
    };
  }, [saveMean, saveInvstd]);
}

function batchNormThenGlu(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
  train: boolean, momentum: number, eps: number, d: number, moments: NativeTensor | null): Tensor {
  const op = "batchNormGlu";
  const N = native();
  const xh = x.use(op);
  const gh = weight.use(op);
  const bh = bias.use(op);
  const [yb, saveMean, saveInvstd] = N.batchNorm(xh, gh, bh, runningMean.use(op), runningVar.use(op), train, momentum,
    eps, moments);
  let y: NativeTensor;
  try {
    y = N.glu(yb, d);
  } catch (e) {
    for (const h of [yb, saveMean, saveInvstd]) h.dispose();
    throw e;
  }
  yb.dispose();
  return finish(op, y, [x, weight, bias], (c) => {
    const xs = c.share(xh);
    const own = (h: NativeTensor): NativeTensor => (c.saved.push(h), h);
    const gs = own(N.clone(gh));
    const bs = own(N.clone(bh));
    // training normalises by the batch statistics (the running ones only get updated: scratch
    // copies here); eval by the running ones, copied as they are now
    const rm = own(N.clone(runningMean.use(op)));
    const rv = own(N.clone(runningVar.use(op)));
    return (dy) => {
      const [yr, m, v] = N.batchNorm(xs, gs, bs, rm, rv, train, 0, eps);
      m.dispose();
      v.dispose();
      let dyb: NativeTensor;
      try {
        dyb = N.gluBackward(dy, yr, d);
      } finally {
        yr.dispose();
      }
      let grads: NativeTensor[];
      try {
        grads = N.batchNormBackward(dyb, xs, gs, saveMean, saveInvstd, train);
      } finally {
        dyb.dispose();
      }
      return neededGrads(c.needs, grads);
    };
  }, [saveMean, saveInvstd]);
}

/** GLU: first half of dim times sigmoid of the second half */
export function glu(x: Tensor, dim = 1): Tensor {
  checkTensor(x, "glu", "x");
  const N = native();
  const xShape = x.shape;
  const d = normDim(dim, xShape.length, "glu", xShape);
  if (xShape[d] % 2 !== 0) throw new Error(`glu: dim ${d} of shape ${shapeStr(xShape)} has odd size ${xShape[d]}`);
  const xh = x.use("glu");
  const y = N.glu(xh, d);
  return finish("glu", y, [x], (c) => {
    const xs = c.share(xh);
    return (dy) => [N.gluBackward(dy, xs, d)];
  });
}

/** nearest-neighbour 2x upsampling of (N, C, H, W) */
export function upsample2x(x: Tensor): Tensor {
  checkTensor(x, "upsample2x", "x");
  checkRank(x, [4], "upsample2x", "x (N, C, H, W)");
  const N = native();
  const y = N.upsample2x(x.use("upsample2x"));
  return finish("upsample2x", y, [x], () => (dy) => [N.upsample2xBackward(dy)]);
}

// ---- row-wise ops over (N, D) ----------------------------------------------------------------

/** x / max(||x||, eps) along dim 1 of (N, D) */
export function normalize(x: Tensor, eps = 1e-12): Tensor {
  checkTensor(x, "normalize", "x");
  checkRank(x, [2], "normalize", "x (N, D)");
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) {
    throw new Error(`normalize: eps must be a finite number >= 0, got ${String(eps)}`);
  }
  const N = native();
  const xh = x.use("normalize");
  const [y, norms] = N.l2normalize(xh, eps);
  return finish("normalize", y, [x], (c) => {
    const xs = c.share(xh);
    return (dy) => [N.l2normalizeBackward(dy, xs, norms, eps)];
  }, [norms]);
}

function softmaxOp(x: Tensor, isLog: boolean): Tensor {
  const op = isLog ? "logSoftmax" : "softmax";
  checkTensor(x, op, "x");
  checkRank(x, [2], op, "x (N, D)");
  const N = native();
  const y = N.softmax(x.use(op), isLog);
  return finish(op, y, [x], (c) => {
    const ys = c.share(y);
    return (dy) => [N.softmaxBackward(dy, ys, isLog)];
  });
}

export const softmax = (x: Tensor): Tensor => softmaxOp(x, false);
export const logSoftmax = (x: Tensor): Tensor => softmaxOp(x, true);

/** mean cross-entropy of logits (N, D) against integer class targets */
export function crossEntropy(logits: Tensor, targets: Int32Array | number[]): Tensor {
  checkTensor(logits, "crossEntropy", "logits");
  checkRank(logits, [2], "crossEntropy", "logits (N, D)");
  const [n, d] = logits.shape;
  if (!(targets instanceof Int32Array) && !Array.isArray(targets)) {
    throw new Error("crossEntropy: targets must be an Int32Array or an array of integers");
  }
  if (targets.length !== n) {
    throw new Error(`crossEntropy: ${targets.length} targets for logits ${shapeStr(logits.shape)} (needs ${n})`);
  }
  const tg = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = targets[i];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= d) {
      throw new Error(`crossEntropy: target ${i} is ${String(v)}, not an integer class in [0, ${d})`);
    }
    tg[i] = v;
  }
  const N = native();
  const [loss, probs] = N.crossEntropy(logits.use("crossEntropy"), tg);
  return finish("crossEntropy", loss, [logits], () => (dy) => [N.crossEntropyBackward(dy, probs, tg)], [probs]);
}

/** NT-Xent (SimCLR) over (2N, D): rows i and i + N are positives; mean over the 2N rows */
export function ntXent(features: Tensor, temperature: number): Tensor {
  checkTensor(features, "ntXent", "features");
  checkRank(features, [2], "ntXent", "features (2N, D)");
  const rows = features.shape[0];
  if (rows < 2 || rows % 2 !== 0) {
    throw new Error(`ntXent: features ${shapeStr(features.shape)} need an even number (>= 2) of rows`);
  }
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature <= 0) {
    throw new Error(`ntXent: temperature must be a finite number > 0, got ${String(temperature)}`);
  }
  const N = native();
  const xh = features.use("ntXent");
  const [loss, z, norms, p] = N.ntXent(xh, temperature);
  return finish("ntXent", loss, [features], (c) => {
    const xs = c.share(xh);
    return (dy) => [N.ntXentBackward(dy, xs, z, norms, p, temperature)];
  }, [z, norms, p]);
}

// ---- spatial transforms -----------------------------------------------------------------------

/** affine_grid(theta (N, 2, 3), size (N, C, H, W), align_corners=True) -> (N, H, W, 2) */
export function affineGrid(theta: Tensor, H: number, W: number): Tensor {
  checkTensor(theta, "affineGrid", "theta");
  const s = theta.shape;
  if (s.length !== 3 || s[1] !== 2 || s[2] !== 3) throw new Error(`affineGrid: theta must have shape [N, 2, 3], got ${shapeStr(s)}`);
  checkInt(H, "affineGrid", "H", 1);
  checkInt(W, "affineGrid", "W", 1);
  checkShape([s[0], H, W, 2], "affineGrid", "grid shape");
  const N = native();
  const y = N.affineGrid(theta.use("affineGrid"), H, W);
  return finish("affineGrid", y, [theta], () => (dy) => [N.affineGridBackward(dy)]);
}

/** grid_sample(x, grid, bilinear, zeros padding, align_corners=True) */
export function gridSample(x: Tensor, grid: Tensor): Tensor {
  checkTensor(x, "gridSample", "x");
  checkTensor(grid, "gridSample", "grid");
  checkRank(x, [4], "gridSample", "x (N, C, H, W)");
  const xs0 = x.shape;
  const gs0 = grid.shape;
  if (gs0.length !== 4 || gs0[3] !== 2 || gs0[0] !== xs0[0]) {
    throw new Error(`gridSample: grid must have shape [${xs0[0]}, OH, OW, 2] for x ${shapeStr(xs0)}, got ${shapeStr(gs0)}`);
  }
  const N = native();
  const xh = x.use("gridSample");
  const gh = grid.use("gridSample");
  const y = N.gridSample(xh, gh);
  return finish("gridSample", y, [x, grid], (c) => {
    const [nx, ng] = c.needs;
    const xs = c.share(xh);
    const gs = c.share(gh);
    return (dy) => {
      const [dx, dg] = N.gridSampleBackward(dy, xs, gs, nx, ng);
      return [nx ? dx : null, ng ? dg : null];
    };
  });
}
