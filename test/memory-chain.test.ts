// Activation memory: Sequential frees each intermediate once the next layer has used it, tape
// nodes keep only what their backward reads, and BatchNorm -> GLU keeps x but not the normalised
// tensor; all of it without changing a value or a gradient.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { native } from "../lib/native";
import { BatchNorm1d, BatchNorm2d, Conv2d, forwardChain, GLU, Layer, Linear, Module, Sequential } from "../lib/nn";
import * as F from "../lib/ops";
import { C3GAN, randomGrid, sampleCodes } from "../lib/model/c3gan";
import { LeakyReLU, Upsample2x } from "../lib/model/blocks";
import { ModelSpec } from "../lib/model/spec";
import { Adam } from "../lib/optim/adam";
import { discriminatorStep, generatorStep, PendingLosses, queuedIteration } from "../lib/train/step";
import { Generator, liveTensors, noGrad, Tensor, tidy } from "../lib/tensor";

class Identity extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** returns a tensor it did not make (kept, or from the caller's scope) */
class Fixed extends Module implements Layer {
  constructor(readonly t: Tensor) {
    super();
  }
  forward(): Tensor {
    return this.t;
  }
}

class Scale extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return F.mul(x, 2);
  }
}

test("a layer returning its input, a kept tensor or an outside tensor keeps it alive; intermediates are freed", () => {
  const N = native();
  tidy(() => {
    const x = Tensor.fromArray([1, -2, 3, -4], [1, 1, 2, 2]);
    const kept = Tensor.fromArray([5, 6, 7, 8], [1, 1, 2, 2]).keep();
    const outside = Tensor.fromArray([9, 10, 11, 12], [1, 1, 2, 2]);
    // identities first, in the middle and last
    const seq = new Sequential(new Identity(), new Scale(), new Identity(), new Identity(), new Scale(), new Identity());
    const y = seq.forward(x);
    assert.equal(x.disposed, false);
    assert.deepEqual(Array.from(y.toArray()), [4, -8, 12, -16]);
    // only identities: the input itself comes back, alive
    assert.equal(new Sequential(new Identity(), new Identity()).forward(x), x);
    assert.equal(x.disposed, false);
    // a kept / outside tensor returned mid-chain is used and not disposed
    for (const t of [kept, outside]) {
      const z = new Sequential(new Scale(), new Fixed(t), new Identity(), new Scale()).forward(x);
      assert.equal(t.disposed, false);
      assert.deepEqual(Array.from(z.toArray()), Array.from(t.toArray()).map((v) => 2 * v));
    }
    // handing the input over: disposed once the first layer that makes something has used it
    const own = F.mul(x, 1);
    const w = forwardChain(own, [new Identity(), new Scale(), new Identity()], true);
    assert.equal(own.disposed, true);
    assert.deepEqual(Array.from(w.toArray()), [2, -4, 6, -8]);
    const same = F.mul(x, 1);
    assert.equal(forwardChain(same, [new Identity()], true), same);
    assert.equal(same.disposed, false);
    // under noGrad nothing but the result stays: 3 layers of 4-float intermediates are freed
    const before = N.liveBytes("cpu");
    const r = noGrad(() => new Sequential(new Scale(), new Scale(), new Scale(), new Scale()).forward(x));
    assert.equal(N.liveBytes("cpu") - before, r.numel * 4);
    kept.dispose();
  });
});

/** two identical nets: a Sequential and the same layers as plain ops */
function block(gen: Generator): Sequential {
  const s = new Sequential(
    new Conv2d(3, 8, 3, { padding: 1, generator: gen }),
    new BatchNorm2d(8),
    new GLU(),
    new Upsample2x(),
    new Conv2d(4, 6, 3, { padding: 1, bias: false, generator: gen }),
    new BatchNorm2d(6),
    new LeakyReLU(0.2),
  );
  // a BN weight of exactly 0 in a channel (the case a y-based backward could not handle)
  const g = (s.get(1) as BatchNorm2d).weight;
  native().copy(g.handle, native().fromFloat32(Float32Array.from([0.5, 0, 1.5, -1, 2, 0.25, 1, 0.75]), [8], "cpu"));
  return s;
}

function plain(s: Sequential, x: Tensor): Tensor {
  const c1 = s.get(0) as Conv2d, b1 = s.get(1) as BatchNorm2d, c2 = s.get(4) as Conv2d, b2 = s.get(5) as BatchNorm2d;
  const bn = (b: BatchNorm2d, t: Tensor) => {
    const y = F.batchNorm(t, b.weight, b.bias, b.runningMean, b.runningVar, b.training, b.momentum, b.eps);
    if (b.training) {
      const n = native().full([], b.numBatchesTracked.item() + 1, "cpu");
      native().copy(b.numBatchesTracked.handle, n);
      n.dispose();
    }
    return y;
  };
  const h = F.glu(bn(b1, F.conv2d(x, c1.weight, c1.bias, 1, 1)), 1);
  return F.leakyRelu(bn(b2, F.conv2d(F.upsample2x(h), c2.weight, null, 1, 1)), 0.2);
}

function same(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/**
 * Equal to float rounding (the fused BN -> GLU rounds its affine map from the saved statistics):
 * within rtol of the larger of b's own scale and `scale` (a gradient that is zero up to
 * cancellation, a conv bias in front of a BN, is measured against its net's largest gradient).
 */
function close(a: Float32Array, b: Float32Array, what: string, rtol = 1e-5, scale = 0): void {
  assert.equal(a.length, b.length, what);
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= rtol * (Math.abs(b[i]) + scale))) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

const largest = (xs: Float32Array[]): number => Math.max(...xs.map((x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));

for (const training of [true, false]) {
  test(`a chain that frees intermediates and fuses BN -> GLU matches the plain ops (${training ? "train" : "eval"})`, () => {
    const [A, B] = [block(new Generator(7)), block(new Generator(7))];
    A.train(training);
    B.train(training);
    if (!training) {
      // non-trivial running statistics
      for (const m of [A, B]) {
        for (const i of [1, 5]) {
          const b = m.get(i) as BatchNorm2d;
          native().copy(b.runningMean.handle, native().fromFloat32(Float32Array.from({ length: b.numFeatures }, (_, k) => 0.1 * k - 0.2), [b.numFeatures], "cpu"));
          native().copy(b.runningVar.handle, native().fromFloat32(Float32Array.from({ length: b.numFeatures }, (_, k) => 0.5 + 0.3 * k), [b.numFeatures], "cpu"));
        }
      }
    }
    const gen = new Generator(11);
    const x = Tensor.randn([2, 3, 5, 5], gen);
    const dy = Tensor.randn([2, 6, 10, 10], gen);
    const run = (m: Sequential, f: (t: Tensor) => Tensor) => tidy(() => {
      const xi = x.clone();
      xi.requiresGrad = true;
      const y = f(xi);
      y.backward(dy);
      return { y: y.toArray(), dx: xi.grad!.toArray(), grads: m.parameters().map((p) => p.grad!.toArray()) };
    });
    const a = run(A, (t) => A.forward(t));
    const b = run(B, (t) => plain(B, t));
    close(a.y, b.y, "y");
    close(a.dx, b.dx, "dx", 1e-4);
    const top = largest(b.grads);
    a.grads.forEach((g, i) => close(g, b.grads[i], `grad ${A.namedParameters()[i][0]}`, 1e-4, top));
    const bufA = A.namedBuffers(), bufB = B.namedBuffers();
    // in training the BNs take their statistics from the convs' moments, handed over in float:
    // equal to float rounding (eval leaves the buffers as they were)
    bufA.forEach(([n, t], i) => (training ? close : same)(t.toArray(), bufB[i][1].toArray(), `buffer ${n}`));
    for (const m of [A, B]) m.dispose();
    x.dispose();
    dy.dispose();
  });
}

test("Linear -> BatchNorm1d -> GLU (fused) matches the plain ops, and keeps no normalised tensor", () => {
  const mk = () => new Sequential(new Linear(5, 8, { generator: new Generator(2) }), new BatchNorm1d(8), new GLU());
  const [A, B] = [mk(), mk()];
  const x = Tensor.randn([6, 5], new Generator(3), { requiresGrad: true });
  tidy(() => {
    const ya = A.forward(x);
    const lin = B.get(0) as Linear, bn = B.get(1) as BatchNorm1d;
    const yb = F.glu(F.batchNorm(F.linear(x, lin.weight, lin.bias), bn.weight, bn.bias, bn.runningMean, bn.runningVar, true), 1);
    close(ya.toArray(), yb.toArray(), "y");
    // one full-size saved tensor (x) where batchNorm + glu keep two (x, and the normalised one)
    const full = (t: Tensor) => t._node!.saved.filter((h) => h.numel === 48).length;
    assert.equal(ya._node!.op, "batchNormGlu");
    assert.equal(full(ya), 1);
    assert.equal(full(yb) + full(yb._node!.inputs[0]!), 2);
    F.sum(F.square(ya)).backward();
    const ga = [x.grad!.toArray(), ...A.parameters().map((p) => p.grad!.toArray())];
    x.zeroGrad();
    F.sum(F.square(yb)).backward();
    const gb = [x.grad!.toArray(), ...B.parameters().map((p) => p.grad!.toArray())];
    ga.forEach((g, i) => close(g, gb[i], `grad ${i}`, 1e-4, largest(gb)));
  });
  for (const m of [A, B]) m.dispose();
  x.dispose();
});

test("Conv2d -> LeakyReLU (fused, D's first layer) equals the two ops to the bit and keeps only its output", () => {
  const mk = () => new Sequential(new Conv2d(3, 4, 4, { stride: 2, padding: 1, generator: new Generator(5) }), new LeakyReLU(0.2));
  const [A, B] = [mk(), mk()];
  const x = Tensor.randn([2, 3, 8, 8], new Generator(6), { requiresGrad: true });
  tidy(() => {
    const ya = A.forward(x);
    const conv = B.get(0) as Conv2d;
    const yb = F.leakyRelu(F.conv2d(x, conv.weight, conv.bias, 2, 1), 0.2);
    assert.equal(ya._node!.op, "conv2d");
    same(ya.toArray(), yb.toArray(), "y");
    // x, the weight and y (no conv output kept between the two)
    assert.equal(ya._node!.saved.length, 3);
    F.sum(F.square(ya)).backward();
    const ga = [x.grad!.toArray(), ...A.parameters().map((p) => p.grad!.toArray())];
    x.zeroGrad();
    F.sum(F.square(yb)).backward();
    const gb = [x.grad!.toArray(), ...B.parameters().map((p) => p.grad!.toArray())];
    ga.forEach((g, i) => same(g, gb[i], `grad ${i}`));
  });
  for (const m of [A, B]) m.dispose();
  x.dispose();
});

test("unary ops keep only the tensor their backward reads; relu/leaky gradients at 0, -0 and NaN are PyTorch's", () => {
  tidy(() => {
    const vals = [1.5, -2, 0, -0, NaN, 3e-39, -3e-39, Infinity, -Infinity];
    const x = Tensor.fromArray(vals, [vals.length], { requiresGrad: true });
    const g = Tensor.fromArray(vals.map((_, i) => i + 1), [vals.length]);
    const cases: [string, (t: Tensor) => Tensor, number][] = [
      ["relu", F.relu, 1], ["leaky 0.2", (t) => F.leakyRelu(t, 0.2), 1], ["leaky 0", (t) => F.leakyRelu(t, 0), 1],
      ["leaky -0.5", (t) => F.leakyRelu(t, -0.5), 1], ["tanh", F.tanh, 1], ["sigmoid", F.sigmoid, 1],
      ["exp", F.exp, 1], ["neg", F.neg, 0], ["square", F.square, 1], ["abs", F.abs, 1],
    ];
    for (const [name, f, saved] of cases) {
      const y = f(x);
      assert.equal(y._node!.saved.length, saved, `${name}: saved handles`);
      x.zeroGrad();
      y.backward(g);
      const dx = x.grad!.toArray();
      const gv = g.toArray();
      const slope = name === "relu" ? 0 : name.startsWith("leaky") ? Number(name.split(" ")[1]) : null;
      if (slope !== null) {
        vals.forEach((v, i) => {
          const want = v > 0 ? gv[i] : Math.fround(Math.fround(slope) * gv[i]);
          assert.ok(Object.is(dx[i], want) || (want === 0 && dx[i] === 0), `${name} at ${v}: ${dx[i]} vs ${want}`);
        });
      }
      if (name === "neg") vals.forEach((_, i) => assert.equal(dx[i], -gv[i]));
    }
  });
});

test("the D step's no-grad generator forward frees its intermediates (peak live bytes bound)", () => {
  const N = native();
  const spec: ModelSpec = { imageSize: 64, channels: 3, ngf: 64, ndf: 8, zDim: 16, czDim: 4, numClusters: 6 };
  const B = 4;
  const model = new C3GAN(spec, "cpu", new Generator(3n));
  const gen = new Generator(4n);
  tidy(() => {
    const codes = sampleCodes(gen, spec, B, "cpu");
    const grid = randomGrid(gen, B, spec.imageSize, "s", "cpu");
    const before = N.liveBytes("cpu");
    N.resetPeakMemory("cpu");
    const fake = noGrad(() => model.G.forward(codes.z, codes.cz, codes.c, grid));
    const peak = N.memoryStats("cpu").peakLiveBytes - before;
    // what stays is the four outputs; the peak is a few full-resolution maps (the widest is
    // 2 * ngf / 32 channels or the 3 image channels), where keeping every activation to the end
    // of the scope took about 60 of them
    const outputs = [fake.background, fake.mask, fake.foreground, fake.final].reduce((s, t) => s + t.numel * 4, 0);
    assert.equal(N.liveBytes("cpu") - before, outputs);
    const map = B * spec.imageSize ** 2 * Math.max((2 * spec.ngf) / 32, 3) * 4;
    assert.ok(peak <= 8 * map, `peak ${(peak / map).toFixed(2)} full-resolution maps (bound 8)`);
  });
  model.dispose();
});

test("a queued iteration reads the losses the two steps read one by one, and frees them", () => {
  const N = native();
  const spec: ModelSpec = { imageSize: 32, channels: 3, ngf: 32, ndf: 8, zDim: 16, czDim: 4, numClusters: 4 };
  const B = 4;
  const o = { temperature: 0.1, perturbation: "s" as const };
  const make = () => {
    const model = new C3GAN(spec, "cpu", new Generator(3n));
    return {
      model, gen: new Generator(9n),
      optD: new Adam(model.D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] }),
      optG: new Adam(model.G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] }),
    };
  };
  const a = make(), b = make();
  const data = new Generator(5n);
  for (let it = 0; it < 2; it++) {
    tidy(() => {
      const real = Tensor.rand([B, 3, 32, 32], data, -1, 1), aug = Tensor.rand([B, 3, 32, 32], data, -1, 1);
      const d = discriminatorStep(a.model, a.optD, real, aug, a.gen, o);
      const g = generatorStep(a.model, a.optG, B, a.gen, o);
      const tensors = liveTensors(), bytes = N.liveBytes("cpu");
      const q = queuedIteration(b.model, b.optD, b.optG, real, aug, b.gen, o);
      // nothing left behind once the optimizers' state exists: the loss tensors were read and freed
      if (it > 0) {
        assert.equal(liveTensors(), tensors);
        assert.equal(N.liveBytes("cpu"), bytes);
      }
      assert.deepEqual(q, { d, g });
      assert.ok(Number.isFinite(d.total) && Number.isFinite(g.total));
    });
  }
  tidy(() => {
    const p = new PendingLosses<{ x: number; y: number }>(["x", "y"], [Tensor.full([], 1.5), Tensor.full([], -2)]);
    assert.deepEqual(p.read(), { x: 1.5, y: -2 });
    assert.throws(() => p.read(), /PendingLosses.read: already read or disposed/);
    assert.throws(() => new PendingLosses<{ x: number }>(["x"], []), /1 names for 0 losses/);
  });
  for (const m of [a, b]) {
    m.optD.dispose();
    m.optG.dispose();
    m.model.dispose();
  }
});

test("a BatchNorm or GLU subclass with its own forward is not fused away", () => {
  let calls = 0;
  class CountingBN extends BatchNorm2d {
    override forward(x: Tensor): Tensor {
      calls++;
      return super.forward(x);
    }
  }
  const seq = new Sequential(new CountingBN(4), new GLU());
  tidy(() => {
    const x = Tensor.randn([2, 4, 3, 3], new Generator(1), { requiresGrad: true });
    const y = seq.forward(x);
    assert.equal(calls, 1);
    assert.equal(y._node!.op, "glu");
    const plainSeq = new Sequential(new BatchNorm2d(4), new GLU());
    assert.equal(plainSeq.forward(x)._node!.op, "batchNormGlu");
    plainSeq.dispose();
  });
  seq.dispose();
});

test("Conv2d -> BatchNorm hands the conv's moments over in training only; [Upsample2x] Conv2d BN [GLU] is one step", () => {
  const calls: string[] = [];
  class SpyConv extends Conv2d {
    override forwardMoments(x: Tensor) {
      calls.push("moments");
      return super.forwardMoments(x);
    }
    override forwardUpMoments(x: Tensor) {
      calls.push("up moments");
      return super.forwardUpMoments(x);
    }
  }
  const gen = new Generator(5);
  const seq = new Sequential(
    new SpyConv(3, 8, 3, { padding: 1, generator: gen }), new BatchNorm2d(8), new GLU(),
    new Upsample2x(), new SpyConv(4, 6, 3, { padding: 1, bias: false, generator: gen }), new BatchNorm2d(6), new LeakyReLU(0.2),
    new SpyConv(6, 4, 4, { stride: 2, padding: 1, generator: gen }), new LeakyReLU(0.2),
  );
  tidy(() => {
    const x = Tensor.randn([2, 3, 5, 5], new Generator(6), { requiresGrad: true });
    const y = seq.forward(x);
    assert.deepEqual(calls, ["moments", "up moments"]);
    assert.deepEqual(y.shape, [2, 4, 5, 5]);
    calls.length = 0;
    seq.eval();
    noGrad(() => seq.forward(x));
    assert.deepEqual(calls, [], "eval: batch norm uses the running statistics, no moments");
  });
  seq.dispose();
});
