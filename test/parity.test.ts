// PyTorch parity of the op core: conv2d, batch norm, affine_grid + grid_sample, NT-Xent and Adam
// through lib/ops.ts autograd and lib/optim/adam.ts, against fixtures made by
// test/fixtures/make_fixtures.py (torch 1.13, float64 reference). Runs on the device named by
// C3GAN_DEVICE (cpu by default; cuda with a tolerance widened for TF32 convolutions).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot, type DeviceName } from "../lib/native";
import { Tensor, tidy } from "../lib/tensor";
import * as ops from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { productTol, testDevice } from "./helpers/device";

interface Fx {
  shape: number[];
  data: number[];
}

const TOL = 1e-4;
let checks = 0;

function fixture<T>(name: string): { cases: T[] } {
  const file = path.join(packageRoot(), "test", "fixtures", name);
  return JSON.parse(fs.readFileSync(file, "utf8")) as { cases: T[] };
}

function devices(): DeviceName[] {
  return [testDevice()];
}

/** max|a-b| / max(max|b|, 1e-6): the error relative to the reference's scale. */
function scaledError(actual: ArrayLike<number>, expected: ArrayLike<number>): { err: number; at: number } {
  let maxDiff = 0;
  let at = -1;
  let scale = 1e-6;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= maxDiff)) {
      maxDiff = d; // also catches NaN (NaN <= x is false)
      at = i;
    }
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return { err: maxDiff / scale, at };
}

/** the largest scaled error seen in the running test and what it was on (reported as a diagnostic) */
let worst = { err: 0, what: "" };

function report(t: { diagnostic(msg: string): void }): void {
  assert.ok(checks > 0, "no comparisons were made");
  t.diagnostic(`${checks} comparisons; worst scaled error ${worst.err.toExponential(2)} (${worst.what})`);
  worst = { err: 0, what: "" };
  checks = 0;
}

function expectArray(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = TOL): void {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  const { err, at } = scaledError(actual, expected);
  checks++;
  if (!(err <= worst.err)) worst = { err, what };
  assert.ok(
    err <= tol,
    `${what}: scaled max error ${err.toExponential(3)} > ${tol} (at flat index ${at}: got ${actual[at]}, expected ${expected[at]})`,
  );
}

function expectTensor(t: Tensor | null, expected: Fx, what: string, tol = TOL): void {
  assert.ok(t !== null, `${what}: is null (no gradient reached it)`);
  assert.deepEqual(t.shape, expected.shape, `${what}: shape`);
  expectArray(t.toArray(), expected.data, what, tol);
}

function input(f: Fx, device: DeviceName, requiresGrad = false): Tensor {
  return Tensor.fromArray(f.data, f.shape, { device, requiresGrad });
}

/** sum(y * g): its gradient wrt y is g, the fixtures' backward seed. */
function dotLoss(y: Tensor, g: Fx, device: DeviceName): Tensor {
  return ops.sum(ops.mul(y, input(g, device)));
}

interface ConvCase {
  name: string;
  stride: number;
  padding: number;
  x: Fx;
  w: Fx;
  b: Fx | null;
  g: Fx;
  y: Fx;
  dx: Fx;
  dw: Fx;
  db: Fx | null;
}

test("parity: conv2d forward and gradients wrt input, weight, bias", (t) => {
  const { cases } = fixture<ConvCase>("conv2d.json");
  for (const device of devices()) {
    for (const c of cases) {
      const what = `conv2d ${c.name} [${device}]`;
      tidy(() => {
        const x = input(c.x, device, true);
        const w = input(c.w, device, true);
        const b = c.b ? input(c.b, device, true) : null;
        const y = ops.conv2d(x, w, b, c.stride, c.padding);
        const tol = productTol(TOL);
        expectTensor(y, c.y, `${what}: y`, tol);
        dotLoss(y, c.g, device).backward();
        expectTensor(x.grad, c.dx, `${what}: dx`, tol);
        expectTensor(w.grad, c.dw, `${what}: dw`, tol);
        if (b && c.db) expectTensor(b.grad, c.db, `${what}: db`, tol);
      });
    }
  }
  report(t);
});

interface BnCall {
  x: Fx;
  g: Fx;
  y: Fx;
  runningMean?: Fx;
  runningVar?: Fx;
  dx: Fx;
  dweight: Fx;
  dbias: Fx;
}
interface BnCase {
  name: string;
  momentum: number;
  eps: number;
  weight: Fx;
  bias: Fx;
  train: BnCall[];
  eval: BnCall;
}

test("parity: batch norm, 3 training calls (running stats, grads) then eval", (t) => {
  const { cases } = fixture<BnCase>("batchnorm.json");
  for (const device of devices()) {
    for (const c of cases) {
      tidy(() => {
        const C = c.weight.shape[0];
        const weight = input(c.weight, device, true);
        const bias = input(c.bias, device, true);
        const runningMean = Tensor.zeros([C], { device });
        const runningVar = Tensor.ones([C], { device });
        const calls: [string, BnCall, boolean][] = [
          ...c.train.map((call, k): [string, BnCall, boolean] => [`train call ${k + 1}`, call, true]),
          ["eval", c.eval, false],
        ];
        for (const [label, call, training] of calls) {
          const what = `${c.name} ${label} [${device}]`;
          weight.zeroGrad();
          bias.zeroGrad();
          const x = input(call.x, device, true);
          const y = ops.batchNorm(x, weight, bias, runningMean, runningVar, training, c.momentum, c.eps);
          expectTensor(y, call.y, `${what}: y`);
          if (call.runningMean && call.runningVar) {
            expectTensor(runningMean, call.runningMean, `${what}: running_mean`);
            expectTensor(runningVar, call.runningVar, `${what}: running_var`);
          }
          dotLoss(y, call.g, device).backward();
          expectTensor(x.grad, call.dx, `${what}: dx`);
          expectTensor(weight.grad, call.dweight, `${what}: dweight`);
          expectTensor(bias.grad, call.dbias, `${what}: dbias`);
        }
      });
    }
  }
  report(t);
});

interface GridCase {
  name: string;
  outH: number;
  outW: number;
  x: Fx;
  theta: Fx;
  g: Fx;
  grid: Fx;
  y: Fx;
  dx: Fx;
  dtheta: Fx;
}

test("parity: affine_grid + grid_sample (bilinear, zeros, align_corners) and grads wrt x, theta", (t) => {
  const { cases } = fixture<GridCase>("grid_sample.json");
  for (const device of devices()) {
    for (const c of cases) {
      const what = `grid_sample ${c.name} [${device}]`;
      tidy(() => {
        const x = input(c.x, device, true);
        const theta = input(c.theta, device, true);
        const grid = ops.affineGrid(theta, c.outH, c.outW);
        expectTensor(grid, c.grid, `${what}: grid`);
        const y = ops.gridSample(x, grid);
        expectTensor(y, c.y, `${what}: y`);
        dotLoss(y, c.g, device).backward();
        expectTensor(x.grad, c.dx, `${what}: dx`);
        expectTensor(theta.grad, c.dtheta, `${what}: dtheta`);
      });
    }
  }
  report(t);
});

interface NtXentCase {
  name: string;
  temperature: number;
  x: Fx;
  loss: number;
  dx: Fx;
}

test("parity: NT-Xent as the official C3-GAN contrastive loss (loss and grad)", (t) => {
  const { cases } = fixture<NtXentCase>("ntxent.json");
  for (const device of devices()) {
    for (const c of cases) {
      const what = `ntXent ${c.name} [${device}]`;
      tidy(() => {
        const x = input(c.x, device, true);
        const loss = ops.ntXent(x, c.temperature);
        assert.deepEqual(loss.shape, [], `${what}: loss is a scalar`);
        expectArray([loss.item()], [c.loss], `${what}: loss`);
        loss.backward();
        expectTensor(x.grad, c.dx, `${what}: dx`);
      });
    }
  }
  report(t);
});

interface AdamCase {
  name: string;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  params: Fx[];
  grads: Fx[][];
  after: Fx[][];
}

test("parity: Adam (official betas; weight decay with default betas) over 5 steps", (t) => {
  const { cases } = fixture<AdamCase>("adam.json");
  for (const device of devices()) {
    for (const c of cases) {
      tidy(() => {
        const params = c.params.map((p) => input(p, device, true));
        const opt = new Adam(params, { lr: c.lr, betas: c.betas, eps: c.eps, weightDecay: c.weightDecay });
        c.grads.forEach((grads, step) => {
          opt.zeroGrad();
          // sum_k sum(p_k * G_k) hands each parameter exactly its fixture gradient G_k
          let loss = dotLoss(params[0], grads[0], device);
          for (let k = 1; k < params.length; k++) loss = ops.add(loss, dotLoss(params[k], grads[k], device));
          loss.backward();
          opt.step();
          params.forEach((p, k) => {
            const what = `Adam ${c.name} step ${step + 1} param ${k} [${device}]`;
            assert.deepEqual(p.shape, c.after[step][k].shape, `${what}: shape`);
            // Compare the change from the start: the parameters themselves would pass trivially.
            // (Parameters start near 0.01 so float32 spacing stays well under the steps, ~lr.)
            const init = c.params[k].data;
            const start = Float32Array.from(init); // exactly the float32 values the optimiser began from
            const got = Array.from(p.toArray(), (v, i) => v - start[i]);
            const want = c.after[step][k].data.map((v, i) => v - init[i]);
            expectArray(got, want, `${what}: p - p0`);
          });
        });
      });
    }
  }
  report(t);
});
