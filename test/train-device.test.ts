// Training on the test device (C3GAN_DEVICE, cpu by default): a short run end to end (data upload,
// the D and G steps, evaluation, checkpoints read back from the device), then the checkpoint it
// wrote scores the test set the same on the CPU and on the device. On CUDA the run uses exact-fp32
// math (cudaMath in the config), so both devices compute the same function to float rounding.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseConfig } from "../lib/train/config";
import { train, evaluateModel } from "../lib/train/trainer";
import { openTrainingData } from "../lib/train/data-source";
import { assignClusters } from "../lib/train/step";
import { loadModel } from "../lib/api/model";
import { native } from "../lib/native";
import { Tensor, tidy } from "../lib/tensor";
import { testDevice } from "./helpers/device";

test(`a short run trains on ${testDevice()} and its checkpoint scores the same on the CPU`, async () => {
  const device = testDevice();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-train-device-"));
  const N = native();
  const mathBefore = device === "cuda" ? N.cudaMath() : null;
  const tileBefore = device === "cuda" ? N.cudaTile() : null;
  const cfg = parseConfig({
    name: "device", dataset: { format: "synthetic", numClasses: 2, perClass: 8, testPerClass: 4, seed: 3 },
    numGtClasses: 2, over: 1, batchSize: 4, temperature: 0.1, perturbation: "w", maxEpoch: 1, evalInterval: 1,
    logInterval: 1, zDim: 8, czDim: 4, imageSize: 32, channels: 3, ngf: 32, ndf: 8, device, cudaMath: "fp32",
    cudaTile: "async",
    seed: 5, workers: 0, saveDir: dir,
  }, "device test config");
  try {
    const logged: string[] = [];
    const r = await train(cfg, { log: (m) => logged.push(m) });
    assert.equal(r.device, device);
    // the tensor cores read as the kernels assume (the emulator's do; a GPU's should): nothing gave way
    assert.equal(N.cudaTensorCoreFallback(), "");
    assert.ok(!logged.some((m) => m.startsWith("warning:")), logged.join("\n"));
    assert.equal(r.steps, 4);
    const d = r.last!.d, g = r.last!.g;
    for (const [k, v] of [...Object.entries(d), ...Object.entries(g)]) assert.ok(Number.isFinite(v), `loss ${k} = ${v}`);
    if (device === "cuda") assert.equal(N.cudaMath(), "fp32", "the config's cudaMath was applied");
    if (device === "cuda") assert.equal(N.cudaTile(), "async", "the config's cudaTile was applied");

    const data = await openTrainingData(cfg);
    const onDevice = await loadModel(path.join(dir, "last.safetensors"), { device });
    const onCpu = await loadModel(path.join(dir, "last.safetensors"), { device: "cpu" });
    try {
      const a = await evaluateModel(onDevice.gan, data, cfg);
      const b = await evaluateModel(onCpu.gan, data, cfg);
      assert.equal(a.acc, r.last!.acc, "the reloaded checkpoint scores as the run did");
      assert.equal(b.acc, a.acc, `ACC on the CPU ${b.acc}, on ${device} ${a.acc}`);
      assert.ok(Math.abs(b.nmiOfficial - a.nmiOfficial) < 1e-9, `NMI ${b.nmiOfficial} vs ${a.nmiOfficial}`);
      // the cosine similarities behind the assignments, image by image
      for await (const batch of data.testBatches()) {
        const sims = [onDevice, onCpu].map((m) =>
          tidy(() => assignClusters(m.gan, Tensor.fromArray(batch.images, batch.shape, { device: m.device })).similarity));
        for (let i = 0; i < sims[0].length; i++) {
          assert.ok(Math.abs(sims[0][i] - sims[1][i]) < 1e-4, `image ${i}: similarity ${sims[0][i]} vs ${sims[1][i]} on the CPU`);
        }
      }
    } finally {
      onDevice.dispose();
      onCpu.dispose();
      await data.close();
    }
  } finally {
    if (mathBefore) N.setCudaMath(mathBefore);
    if (tileBefore) N.setCudaTile(tileBefore);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
