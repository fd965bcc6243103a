// In-place initialisers (torch.nn.init). Draws come from the Generator passed, or the
// module-level default one; orthogonal_ is computed on the host in float64.
import { native, NativeTensor } from "../native";
import { defaultGenerator, Generator, shapeStr, Tensor } from "../tensor";

function target(t: Tensor, op: string): NativeTensor {
  if (!(t instanceof Tensor)) throw new Error(`${op}: expects a Tensor`);
  return t.use(op);
}

function finite(v: number, op: string, what: string): void {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${op}: ${what} must be a finite number, got ${String(v)}`);
}

/** Copies a fresh handle into t and disposes it. */
function assign(t: Tensor, src: NativeTensor, op: string): Tensor {
  try {
    native().copy(target(t, op), src);
    t._version++;
  } finally {
    src.dispose();
  }
  return t;
}

export function normal_(t: Tensor, gen: Generator = defaultGenerator(), mean = 0, std = 1): Tensor {
  const op = "init.normal_";
  finite(mean, op, "mean");
  finite(std, op, "std");
  if (std < 0) throw new Error(`${op}: std must be >= 0, got ${std}`);
  target(t, op);
  return assign(t, native().randn(t.shape, t.device, gen.handle, mean, std), op);
}

export function uniform_(t: Tensor, gen: Generator = defaultGenerator(), lo = 0, hi = 1): Tensor {
  const op = "init.uniform_";
  finite(lo, op, "lo");
  finite(hi, op, "hi");
  if (hi < lo) throw new Error(`${op}: hi (${hi}) must be >= lo (${lo})`);
  target(t, op);
  return assign(t, native().rand(t.shape, t.device, gen.handle, lo, hi), op);
}

export function constant_(t: Tensor, value: number): Tensor {
  if (typeof value !== "number") throw new Error(`init.constant_: value must be a number, got ${String(value)}`);
  native().fill(target(t, "init.constant_"), value);
  t._version++;
  return t;
}

export const zeros_ = (t: Tensor): Tensor => constant_(t, 0);
export const ones_ = (t: Tensor): Tensor => constant_(t, 1);

/**
 * Q of the reduced QR of a (m x n, m >= n, row-major) with a positive diagonal in R: the Q of
 * torch.nn.init.orthogonal_ after its sign correction. Computed natively (Gram-Schmidt on
 * columns, multithreaded): the official model's largest weights are 512 x 8192.
 */
export function orthonormalColumns(a: Float64Array, m: number, n: number): Float64Array {
  const A = Float64Array.from(a);
  native().orthonormalColumns(A, m, n);
  return A;
}

/**
 * torch.nn.init.orthogonal_: t viewed as rows x (numel / rows) gets orthonormal rows (rows <= cols)
 * or columns (rows > cols) from the QR of a standard normal matrix, times gain.
 */
export function orthogonal_(t: Tensor, gen: Generator = defaultGenerator(), gain = 1): Tensor {
  const op = "init.orthogonal_";
  target(t, op);
  finite(gain, op, "gain");
  const shape = t.shape;
  if (shape.length < 2) throw new Error(`${op}: needs a tensor with 2 or more dims, got ${shapeStr(shape)}`);
  const rows = shape[0];
  const cols = t.numel / rows;
  if (rows === 0 || cols === 0) return t;
  const g = gen.normal(rows * cols); // row-major (rows, cols), as tensor.new(rows, cols).normal_()
  let out: Float64Array;
  if (rows < cols) {
    // the Q of the transpose's QR, transposed back: the rows orthonormalised in order
    native().orthonormalRows(g, rows, cols);
    out = g;
  } else {
    out = orthonormalColumns(g, rows, cols);
  }
  const f = new Float32Array(out.length);
  for (let i = 0; i < out.length; i++) f[i] = out[i] * gain;
  return assign(t, native().fromFloat32(f, shape, t.device), op);
}

/** U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv2d/Linear weights and biases */
export function defaultUniform_(t: Tensor, fanIn: number, gen: Generator = defaultGenerator()): Tensor {
  const b = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return uniform_(t, gen, -b, b);
}
