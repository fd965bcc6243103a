// Finite-difference gradient checks: the op runs forward and backward through the tape (float32),
// the numerical gradient comes from central differences of a float64 reference forward at the
// same (float32-rounded) inputs. The scalar objective is sum(out * R) for fixed random weights R.
// The inputs and R are made on the test device (C3GAN_DEVICE, helpers/device.ts), so the op and
// its backward run there; gradients are read back to the host for the comparison.
import * as assert from "node:assert/strict";
import type { DeviceName } from "../../lib/native";
import { mul, sum } from "../../lib/ops";
import { Tensor, tidy } from "../../lib/tensor";
import { testDevice } from "./device";
import { numel, Rng, RT, scaledMaxError } from "./reference";

export interface GradInput {
  value: RT;
  /** whether to check (and request) this input's gradient; default true */
  grad?: boolean;
}

export interface GradcheckCase {
  name: string;
  inputs: (RT | GradInput)[];
  forward: (ts: Tensor[]) => Tensor;
  reference: (xs: RT[]) => RT;
  /** finite-difference step on the float64 reference */
  h?: number;
  /** allowed scaled max error of each gradient */
  tol?: number;
  /** allowed scaled max error of the forward output */
  fwdTol?: number;
  /** where the inputs are made; the test device (C3GAN_DEVICE, cpu by default) unless given */
  device?: DeviceName;
}

function hashName(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function asInput(x: RT | GradInput): GradInput {
  return "value" in x ? x : { value: x };
}

/** Runs the check; throws an AssertionError naming the case and the input on failure. Returns the errors. */
export function gradcheck(c: GradcheckCase): number[] {
  const inputs = c.inputs.map(asInput);
  const h = c.h ?? 1e-5;
  const tol = c.tol ?? 1e-4;
  const fwdTol = c.fwdTol ?? 1e-4;
  const device = c.device ?? testDevice();
  const ref0 = c.reference(inputs.map((i) => i.value));
  const rng = new Rng(hashName(c.name));
  const weights = rng.array(numel(ref0.shape), -1, 1);
  const dot = (r: RT): number => {
    let s = 0;
    for (let i = 0; i < r.data.length; i++) s += r.data[i] * weights[i];
    return s;
  };

  const analytic = tidy(() => {
    const ts = inputs.map((i) => Tensor.fromArray(i.value.data, i.value.shape, { device, requiresGrad: i.grad ?? true }));
    const out = c.forward(ts);
    assert.deepEqual(out.shape, ref0.shape, `${c.name}: output shape`);
    assert.equal(out.device, device, `${c.name}: output device`);
    const fe = scaledMaxError(out.toArray(), ref0.data);
    assert.ok(fe <= fwdTol, `${c.name}: forward scaled max error ${fe} > ${fwdTol}`);
    const loss = sum(mul(out, Tensor.fromArray(weights, ref0.shape, { device })));
    loss.backward();
    return ts.map((t, k) => {
      if (!(inputs[k].grad ?? true)) return null;
      assert.ok(t.grad, `${c.name}: input ${k} got no gradient`);
      assert.deepEqual(t.grad.shape, t.shape, `${c.name}: input ${k} gradient shape`);
      assert.equal(t.grad.device, device, `${c.name}: input ${k} gradient device`);
      return t.grad.toArray();
    });
  });

  const errors: number[] = [];
  inputs.forEach((inp, k) => {
    const g = analytic[k];
    if (!g) return;
    const xs = inputs.map((i) => ({ data: Float64Array.from(i.value.data), shape: i.value.shape }));
    const num = new Float64Array(g.length);
    for (let e = 0; e < g.length; e++) {
      const x0 = xs[k].data[e];
      xs[k].data[e] = x0 + h;
      const fp = dot(c.reference(xs));
      xs[k].data[e] = x0 - h;
      const fm = dot(c.reference(xs));
      xs[k].data[e] = x0;
      num[e] = (fp - fm) / (2 * h);
    }
    const err = scaledMaxError(g, num);
    errors.push(err);
    if (process.env.GRADCHECK_VERBOSE) console.log(`${c.name} input ${k}: ${err.toExponential(2)}`);
    assert.ok(err <= tol, `${c.name}: gradient of input ${k} (shape [${inp.value.shape}]) has scaled max error ${err} > ${tol}`);
  });
  return errors;
}
