// What V8 is told about native memory (the addon's external memory): the allocators' holdings (in
// use plus cached), flat once warm. Telling it the bytes of live tensors instead made the figure
// swing by the activations' size within every training iteration, and each rise past V8's soft
// limit started a full collection: 87 per CUB batch-64 iteration, 158 ms of pauses. Tensors that
// are dropped without dispose still grow the holdings, so V8 still collects them. Runs on
// C3GAN_DEVICE.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { PerformanceObserver, constants } from "node:perf_hooks";
import { native } from "../lib/native";
import { Tensor, tidy } from "../lib/tensor";
import { testDevice } from "./helpers/device";

const MiB64 = 1 << 24; // floats

/** V8's collections while fn runs, by kind (perf_hooks delivers them after a turn of the loop) */
async function collections(fn: () => void): Promise<{ major: number; incremental: number; all: number }> {
  const kinds: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind);
  });
  obs.observe({ entryTypes: ["gc"] });
  try {
    fn();
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    obs.disconnect();
  }
  return {
    major: kinds.filter((k) => k === constants.NODE_PERFORMANCE_GC_MAJOR).length,
    incremental: kinds.filter((k) => k === constants.NODE_PERFORMANCE_GC_INCREMENTAL).length,
    all: kinds.length,
  };
}

test("tensors that come and go by hundreds of MiB start no V8 collections once the cache is warm", async () => {
  const device = testDevice();
  // a step's activations in miniature: 64 MiB and 16 MiB made and freed, as in every iteration
  const step = () => tidy(() => {
    Tensor.zeros([MiB64], { device });
    Tensor.zeros([MiB64 / 4], { device });
  });
  step(); // the cache takes the blocks
  // that growth of the holdings may have started a collection V8 finishes later: let it finish
  await new Promise((r) => setTimeout(r, 100));
  const live0 = native().memoryStats(device).liveBytes;
  const gc = await collections(() => {
    for (let i = 0; i < 40; i++) step();
  });
  // (with live bytes reported: 40 major and 40 incremental collections here)
  assert.equal(gc.major + gc.incremental, 0, `V8 collections during 40 warm steps: ${JSON.stringify(gc)}`);
  assert.equal(native().memoryStats(device).liveBytes, live0);
});

test("tensors dropped without dispose are still collected", async () => {
  const device = testDevice();
  const N = native();
  const live0 = N.memoryStats(device).liveBytes;
  // 40 x 64 MiB made and dropped: the holdings V8 is told of grow with each, so it collects them
  const gc = await collections(() => {
    for (let i = 0; i < 40; i++) Tensor.zeros([MiB64], { device });
  });
  assert.ok(gc.major > 0, `V8 collected: ${JSON.stringify(gc)}`);
  await new Promise((r) => setTimeout(r, 50)); // finalizers that a collection queued
  const leftMiB = (N.memoryStats(device).liveBytes - live0) / 2 ** 20;
  assert.ok(leftMiB < 40 * 64 / 2, `${leftMiB} MiB of the 2,560 MiB dropped are still live`);
});
