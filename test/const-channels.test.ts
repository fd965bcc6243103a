// conv2dConstChannels: the conv of concat(x, code tiled over H x W) computed with the code as a
// per-position bias. Checked against the float64 conv of the tiled input (forward and finite-
// difference gradients in x, w and code), against ops.conv2d on the concatenated tensor, through
// the generator's image head, and for its argument errors.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as ops from "../lib/ops";
import { Generator, Tensor, tidy } from "../lib/tensor";
import { productTol, testDevice } from "./helpers/device";
import { gradcheck } from "./helpers/gradcheck";
import * as R from "./helpers/reference";
import { Rng, RT, scaledMaxError } from "./helpers/reference";

const rng = new Rng(2024);
const device = testDevice();
const ptol = { tol: productTol(1e-4), fwdTol: productTol(1e-4) };

/** the float64 reference: conv2d of concat(x, code tiled), stride 1, pad (R-1)/2 */
function refConstChannels(x: RT, w: RT, code: RT): RT {
  const [N, , H, W] = x.shape;
  const Kc = code.shape[1];
  const tiled = R.expand({ data: code.data, shape: [N, Kc, 1, 1] }, [N, Kc, H, W]);
  return R.conv2d(R.concat([x, tiled], 1), w, null, 1, (w.shape[2] - 1) / 2);
}

interface Case {
  n: number;
  cx: number;
  kc: number;
  h: number;
  w: number;
  k: number;
  r: number;
}

const cases: Case[] = [
  { n: 2, cx: 2, kc: 3, h: 4, w: 5, k: 3, r: 3 },
  { n: 1, cx: 1, kc: 2, h: 1, w: 3, k: 2, r: 3 }, // every position a border (one row)
  { n: 2, cx: 2, kc: 2, h: 3, w: 3, k: 2, r: 5 }, // kernel wider than the map
  { n: 2, cx: 1, kc: 2, h: 3, w: 2, k: 2, r: 1 }, // 1x1: no padding at all
];

test("conv2dConstChannels: forward and gradients in x, w and code match the tiled conv", () => {
  for (const c of cases) {
    const x = rng.rt([c.n, c.cx, c.h, c.w]);
    const w = rng.rt([c.k, c.cx + c.kc, c.r, c.r], -0.5, 0.5);
    const code = rng.rt([c.n, c.kc]);
    gradcheck({
      name: `conv2dConstChannels ${JSON.stringify(c)}`, inputs: [x, w, code], ...ptol,
      forward: ([a, b, d]) => ops.conv2dConstChannels(a, b, d),
      reference: ([a, b, d]) => refConstChannels(a, b, d),
    });
  }
  // the generator's use: a one-hot code that needs no gradient
  const c = cases[0];
  const onehot = R.rt(Array.from({ length: c.n * c.kc }, (_, i) => (i % c.kc === i % 2 ? 1 : 0)), [c.n, c.kc]);
  gradcheck({
    name: "conv2dConstChannels one-hot code, no code gradient", ...ptol,
    inputs: [rng.rt([c.n, c.cx, c.h, c.w]), rng.rt([c.k, c.cx + c.kc, 3, 3], -0.5, 0.5), { value: onehot, grad: false }],
    forward: ([a, b, d]) => ops.conv2dConstChannels(a, b, d),
    reference: ([a, b, d]) => refConstChannels(a, b, d),
  });
});

test("conv2dConstChannels equals conv2d on the concatenated input, values and gradients", () => {
  tidy(() => {
    const [N, Cx, Kc, H, W, K] = [3, 5, 7, 6, 8, 4];
    const gen = new Generator(7n);
    const x = Tensor.randn([N, Cx, H, W], gen, { device, requiresGrad: true });
    const w = Tensor.randn([K, Cx + Kc, 3, 3], gen, { device, requiresGrad: true });
    const code = Tensor.randn([N, Kc], gen, { device, requiresGrad: true });
    const y1 = ops.conv2dConstChannels(x, w, code);
    const tiled = ops.expand(ops.reshape(code, [N, Kc, 1, 1]), [N, Kc, H, W]);
    const y2 = ops.conv2d(ops.concat([x, tiled], 1), w, null, 1, 1);
    assert.ok(scaledMaxError(y1.toArray(), y2.toArray()) < productTol(1e-5), "forward");
    const wts = Tensor.randn(y1.shape, gen, { device });
    const grads = (y: Tensor): Float32Array[] => {
      for (const t of [x, w, code]) t.zeroGrad();
      ops.sum(ops.mul(y, wts)).backward();
      return [x, w, code].map((t) => t.grad!.toArray());
    };
    const g1 = grads(y1);
    const g2 = grads(y2);
    ["x", "w", "code"].forEach((name, i) => {
      const e = scaledMaxError(g1[i], g2[i]);
      assert.ok(e < productTol(1e-5), `${name} gradient: scaled max error ${e}`);
    });
  });
});

test("conv2dConstChannels rejects bad arguments with clear messages", () => {
  tidy(() => {
    const x = Tensor.zeros([2, 3, 4, 4], { device });
    const code = Tensor.zeros([2, 2], { device });
    const bad: [Tensor, Tensor, Tensor, RegExp][] = [
      [x, Tensor.zeros([4, 5, 2, 2], { device }), code, /odd square kernel/],
      [x, Tensor.zeros([4, 5, 3, 1], { device }), code, /odd square kernel/],
      [x, Tensor.zeros([4, 6, 3, 3], { device }), code, /expects 6 input channels.*give 3 \+ 2/],
      [x, Tensor.zeros([4, 5, 3, 3], { device }), Tensor.zeros([3, 2], { device }), /has 3 rows/],
      [x, Tensor.zeros([4, 5, 3, 3], { device }), Tensor.zeros([2, 2, 1], { device }), /code \(N, Kc\)/],
    ];
    for (const [a, b, d, re] of bad) {
      assert.throws(() => ops.conv2dConstChannels(a, b, d), (e: Error) => /conv2dConstChannels/.test(e.message) && re.test(e.message),
        `expected an error matching ${re}`);
    }
  });
});
