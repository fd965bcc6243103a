// Which GPU: "device": "cuda:N" in a config, --device cuda:N, loadModel's device, C3GAN_CUDA_DEVICE.
// Everywhere: the names are checked (a typo is an error, not the CPU) and a build or machine
// without the device says so. With the emulated CUDA build (scripts/check-cuda-emulated.sh), whose
// driver reports C3GAN_CUDA_EMU_DEVICES devices, in child processes (the device is fixed once per
// process): the backend starts on the one chosen, refuses another after that, names the devices
// there are when asked for one that is not, and a training run on cuda:1 trains.
import { test } from "node:test";
import assert from "node:assert/strict";

import { parseDeviceChoice, resolveDevice } from "../lib/device";
import { native } from "../lib/native";
import { parseConfig } from "../lib/train/config";
import { runCli, runNode } from "./helpers/child";
import { emulatedCuda, testDevice } from "./helpers/device";
import { throwsError } from "./helpers/errors";
import { runMetrics, tinyRunConfig } from "./helpers/tiny-run";

const EMULATED = testDevice() === "cuda" && emulatedCuda();
const NEEDS_EMULATOR = EMULATED ? false : "needs the emulated CUDA build (scripts/check-cuda-emulated.sh)";

test("device names: cpu, cuda, cuda:N and auto; anything else is an error naming them", () => {
  for (const ok of ["cpu", "cuda", "auto", "cuda:0", "cuda:1", "cuda:15", "cuda:1023"]) assert.equal(parseDeviceChoice(ok), ok);
  for (const bad of ["gpu", "CUDA", "cuda:", "cuda:01", "cuda:-1", "cuda:1024", "cuda:1.5", "cuda: 1", 1, null]) {
    assert.equal(parseDeviceChoice(bad), null, String(bad));
  }
  const base = { dataset: { format: "synthetic" }, numGtClasses: 2, imageSize: 32 };
  assert.equal(parseConfig({ ...base, device: "cuda:3" }, "t.json").device, "cuda:3");
  throwsError(() => parseConfig({ ...base, device: "gpu" }, "t.json"),
    /t\.json: device: expected "cpu", "cuda", "cuda:N" \(N: a CUDA device index, as `c3gan info` lists them\) or "auto", got "gpu"/);
  // loadModel passes its device here: an unknown name used to fall back to the CPU
  throwsError(() => resolveDevice("gpu"), /device must be "cpu", "cuda", "cuda:N" .* or "auto", got "gpu"/);
  assert.equal(resolveDevice("cpu"), "cpu");
  const cli = runCli(["train", "--device", "cuda:x"]);
  assert.notEqual(cli.status, 0);
  assert.match(cli.out, /^c3gan: built-in demo config: device: expected "cpu", "cuda", "cuda:N" .* or "auto", got "cuda:x"$/m);
});

test("the devices listed, and cuda:N where the build or machine lacks it", () => {
  const N = native();
  const list = N.cudaDevices();
  assert.ok(list.length >= 1 && list.every((d) => /^(\d+: .+|none \(.+\))$/.test(d)), JSON.stringify(list));
  assert.equal(typeof N.cudaDevice(), "number");
  if (N.cudaAvailable()) return;
  // no usable CUDA: cuda:N says why, as cuda does
  throwsError(() => resolveDevice("cuda:1"), new RegExp('device "cuda:1": c3gan cuda_select_device: device 1 was asked for, but ' +
    "(CUDA is unavailable \\(|this build of c3gan has no CUDA backend|the driver sees \\d+ CUDA device)"));
  throwsError(() => resolveDevice("cuda"), /device "cuda" was asked for, but cuda is unavailable/);
});

test("two emulated devices: the chosen one runs, another is refused after, one that is not there is named", {
  skip: NEEDS_EMULATOR,
}, () => {
  const env = { C3GAN_CUDA_EMU_DEVICES: "2", C3GAN_DEVICE: "cuda" };
  const r = runNode(`
    const { resolveDevice } = require("./dist/lib/device");
    const { native } = require("./dist/lib/native");
    const { Tensor } = require("./dist/lib/tensor");
    const F = require("./dist/lib/ops");
    const N = native();
    try { N.selectCudaDevice(2); } catch (e) { console.log("two:", e.message); }
    console.log("resolved:", resolveDevice("cuda:1"));
    console.log("status:", N.cudaStatus(), "index:", N.cudaDevice());
    console.log("sum:", F.sum(Tensor.fromArray(new Float32Array([1, 2, 3]), [3], { device: "cuda" })).toArray()[0]);
    N.selectCudaDevice(1);
    try { resolveDevice("cuda:0"); } catch (e) { console.log("zero:", e.message); }`, env);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /two: c3gan cuda_select_device: device 2 was asked for, but the driver sees 2 CUDA devices:\n {2}0: c3gan CUDA emulator.*\n {2}1: c3gan CUDA emulator/);
  assert.match(r.out, /resolved: cuda/);
  assert.match(r.out, /status: available \(.*, device 1 of 2\) index: 1/);
  assert.match(r.out, /sum: 6/);
  assert.match(r.out, /zero: device "cuda:0": c3gan cuda_select_device: the CUDA backend already runs on device 1 .*one GPU per process, so device 0 needs a process of its own/);

  // C3GAN_CUDA_DEVICE, and `c3gan info` listing both
  const info = runCli(["info"], { ...env, C3GAN_CUDA_DEVICE: "1" });
  assert.equal(info.status, 0, info.out);
  assert.match(info.stdout, /cuda: available \(.*, driver CUDA 13\.0, device 1 of 2\)/);
  assert.match(info.stdout, /\ntensor cores: layouts as the kernels assume \(mma\.sync, wgmma\)\n/);
  assert.match(info.stdout, /cuda devices \(in use: 1; choose with "device": "cuda:N" or C3GAN_CUDA_DEVICE\):\n {2}0: .*\n {2}1: /);
  const bad = runCli(["info"], { ...env, C3GAN_CUDA_DEVICE: "one" });
  assert.match(bad.stdout, /cuda: unavailable \(C3GAN_CUDA_DEVICE must be a device index \(0, 1, \.\.\.\), got 'one'\)/);
});

test("no driver, or one too old for this build: cuda says which, and device auto picks the CPU", { skip: NEEDS_EMULATOR }, () => {
  const none = runCli(["info"], { C3GAN_CUDA_EMU_DRIVER: "0" });
  assert.equal(none.status, 0, none.out);
  assert.match(none.stdout, /cuda: unavailable \(no NVIDIA driver: libcuda\.so\.1 is not installed or not on the loader's path; cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version\)/);
  const old = runCli(["info"], { C3GAN_CUDA_EMU_DRIVER: "12040" });
  assert.match(old.stdout, /cuda: unavailable \(the NVIDIA driver supports CUDA 12\.4, this build of c3gan needs CUDA 13\.0: update the driver; cudaErrorInsufficientDriver: /);
  const auto = runNode(`console.log("auto:", require("./dist/lib/device").resolveDevice("auto"));`, { C3GAN_CUDA_EMU_DRIVER: "12040" });
  assert.match(auto.out, /auto: cpu/);
});

test("a training run on --device cuda:1 trains there", { skip: NEEDS_EMULATOR }, () => {
  const { cfgFile, runDir } = tinyRunConfig("cuda-device-run", { device: "cpu" });
  const r = runCli(["train", "--config", cfgFile, "--device", "cuda:1"], { C3GAN_CUDA_EMU_DEVICES: "2" });
  assert.equal(r.status, 0, r.out);
  assert.match(r.stdout, /runtime {3}device cuda:1/);
  const records = runMetrics(runDir);
  assert.equal(records.length, 1);
  assert.ok(records[0].acc >= 0 && records[0].acc <= 1, `ACC ${records[0].acc}`);
});
