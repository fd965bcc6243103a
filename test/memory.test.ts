// Deterministic memory: a training loop inside tidy keeps native bytes and handle counts flat.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { native } from "../lib/native";
import { BatchNorm2d, Conv2d } from "../lib/nn";
import * as ops from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { Generator, liveTensors, Tensor, tidy } from "../lib/tensor";
import { emulatedCuda, testDevice } from "./helpers/device";

// on the CUDA emulator 300 steps (its checks at every 100th step are the same; 2,000 take 75 s
// there under AddressSanitizer, a sixth of CI's emulated stage)
const STEPS = emulatedCuda() ? 300 : 2000;

test(`${STEPS.toLocaleString("en")} steps of conv -> batchNorm -> relu -> sum -> backward -> Adam stay flat`, (t) => {
  const N = native();
  const device = testDevice();  // C3GAN_DEVICE, cpu by default
  const gen = new Generator(5);
  const conv = new Conv2d(4, 4, 3, { padding: 1, generator: gen, device });
  const bn = new BatchNorm2d(4, { device });
  const opt = new Adam([...conv.parameters(), ...bn.parameters()], { lr: 1e-3 });
  const x = Tensor.randn([2, 4, 8, 8], gen, { device });
  const step = (): number => tidy(() => {
    const loss = ops.mean(ops.square(ops.relu(bn.forward(conv.forward(x)))));
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return 0;
  });
  const t0 = Date.now();
  for (let i = 0; i < 10; i++) step(); // warm-up: optimizer state gets allocated
  const bytes = N.liveBytes(device);
  const handles = N.liveTensors();
  const tensors = liveTensors();
  // the device allocator (CPU cache or CUDA caching allocator): nothing held, nothing new asked of
  // the system or the driver once the first steps have filled the cache
  const alloc0 = N.memoryStats(device);
  for (let i = 1; i <= STEPS; i++) {
    step();
    if (i % 100 === 0) {
      assert.equal(N.liveBytes(device), bytes, `liveBytes at step ${i}`);
      assert.equal(N.liveTensors(), handles, `native liveTensors at step ${i}`);
      assert.equal(liveTensors(), tensors, `Tensor objects at step ${i}`);
      const a = N.memoryStats(device);
      if (a.cacheEnabled) {
        assert.equal(a.inUseBytes, alloc0.inUseBytes, `${device} allocator bytes in use at step ${i}`);
        assert.equal(a.systemAllocs, alloc0.systemAllocs, `${device} allocations from the system at step ${i}`);
      }
    }
  }
  t.diagnostic(`${(STEPS + 10).toLocaleString("en")} steps on ${device} in ${(Date.now() - t0) / 1000} s`);  // speed is the benchmarks' business
  assert.equal(bn.numBatchesTracked.item(), STEPS + 10);
  // a forward that is never backpropagated releases its graph too
  tidy(() => {
    ops.sum(bn.forward(conv.forward(x)));
  });
  assert.equal(N.liveTensors(), handles);
  opt.dispose();
  conv.dispose();
  bn.dispose();
  x.dispose();
});
