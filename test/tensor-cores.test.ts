// Tensor cores that do not read as the kernels assume (a GPU for which the PTX ISA's layouts were
// misread): the products ask the device before their first use of an instruction, go another way
// (exact fp32 for mma.sync, the register pipeline for wgmma) and say so. Shown on the emulated
// CUDA build, whose tensor cores C3GAN_CUDA_EMU_TENSOR_CORES makes misread from the start, in
// child processes: products still equal the CPU's, a training run warns after its first step and
// trains, and `c3gan info` says the results stay right.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runCli, runNode } from "./helpers/child";
import { emulatedCuda, testDevice } from "./helpers/device";
import { runMetrics, tinyRunConfig } from "./helpers/tiny-run";

const NEEDS_EMULATOR = testDevice() === "cuda" && emulatedCuda() ? false
  : "needs the emulated CUDA build (scripts/check-cuda-emulated.sh)";

// small integers: every product and sum is exact in TF32 and fp32 alike, so a difference from the
// CPU can only come from a misread layout
const GEMM_SCRIPT = (M: number, K: number, N: number) => `
  const { native } = require("./dist/lib/native");
  const { Tensor } = require("./dist/lib/tensor");
  const F = require("./dist/lib/ops");
  const ints = (n, m) => Float32Array.from({ length: n }, (_, i) => ((i * m) % 11) - 5);
  const a = ints(${M * K}, 7), b = ints(${K * N}, 5);
  const on = (device) => F.matmul(Tensor.fromArray(a, [${M}, ${K}], { device }), Tensor.fromArray(b, [${K}, ${N}], { device })).toArray();
  const cpu = on("cpu"), gpu = on("cuda");
  let gap = 0;
  for (let i = 0; i < cpu.length; i++) gap = Math.max(gap, Math.abs(cpu[i] - gpu[i]));
  const N = native();
  console.log(JSON.stringify({ gap, math: N.cudaMath(), tile: N.cudaTile(), fallback: N.cudaTensorCoreFallback() }));
`;

function gemmOn(env: Record<string, string>, M: number, K: number, N: number) {
  const r = runNode(GEMM_SCRIPT(M, K, N), env);
  assert.equal(r.status, 0, r.out);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as { gap: number; math: string; tile: string; fallback: string };
}

test("products stay right where the tensor cores misread, and say what gave way", { skip: NEEDS_EMULATOR }, () => {
  const right = gemmOn({ C3GAN_CUDA_MATH: "tf32" }, 64, 40, 48);
  assert.deepEqual(right, { gap: 0, math: "tf32", tile: "registers", fallback: "" });
  const mma = gemmOn({ C3GAN_CUDA_MATH: "tf32", C3GAN_CUDA_EMU_TENSOR_CORES: "mma-rows-swapped" }, 64, 40, 48);
  assert.equal(mma.gap, 0, "the gemm equals the CPU's");
  assert.equal(mma.math, "tf32", "cudaMath() reports the mode chosen");
  assert.match(mma.fallback, /^TF32 products run in exact fp32 instead, as the device's tensor cores do not read as the kernels assume \(please report\): mma\.sync m16n8k8/);
  // wgmma chosen, its descriptors misread: the register pipeline (mma.sync, read right) runs
  const wg = gemmOn({ C3GAN_CUDA_MATH: "tf32", C3GAN_CUDA_TILE: "wgmma", C3GAN_CUDA_EMU_TENSOR_CORES: "wgmma-strides-swapped" }, 256, 64, 128);
  assert.equal(wg.gap, 0, "the gemm equals the CPU's");
  assert.equal(wg.tile, "wgmma", "cudaTile() reports the pipeline chosen");
  assert.match(wg.fallback, /^the wgmma pipeline gives way to the register one, .*LBO and SBO swapped/);
});

test("a training run on such a device warns after its first step and trains; info says results stay right", { skip: NEEDS_EMULATOR }, () => {
  const { cfgFile, runDir } = tinyRunConfig("tensor-cores-run", { device: "cuda", cudaMath: "tf32" });
  const env = { C3GAN_CUDA_EMU_TENSOR_CORES: "mma-rows-swapped" };
  const r = runCli(["train", "--config", cfgFile], env);
  assert.equal(r.status, 0, r.out);
  const warnings = r.stdout.split("\n").filter((l) => l.startsWith("warning: "));
  assert.equal(warnings.length, 1, r.stdout);
  assert.match(warnings[0], /^warning: TF32 products run in exact fp32 instead, .*mma\.sync/);
  const records = runMetrics(runDir);
  assert.ok(records.length === 1 && records[0].acc >= 0 && records[0].acc <= 1, JSON.stringify(records));
  const info = runCli(["info"], env);
  assert.equal(info.status, 0, info.out);
  assert.match(info.stdout, /^tensor cores: NOT as the kernels assume \(please report; results stay right: TF32 products run in exact fp32\): mma\.sync/m);
});
