// Finite-difference gradient checks of every differentiable op through the tape, and of composed
// graphs (a generator-like chain, a broadcasting chain, tensors used more than once).
import { test } from "node:test";
import * as ops from "../lib/ops";
import { Tensor } from "../lib/tensor";
import { productTol, testDevice } from "./helpers/device";
import { gradcheck } from "./helpers/gradcheck";
import * as R from "./helpers/reference";
import { Rng, RT } from "./helpers/reference";

const rng = new Rng(99);
const nograd = (value: RT) => ({ value, grad: false });

// Tensors made here go on C3GAN_DEVICE's device (cpu by default). The checked inputs are made by
// helpers/gradcheck.ts: the checks run only where it puts them on that same device.
const device = testDevice();
const inputDevice = ((): string => {
  let seen = "none";
  gradcheck({
    name: "device probe", inputs: [R.rt([0.5, -0.25], [2])],
    forward: ([t]) => {
      seen = t.device;
      return ops.affine(t, 2, 0);
    },
    reference: ([a]) => R.affine(a, 2, 0),
  });
  return seen;
})();
const skip = inputDevice === device ? false
  : `helpers/gradcheck.ts makes its inputs on ${inputDevice}, not on C3GAN_DEVICE=${device}`;
// conv2d, linear and matmul round their operands under CUDA's TF32 mode
const ptol = { tol: productTol(1e-4), fwdTol: productTol(1e-4) };

test("gradcheck: unary ops and affine", { skip }, () => {
  const x = rng.rt([3, 4], -2, 2);
  const pos = rng.rt([3, 4], 0.2, 2);
  const cases: [string, (t: Tensor) => Tensor, RT][] = [
    ["relu", ops.relu, x], ["tanh", ops.tanh, x], ["sigmoid", ops.sigmoid, x], ["exp", ops.exp, x],
    ["log", ops.log, pos], ["neg", ops.neg, x], ["square", ops.square, x], ["sqrt", ops.sqrt, pos],
    ["abs", ops.abs, x],
  ];
  for (const [name, f, input] of cases) {
    gradcheck({ name, inputs: [input], forward: ([t]) => f(t), reference: ([a]) => R.map(a, (v) => R.unaryRef[name](v, 0)) });
  }
  gradcheck({
    name: "leakyRelu", inputs: [x], forward: ([t]) => ops.leakyRelu(t, 0.2),
    reference: ([a]) => R.map(a, (v) => R.unaryRef.leaky_relu(v, 0.2)),
  });
  gradcheck({ name: "affine", inputs: [x], forward: ([t]) => ops.affine(t, -1.5, 3), reference: ([a]) => R.affine(a, -1.5, 3) });
});

test("gradcheck: broadcasting add/sub/mul/div, both sides", { skip }, () => {
  const pairs: [number[], number[]][] = [[[2, 3], [2, 3]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[3], [2, 3]], [[], [2, 2]]];
  for (const [sa, sb] of pairs) {
    const a = rng.rt(sa, -2, 2);
    const b = rng.rt(sb, 0.5, 2);
    const tag = `[${sa}] [${sb}]`;
    gradcheck({ name: `add ${tag}`, inputs: [a, b], forward: ([p, q]) => ops.add(p, q), reference: ([p, q]) => R.add(p, q) });
    gradcheck({ name: `sub ${tag}`, inputs: [a, b], forward: ([p, q]) => ops.sub(p, q), reference: ([p, q]) => R.sub(p, q) });
    gradcheck({ name: `mul ${tag}`, inputs: [a, b], forward: ([p, q]) => ops.mul(p, q), reference: ([p, q]) => R.mul(p, q) });
    gradcheck({ name: `div ${tag}`, inputs: [a, b], forward: ([p, q]) => ops.div(p, q), reference: ([p, q]) => R.div(p, q) });
  }
  const a = rng.rt([2, 3], 0.5, 2);
  gradcheck({ name: "scalar div", inputs: [a], forward: ([p]) => ops.div(2, p), reference: ([p]) => R.map(p, (v) => 2 / v) });
  gradcheck({ name: "scalar sub", inputs: [a], forward: ([p]) => ops.sub(1, p), reference: ([p]) => R.affine(p, -1, 1) });
  gradcheck({ name: "div by scalar", inputs: [a], forward: ([p]) => ops.div(p, 4), reference: ([p]) => R.affine(p, 0.25, 0) });
  // only one side requires grad
  const b = rng.rt([3], 0.5, 2);
  gradcheck({ name: "div a only", inputs: [a, nograd(b)], forward: ([p, q]) => ops.div(p, q), reference: ([p, q]) => R.div(p, q) });
  gradcheck({ name: "mul b only", inputs: [nograd(a), b], forward: ([p, q]) => ops.mul(p, q), reference: ([p, q]) => R.mul(p, q) });
});

test("gradcheck: reductions and shape ops", { skip }, () => {
  const x = rng.rt([2, 3, 4]);
  for (const [dims, keep] of [[undefined, false], [[1], false], [[0, 2], true], [[-1], false]] as [number[] | undefined, boolean][]) {
    gradcheck({ name: `sum ${dims} ${keep}`, inputs: [x], forward: ([t]) => ops.sum(t, dims, keep), reference: ([a]) => R.sum(a, dims, keep) });
    gradcheck({ name: `mean ${dims} ${keep}`, inputs: [x], forward: ([t]) => ops.mean(t, dims, keep), reference: ([a]) => R.mean(a, dims, keep) });
  }
  gradcheck({ name: "reshape", inputs: [x], forward: ([t]) => ops.reshape(t, [4, -1]), reference: ([a]) => ({ data: a.data, shape: [4, 6] }) });
  const s = rng.rt([3, 1]);
  gradcheck({ name: "expand", inputs: [s], forward: ([t]) => ops.expand(t, [2, 3, 4]), reference: ([a]) => R.expand(a, [2, 3, 4]) });
  gradcheck({ name: "sumTo", inputs: [x], forward: ([t]) => ops.sumTo(t, [3, 1]), reference: ([a]) => R.sumTo(a, [3, 1]) });
  const a = rng.rt([2, 1, 4]);
  const b = rng.rt([2, 3, 4]);
  gradcheck({ name: "concat", inputs: [a, b], forward: (ts) => ops.concat(ts, 1), reference: (rs) => R.concat(rs, 1) });
  gradcheck({ name: "concat one grad", inputs: [nograd(a), b], forward: (ts) => ops.concat(ts, 1), reference: (rs) => R.concat(rs, 1) });
  gradcheck({ name: "slice", inputs: [x], forward: ([t]) => ops.slice(t, 2, 1, 3), reference: ([r]) => R.slice(r, 2, 1, 3) });
});

test("gradcheck: conv2d, conv2dUp, linear, matmul", { skip }, () => {
  const convs = [
    { x: [2, 2, 5, 4], w: [3, 2, 3, 3], stride: 1, pad: 1 },
    { x: [1, 2, 6, 6], w: [2, 2, 4, 4], stride: 2, pad: 1 },
  ];
  for (const c of convs) {
    const x = rng.rt(c.x);
    const w = rng.rt(c.w);
    const bias = rng.rt([c.w[0]]);
    gradcheck({
      name: `conv2d ${JSON.stringify(c)}`, inputs: [x, w, bias], ...ptol,
      forward: ([a, b, d]) => ops.conv2d(a, b, d, c.stride, c.pad), reference: ([a, b, d]) => R.conv2d(a, b, d, c.stride, c.pad),
    });
    gradcheck({
      name: `conv2d weight only ${JSON.stringify(c)}`, inputs: [nograd(x), w], ...ptol,
      forward: ([a, b]) => ops.conv2d(a, b, null, c.stride, c.pad), reference: ([a, b]) => R.conv2d(a, b, null, c.stride, c.pad),
    });
    // with a LeakyReLU in the same op (the discriminator's first layer)
    gradcheck({
      name: `conv2d -> LeakyReLU ${JSON.stringify(c)}`, inputs: [x, w, bias], ...ptol,
      forward: ([a, b, d]) => ops.conv2d(a, b, d, c.stride, c.pad, 0.2),
      reference: ([a, b, d]) => R.map(R.conv2d(a, b, d, c.stride, c.pad), (u) => (u > 0 ? u : 0.2 * u)),
    });
  }
  {
    // conv2d of the 2x-upsampled input as one op (its phase path against the float64 reference
    // is in native/test and ops.test.ts; this checks the op's gradients end to end)
    const x = rng.rt([2, 2, 3, 4]);
    const w = rng.rt([3, 2, 3, 3]);
    const bias = rng.rt([3]);
    gradcheck({
      name: "conv2dUp", inputs: [x, w, bias], ...ptol,
      forward: ([a, b, d]) => ops.conv2dUp(a, b, d), reference: ([a, b, d]) => R.conv2d(R.upsample2x(a), b, d, 1, 1),
    });
  }
  const x = rng.rt([4, 5]);
  const w = rng.rt([3, 5]);
  const b = rng.rt([3]);
  gradcheck({ name: "linear", inputs: [x, w, b], ...ptol, forward: ([p, q, r]) => ops.linear(p, q, r), reference: ([p, q, r]) => R.linear(p, q, r) });
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    const p = rng.rt(ta ? [4, 3] : [3, 4]);
    const q = rng.rt(tb ? [2, 4] : [4, 2]);
    gradcheck({
      name: `matmul ${ta} ${tb}`, inputs: [p, q], ...ptol,
      forward: ([s, t]) => ops.matmul(s, t, ta, tb), reference: ([s, t]) => R.matmul(s, t, ta, tb),
    });
  }
});

test("gradcheck: batchNorm (training and eval), batchNormGlu, glu, upsample2x", { skip }, () => {
  for (const shape of [[5, 3], [2, 3, 3, 2]]) {
    const x = rng.rt(shape, -2, 2);
    const g = rng.rt([3], 0.5, 1.5);
    const b = rng.rt([3]);
    const rm = rng.rt([3]);
    const rv = rng.rt([3], 0.5, 2);
    for (const training of [true, false]) {
      gradcheck({
        name: `batchNorm ${shape} training=${training}`, inputs: [x, g, b],
        forward: ([p, q, r]) => ops.batchNorm(p, q, r, Tensor.fromArray(rm.data, [3], { device }),
          Tensor.fromArray(rv.data, [3], { device }), training),
        reference: ([p, q, r]) => R.batchNorm(p, q, r, rm, rv, training).y,
      });
      // with a residual added in the same pass (a residual block's sum): its gradient is dy
      const res = rng.rt(shape);
      gradcheck({
        name: `batchNorm ${shape} training=${training} + residual`, inputs: [x, g, b, res],
        forward: ([p, q, r, s]) => ops.batchNorm(p, q, r, Tensor.fromArray(rm.data, [3], { device }),
          Tensor.fromArray(rv.data, [3], { device }), training, 0.1, 1e-5, null, s),
        reference: ([p, q, r, s]) => R.binary(R.batchNorm(p, q, r, rm, rv, training).y, s, (u, v) => u + v),
      });
      // with a LeakyReLU in the same passes (the discriminator's BN -> LeakyReLU)
      gradcheck({
        name: `batchNorm ${shape} training=${training} -> LeakyReLU`, inputs: [x, g, b],
        forward: ([p, q, r]) => ops.batchNorm(p, q, r, Tensor.fromArray(rm.data, [3], { device }),
          Tensor.fromArray(rv.data, [3], { device }), training, 0.1, 1e-5, null, null, 0.2),
        reference: ([p, q, r]) => R.map(R.batchNorm(p, q, r, rm, rv, training).y, (u) => (u > 0 ? u : 0.2 * u)),
      });
    }
  }
  // batch norm then GLU as one op: over the channels the native one-pass kernel, over the last
  // dim the two ops; (N, C) inputs are BatchNorm1d + GLU (rows of one value per channel)
  for (const [shape, dim] of [[[5, 4], 1], [[2, 4, 3, 5], 1], [[2, 4, 3, 2], 3]] as [number[], number][]) {
    const C = shape[1];
    const x = rng.rt(shape, -2, 2);
    const g = rng.rt([C], 0.5, 1.5);
    const b = rng.rt([C]);
    const rm = rng.rt([C]);
    const rv = rng.rt([C], 0.5, 2);
    for (const training of [true, false]) {
      gradcheck({
        name: `batchNormGlu ${shape} dim ${dim} training=${training}`, inputs: [x, g, b],
        forward: ([p, q, r]) => ops.batchNormGlu(p, q, r, Tensor.fromArray(rm.data, [C], { device }),
          Tensor.fromArray(rv.data, [C], { device }), training, 0.1, 1e-5, dim),
        reference: ([p, q, r]) => R.glu(R.batchNorm(p, q, r, rm, rv, training).y, dim),
      });
    }
  }
  const x = rng.rt([2, 4, 3, 2], -2, 2);
  gradcheck({ name: "glu", inputs: [x], forward: ([t]) => ops.glu(t, 1), reference: ([a]) => R.glu(a, 1) });
  gradcheck({ name: "glu last dim", inputs: [x], forward: ([t]) => ops.glu(t, -1), reference: ([a]) => R.glu(a, 3) });
  gradcheck({ name: "upsample2x", inputs: [x], forward: ([t]) => ops.upsample2x(t), reference: ([a]) => R.upsample2x(a) });
});

test("gradcheck: normalize, softmax, logSoftmax, crossEntropy, ntXent", { skip }, () => {
  const x = rng.rt([4, 5], -2, 2);
  gradcheck({ name: "normalize", inputs: [x], forward: ([t]) => ops.normalize(t), reference: ([a]) => R.normalize(a) });
  gradcheck({ name: "softmax", inputs: [x], forward: ([t]) => ops.softmax(t), reference: ([a]) => R.softmax(a) });
  gradcheck({ name: "logSoftmax", inputs: [x], forward: ([t]) => ops.logSoftmax(t), reference: ([a]) => R.logSoftmax(a) });
  const targets = [1, 0, 4, 1];
  gradcheck({
    name: "crossEntropy", inputs: [x], forward: ([t]) => ops.crossEntropy(t, targets), reference: ([a]) => R.crossEntropy(a, targets),
  });
  for (const temp of [0.1, 0.5]) {
    const f = rng.rt([6, 4], -1, 1);
    gradcheck({ name: `ntXent T=${temp}`, inputs: [f], forward: ([t]) => ops.ntXent(t, temp), reference: ([a]) => R.ntXent(a, temp) });
  }
});

test("gradcheck: affineGrid and gridSample", { skip }, () => {
  const theta = rng.rt([2, 2, 3], -1, 1);
  gradcheck({ name: "affineGrid", inputs: [theta], forward: ([t]) => ops.affineGrid(t, 3, 4), reference: ([a]) => R.affineGrid(a, 3, 4) });
  const x = rng.rt([2, 2, 4, 5]);
  const grid = rng.rt([2, 3, 3, 2], -1.2, 1.2);
  gradcheck({ name: "gridSample", inputs: [x, grid], forward: ([a, g]) => ops.gridSample(a, g), reference: ([a, g]) => R.gridSample(a, g) });
  gradcheck({ name: "gridSample x only", inputs: [x, nograd(grid)], forward: ([a, g]) => ops.gridSample(a, g), reference: ([a, g]) => R.gridSample(a, g) });
  // the perturbation path: theta -> grid -> sample
  const img = rng.rt([2, 1, 4, 4]);
  gradcheck({
    name: "affineGrid -> gridSample", inputs: [img, rng.rt([2, 2, 3], -0.8, 0.8)],
    forward: ([a, t]) => ops.gridSample(a, ops.affineGrid(t, 4, 4)), reference: ([a, t]) => R.gridSample(a, R.affineGrid(t, 4, 4)),
  });
});

test("gradcheck: conv -> BN -> GLU -> upsample -> conv -> tanh chain", { skip }, () => {
  const x = rng.rt([2, 2, 3, 3]);
  const w1 = rng.rt([4, 2, 3, 3]);
  const g = rng.rt([4], 0.5, 1.5);
  const b = rng.rt([4], -0.5, 0.5);
  const w2 = rng.rt([1, 2, 3, 3]);
  gradcheck({
    name: "generator chain", inputs: [x, w1, g, b, w2], ...ptol,
    forward: ([xt, w1t, gt, bt, w2t]) => {
      const h = ops.conv2d(xt, w1t, null, 1, 1);
      const n = ops.batchNorm(h, gt, bt, Tensor.zeros([4], { device }), Tensor.ones([4], { device }), true);
      const u = ops.upsample2x(ops.glu(n, 1));
      return ops.tanh(ops.conv2d(u, w2t, null, 1, 1));
    },
    reference: ([xr, w1r, gr, br, w2r]) => {
      const h = R.conv2d(xr, w1r, null, 1, 1);
      const n = R.batchNorm(h, gr, br, R.zerosRT([4]), R.rt([1, 1, 1, 1], [4]), true).y;
      const u = R.upsample2x(R.glu(n, 1));
      return R.map(R.conv2d(u, w2r, null, 1, 1), Math.tanh);
    },
  });
});

test("gradcheck: broadcasting chain", { skip }, () => {
  const a = rng.rt([2, 3, 1]);
  const b = rng.rt([1, 4]);
  const c = rng.rt([4]);
  gradcheck({
    name: "broadcast chain", inputs: [a, b, c],
    forward: ([p, q, r]) => ops.div(ops.add(ops.mul(p, q), r), ops.add(ops.square(q), 1)),
    reference: ([p, q, r]) => R.div(R.add(R.mul(p, q), r), R.affine(R.map(q, (v) => v * v), 1, 1)),
  });
  gradcheck({
    name: "mean of broadcast product", inputs: [a, c],
    forward: ([p, r]) => ops.mean(ops.mul(ops.expand(p, [2, 3, 4]), r), [0, 2], true),
    reference: ([p, r]) => R.mean(R.mul(R.expand(p, [2, 3, 4]), r), [0, 2], true),
  });
});

test("gradcheck: tensors used more than once accumulate", { skip }, () => {
  const x = rng.rt([3, 4], -2, 2);
  gradcheck({
    name: "leaf used four times", inputs: [x],
    forward: ([t]) => ops.add(ops.mul(t, t), ops.mul(ops.sigmoid(t), t)),
    reference: ([r]) => R.add(R.mul(r, r), R.mul(R.map(r, (v) => 1 / (1 + Math.exp(-v))), r)),
  });
  gradcheck({
    name: "intermediate used twice", inputs: [x],
    forward: ([t]) => {
      const h = ops.tanh(t);
      return ops.add(ops.mul(h, h), h);
    },
    reference: ([r]) => {
      const h = R.map(r, Math.tanh);
      return R.add(R.mul(h, h), h);
    },
  });
  gradcheck({
    name: "two reductions of one leaf", inputs: [x],
    forward: ([t]) => ops.add(ops.sum(t, [1]), ops.sum(ops.mul(t, 2), [1])),
    reference: ([r]) => R.add(R.sum(r, [1]), R.sum(R.affine(r, 2, 0), [1])),
  });
  gradcheck({
    name: "concat of a tensor with itself", inputs: [x],
    forward: ([t]) => ops.concat([t, ops.neg(t), t], 0),
    reference: ([r]) => R.concat([r, R.affine(r, -1, 0), r], 0),
  });
});
