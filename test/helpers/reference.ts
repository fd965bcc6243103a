// Float64 reference implementations of the ops (plain loops, PyTorch semantics), for the forward
// checks and the finite-difference gradient checks.

export interface RT {
  data: Float64Array;
  shape: number[];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

export function rt(data: ArrayLike<number>, shape: number[]): RT {
  if (data.length !== numel(shape)) throw new Error(`rt: ${data.length} values for shape [${shape}]`);
  return { data: Float64Array.from(data), shape: shape.slice() };
}

export function zerosRT(shape: number[]): RT {
  return { data: new Float64Array(numel(shape)), shape: shape.slice() };
}

/** Deterministic test data (mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** values rounded to float32, so the float64 reference sees exactly what the op sees */
  array(n: number, lo = -1, hi = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.fround(this.uniform(lo, hi));
    return a;
  }
  rt(shape: number[], lo = -1, hi = 1): RT {
    return { data: this.array(numel(shape), lo, hi), shape: shape.slice() };
  }
}

/** max |a - b| / max |b| (scale-free; 1e-30 floor for all-zero references) */
export function scaledMaxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`scaledMaxError: lengths ${a.length} and ${b.length}`);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= err)) err = d; // NaN propagates
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / Math.max(scale, 1e-30);
}

// ---- elementwise ----

export const unaryRef: Record<string, (x: number, alpha: number) => number> = {
  relu: (x) => (x > 0 ? x : 0),
  leaky_relu: (x, a) => (x > 0 ? x : a * x),
  tanh: (x) => Math.tanh(x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  neg: (x) => -x,
  square: (x) => x * x,
  sqrt: (x) => Math.sqrt(x),
  abs: (x) => Math.abs(x),
};

export function map(x: RT, f: (v: number) => number): RT {
  return { data: x.data.map(f), shape: x.shape.slice() };
}

export function affine(x: RT, scale: number, shift: number): RT {
  return map(x, (v) => scale * v + shift);
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`broadcast: [${a}] vs [${b}]`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** index of x (shape xs) for an output multi-index under broadcasting */
function bIndex(idx: number[], xs: number[]): number {
  const off = idx.length - xs.length;
  let k = 0;
  for (let i = 0; i < xs.length; i++) k = k * xs[i] + (xs[i] === 1 ? 0 : idx[off + i]);
  return k;
}

function forEachIndex(shape: number[], fn: (idx: number[], flat: number) => void): void {
  const n = numel(shape);
  const idx = new Array(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    fn(idx, f);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

export function binary(a: RT, b: RT, f: (x: number, y: number) => number): RT {
  const shape = broadcastShape(a.shape, b.shape);
  const out = zerosRT(shape);
  forEachIndex(shape, (idx, k) => {
    out.data[k] = f(a.data[bIndex(idx, a.shape)], b.data[bIndex(idx, b.shape)]);
  });
  return out;
}

export const add = (a: RT, b: RT): RT => binary(a, b, (x, y) => x + y);
export const sub = (a: RT, b: RT): RT => binary(a, b, (x, y) => x - y);
export const mul = (a: RT, b: RT): RT => binary(a, b, (x, y) => x * y);
export const div = (a: RT, b: RT): RT => binary(a, b, (x, y) => x / y);

export function expand(x: RT, shape: number[]): RT {
  return binary(x, zerosRT(shape), (v) => v);
}

export function sumTo(x: RT, shape: number[]): RT {
  const out = zerosRT(shape);
  forEachIndex(x.shape, (idx, k) => {
    out.data[bIndex(idx, shape)] += x.data[k];
  });
  return out;
}

// ---- reductions ----

export function sum(x: RT, dims?: number[], keepdim = false): RT {
  const nd = x.shape.length;
  const ds = dims === undefined || dims.length === 0 ? x.shape.map((_, i) => i) : dims.map((d) => (d < 0 ? d + nd : d));
  const kept = x.shape.map((d, i) => (ds.includes(i) ? 1 : d));
  const r = sumTo(x, kept);
  return { data: r.data, shape: keepdim ? kept : x.shape.filter((_, i) => !ds.includes(i)) };
}

export function mean(x: RT, dims?: number[], keepdim = false): RT {
  const s = sum(x, dims, keepdim);
  const n = numel(x.shape) / numel(s.shape);
  return map(s, (v) => v / n);
}

// ---- shapes ----

export function concat(xs: RT[], dim: number): RT {
  const s0 = xs[0].shape;
  const outer = numel(s0.slice(0, dim));
  const inner = numel(s0.slice(dim + 1));
  const total = xs.reduce((p, x) => p + x.shape[dim], 0);
  const shape = s0.slice();
  shape[dim] = total;
  const out = zerosRT(shape);
  let off = 0;
  for (const x of xs) {
    const len = x.shape[dim];
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < len * inner; j++) out.data[(o * total + off) * inner + j] = x.data[o * len * inner + j];
    }
    off += len;
  }
  return out;
}

export function slice(x: RT, dim: number, start: number, end: number): RT {
  const outer = numel(x.shape.slice(0, dim));
  const inner = numel(x.shape.slice(dim + 1));
  const size = x.shape[dim];
  const len = end - start;
  const shape = x.shape.slice();
  shape[dim] = len;
  const out = zerosRT(shape);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < len * inner; j++) out.data[o * len * inner + j] = x.data[(o * size + start) * inner + j];
  }
  return out;
}

export function upsample2x(x: RT): RT {
  const [n, c, h, w] = x.shape;
  const out = zerosRT([n, c, 2 * h, 2 * w]);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < 2 * h; i++) {
      for (let j = 0; j < 2 * w; j++) {
        out.data[(p * 2 * h + i) * 2 * w + j] = x.data[(p * h + (i >> 1)) * w + (j >> 1)];
      }
    }
  }
  return out;
}

// ---- layers ----

export function conv2d(x: RT, w: RT, b: RT | null, stride: number, pad: number): RT {
  const [N, C, H, W] = x.shape;
  const [K, , R, S] = w.shape;
  const OH = Math.floor((H + 2 * pad - R) / stride) + 1;
  const OW = Math.floor((W + 2 * pad - S) / stride) + 1;
  const out = zerosRT([N, K, OH, OW]);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          let acc = b ? b.data[k] : 0;
          for (let c = 0; c < C; c++) {
            for (let r = 0; r < R; r++) {
              const ih = oh * stride - pad + r;
              if (ih < 0 || ih >= H) continue;
              for (let s = 0; s < S; s++) {
                const iw = ow * stride - pad + s;
                if (iw < 0 || iw >= W) continue;
                acc += x.data[((n * C + c) * H + ih) * W + iw] * w.data[((k * C + c) * R + r) * S + s];
              }
            }
          }
          out.data[((n * K + k) * OH + oh) * OW + ow] = acc;
        }
      }
    }
  }
  return out;
}

export function matmul(a: RT, b: RT, ta = false, tb = false): RT {
  const M = ta ? a.shape[1] : a.shape[0];
  const K = ta ? a.shape[0] : a.shape[1];
  const Nn = tb ? b.shape[0] : b.shape[1];
  const out = zerosRT([M, Nn]);
  const A = (i: number, k: number): number => (ta ? a.data[k * a.shape[1] + i] : a.data[i * a.shape[1] + k]);
  const B = (k: number, j: number): number => (tb ? b.data[j * b.shape[1] + k] : b.data[k * b.shape[1] + j]);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < Nn; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += A(i, k) * B(k, j);
      out.data[i * Nn + j] = acc;
    }
  }
  return out;
}

export function linear(x: RT, w: RT, b: RT | null): RT {
  const y = matmul(x, w, false, true);
  return b ? add(y, b) : y;
}

export interface BatchNormRef {
  y: RT;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

export function batchNorm(x: RT, g: RT, b: RT, rm: RT, rv: RT, training: boolean, momentum = 0.1, eps = 1e-5): BatchNormRef {
  const [N, C] = x.shape;
  const HW = numel(x.shape.slice(2));
  const m = N * HW;
  const y = zerosRT(x.shape);
  const newMean = Float64Array.from(rm.data);
  const newVar = Float64Array.from(rv.data);
  for (let c = 0; c < C; c++) {
    let mu: number;
    let v: number;
    if (training) {
      let s = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) s += x.data[(n * C + c) * HW + i];
      mu = s / m;
      let q = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) q += (x.data[(n * C + c) * HW + i] - mu) ** 2;
      v = q / m;
      newMean[c] = (1 - momentum) * rm.data[c] + momentum * mu;
      newVar[c] = (1 - momentum) * rv.data[c] + momentum * (q / (m - 1));
    } else {
      mu = rm.data[c];
      v = rv.data[c];
    }
    const inv = 1 / Math.sqrt(v + eps);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < HW; i++) {
        const k = (n * C + c) * HW + i;
        y.data[k] = (x.data[k] - mu) * inv * g.data[c] + b.data[c];
      }
    }
  }
  return { y, runningMean: newMean, runningVar: newVar };
}

export function glu(x: RT, dim: number): RT {
  const half = x.shape[dim] / 2;
  const a = slice(x, dim, 0, half);
  const b = slice(x, dim, half, 2 * half);
  return mul(a, map(b, (v) => 1 / (1 + Math.exp(-v))));
}

// ---- rows of (N, D) ----

export function normalize(x: RT, eps = 1e-12): RT {
  const [N, D] = x.shape;
  const out = zerosRT(x.shape);
  for (let i = 0; i < N; i++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += x.data[i * D + j] ** 2;
    const n = Math.max(Math.sqrt(s), eps);
    for (let j = 0; j < D; j++) out.data[i * D + j] = x.data[i * D + j] / n;
  }
  return out;
}

export function logSoftmax(x: RT): RT {
  const [N, D] = x.shape;
  const out = zerosRT(x.shape);
  for (let i = 0; i < N; i++) {
    let mx = -Infinity;
    for (let j = 0; j < D; j++) mx = Math.max(mx, x.data[i * D + j]);
    let s = 0;
    for (let j = 0; j < D; j++) s += Math.exp(x.data[i * D + j] - mx);
    const lse = mx + Math.log(s);
    for (let j = 0; j < D; j++) out.data[i * D + j] = x.data[i * D + j] - lse;
  }
  return out;
}

export function softmax(x: RT): RT {
  return map(logSoftmax(x), Math.exp);
}

export function crossEntropy(logits: RT, targets: ArrayLike<number>): RT {
  const [N, D] = logits.shape;
  const ls = logSoftmax(logits);
  let s = 0;
  for (let i = 0; i < N; i++) s -= ls.data[i * D + targets[i]];
  return { data: Float64Array.of(s / N), shape: [] };
}

/** SimCLR NT-Xent: cosine similarities / T, positives i <-> i + N, mean over the 2N rows */
export function ntXent(x: RT, temperature: number): RT {
  const [N2, D] = x.shape;
  const half = N2 / 2;
  const z = normalize(x);
  let loss = 0;
  for (let i = 0; i < N2; i++) {
    const sims: number[] = [];
    let pos = 0;
    for (let j = 0; j < N2; j++) {
      if (j === i) continue;
      let d = 0;
      for (let k = 0; k < D; k++) d += z.data[i * D + k] * z.data[j * D + k];
      const s = d / temperature;
      sims.push(s);
      if (j === (i + half) % N2) pos = s;
    }
    const mx = Math.max(...sims);
    const lse = mx + Math.log(sims.reduce((p, s) => p + Math.exp(s - mx), 0));
    loss += lse - pos;
  }
  return { data: Float64Array.of(loss / N2), shape: [] };
}

// ---- spatial transforms (align_corners = True) ----

export function affineGrid(theta: RT, H: number, W: number): RT {
  const N = theta.shape[0];
  const out = zerosRT([N, H, W, 2]);
  const lin = (i: number, n: number): number => (n === 1 ? -1 : -1 + (2 * i) / (n - 1));
  for (let n = 0; n < N; n++) {
    const t = theta.data.subarray(n * 6, n * 6 + 6);
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const x = lin(w, W);
        const y = lin(h, H);
        const k = ((n * H + h) * W + w) * 2;
        out.data[k] = t[0] * x + t[1] * y + t[2];
        out.data[k + 1] = t[3] * x + t[4] * y + t[5];
      }
    }
  }
  return out;
}

export function gridSample(x: RT, grid: RT): RT {
  const [N, C, H, W] = x.shape;
  const [, OH, OW] = grid.shape;
  const out = zerosRT([N, C, OH, OW]);
  const at = (n: number, c: number, i: number, j: number): number =>
    i < 0 || i >= H || j < 0 || j >= W ? 0 : x.data[((n * C + c) * H + i) * W + j];
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const k = ((n * OH + oh) * OW + ow) * 2;
        const ix = ((grid.data[k] + 1) / 2) * (W - 1);
        const iy = ((grid.data[k + 1] + 1) / 2) * (H - 1);
        const x0 = Math.floor(ix);
        const y0 = Math.floor(iy);
        const fx = ix - x0;
        const fy = iy - y0;
        for (let c = 0; c < C; c++) {
          out.data[((n * C + c) * OH + oh) * OW + ow] =
            at(n, c, y0, x0) * (1 - fx) * (1 - fy) + at(n, c, y0, x0 + 1) * fx * (1 - fy) +
            at(n, c, y0 + 1, x0) * (1 - fx) * fy + at(n, c, y0 + 1, x0 + 1) * fx * fy;
        }
      }
    }
  }
  return out;
}
