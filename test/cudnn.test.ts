// The CUDA convolutions through cuDNN (C3GAN_CUDA_CONV=cudnn, "cudaConv": "cudnn"): the knob's
// errors everywhere; with the emulated CUDA build (scripts/check-cuda-emulated.sh), the whole
// path on native/cuda/emu/cudnn_mock.cc, a stand-in library built beside the addon, in child
// processes (the library is looked for once per process): ops against the tile kernels, a
// training run, `c3gan info`, and the errors for a library that is not there. A GPU run checks
// the real cuDNN (benchmarks/device-check.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { addonFilePath, native } from "../lib/native";
import { runCli, runNode } from "./helpers/child";
import { testDevice } from "./helpers/device";
import { throwsError } from "./helpers/errors";
import { runMetrics, tinyRunConfig } from "./helpers/tiny-run";
import { tempDir } from "./helpers/tmp";


// the stand-in library of an emulated-CUDA build, next to its addon; null elsewhere
function mockLibrary(): string | null {
  if (testDevice() !== "cuda" || !native().cudaStatus().includes("emulator")) return null;
  const file = path.join(path.dirname(addonFilePath()), "libc3gan_cudnn_mock.so");
  return fs.existsSync(file) ? file : null;
}


test("the cuDNN knob: names checked, and clear errors where CUDA or cuDNN is missing", () => {
  const N = native();
  throwsError(() => N.setCudaConv("cublas" as never), /setCudaConv: argument 'engine' must be one of "native", "cudnn", "auto"/);
  if (!N.cudaAvailable()) assert.deepEqual(N.cudaConvChoices(), []);
  const status = N.cudnnStatus();
  assert.match(status, /^(unavailable \(.+\)|\d+\.\d+\.\d+ \(.+\))$/, `cudnnStatus() says ${status}`);
  if (!N.cudaAvailable()) {
    throwsError(() => N.cudaConv(), /cudaConv: CUDA is unavailable/);
    throwsError(() => N.setCudaConv("native"), /setCudaConv: CUDA is unavailable/);
    return;
  }
  assert.equal(N.cudaConv(), process.env.C3GAN_CUDA_CONV || "native");
  if (status.startsWith("unavailable")) {
    // asking for cuDNN where none loads says why, and leaves the tile kernels in charge
    throwsError(() => N.setCudaConv("cudnn"), /cuda_set_conv: the cuDNN convolutions need cuDNN, which is unavailable \(/);
    assert.equal(N.cudaConv(), "native");
  }
});

test("without a library: C3GAN_CUDNN's path in the reason, and C3GAN_CUDA_CONV=cudnn an error at the first conv", {
  skip: mockLibrary() ? false : "needs the emulated CUDA build (scripts/check-cuda-emulated.sh)",
}, () => {
  const missing = path.join(os.tmpdir(), "no-such-dir", "libcudnn.so.9");
  const script = `
    const { native } = require("./dist/lib/native");
    const { Tensor } = require("./dist/lib/tensor");
    const F = require("./dist/lib/ops");
    const N = native();
    console.log("status:", N.cudnnStatus());
    try { N.setCudaConv("cudnn"); console.log("set: no error"); } catch (e) { console.log("set:", e.message); }
    try {
      const x = Tensor.fromArray(new Float32Array(2 * 3 * 4 * 4).fill(1), [2, 3, 4, 4], { device: "cuda" });
      const w = Tensor.fromArray(new Float32Array(5 * 3 * 3 * 3).fill(1), [5, 3, 3, 3], { device: "cuda" });
      F.conv2d(x, w, null, 1, 1).toArray();
      console.log("conv: no error");
    } catch (e) { console.log("conv:", e.message); }`;
  const r = runNode(script, { C3GAN_CUDNN: missing, C3GAN_CUDA_CONV: "cudnn", C3GAN_DEVICE: "cuda" });
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, new RegExp(`status: unavailable \\(no cuDNN library at C3GAN_CUDNN=${missing.replace(/[.\\/]/g, "\\$&")} \\(`));
  assert.match(r.out, /C3GAN_CUDNN names the library file or the folder that holds it\)/);
  assert.match(r.out, /set: c3gan cuda_set_conv: the cuDNN convolutions need cuDNN, which is unavailable/);
  assert.match(r.out, /conv: .*cuda: C3GAN_CUDA_CONV=cudnn, but cuDNN is unavailable \(no cuDNN library at/);
});

test("through the stand-in cuDNN: every conv pass agrees with the tile kernels, and the run says so", {
  skip: mockLibrary() ? false : "needs the emulated CUDA build (scripts/check-cuda-emulated.sh)",
}, () => {
  const lib = mockLibrary()!;
  // forward (with bias, with moments through batch norm, with LeakyReLU), backward data (and its
  // accumulating form: the residual sum of x's gradient) and backward weight, both engines
  const script = `
    const { native } = require("./dist/lib/native");
    const { Tensor, tidy } = require("./dist/lib/tensor");
    const F = require("./dist/lib/ops");
    const N = native();
    console.log("status:", N.cudnnStatus());
    function rand(shape, seed) {
      let s = seed >>> 0; const n = shape.reduce((a, b) => a * b, 1); const a = new Float32Array(n);
      for (let i = 0; i < n; i++) { s = (s * 1664525 + 1013904223) >>> 0; a[i] = s / 2 ** 31 - 1; }
      return a;
    }
    const t = (shape, seed, grad = true) => Tensor.fromArray(rand(shape, seed), shape, { device: "cuda", requiresGrad: grad });
    const c = (shape, v) => Tensor.fromArray(new Float32Array(shape[0]).fill(v), shape, { device: "cuda" });
    function run(engine) {
      N.setCudaConv(engine);
      return tidy(() => {
        // x made inside the graph: a leaf's gradients are summed once the pass ends, an inner
        // tensor's second one added by the conv's own backward data as it goes
        const x0 = t([3, 4, 9, 7], 1), x = F.leakyRelu(x0, 0.5);
        const w1 = t([6, 4, 3, 3], 2), b1 = t([6], 3), w2 = t([4, 6, 4, 4], 4);
        const w3 = t([5, 4, 3, 3], 5), g = t([6], 6), be = t([6], 7);
        // conv with bias -> batch norm from the conv's moments -> LeakyReLU -> strided conv; a
        // second conv of x fused with LeakyReLU (its backward data adds into x's gradient)
        const m = F.conv2dMoments(x, w1, b1, 1, 1);
        const n = F.batchNorm(m.y, g, be, c([6], 0), c([6], 1), true, 0.1, 1e-5, m.moments);
        const y = F.conv2d(F.leakyRelu(n, 0.2), w2, null, 2, 1);
        const z = F.conv2d(x, w3, null, 1, 1, 0.2);
        // random weights on the outputs: sum(y^2) through batch norm would have (nearly) no gradient
        const loss = F.add(F.sum(F.mul(y, t(y.shape, 8, false))), F.sum(F.mul(z, t(z.shape, 9, false))));
        loss.backward();
        // (b1's gradient is left out: batch norm cancels a bias before it, so it is rounding noise)
        return [loss, y, z, x0.grad, w1.grad, w2.grad, w3.grad, g.grad].map((v) => Array.from(v.toArray()));
      });
    }
    const a = run("native"), b = run("cudnn");
    // per tensor: the largest difference over the largest value (batch norm's backward cancels,
    // so an element's own relative difference says little)
    const worstOf = (u, v) => {
      let worst = 0;
      for (let i = 0; i < u.length; i++) {
        const top = Math.max(...u[i].map(Math.abs));
        for (let j = 0; j < u[i].length; j++) worst = Math.max(worst, Math.abs(u[i][j] - v[i][j]) / top);
      }
      return worst;
    };
    console.log("engine:", N.cudaConv());
    console.log("worst:", worstOf(a, b));
    // auto: each pass on the engine it timed faster, so within the same bounds of both
    console.log("auto worst:", worstOf(a, run("auto")));
    const choices = N.cudaConvChoices();
    console.log("auto passes:", [...new Set(choices.map((c) => c.pass))].sort().join(", "));
    console.log("auto consistent:", choices.every((c) => c.engine === (c.cudnnMs !== null && c.cudnnMs < c.nativeMs ? "cudnn" : "native")));
    run("auto");
    console.log("auto timed once:", N.cudaConvChoices().length === choices.length);`;
  const r = runNode(script, { C3GAN_CUDNN: lib, C3GAN_DEVICE: "cuda", C3GAN_CUDA_MATH: "fp32" });
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, new RegExp(`status: 9\\.0\\.0 \\(${lib.replace(/[.\\/]/g, "\\$&")}\\)`));
  assert.match(r.out, /engine: cudnn/);
  const worst = Number(/\nworst: (\S+)/.exec(r.out)![1]);
  assert.ok(worst < 1e-4, `the engines differ by ${worst} of the largest value in the loss or a gradient`);
  const autoWorst = Number(/auto worst: (\S+)/.exec(r.out)![1]);
  assert.ok(autoWorst < 1e-4, `auto differs from the tile kernels by ${autoWorst} of the largest value`);
  assert.match(r.out, /auto passes: backward data, backward data \(accumulate\), backward weight, forward, forward\+leaky, forward\+moments\n/);
  assert.match(r.out, /auto consistent: true/);
  assert.match(r.out, /auto timed once: true/);

  // C3GAN_CUDNN as a folder: the soname inside it, and the sub-libraries beside it loaded first
  // (cuDNN 9 loads them by name, and the folder is not on the loader's path)
  if (fs.existsSync("/proc/self/maps")) {
    const dir = tempDir("cudnn-dir");
    fs.copyFileSync(lib, path.join(dir, "libcudnn.so.9"));
    fs.copyFileSync(lib, path.join(dir, "libcudnn_ops.so.9"));
    const probe = runNode(`
      const N = require("./dist/lib/native").native();
      console.log("status:", N.cudnnStatus());
      console.log("ops mapped:", require("fs").readFileSync("/proc/self/maps", "utf8").includes(${JSON.stringify(path.join(dir, "libcudnn_ops.so.9"))}));`,
    { C3GAN_CUDNN: dir });
    assert.equal(probe.status, 0, probe.out);
    assert.match(probe.out, new RegExp(`status: 9\\.0\\.0 \\(${path.join(dir, "libcudnn.so.9").replace(/[.\\/]/g, "\\$&")}\\)`));
    assert.match(probe.out, /ops mapped: true/);
  }

  // c3gan info names the library and the engine in use
  const info = runCli(["info"], { C3GAN_CUDNN: lib, C3GAN_CUDA_CONV: "cudnn" });
  assert.equal(info.status, 0, info.out);
  assert.match(info.stdout, /convs cudnn/);
  assert.match(info.stdout, new RegExp(`cudnn: 9\\.0\\.0 \\(${lib.replace(/[.\\/]/g, "\\$&")}\\)`));
});

test("a training run with \"cudaConv\": \"cudnn\" applies it and trains", {
  skip: mockLibrary() ? false : "needs the emulated CUDA build (scripts/check-cuda-emulated.sh)",
}, () => {
  const { cfgFile, runDir } = tinyRunConfig("cudnn-run", { device: "cuda", cudaConv: "cudnn" });
  const r = runCli(["train", "--config", cfgFile], { C3GAN_CUDNN: mockLibrary()! });
  assert.equal(r.status, 0, r.out);
  assert.match(r.stdout, /runtime {3}device cuda \(cuda convs cudnn\)/);
  const records = runMetrics(runDir);
  assert.equal(records.length, 1);
  assert.ok(records[0].acc >= 0 && records[0].acc <= 1, `ACC ${records[0].acc}`);
  for (const [k, v] of Object.entries(records[0].d as Record<string, number>)) assert.ok(Number.isFinite(v), `D loss ${k} = ${v}`);
});
