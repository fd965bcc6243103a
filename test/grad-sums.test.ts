// Where a tensor gets gradients from several consumers the tape adds them without a pass of its
// own: a conv adds its input gradient into the one already held (on CUDA in its epilogue), and
// the leaves' further contributions are summed in one call when the pass ends. Integer data keep
// every sum exact, so a gradient dropped or added twice shows as a wrong value whatever the order.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { setLeafSumsHeldBytes } from "../lib/autograd";
import { native, NativeAddon } from "../lib/native";
import * as ops from "../lib/ops";
import { Tensor, tidy } from "../lib/tensor";
import { testDevice } from "./helpers/device";

const device = testDevice();

/** small integers, so products and sums are exact in float32 */
function ints(shape: number[], seed: number, requiresGrad = false): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = (s % 7) - 3;
  }
  return Tensor.fromArray(data, shape, { device, requiresGrad });
}

/** counts the calls of one native function while fn runs */
function counting<T>(name: keyof NativeAddon, fn: () => T): { result: T; calls: number } {
  const N = native() as unknown as Record<string, (...a: unknown[]) => unknown>;
  const orig = N[name];
  let calls = 0;
  N[name] = (...a: unknown[]) => {
    calls++;
    return orig.apply(N, a);
  };
  try {
    return { result: fn(), calls };
  } finally {
    N[name] = orig;
  }
}

test("a weight used on four batches (as D's) gets the sum of its four gradients, added in one call", () => {
  tidy(() => {
    const w = ints([4, 3, 3, 3], 1, true);
    const xs = [2, 3, 4, 5].map((s) => ints([2, 3, 6, 6], s));
    const rs = [6, 7, 8, 9].map((s) => ints([2, 4, 6, 6], s));
    const loss = (i: number): Tensor => ops.sum(ops.mul(ops.conv2d(xs[i], w, null, 1, 1), rs[i]));
    const { calls } = counting("addInto", () => ops.add(ops.add(loss(0), loss(1)), ops.add(loss(2), loss(3))).backward());
    assert.equal(calls, 1, "the three further contributions are summed in one call");
    const fused = w.grad!.toArray();
    // the same gradients one backward pass each (each pass adds one contribution)
    const w2 = Tensor.fromArray(w.toArray(), w.shape, { device, requiresGrad: true });
    for (let i = 0; i < 4; i++) ops.sum(ops.mul(ops.conv2d(xs[i], w2, null, 1, 1), rs[i])).backward();
    assert.deepEqual(Array.from(fused), Array.from(w2.grad!.toArray()));
    // and a grad held from an earlier pass takes the next pass's contributions on top
    loss(0).backward();
    const once = Tensor.fromArray(w.toArray(), w.shape, { device, requiresGrad: true });
    ops.sum(ops.mul(ops.conv2d(xs[0], once, null, 1, 1), rs[0])).backward();
    const g0 = once.grad!.toArray();
    assert.deepEqual(Array.from(w.grad!.toArray()), Array.from(fused, (v, i) => v + g0[i]));
  });
});

test("past the held-bytes bound the leaf contributions are added as they come, to the same sums", () => {
  tidy(() => {
    const w = ints([4, 3, 3, 3], 21, true);
    const xs = [22, 23, 24].map((s) => ints([2, 3, 5, 5], s));
    const total = (): Tensor => xs.map((x) => ops.sum(ops.conv2d(x, w, null, 1, 1))).reduce((a, b) => ops.add(a, b));
    total().backward();
    const held = w.grad!.toArray();
    w.zeroGrad();
    const prev = setLeafSumsHeldBytes(0);
    try {
      const { calls } = counting("addInto", () => total().backward());
      assert.equal(calls, 2, "each further contribution added on arrival");
    } finally {
      setLeafSumsHeldBytes(prev);
    }
    assert.deepEqual(Array.from(w.grad!.toArray()), Array.from(held));
  });
});

test("a tensor feeding a conv and another op: the conv adds its input gradient into the one held", () => {
  tidy(() => {
    const x = ints([2, 4, 5, 5], 11, true);
    const w = ints([3, 4, 3, 3], 12);
    const r = ints([2, 3, 5, 5], 13);
    const s = ints([2, 4, 5, 5], 14);
    // convPart and otherPart each reach h; whichever the tape reaches second adds into the first
    const convPart = (h: Tensor): Tensor => ops.sum(ops.mul(ops.conv2d(h, w, null, 1, 1), r));
    const otherPart = (h: Tensor): Tensor => ops.sum(ops.mul(h, s));
    const gradOf = (f: (h: Tensor) => Tensor): Float32Array => {
      const xi = Tensor.fromArray(x.toArray(), x.shape, { device, requiresGrad: true });
      f(ops.mul(xi, 2)).backward();
      return xi.grad!.toArray();
    };
    const a = gradOf(convPart), b = gradOf(otherPart);
    const want = Array.from(a, (v, i) => v + b[i]);
    let adds = 0;
    for (const order of [0, 1]) {
      x.zeroGrad();
      const { calls } = counting("conv2dBackwardDataAdd", () => {
        const h = ops.mul(x, 2);
        const total = order ? ops.add(otherPart(h), convPart(h)) : ops.add(convPart(h), otherPart(h));
        total.backward();
      });
      adds += calls;
      assert.deepEqual(Array.from(x.grad!.toArray()), want, `order ${order}`);
    }
    assert.ok(adds >= 1, "the conv added into a held gradient at least once");
  });
});

test("addInto and conv2dBackwardDataAdd refuse mismatched shapes and aliasing, naming them", () => {
  const N = native();
  const hs = [[3], [3], [4], [2, 1, 4, 4], [1, 1, 3, 3], [2, 1, 4, 4]].map((s) => N.full(s, 1, device));
  const [a, b, c, dy, w, dx] = hs;
  try {
    assert.throws(() => N.addInto([a], [c]), /add_into: pair 0: shapes differ: \[3\] and \[4\]/);
    assert.throws(() => N.addInto([a, b], [b]), /dsts and srcs must pair up, got 2 and 1/);
    assert.throws(() => N.addInto([a, b], [b, c]), /add_into: pair 1: shapes differ/);
    assert.throws(() => N.addInto([a, b], [b, a]), /add_into: (source \d shares memory with destination \d|destination \d shares memory with source \d)/);
    const share = N.share(a);
    try {
      assert.throws(() => N.addInto([a], [share]), /add_into: source 0 shares memory with destination 0/);
    } finally {
      share.dispose();
    }
    N.addInto([], []); // nothing to do
    N.addInto([a, a], [b, b]);
    assert.deepEqual(Array.from(N.toFloat32(a)), [3, 3, 3]);
    assert.throws(() => N.conv2dBackwardDataAdd(c, dy, w, 1, 1), /conv2d_backward_data \(adding into a gradient\)/);
    assert.throws(() => N.conv2dBackwardDataAdd(dy, dy, w, 1, 1), /shares memory with dy/);
    N.conv2dBackwardDataAdd(dx, dy, w, 1, 1);
    const plain = N.conv2dBackwardData(dy, w, [2, 1, 4, 4], 1, 1);
    try {
      assert.deepEqual(Array.from(N.toFloat32(dx)), Array.from(N.toFloat32(plain), (v) => v + 1));
    } finally {
      plain.dispose();
    }
  } finally {
    for (const h of hs) h.dispose();
  }
});
