// Tensor basics, Generator determinism, tidy/keep/noGrad scoping and the tape's lifetime rules.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { native } from "../lib/native";
import * as ops from "../lib/ops";
import { Generator, liveTensors, noGrad, Tensor, tidy } from "../lib/tensor";
import * as nn from "../lib/nn";
import * as init from "../lib/nn/init";
import { Adam } from "../lib/optim/adam";

test("fromArray, toArray, shape getters, item", () => {
  const t = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.ndim, 2);
  assert.equal(t.numel, 6);
  assert.equal(t.device, "cpu");
  assert.deepEqual(Array.from(t.toArray()), [1, 2, 3, 4, 5, 6]);
  const a = t.toArray();
  a[0] = 99; // a copy
  assert.equal(t.toArray()[0], 1);
  const s = Tensor.fromArray(new Float32Array([2.5]), []);
  assert.deepEqual(s.shape, []);
  assert.equal(s.item(), 2.5);
  assert.throws(() => t.item(), /item: tensor of shape \[2, 3\] has 6 elements/);
  t.shape.push(7); // shape is a copy
  assert.deepEqual(t.shape, [2, 3]);
  t.dispose();
  s.dispose();
});

test("zeros, ones, full", () => {
  tidy(() => {
    assert.deepEqual(Array.from(Tensor.zeros([2, 2]).toArray()), [0, 0, 0, 0]);
    assert.deepEqual(Array.from(Tensor.ones([3]).toArray()), [1, 1, 1]);
    assert.deepEqual(Array.from(Tensor.full([2], -1.5).toArray()), [-1.5, -1.5]);
    assert.equal(Tensor.zeros([0, 3]).numel, 0);
    assert.equal(Tensor.ones([1, 1], { requiresGrad: true }).requiresGrad, true);
  });
});

test("Generator: seeded, replayable from its state, host draws deterministic", () => {
  tidy(() => {
    const g1 = new Generator(7);
    const g2 = new Generator(7n);
    const a = Tensor.randn([100], g1).toArray();
    assert.deepEqual(a, Tensor.randn([100], g2).toArray());
    const st = g1.getState();
    assert.equal(typeof st.key, "string");
    const b = Tensor.rand([50], g1, -2, 3).toArray();
    for (const v of b) assert.ok(v >= -2 && v <= 3, `rand value ${v} outside [-2, 3]`);
    g1.setState(st);
    assert.deepEqual(Tensor.rand([50], g1, -2, 3).toArray(), b);
    assert.notDeepEqual(Tensor.randn([100], new Generator(8)).toArray(), a);
    const h1 = new Generator(3).uniform(10, 0, 1);
    const h2 = new Generator(3).uniform(10, 0, 1);
    assert.deepEqual(h1, h2);
    const big = Tensor.randn([20000], new Generator(1), { mean: 2, std: 3 }).toArray();
    const m = big.reduce((p, v) => p + v, 0) / big.length;
    const sd = Math.sqrt(big.reduce((p, v) => p + (v - m) ** 2, 0) / big.length);
    assert.ok(Math.abs(m - 2) < 0.1 && Math.abs(sd - 3) < 0.1, `randn mean ${m}, std ${sd}`);
  });
});

test("tidy disposes what it made, keeps results, kept tensors and outer tensors", () => {
  const base = liveTensors();
  const outer = Tensor.ones([2]);
  let inner: Tensor | null = null;
  let kept: Tensor | null = null;
  const res = tidy(() => {
    inner = ops.add(outer, 1);
    kept = ops.mul(outer, 3).keep();
    const y = ops.mul(inner, 2);
    return { y, list: [ops.neg(y)], n: 5 };
  });
  assert.equal(inner!.disposed, true);
  assert.equal(kept!.disposed, false);
  assert.equal(outer.disposed, false);
  assert.deepEqual(Array.from(res.y.toArray()), [4, 4]);
  assert.deepEqual(Array.from(res.list[0].toArray()), [-4, -4]);
  res.y.dispose();
  res.list[0].dispose();
  kept!.dispose();
  outer.dispose();
  assert.equal(liveTensors(), base);
});

test("nested tidy: a returned tensor moves to the enclosing scope", () => {
  let mid: Tensor | null = null;
  const out = tidy(() => {
    mid = tidy(() => ops.add(Tensor.ones([1]), 1));
    assert.equal(mid.disposed, false);
    return ops.mul(mid, 2);
  });
  assert.equal(mid!.disposed, true);
  assert.equal(out.item(), 4);
  out.dispose();
});

test("tidy disposes on exceptions and refuses async functions", () => {
  const base = liveTensors();
  assert.throws(() => tidy(() => {
    Tensor.ones([3]);
    throw new Error("boom");
  }), /boom/);
  assert.equal(liveTensors(), base);
  assert.throws(() => tidy(() => Promise.resolve(1) as unknown as number), /synchronous/);
  assert.equal(liveTensors(), base);
});

test("noGrad records nothing; detach shares storage without grad", () => {
  tidy(() => {
    const x = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
    assert.equal(ops.mul(x, 2).requiresGrad, true);
    const y = noGrad(() => ops.mul(x, 2));
    assert.equal(y.requiresGrad, false);
    const d = x.detach();
    assert.equal(d.requiresGrad, false);
    native().fill(d.handle, 5);
    assert.deepEqual(Array.from(x.toArray()), [5, 5]);
    const z = ops.mul(x, 3);
    assert.throws(() => {
      z.requiresGrad = false;
    }, /not a leaf/);
  });
});

test("backward: scalar seed, explicit seed, accumulation, zeroGrad", () => {
  tidy(() => {
    const x = Tensor.fromArray([1, 2, 3], [3], { requiresGrad: true });
    ops.sum(ops.square(x)).backward();
    assert.deepEqual(Array.from(x.grad!.toArray()), [2, 4, 6]);
    ops.sum(ops.mul(x, 10)).backward(); // a second graph accumulates
    assert.deepEqual(Array.from(x.grad!.toArray()), [12, 14, 16]);
    x.zeroGrad();
    assert.equal(x.grad, null);
    const y = ops.mul(x, 2);
    assert.throws(() => y.backward(), /not a scalar/);
    y.backward(Tensor.fromArray([1, 0, -1], [3]));
    assert.deepEqual(Array.from(x.grad!.toArray()), [2, 0, -2]);
    const c = Tensor.ones([1]);
    assert.throws(() => ops.sum(c).backward(), /does not require grad/);
  });
});

test("backward twice through a freed graph throws", () => {
  tidy(() => {
    const x = Tensor.fromArray([1, 2], [2], { requiresGrad: true });
    const loss = ops.sum(ops.tanh(ops.mul(x, x)));
    loss.backward();
    assert.throws(() => loss.backward(), /already freed by an earlier backward/);
    const h = ops.exp(x);
    const l1 = ops.sum(h);
    const l2 = ops.mean(h);
    l1.backward();
    assert.throws(() => l2.backward(), /graph through exp .* already freed/);
  });
});

test("backward refuses inputs written in place since the forward pass (a version counter, as PyTorch's)", () => {
  tidy(() => {
    const conv = new nn.Conv2d(2, 4, 3, { padding: 1 });
    const bn = new nn.BatchNorm2d(4);
    const x = Tensor.fromArray(Array.from({ length: 2 * 2 * 4 * 4 }, (_, i) => Math.sin(i)), [2, 2, 4, 4]);
    const params = [...conv.parameters(), ...bn.parameters()];
    const opt = new Adam(params, { lr: 0.1 });
    const forward = () => ops.sum(ops.batchNormGlu(conv.forward(x), bn.weight, bn.bias, bn.runningMean, bn.runningVar, true));
    // the usual order: forward, backward, step; then again
    forward().backward();
    opt.step();
    opt.zeroGrad();
    const good = forward();
    good.backward();
    const grads = params.map((p) => Array.from(p.grad!.toArray()));

    // a step between forward and backward: refused, naming the op, the input and the versions;
    // checked before any gradient moves
    const stale = forward();
    const v = conv.weight._version;
    opt.step();
    assert.equal(conv.weight._version, v + 1);
    const re = new RegExp(`input 1 \\(shape \\[4, 2, 3, 3\\], made by .*\\) of conv2d .* modified in place after the ` +
      `forward pass used it \\(version ${v}, now ${v + 1}: an optimizer step, loadStateDict or init\\)`);
    assert.throws(() => stale.backward(), re);
    assert.deepEqual(params.map((p) => Array.from(p.grad!.toArray())), grads);
    opt.zeroGrad();
    // loadStateDict and init count as writes too; a fresh forward pass works again
    const s2 = forward();
    bn.loadStateDict(new Map([...bn.stateDict()].map(([k, t]) => [k, Tensor.fromArray(t.toArray(), t.shape)])));
    assert.throws(() => s2.backward(), /of batchNormGlu .* modified in place/);
    const s3 = forward();
    init.constant_(conv.bias!, 0.5);
    assert.throws(() => s3.backward(), /input 2 .* of conv2d .* modified in place/);
    const fresh = forward();
    fresh.backward();
    assert.equal(params.every((p) => p.grad !== null), true);
  });
});

test("graphs are released: by backward, and when their results are disposed", () => {
  const N = native();
  const w = Tensor.randn([4, 3, 3, 3], new Generator(1), { requiresGrad: true });
  const x = Tensor.randn([2, 3, 5, 5], new Generator(2));
  const baseHandles = N.liveTensors();
  const baseBytes = N.liveBytes("cpu");
  // forward only: tidy disposes the results and with them the saved tensors
  tidy(() => {
    ops.sum(ops.relu(ops.conv2d(x, w, null, 1, 1)));
  });
  assert.equal(N.liveTensors(), baseHandles);
  assert.equal(N.liveBytes("cpu"), baseBytes);
  // forward kept alive outside tidy, then disposed by hand
  const loss = tidy(() => ops.sum(ops.relu(ops.conv2d(x, w, null, 1, 1))));
  assert.ok(N.liveTensors() > baseHandles + 1, "saved tensors are held while the graph lives");
  loss.dispose();
  assert.equal(N.liveTensors(), baseHandles);
  // a loss returned from tidy still backpropagates (its intermediates were disposed, not its graph)
  const outside = tidy(() => ops.sum(ops.relu(ops.conv2d(x, w, null, 1, 1))));
  outside.backward();
  const g1 = w.grad!.toArray();
  w.zeroGrad();
  outside.dispose();
  assert.equal(N.liveTensors(), baseHandles);
  // backward: only the gradient stays
  tidy(() => {
    ops.sum(ops.relu(ops.conv2d(x, w, null, 1, 1))).backward();
  });
  assert.equal(N.liveTensors(), baseHandles + 1);
  assert.deepEqual(w.grad!.toArray(), g1);
  w.dispose(); // disposes its grad too
  x.dispose();
  assert.equal(N.liveTensors(), baseHandles - 2);
});

test("an op on a leaf made inside a tidy, returned with its grad", () => {
  const x = tidy(() => {
    const t = Tensor.fromArray([3], [1], { requiresGrad: true });
    ops.sum(ops.mul(t, t)).backward();
    return t;
  });
  assert.equal(x.grad!.item(), 6);
  x.dispose();
  assert.equal(x.grad, null);
});
