// The CPU caching allocator seen from JS: steady-state steps take no fresh memory from the
// system, live bytes stay exact (cached blocks are not live), emptyCache/resetPeakMemory work,
// and C3GAN_CPU_CACHE=0 turns the cache off.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { resolveConfigs } from "../lib/bench/configs";
import { IterationBench } from "../lib/bench/iteration";
import { native } from "../lib/native";
import { BatchNorm2d, Conv2d } from "../lib/nn";
import * as ops from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { Generator, Tensor, tidy } from "../lib/tensor";

test("repeated training steps on the CPU are served from the cache", () => {
  const N = native();
  if (!N.memoryStats("cpu").cacheEnabled) return; // the suite may run with C3GAN_CPU_CACHE=0
  const gen = new Generator(3);
  // shapes from 64 B to a few MiB, so both the heap and the mapped classes are exercised
  const conv = new Conv2d(8, 16, 3, { padding: 1, generator: gen, device: "cpu" });
  const bn = new BatchNorm2d(16, { device: "cpu" });
  const opt = new Adam([...conv.parameters(), ...bn.parameters()], { lr: 1e-3 });
  const x = Tensor.randn([8, 8, 64, 64], gen, { device: "cpu" });
  const step = () => tidy(() => {
    ops.mean(ops.square(ops.relu(bn.forward(conv.forward(x))))).backward();
    opt.step();
    opt.zeroGrad();
  });
  for (let i = 0; i < 5; i++) step();
  const s0 = N.memoryStats("cpu");
  for (let i = 0; i < 30; i++) step();
  const s1 = N.memoryStats("cpu");
  assert.equal(s1.systemAllocs, s0.systemAllocs, "no block taken from the system after the warm-up");
  assert.equal(s1.systemFrees, s0.systemFrees, "no block given back either");
  assert.ok(s1.cacheHits! > s0.cacheHits! + 30 * 10, `cache hits ${s0.cacheHits} -> ${s1.cacheHits}`);
  assert.equal(s1.liveBytes, s0.liveBytes, "live bytes stay flat");
  assert.ok(s1.inUseBytes! + s1.cachedBytes! <= s1.limitBytes!, "in use + cached stays under the limit");
  opt.dispose();
  conv.dispose();
  bn.dispose();
  x.dispose();
});

test("whole GAN iterations at a small batch take no fresh blocks once warm", () => {
  // The D and G steps use different shape mixes; at 32 px batch 16 (and 8) their blocks need
  // ~1.3x the in-use peak, which a tighter cache bound evicted and re-took every iteration.
  const N = native();
  if (!N.memoryStats("cpu").cacheEnabled) return;
  const [cfg] = resolveConfigs("32px-ngf128-ndf32-K20-b64");
  const bench = new IterationBench({ name: cfg.name, spec: cfg.spec, batch: 16 }, "cpu");
  try {
    N.emptyCache("cpu"); // the bound restarts from this test's own high-water mark
    for (let i = 0; i < 3; i++) bench.run();
    const s0 = N.memoryStats("cpu");
    for (let i = 0; i < 5; i++) bench.run();
    const s1 = N.memoryStats("cpu");
    assert.equal(s1.systemAllocs! - s0.systemAllocs!, 0, "fresh system allocations in 5 warm iterations");
    assert.equal(s1.inUseBytes, s0.inUseBytes, "in-use bytes flat");
    assert.ok(s1.inUseBytes! + s1.cachedBytes! <= s1.limitBytes!, "in use + cached stays under the limit");
  } finally {
    bench.dispose();
  }
});

test("live bytes count tensors exactly; peaks reset; emptyCache releases the cache", () => {
  const N = native();
  const live0 = N.liveBytes("cpu");
  N.resetPeakMemory("cpu");
  const a = Tensor.zeros([1000, 1001]);
  const b = Tensor.zeros([3]);
  const s = N.memoryStats("cpu");
  assert.equal(N.liveBytes("cpu"), live0 + 4 * (1000 * 1001 + 3));
  assert.equal(s.liveBytes, N.liveBytes("cpu"));
  assert.ok(s.inUseBytes! >= s.liveBytes, "the allocator counts whole size classes");
  a.dispose();
  b.dispose();
  const s2 = N.memoryStats("cpu");
  assert.equal(s2.liveBytes, live0, "cached blocks are not live");
  assert.equal(s2.peakLiveBytes, live0 + 4 * (1000 * 1001 + 3));
  N.resetPeakMemory("cpu");
  assert.equal(N.memoryStats("cpu").peakLiveBytes, live0);
  // a Winograd-sized conv keeps its transformed weights, counted apart from the tensors
  const conv = new Conv2d(32, 32, 3, { padding: 1, bias: false, generator: new Generator(4), device: "cpu" });
  tidy(() => {
    conv.forward(Tensor.randn([2, 32, 16, 16], new Generator(5), { device: "cpu" }));
  });
  conv.dispose();
  const held = N.memoryStats("cpu").weightCacheBytes!;
  if (process.env.C3GAN_WINOGRAD !== "0" && process.env.C3GAN_WINOGRAD_CACHE_MB !== "0") {
    assert.ok(held >= 32 * 32 * 16 * 4, `weight cache holds ${held} bytes`);
  }
  // the conv's kernels grew their per-thread scratch, which stays for the threads' life
  const scratch = N.memoryStats("cpu").scratchBytes!;
  assert.ok(scratch > 0, `scratch after a conv: ${scratch} bytes`);
  N.emptyCache("cpu");
  const s3 = N.memoryStats("cpu");
  assert.equal(s3.scratchBytes, scratch, "the threads keep their scratch through emptyCache");
  assert.equal(s3.weightCacheBytes, 0, "emptyCache clears the weight cache");
  assert.equal(s3.cachedBytes, 0);
  assert.equal(s3.liveBytes, live0, "emptyCache leaves live tensors alone");
  assert.throws(() => N.memoryStats("tpu" as never), /"cpu" or "cuda"/);
});

test("C3GAN_CPU_CACHE=0 sends every free back to the system", () => {
  const nativeJs = path.join(__dirname, "..", "lib", "native.js");
  const script = `
    const N = require(${JSON.stringify(nativeJs)}).native();
    for (let i = 0; i < 3; i++) N.empty([512, 1024], "cpu").dispose();
    process.stdout.write(JSON.stringify(N.memoryStats("cpu")));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, C3GAN_CPU_CACHE: "0" } });
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.cacheEnabled, false);
  assert.equal(s.cachedBytes, 0);
  assert.equal(s.cacheHits, 0);
  assert.ok(s.systemFrees >= 3 && s.systemAllocs >= 3, JSON.stringify(s));
});
