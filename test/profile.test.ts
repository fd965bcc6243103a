// The op profiler (lib/profile.ts, `c3gan bench --profile`): it counts every native op call of
// the code it runs, by op and by tensor shapes, leaves native() as it was afterwards (also after
// a throw), refuses to nest, and `bench --profile` reports where an iteration's time went.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { benchOptions, formatIterations, runIterations } from "../lib/bench/command";
import { native } from "../lib/native";
import * as ops from "../lib/ops";
import { OpProfile } from "../lib/profile";
import { Generator, Tensor, tidy } from "../lib/tensor";
import { emulatedCuda, testDevice } from "./helpers/device";

const device = testDevice();

test("a profile counts each op call with its tensor shapes, and native() is the addon again after it", () => {
  const raw = native();
  const gen = new Generator(1);
  const x = Tensor.randn([2, 3, 8, 8], gen, { device, requiresGrad: true });
  const w = Tensor.randn([4, 3, 3, 3], gen, { device, requiresGrad: true });
  const p = new OpProfile(device);
  const sum = p.run(() => {
    assert.notEqual(native(), raw, "inside the profile native() is the timing wrapper");
    return tidy(() => {
      for (let i = 0; i < 3; i++) ops.mean(ops.conv2d(x, w, null, 1, 1)).backward();
      return ops.sum(ops.relu(ops.conv2d(x, w, null, 1, 1))).item();
    });
  });
  assert.equal(native(), raw, "the addon itself after the profile");
  assert.ok(Number.isFinite(sum));
  const conv = p.shapes().find((t) => t.op === "conv2d");
  assert.ok(conv, JSON.stringify(p.ops().map((t) => t.op)));
  assert.equal(conv.shapes, "2x3x8x8, 4x3x3x3");
  assert.equal(conv.calls, 4);
  const byOp = new Map(p.ops().map((t) => [t.op, t]));
  assert.equal(byOp.get("conv2dBackwardData")?.calls, 3, "each backward pass once per backward()");
  assert.equal(byOp.get("conv2dBackwardWeight")?.calls, 3);
  assert.equal(byOp.get("conv2dBackwardWeight")?.shapes, "", "per-op totals carry no shapes");
  assert.ok(!byOp.has("memoryStats") && !byOp.has("numThreads"), "queries and knobs are not ops");
  for (const t of p.ops()) assert.ok(t.seconds >= 0 && t.calls > 0, JSON.stringify(t));
  const sorted = p.ops().map((t) => t.seconds);
  assert.deepEqual(sorted, [...sorted].sort((a, b) => b - a), "the most time first");
  assert.ok(p.opSeconds > 0 && p.opSeconds <= p.totalSeconds + 1e-3, `${p.opSeconds} of ${p.totalSeconds}`);
  // a second run adds to the same counts
  p.run(() => tidy(() => ops.conv2d(x, w, null, 1, 1)));
  assert.equal(p.shapes().find((t) => t.op === "conv2d")!.calls, 5);
  x.dispose();
  w.dispose();
});

test("a throwing op passes its error through uncounted; profiles do not nest; async code is refused", () => {
  const raw = native();
  const p = new OpProfile(device);
  const a = Tensor.zeros([2, 3], { device });
  const b = Tensor.zeros([4, 5], { device });
  assert.throws(() => p.run(() => ops.add(a, b)), /shape|broadcast/i);
  assert.equal(native(), raw, "restored after a throw");
  assert.ok(!p.ops().some((t) => t.op === "binary"), "the failed call is not counted");
  assert.throws(() => p.run(() => new OpProfile(device).run(() => 1)), /another op profile is active/);
  assert.equal(native(), raw);
  assert.throws(() => p.run(() => Promise.resolve(1)), /returned a Promise/);
  assert.equal(native(), raw);
  a.dispose();
  b.dispose();
});

test("bench --profile: option checks, and a report of where the iteration's time went", async () => {
  assert.equal(benchOptions({}).profile, null);
  assert.equal(benchOptions({ profile: true }).profile, "ops");
  assert.equal(benchOptions({ profile: "ops" }).profile, "ops");
  assert.equal(benchOptions({ profile: "host" }).profile, "host");
  assert.throws(() => benchOptions({ profile: "kernels" }), /--profile takes 'ops' .* or 'host' .*, got 'kernels'/);
  assert.throws(() => benchOptions({ profile: true, ops: true }), /--profile applies to the iteration bench/);
  assert.throws(() => benchOptions({ profile: true, compare: "torch" }), /leave out --compare/);
  // on the CPU whatever the suite's device: the first test covers CUDA's waits, and a whole
  // iteration on the emulated device (CI's ASan pass) would take minutes
  const o = benchOptions({ profile: true, quick: true, configs: "32px", batch: "2", device: "cpu" });
  const r = await runIterations(o);
  assert.equal(r.profiles.length, 1);
  const p = r.profiles[0];
  assert.equal(p.iterations, 1);
  assert.ok(p.opSeconds > 0 && p.opSeconds <= p.seconds, `${p.opSeconds} of ${p.seconds}`);
  const names = p.ops.map((t) => t.op);
  for (const op of ["conv2dMoments", "conv2dBackwardData", "conv2dBackwardWeight", "adamSteps", "ntXent"]) {
    assert.ok(names.includes(op), `${op} in ${names.join(" ")}`);
  }
  // one Adam call per optimizer, its parameter lists shown by their length
  const adam = p.shapes.filter((t) => t.op === "adamSteps");
  assert.deepEqual(adam.map((t) => t.calls), [1, 1]);
  for (const t of adam) assert.match(t.shapes, /^\[\d+ tensors\](, \[\d+ tensors\]){3}$/);
  // the G's 32 px image head: its constant code channels run as conv2dConstChannels
  assert.ok(names.includes("conv2dConstChannels"));
  const text = formatIterations(r);
  assert.match(text, /profile of 32px-ngf128-ndf32-K20-b64 \(batch 2\): 1 iteration, [\d.]+ s each/);
  assert.match(text, /native ops [\d.]+ s \([\d.]+%\), outside them \(JS: autograd, tape, argument checks\)/);
  assert.match(text, /\nop +calls\/iteration +ms\/iteration +of the iteration\n/);
  assert.match(text, /\nconv2dMoments 2x\d+x\d+x\d+, \d+x\d+x\d+x\d+ +\d+ +[\d.]+ +[\d.]+%/);
});

test("a host profile waits for nothing and sets the read-backs apart", async () => {
  const gen = new Generator(2);
  const x = Tensor.randn([2, 3, 8, 8], gen, { device });
  const w = Tensor.randn([4, 3, 3, 3], gen, { device });
  const p = new OpProfile(device, { waitForDevice: false });
  assert.equal(p.waitForDevice, false);
  const values = p.run(() => tidy(() => [0, 1, 2].map(() => ops.sum(ops.conv2d(x, w, null, 1, 1)).item())));
  assert.equal(values.length, 3);
  const byOp = new Map(p.ops().map((t) => [t.op, t]));
  assert.equal(byOp.get("conv2d")?.calls, 3);
  assert.equal(byOp.get("toFloat32")?.calls, 3, "each item() reads one result back");
  // every conv and sum launches at least one kernel on CUDA; the CPU launches none
  if (device === "cuda") assert.ok(p.launches >= 6, `${p.launches} kernel launches for 3 convs and 3 sums`);
  else assert.equal(p.launches, 0);
  // each call's kernels are counted against it: the rows add up to the run's launches
  assert.equal(p.ops().reduce((n, t) => n + t.launches, 0), p.launches);
  assert.equal(p.shapes().reduce((n, t) => n + t.launches, 0), p.launches);
  if (device === "cuda") assert.ok(byOp.get("conv2d")!.launches >= 3 && byOp.get("sum")!.launches >= 3);
  assert.ok(p.readbackSeconds > 0 && p.readbackSeconds <= p.opSeconds, `${p.readbackSeconds} of ${p.opSeconds}`);
  assert.equal(p.readbackSeconds, byOp.get("toFloat32")!.seconds);
  x.dispose();
  w.dispose();

  // `bench --profile host`: on the CPU (ops are synchronous there) the usual report; on CUDA the
  // split between issuing the ops and waiting for the GPU (the report's text, checked here on a
  // CPU run relabelled as CUDA)
  const r = await runIterations(benchOptions({ profile: "host", quick: true, configs: "32px", batch: "2", device: "cpu" }));
  assert.equal(r.profiles[0].mode, "host");
  assert.ok(r.profiles[0].readbackSeconds > 0, "the losses are read back");
  assert.match(formatIterations(r), /native ops [\d.]+ s/);
  assert.match(formatIterations({ ...r, device: "cuda" }),
    /host mode \(no op call waited for its kernels\): issuing the ops [\d.]+ s \([\d.]+%, [\d.]+ us a call\), blocked reading results back while the GPU worked through its queue [\d.]+ s.* kernel launches an iteration/);

  // the per-call figure: seconds are per iteration, calls summed over the iterations (4 iterations
  // of 100 conv calls and 2 read-backs, 10 ms issuing and 1 ms blocked each: 100 us a call)
  const synthetic = { ...r.profiles[0], iterations: 4, seconds: 0.02, opSeconds: 0.011, readbackSeconds: 0.001, kernelLaunches: 250,
    ops: [{ op: "conv2d", shapes: "", calls: 400, seconds: 0.04, launches: 1000 },
      { op: "toFloat32", shapes: "", calls: 8, seconds: 0.004, launches: 0 }] };
  const text = formatIterations({ ...r, device: "cuda", profiles: [synthetic] });
  assert.match(text, /issuing the ops 0\.010 s \(50\.0%, 100\.0 us a call\)/);
  assert.match(text, /; 250 kernel launches an iteration/);
  // with launches counted (CUDA), a kernels column per op: 1,000 launches over 4 iterations
  assert.match(text, /\nop +calls\/iteration +kernels\/iteration +ms\/iteration +of the iteration\n/);
  assert.match(text, /\nconv2d +100 +250 +10\.00 +50\.0%\n/);
  assert.doesNotMatch(formatIterations(r), /kernels\/iteration/, "no column on the CPU");
});

test("the emulator's skipped kernels leave the host's path of a CUDA iteration to time", { skip: !emulatedCuda() && "needs the emulated CUDA addon" }, () => {
  // benchmarks/host-cost.sh: every launch checked and counted, none run
  const r = spawnSync(process.execPath, [path.join(__dirname, "../bin/c3gan.js"), "bench", "--device", "cuda", "--configs", "32px",
    "--batch", "2", "--quick", "--profile", "host", "--json"], { encoding: "utf8", env: { ...process.env, C3GAN_CUDA_EMU_KERNELS: "skip" } });
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.match(report.machine.cuda, /kernels skipped/);
  assert.equal(report.profiles[0].mode, "host");
  assert.ok(report.profiles[0].kernelLaunches > 100, `${report.profiles[0].kernelLaunches} launches an iteration`);
});
