// Modules (names, state dicts, train/eval), layer init, orthogonal init and Adam.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { BatchNorm1d, BatchNorm2d, Conv2d, GLU, Linear, Module, Sequential } from "../lib/nn";
import { normal_, orthogonal_, orthonormalColumns } from "../lib/nn/init";
import * as ops from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { OpProfile } from "../lib/profile";
import { Generator, Tensor, tidy } from "../lib/tensor";
import * as R from "./helpers/reference";
import { Rng, scaledMaxError } from "./helpers/reference";

class Net extends Module {
  conv: Conv2d;
  bn: BatchNorm2d;
  fc: Sequential;
  constructor(gen: Generator) {
    super();
    this.conv = this.registerModule("conv", new Conv2d(3, 4, 3, { padding: 1, generator: gen }));
    this.bn = this.registerModule("bn", new BatchNorm2d(4));
    this.fc = this.registerModule("fc", new Sequential(new Linear(16, 6, { generator: gen }), new BatchNorm1d(6), new GLU()));
    this.registerBuffer("scale", Tensor.ones([1]));
  }
  forward(x: Tensor): Tensor {
    const h = ops.glu(this.bn.forward(this.conv.forward(x)), 1); // (N, 2, 2, 2) -> 8
    const f = ops.reshape(h, [x.shape[0], -1]);
    return this.fc.forward(ops.concat([f, f], 1));
  }
}

test("named parameters, buffers and state dict use PyTorch's names and order", () => {
  const net = new Net(new Generator(1));
  assert.deepEqual(net.namedParameters().map(([n]) => n), [
    "conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias",
  ]);
  assert.deepEqual(net.namedBuffers().map(([n]) => n), [
    "scale", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
    "fc.1.running_mean", "fc.1.running_var", "fc.1.num_batches_tracked",
  ]);
  assert.deepEqual([...net.stateDict().keys()], [
    "scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
    "bn.num_batches_tracked", "fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias", "fc.1.running_mean",
    "fc.1.running_var", "fc.1.num_batches_tracked",
  ]);
  assert.deepEqual(net.stateDict().get("bn.num_batches_tracked")!.shape, []);
  assert.ok(net.parameters().every((p) => p.requiresGrad && p.isLeaf));
  const noBias = new Conv2d(2, 2, 3, { bias: false });
  assert.deepEqual(noBias.namedParameters().map(([n]) => n), ["weight"]);
  assert.throws(() => net.registerParameter("conv", Tensor.zeros([1])), /'conv' is already registered/);
  assert.throws(() => net.registerBuffer("a.b", Tensor.zeros([1])), /without '\.'/);
  net.dispose();
  noBias.dispose();
});

test("parameters made inside tidy survive it", () => {
  const lin = tidy(() => new Linear(3, 2));
  assert.equal(lin.weight.disposed, false);
  lin.dispose();
});

test("state dict round trip", () => {
  const a = new Net(new Generator(1));
  const b = new Net(new Generator(2));
  const x = Tensor.randn([3, 3, 2, 2], new Generator(3));
  tidy(() => a.forward(x)); // moves a's running stats away from the defaults
  const res = b.loadStateDict(a.stateDict());
  assert.deepEqual(res, { missingKeys: [], unexpectedKeys: [] });
  for (const [k, t] of a.stateDict()) assert.deepEqual(b.stateDict().get(k)!.toArray(), t.toArray(), k);
  a.eval();
  b.eval();
  tidy(() => assert.deepEqual(b.forward(x).toArray(), a.forward(x).toArray()));
  // non-strict load of a partial dict
  const c = new Linear(16, 6);
  const part = new Map([["weight", a.fc.get(0).stateDict().get("weight")!]]);
  assert.deepEqual(c.loadStateDict(part, { strict: false }), { missingKeys: ["bias"], unexpectedKeys: [] });
  assert.deepEqual(c.weight.toArray(), a.fc.get(0).stateDict().get("weight")!.toArray());
  for (const m of [a, b, c]) m.dispose();
  x.dispose();
});

test("BatchNorm: training uses batch stats and updates running stats; eval uses running stats", () => {
  const rng = new Rng(5);
  const bn = new BatchNorm2d(3, { momentum: 0.2 });
  normal_(bn.weight, new Generator(4), 1, 0.02);
  const xr = rng.rt([4, 3, 2, 2], -1, 3);
  const g = R.rt(bn.weight.toArray(), [3]);
  const b = R.zerosRT([3]);
  tidy(() => {
    const x = Tensor.fromArray(xr.data, xr.shape);
    const ref = R.batchNorm(xr, g, b, R.zerosRT([3]), R.rt([1, 1, 1], [3]), true, 0.2);
    assert.ok(scaledMaxError(bn.forward(x).toArray(), ref.y.data) < 1e-4);
    assert.ok(scaledMaxError(bn.runningMean.toArray(), ref.runningMean) < 1e-5);
    assert.ok(scaledMaxError(bn.runningVar.toArray(), ref.runningVar) < 1e-5);
    assert.equal(bn.numBatchesTracked.item(), 1);
    bn.forward(x);
    assert.equal(bn.numBatchesTracked.item(), 2);
    bn.eval();
    assert.equal(bn.training, false);
    const rm = bn.runningMean.toArray();
    const rv = bn.runningVar.toArray();
    const ev = R.batchNorm(xr, g, b, R.rt(rm, [3]), R.rt(rv, [3]), false);
    assert.ok(scaledMaxError(bn.forward(x).toArray(), ev.y.data) < 1e-4);
    assert.deepEqual(bn.runningMean.toArray(), rm);
    assert.deepEqual(bn.runningVar.toArray(), rv);
    assert.equal(bn.numBatchesTracked.item(), 2);
  });
  bn.dispose();
});

test("BatchNorm's batch count: no native call per batch, exact whenever read (getter, stateDict, buffers, loadStateDict)", () => {
  const net = new Net(new Generator(0));
  const x = Tensor.fromArray(Array.from({ length: 2 * 3 * 4 * 4 }, (_, i) => Math.cos(i)), [2, 3, 4, 4]);
  tidy(() => {
    const prof = new OpProfile("cpu");
    prof.run(() => tidy(() => {
      for (let i = 0; i < 5; i++) net.bn.forward(net.conv.forward(x));
    }));
    assert.equal(prof.ops().find((t) => t.op === "affineInPlace"), undefined, "counted in JS, not with a native call per batch");
    // every way of reading it sees the count
    assert.equal(net.stateDict().get("bn.num_batches_tracked")!.item(), 5);
    net.bn.forward(net.conv.forward(x));
    assert.equal(new Map(net.namedBuffers()).get("bn.num_batches_tracked")!.item(), 6);
    net.bn.forward(net.conv.forward(x));
    assert.equal(net.bn.numBatchesTracked.item(), 7);
    // eval batches are not counted
    net.eval();
    net.bn.forward(net.conv.forward(x));
    assert.equal(net.bn.numBatchesTracked.item(), 7);
    // a loaded count replaces the pending ones; counting goes on from it
    net.train();
    net.bn.forward(net.conv.forward(x));
    const sd = new Map([...net.stateDict()].map(([k, t]) => [k, Tensor.fromArray(t.toArray(), t.shape)]));
    sd.set("bn.num_batches_tracked", Tensor.full([], 100));
    net.bn.forward(net.conv.forward(x));
    net.loadStateDict(sd);
    assert.equal(net.bn.numBatchesTracked.item(), 100);
    net.bn.forward(net.conv.forward(x));
    assert.equal(net.stateDict().get("bn.num_batches_tracked")!.item(), 101);
  });
  x.dispose();
  net.dispose();
});

test("train/eval recurse through children", () => {
  const net = new Net(new Generator(0));
  net.eval();
  assert.ok(net.namedModules().every(([, m]) => !m.training));
  net.train();
  assert.ok(net.namedModules().every(([, m]) => m.training));
  assert.deepEqual(net.namedModules().map(([n]) => n), ["", "conv", "bn", "fc", "fc.0", "fc.1", "fc.2"]);
  net.dispose();
});

test("Conv2d/Linear default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), reproducible", () => {
  const c1 = new Conv2d(3, 8, 3, { generator: new Generator(11) });
  const c2 = new Conv2d(3, 8, 3, { generator: new Generator(11) });
  const bound = 1 / Math.sqrt(27);
  const w = c1.weight.toArray();
  assert.ok(w.every((v) => Math.abs(v) <= bound + 1e-7));
  assert.ok(Math.max(...w) > 0.8 * bound && Math.min(...w) < -0.8 * bound, "spread over the range");
  assert.ok(c1.bias!.toArray().every((v) => Math.abs(v) <= bound + 1e-7));
  assert.deepEqual(c2.weight.toArray(), w);
  assert.deepEqual(c2.bias!.toArray(), c1.bias!.toArray());
  const l = new Linear(10, 4, { generator: new Generator(1) });
  assert.ok(l.weight.toArray().every((v) => Math.abs(v) <= 1 / Math.sqrt(10) + 1e-7));
  for (const m of [c1, c2, l]) m.dispose();
});

function gram(w: Float32Array, rows: number, cols: number, byRows: boolean): number[][] {
  const n = byRows ? rows : cols;
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    out.push([]);
    for (let j = 0; j < n; j++) {
      let s = 0;
      const len = byRows ? cols : rows;
      for (let k = 0; k < len; k++) {
        s += byRows ? w[i * cols + k] * w[j * cols + k] : w[k * cols + i] * w[k * cols + j];
      }
      out[i].push(s);
    }
  }
  return out;
}

function assertIdentity(m: number[][], scale: number, what: string): void {
  m.forEach((row, i) => row.forEach((v, j) => {
    assert.ok(Math.abs(v - (i === j ? scale : 0)) < 1e-5, `${what}[${i}][${j}] = ${v}`);
  }));
}

test("orthogonal_: W W^T = I for rows <= cols, W^T W = I for rows > cols, gain, sign convention", () => {
  tidy(() => {
    const wide = orthogonal_(Tensor.zeros([3, 8]), new Generator(1));
    assertIdentity(gram(wide.toArray(), 3, 8, true), 1, "W W^T");
    const tall = orthogonal_(Tensor.zeros([8, 3]), new Generator(2));
    assertIdentity(gram(tall.toArray(), 8, 3, false), 1, "W^T W");
    const conv = orthogonal_(Tensor.zeros([4, 2, 3, 3]), new Generator(3), 2);
    assertIdentity(gram(conv.toArray(), 4, 18, true), 4, "conv W W^T (gain 2)");
    const sq = orthogonal_(Tensor.zeros([5, 5]), new Generator(4));
    assertIdentity(gram(sq.toArray(), 5, 5, true), 1, "square");
    // sign convention (torch): Q^T A = R has a positive diagonal, for the same normal draws
    const gen = new Generator(9);
    const st = gen.getState();
    const q = orthogonal_(Tensor.zeros([6, 4]), gen).toArray();
    gen.setState(st);
    const a = gen.normal(24);
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        let r = 0;
        for (let k = 0; k < 6; k++) r += q[k * 4 + i] * a[k * 4 + j];
        if (j < i) assert.ok(Math.abs(r) < 1e-5, `R[${i}][${j}] = ${r} below the diagonal`);
        if (j === i) assert.ok(r > 0, `R[${i}][${i}] = ${r} not positive`);
      }
    }
  });
  // the QR itself, in float64
  const rng = new Rng(3);
  const A = Float64Array.from({ length: 12 }, () => rng.normal());
  const Q = orthonormalColumns(A, 4, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += Q[k * 3 + i] * Q[k * 3 + j];
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12);
    }
  }
});

test("Adam matches a float64 Adam over 3 steps (with weight decay); skips params without grad", () => {
  const rng = new Rng(8);
  const p0 = rng.array(6, -1, 1);
  const c = rng.array(6, 0.5, 2);
  const lr = 0.05;
  const [b1, b2] = [0.5, 0.999];
  const eps = 1e-8;
  const wd = 0.01;
  const p = Tensor.fromArray(p0, [2, 3], { requiresGrad: true });
  const frozen = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
  const ct = Tensor.fromArray(c, [2, 3]);
  const opt = new Adam([p, frozen], { lr, betas: [b1, b2], eps, weightDecay: wd });
  const m = new Float64Array(6);
  const v = new Float64Array(6);
  for (let t = 1; t <= 3; t++) {
    const cur = Float64Array.from(p.toArray());
    tidy(() => ops.sum(ops.mul(ops.square(p), ct)).backward()); // grad = 2 c p
    opt.step();
    opt.zeroGrad();
    assert.equal(p.grad, null);
    const want = new Float64Array(6);
    for (let i = 0; i < 6; i++) {
      const g = 2 * c[i] * cur[i] + wd * cur[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      want[i] = cur[i] - (lr / (1 - b1 ** t)) * (m[i] / denom);
    }
    const got = p.toArray();
    for (let i = 0; i < 6; i++) assert.ok(Math.abs(got[i] - want[i]) < 2e-6, `step ${t} param ${i}: ${got[i]} vs ${want[i]}`);
  }
  assert.deepEqual(Array.from(frozen.toArray()), [1, 2]);
  const sd = opt.stateDict();
  assert.deepEqual([...sd.state.keys()], [0]);
  const s0 = sd.state.get(0)!;
  assert.equal(s0.step, 3);
  assert.ok(scaledMaxError(s0.exp_avg.toArray(), m) < 1e-5);
  // 1 - beta2 rounded in float32 is 1.3e-5 off 1e-3 (PyTorch passes it as a double), hence 5e-5
  assert.ok(scaledMaxError(s0.exp_avg_sq.toArray(), v) < 5e-5);
  // restoring the state into a new optimizer continues identically
  const q = Tensor.fromArray(p.toArray(), [2, 3], { requiresGrad: true });
  const q2 = Tensor.zeros([2], { requiresGrad: true });
  const opt2 = new Adam([q, q2], { lr: 1, betas: [b1, b2], eps, weightDecay: wd });
  opt2.loadStateDict(sd);
  assert.equal(opt2.lr, lr);
  for (const [t, o] of [[p, opt], [q, opt2]] as const) {
    tidy(() => ops.sum(ops.mul(ops.square(t), ct)).backward());
    o.step();
    o.zeroGrad();
  }
  assert.deepEqual(q.toArray(), p.toArray());
  opt.dispose();
  opt2.dispose();
  for (const t of [p, frozen, ct, q, q2]) t.dispose();
});
