// Every op's forward against the float64 references in helpers/reference.ts.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as ops from "../lib/ops";
import { Tensor, tidy } from "../lib/tensor";
import { productTol, testDevice } from "./helpers/device";
import * as R from "./helpers/reference";
import { Rng, RT, scaledMaxError } from "./helpers/reference";

// every tensor on the device named by C3GAN_DEVICE (cpu by default)
const device = testDevice();
const T = (r: RT): Tensor => Tensor.fromArray(r.data, r.shape, { device });

function close(name: string, t: Tensor, ref: RT, tol = 1e-4): void {
  assert.deepEqual(t.shape, ref.shape, `${name}: shape`);
  const err = scaledMaxError(t.toArray(), ref.data);
  assert.ok(err <= tol, `${name}: scaled max error ${err} > ${tol}`);
}

const rng = new Rng(1234);

test("unary ops", () => {
  tidy(() => {
    const x = rng.rt([3, 5], -2, 2);
    const pos = rng.rt([3, 5], 0.1, 3);
    const cases: [string, (t: Tensor) => Tensor, RT][] = [
      ["relu", ops.relu, x], ["tanh", ops.tanh, x], ["sigmoid", ops.sigmoid, x], ["exp", ops.exp, x],
      ["log", ops.log, pos], ["neg", ops.neg, x], ["square", ops.square, x], ["sqrt", ops.sqrt, pos],
      ["abs", ops.abs, x],
    ];
    for (const [name, f, input] of cases) close(name, f(T(input)), R.map(input, (v) => R.unaryRef[name](v, 0)));
    close("leakyRelu", ops.leakyRelu(T(x), 0.2), R.map(x, (v) => R.unaryRef.leaky_relu(v, 0.2)));
    close("affine", ops.affine(T(x), -1.5, 0.25), R.affine(x, -1.5, 0.25));
  });
});

test("broadcasting arithmetic", () => {
  tidy(() => {
    const pairs: [number[], number[]][] = [
      [[2, 3, 4], [2, 3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[3], [2, 3]], [[1], [2, 2]], [[], [2, 3]],
    ];
    for (const [sa, sb] of pairs) {
      const a = rng.rt(sa, -2, 2);
      const b = rng.rt(sb, 0.5, 2);
      const tag = `[${sa}] op [${sb}]`;
      close(`add ${tag}`, ops.add(T(a), T(b)), R.add(a, b));
      close(`sub ${tag}`, ops.sub(T(a), T(b)), R.sub(a, b));
      close(`mul ${tag}`, ops.mul(T(a), T(b)), R.mul(a, b));
      close(`div ${tag}`, ops.div(T(a), T(b)), R.div(a, b));
    }
    const x = rng.rt([2, 3], 0.5, 2);
    close("add scalar", ops.add(T(x), 2), R.affine(x, 1, 2));
    close("scalar sub", ops.sub(2, T(x)), R.affine(x, -1, 2));
    close("mul scalar", ops.mul(T(x), 3), R.affine(x, 3, 0));
    close("div scalar", ops.div(T(x), 4), R.affine(x, 0.25, 0));
    close("scalar div", ops.div(2, T(x)), R.map(x, (v) => 2 / v));
  });
});

test("sum and mean over dims", () => {
  tidy(() => {
    const x = rng.rt([2, 3, 4]);
    const cases: [number[] | undefined, boolean][] = [
      [undefined, false], [[1], false], [[0, 2], true], [[-1], false], [[0, 1, 2], true],
    ];
    for (const [dims, keep] of cases) {
      close(`sum ${dims} ${keep}`, ops.sum(T(x), dims, keep), R.sum(x, dims, keep));
      close(`mean ${dims} ${keep}`, ops.mean(T(x), dims, keep), R.mean(x, dims, keep));
    }
    close("sum dim number", ops.sum(T(x), 1), R.sum(x, [1]));
  });
});

test("reshape, expand, sumTo, concat, slice", () => {
  tidy(() => {
    const x = rng.rt([2, 3, 4]);
    close("reshape", ops.reshape(T(x), [6, -1]), { data: x.data, shape: [6, 4] });
    const s = rng.rt([3, 1]);
    close("expand", ops.expand(T(s), [2, 3, 4]), R.expand(s, [2, 3, 4]));
    close("sumTo", ops.sumTo(T(x), [3, 1]), R.sumTo(x, [3, 1]));
    const a = rng.rt([2, 1, 4]);
    const b = rng.rt([2, 3, 4]);
    close("concat dim 1", ops.concat([T(a), T(b)], 1), R.concat([a, b], 1));
    const c = rng.rt([1, 3, 4]);
    close("concat dim 0", ops.concat([T(b), T(c)], 0), R.concat([b, c], 0));
    const d = rng.rt([2, 3, 2]);
    close("concat dim -1", ops.concat([T(b), T(d)], -1), R.concat([b, d], 2));
    close("slice", ops.slice(T(x), 1, 1, 3), R.slice(x, 1, 1, 3));
    close("slice last", ops.slice(T(x), -1, 0, 1), R.slice(x, 2, 0, 1));
  });
});

test("conv2d", () => {
  tidy(() => {
    const cases: { x: number[]; w: number[]; bias: boolean; stride: number; pad: number }[] = [
      { x: [2, 3, 6, 5], w: [4, 3, 3, 3], bias: true, stride: 1, pad: 1 },
      { x: [1, 2, 8, 8], w: [3, 2, 4, 4], bias: false, stride: 2, pad: 1 },
      { x: [2, 4, 8, 8], w: [1, 4, 4, 4], bias: true, stride: 4, pad: 0 },
      { x: [1, 1, 5, 7], w: [2, 1, 1, 1], bias: false, stride: 1, pad: 0 },
    ];
    for (const c of cases) {
      const x = rng.rt(c.x);
      const w = rng.rt(c.w);
      const b = c.bias ? rng.rt([c.w[0]]) : null;
      close(`conv2d ${JSON.stringify(c)}`, ops.conv2d(T(x), T(w), b ? T(b) : null, c.stride, c.pad),
        R.conv2d(x, w, b, c.stride, c.pad), productTol(1e-4));
    }
  });
});

test("linear and matmul", () => {
  tidy(() => {
    const x = rng.rt([5, 7]);
    const w = rng.rt([3, 7]);
    const b = rng.rt([3]);
    close("linear", ops.linear(T(x), T(w), T(b)), R.linear(x, w, b), productTol(1e-4));
    close("linear no bias", ops.linear(T(x), T(w), null), R.linear(x, w, null), productTol(1e-4));
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = rng.rt(ta ? [4, 3] : [3, 4]);
      const bb = rng.rt(tb ? [5, 4] : [4, 5]);
      close(`matmul ${ta} ${tb}`, ops.matmul(T(a), T(bb), ta, tb), R.matmul(a, bb, ta, tb), productTol(1e-4));
    }
  });
});

test("batchNorm: training (batch stats, running update) and eval", () => {
  tidy(() => {
    for (const shape of [[4, 3], [2, 3, 4, 5]]) {
      const x = rng.rt(shape, -2, 3);
      const g = rng.rt([3], 0.5, 1.5);
      const b = rng.rt([3]);
      const rm = rng.rt([3]);
      const rv = rng.rt([3], 0.5, 2);
      const rmT = T(rm);
      const rvT = T(rv);
      const ref = R.batchNorm(x, g, b, rm, rv, true, 0.1, 1e-5);
      close(`batchNorm train ${shape}`, ops.batchNorm(T(x), T(g), T(b), rmT, rvT, true, 0.1, 1e-5), ref.y);
      close(`running mean ${shape}`, rmT, { data: ref.runningMean, shape: [3] });
      close(`running var ${shape}`, rvT, { data: ref.runningVar, shape: [3] });
      const ev = R.batchNorm(x, g, b, rm, rv, false, 0.1, 1e-3);
      const rm2 = T(rm);
      const rv2 = T(rv);
      close(`batchNorm eval ${shape}`, ops.batchNorm(T(x), T(g), T(b), rm2, rv2, false, 0.1, 1e-3), ev.y);
      close("eval leaves running mean", rm2, rm, 0);
      close("eval leaves running var", rv2, rv, 0);
    }
  });
});

test("glu, upsample2x", () => {
  tidy(() => {
    const x = rng.rt([2, 6, 3, 2], -3, 3);
    close("glu dim 1", ops.glu(T(x)), R.glu(x, 1));
    close("glu dim -1", ops.glu(T(x), -1), R.glu(x, 3));
    const f = rng.rt([3, 8], -3, 3);
    close("glu flat", ops.glu(T(f), 1), R.glu(f, 1));
    const u = rng.rt([2, 3, 3, 4]);
    close("upsample2x", ops.upsample2x(T(u)), R.upsample2x(u));
  });
});

test("conv2dUp is conv2d(upsample2x(x)) in value and gradients, on the phase path and the fallback", () => {
  // (N, C, H, W) -> K: 32 channels over 8x8 maps run on the four output phases; 3 channels fall back
  for (const [N, C, H, W, K] of [[8, 32, 8, 8, 16], [2, 3, 5, 4, 2]]) {
    tidy(() => {
      const x = rng.rt([N, C, H, W]);
      const w = rng.rt([K, C, 3, 3], -0.3, 0.3);
      const b = rng.rt([K]);
      const dy = T(rng.rt([N, K, 2 * H, 2 * W]));
      const run = (f: (a: Tensor, v: Tensor, c: Tensor) => Tensor) => {
        const [a, v, c] = [T(x), T(w), T(b)];
        for (const t of [a, v, c]) t.requiresGrad = true;
        const y = f(a, v, c);
        y.backward(dy);
        return [y, a.grad!, v.grad!, c.grad!].map((t) => t.toArray());
      };
      const fused = run((a, v, c) => ops.conv2dUp(a, v, c));
      const plain = run((a, v, c) => ops.conv2d(ops.upsample2x(a), v, c, 1, 1));
      ["y", "dx", "dw", "db"].forEach((name, i) => {
        // the phases multiply tap-summed weights: equal to float rounding, or to TF32's on CUDA
        const err = scaledMaxError(fused[i], plain[i]);
        const tol = productTol(1e-5);
        assert.ok(err <= tol, `conv2dUp ${N}x${C}x${H}x${W} -> ${K} ${name}: scaled max error ${err} > ${tol}`);
      });
    });
  }
  assert.throws(() => ops.conv2dUp(T(rng.rt([1, 2, 3, 3])), T(rng.rt([2, 2, 4, 4]))), /must be 3x3/);
  assert.throws(() => ops.conv2dUp(T(rng.rt([1, 2, 3, 3])), T(rng.rt([2, 3, 3, 3]))), /channels/);
});

// per channel of y (N, C, H, W): [mean, biased variance] in float64
function channelMoments(y: Float32Array, shape: number[]): number[][] {
  const [N, C] = shape;
  const hw = shape[2] * shape[3];
  const out: number[][] = [];
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < hw; i++) s += y[(n * C + c) * hw + i];
    const mean = s / (N * hw);
    let q = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < hw; i++) q += (y[(n * C + c) * hw + i] - mean) ** 2;
    out.push([mean, q / (N * hw)]);
  }
  return out;
}

test("conv2dMoments / conv2dUpMoments: the conv's output and its per-channel moments; batch norm fed them", () => {
  // (N, C, H, W, K, kernel, stride, pad, up): CUDA's small and big tiles, a K split, the upsampled conv
  const cases = [[4, 3, 9, 9, 6, 3, 1, 1, false], [2, 16, 8, 8, 40, 4, 2, 1, false], [2, 64, 4, 4, 48, 3, 1, 1, false],
    [3, 8, 5, 6, 12, 3, 1, 1, true]] as const;
  for (const [N, C, H, W, K, ks, S, P, up] of cases) {
    tidy(() => {
      const x = T(rng.rt([N, C, H, W]));
      const w = T(rng.rt([K, C, ks, ks], -0.3, 0.3));
      const b = T(R.affine(rng.rt([K]), 1, 3)); // a mean offset
      const plain = up ? ops.conv2dUp(x, w, b) : ops.conv2d(x, w, b, S, P);
      const { y, moments } = up ? ops.conv2dUpMoments(x, w, b) : ops.conv2dMoments(x, w, b, S, P);
      const what = `${up ? "conv2dUpMoments" : "conv2dMoments"} ${N}x${C}x${H}x${W} -> ${K}`;
      assert.deepEqual(Array.from(y.toArray()), Array.from(plain.toArray()), `${what}: y is conv's`);
      assert.deepEqual(moments.shape, [K, 2]);
      assert.equal(moments.requiresGrad, false);
      const want = channelMoments(y.toArray(), y.shape);
      const got = moments.toArray();
      const scale = Math.max(...want.map(([m, v]) => Math.abs(m) + Math.sqrt(v)));
      want.forEach(([m, v], c) => {
        assert.ok(Math.abs(got[2 * c] - m) <= 2e-6 * scale, `${what} mean[${c}]: ${got[2 * c]} vs ${m}`);
        assert.ok(Math.abs(got[2 * c + 1] - v) <= 2e-5 * v + 4e-6 * scale * scale, `${what} var[${c}]: ${got[2 * c + 1]} vs ${v}`);
      });
      // batch norm (and batch norm + GLU) from the moments: the same values and gradients to float rounding
      const g = T(rng.rt([K], 0.5, 1.5));
      const beta = T(rng.rt([K]));
      const dy = rng.rt([N, K / 2, ...y.shape.slice(2)]);
      for (const glu of [false, true]) {
        const run = (m: Tensor | null) => {
          const [rm, rv] = [Tensor.zeros([K], { device }), Tensor.ones([K], { device })];
          const yi = y.detach();
          yi.requiresGrad = true;
          const out = glu ? ops.batchNormGlu(yi, g, beta, rm, rv, true, 0.1, 1e-5, 1, m)
            : ops.glu(ops.batchNorm(yi, g, beta, rm, rv, true, 0.1, 1e-5, m), 1);
          out.backward(T(dy));
          return [out, yi.grad!, rm, rv].map((t) => t.toArray());
        };
        const [a, c] = [run(moments), run(null)];
        ["out", "dx", "runningMean", "runningVar"].forEach((name, i) => {
          const err = scaledMaxError(a[i], c[i]);
          assert.ok(err <= 1e-5, `${what} ${glu ? "batchNormGlu" : "batchNorm"} ${name} from moments: scaled max error ${err}`);
        });
      }
      const [rm, rv] = [Tensor.zeros([K], { device }), Tensor.ones([K], { device })];
      assert.throws(() => ops.batchNorm(y, g, beta, rm, rv, false, 0.1, 1e-5, moments), /training only/);
      assert.throws(() => ops.batchNorm(y, g, beta, rm, rv, true, 0.1, 1e-5, T(rng.rt([K, 3]))), /moments must be \(\d+, 2\)/);
    });
  }
});

test("normalize, softmax, logSoftmax, crossEntropy, ntXent", () => {
  tidy(() => {
    const x = rng.rt([6, 5], -3, 3);
    close("normalize", ops.normalize(T(x)), R.normalize(x));
    close("softmax", ops.softmax(T(x)), R.softmax(x));
    close("logSoftmax", ops.logSoftmax(T(x)), R.logSoftmax(x));
    const big = R.affine(x, 30, 0); // large logits: needs the max-subtraction
    close("logSoftmax large", ops.logSoftmax(T(big)), R.logSoftmax(big));
    const targets = [0, 4, 2, 2, 1, 3];
    close("crossEntropy", ops.crossEntropy(T(x), targets), R.crossEntropy(x, targets));
    close("crossEntropy Int32Array", ops.crossEntropy(T(x), Int32Array.from(targets)), R.crossEntropy(x, targets));
    for (const temp of [0.1, 0.5]) close(`ntXent T=${temp}`, ops.ntXent(T(x), temp), R.ntXent(x, temp));
    const two = rng.rt([2, 3]);
    close("ntXent 2 rows", ops.ntXent(T(two), 0.1), R.ntXent(two, 0.1));
  });
});

test("affineGrid and gridSample (bilinear, zeros, align_corners)", () => {
  tidy(() => {
    const theta = rng.rt([2, 2, 3], -1, 1);
    close("affineGrid", ops.affineGrid(T(theta), 5, 4), R.affineGrid(theta, 5, 4));
    const x = rng.rt([2, 3, 5, 6]);
    const grid = rng.rt([2, 4, 3, 2], -1.3, 1.3); // some samples fall outside: zero padding
    close("gridSample", ops.gridSample(T(x), T(grid)), R.gridSample(x, grid));
    const id = R.rt([1, 0, 0, 0, 1, 0], [1, 2, 3]);
    const img = rng.rt([1, 2, 4, 4]);
    const g = ops.affineGrid(T(id), 4, 4);
    close("identity warp", ops.gridSample(T(img), g), img);
  });
});
