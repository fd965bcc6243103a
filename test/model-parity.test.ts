// Whole-model PyTorch parity: the C3-GAN generator and discriminator forward, one D step and one
// G step (every loss term, every gradient, the Adam updates and all BatchNorm running statistics)
// against test/fixtures/model_small.json, made by test/fixtures/make_model_fixture.py from the
// official naver-ai/c3-gan code (float32 weights and inputs, float64 reference computation).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { native, packageRoot, type DeviceName } from "../lib/native";
import { Generator, noGrad, Tensor, tidy } from "../lib/tensor";
import * as F from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { C3GAN, Codes } from "../lib/model/c3gan";
import type { ModelSpec } from "../lib/model/spec";
import { discriminatorStepWith, generatorStepWith, StepInputs, StepOptions } from "../lib/train/step";
import type { Module } from "../lib/nn";

interface Fx {
  shape: number[];
  f32: string;
}
type FxMap = Record<string, Fx>;

interface StepFx {
  losses: Record<string, number>;
  grads: FxMap;
  update: FxMap;
  buffersG: FxMap;
  buffersD: FxMap;
}

interface ModelFixture {
  source: string;
  config: {
    imageSize: ModelSpec["imageSize"];
    channels: ModelSpec["channels"];
    ngf: number;
    ndf: number;
    zDim: number;
    czDim: number;
    numClusters: number;
    batch: number;
    temperature: number;
    lr: number;
    betas: [number, number];
    eps: number;
  };
  stateG: FxMap;
  stateD: FxMap;
  inputs: Record<"z" | "cz" | "c" | "theta" | "z2" | "cz2" | "c2" | "theta2" | "real" | "aug", Fx> & {
    clusters: number[];
    clusters2: number[];
  };
  forward: Record<"bg" | "mask" | "fg" | "final" | "realInfo" | "realRf" | "centroids", Fx>;
  dStep: StepFx;
  gStep: StepFx;
}

// Tolerances (the reference is float64, so these bound our float32 error alone):
// - outputs, BN statistics: 1e-4 relative to the reference's scale (float32 carries ~6e-8
//   per rounding; a few thousand accumulated roundings through ~20 layers stay well below this)
// - gradients: 1e-3 relative to each tensor's largest |grad|, floored (see expectStep); backward
//   passes through batch-statistics BN, normalisation and T = 0.1 logits amplify rounding more
//   than forward does (seen: 1.6e-5)
// - Adam updates: 1e-3 relative to lr. The first Adam step is lr * g / (|g| + eps), about
//   lr * sign(g), so an entry whose reference gradient is within our measured gradient error of
//   zero has a sign that float32 noise decides; those entries are excluded (and counted), the rest
//   cannot flip. Storing param + update in float32 costs up to half an ulp of the parameter
//   (6e-8 at 1.0, 3e-4 of lr), which is inside the bound.
const TOL_OUT = 1e-4;
// the loss terms are means over many values, so rounding averages out: seen ~1e-6 on the CPU; 1e-5
// keeps the check sensitive to small formula slips (e.g. the mask regulariser at this init)
const TOL_LOSS = 1e-5;
const TOL_GRAD = 1e-3;
const TOL_UPDATE = 1e-3;

const fixture: ModelFixture = JSON.parse(
  fs.readFileSync(path.join(packageRoot(), "test", "fixtures", "model_small.json"), "utf8"),
) as ModelFixture;
const cfg = fixture.config;
const spec: ModelSpec = {
  imageSize: cfg.imageSize, channels: cfg.channels, ngf: cfg.ngf, ndf: cfg.ndf, zDim: cfg.zDim,
  czDim: cfg.czDim, numClusters: cfg.numClusters,
};
const stepOptions: StepOptions = { temperature: cfg.temperature, perturbation: "s" };

function decode(fx: Fx, what: string): Float32Array {
  const bytes = Buffer.from(fx.f32, "base64");
  const n = fx.shape.reduce((p, d) => p * d, 1);
  if (bytes.length !== 4 * n) throw new Error(`fixture ${what}: ${bytes.length} bytes for shape [${fx.shape}]`);
  // the fixture is little-endian float32, as is every platform the addon builds for;
  // copy into a fresh, aligned buffer (Buffer's pool offset need not be a multiple of 4)
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

function tensor(fx: Fx, what: string, device: DeviceName = "cpu"): Tensor {
  return Tensor.fromArray(decode(fx, what), fx.shape, { device });
}

function stateMap(m: FxMap, what: string): Map<string, Tensor> {
  return new Map(Object.entries(m).map(([k, fx]) => [k, tensor(fx, `${what}.${k}`)]));
}

/** max|a - b| / max(max|b|, floor) and where it is largest */
function scaledError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-30): { err: number; at: number } {
  let maxDiff = 0;
  let at = -1;
  let scale = floor;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= maxDiff)) {
      maxDiff = d; // NaN lands here too
      at = i;
    }
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return { err: maxDiff / scale, at };
}

/** Largest error per kind of comparison, reported as diagnostics. */
class Ledger {
  private worst = new Map<string, { err: number; what: string }>();
  count = 0;
  note(kind: string, err: number, what: string): void {
    this.count++;
    const w = this.worst.get(kind);
    if (!w || !(err <= w.err)) this.worst.set(kind, { err, what });
  }
  report(t: { diagnostic(msg: string): void }): void {
    assert.ok(this.count > 0, "no comparisons were made");
    for (const [kind, w] of this.worst) t.diagnostic(`${kind}: worst ${w.err.toExponential(2)} (${w.what})`);
    t.diagnostic(`${this.count} comparisons`);
  }
}

function expectArray(l: Ledger, kind: string, actual: Float32Array, expected: Fx, what: string, tol: number,
  floor = 1e-30): void {
  const exp = decode(expected, what);
  assert.equal(actual.length, exp.length, `${what}: ${actual.length} values, expected ${exp.length}`);
  const { err, at } = scaledError(actual, exp, floor);
  l.note(kind, err, what);
  assert.ok(err <= tol, `${what}: scaled error ${err.toExponential(3)} > ${tol} (at ${at}: got ${actual[at]}, expected ${exp[at]})`);
}

function expectTensor(l: Ledger, kind: string, actual: Tensor, expected: Fx, what: string, tol = TOL_OUT): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  expectArray(l, kind, actual.toArray(), expected, what, tol);
}

function expectLosses(l: Ledger, actual: Record<string, number>, expected: Record<string, number>, what: string): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${what}: loss terms`);
  for (const [k, ref] of Object.entries(expected)) {
    const got = actual[k];
    // relative, with a floor of 0.1 for terms that are near zero (e.g. -mean(D(fake)) at init)
    const err = Math.abs(got - ref) / Math.max(Math.abs(ref), 0.1);
    l.note("losses", err, `${what}.${k}`);
    assert.ok(err <= TOL_LOSS, `${what}.${k}: got ${got}, expected ${ref} (relative error ${err.toExponential(3)})`);
  }
}

function expectBuffers(l: Ledger, m: Module, expected: FxMap, what: string): void {
  const own = new Map(m.namedBuffers());
  assert.deepEqual([...own.keys()].sort(), Object.keys(expected).sort(), `${what}: buffer names`);
  for (const [name, fx] of Object.entries(expected)) {
    const t = own.get(name)!;
    if (name.endsWith("num_batches_tracked")) {
      assert.equal(t.item(), decode(fx, name)[0], `${what}.${name}`);
      l.note("num_batches_tracked", 0, `${what}.${name}`);
    } else {
      expectTensor(l, "BN running stats", t, fx, `${what}.${name}`);
    }
  }
}

function snapshot(m: Module): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, p]) => [n, p.toArray()]));
}

/** the gradients (rigorous sign bound first), then the Adam updates; returns the excluded entries */
function expectStep(l: Ledger, m: Module, before: Map<string, Float32Array>, fx: StepFx, what: string): { excluded: number; flipped: number; total: number; where: string } {
  const params = m.namedParameters();
  assert.deepEqual(params.map(([n]) => n).sort(), Object.keys(fx.grads).sort(), `${what}: parameter names`);
  // Rounding noise in a backward pass scales with the gradients flowing through the network, not
  // with one tensor's own: a gradient that is zero in exact arithmetic (a Linear bias feeding a
  // train-mode BatchNorm, fg_gen.emb_c.0.bias) comes out as ~1e-7 noise in float32 (torch's too).
  // So each tensor's scale is floored at 1e-4 of the network's largest reference gradient (below
  // every genuinely nonzero tensor's own scale in this fixture).
  let netMax = 0;
  for (const fxg of Object.values(fx.grads)) for (const v of decode(fxg, "grad")) netMax = Math.max(netMax, Math.abs(v));
  const floor = 1e-4 * netMax;
  let excluded = 0;
  let total = 0;
  let flipped = 0;
  const excludedIn = new Map<string, number>();
  for (const [name, p] of params) {
    assert.ok(p.grad, `${what}.${name}: no gradient`);
    const g = p.grad.toArray();
    const gRef = decode(fx.grads[name], `${what}.grads.${name}`);
    const vanishing = gRef.every((v) => Math.abs(v) < floor);
    const kind = vanishing ? "gradients that vanish in exact arithmetic (/floor)" : "gradients";
    expectArray(l, kind, g, fx.grads[name], `${what}.grad.${name}`, TOL_GRAD, floor);
    let gErr = 0;
    for (let i = 0; i < g.length; i++) gErr = Math.max(gErr, Math.abs(g[i] - gRef[i]));

    const after = p.toArray();
    const b = before.get(name)!;
    const uRef = decode(fx.update[name], `${what}.update.${name}`);
    let maxDiff = 0;
    let at = -1;
    for (let i = 0; i < uRef.length; i++) {
      const u = after[i] - b[i];
      total++;
      // |gRef| <= our measured gradient error: the sign, hence the update, is float32 noise
      // (entries where both gradients agree exactly, e.g. structural zeros, are still compared)
      if (Math.abs(gRef[i]) <= gErr && g[i] !== gRef[i]) {
        excluded++;
        if (Math.sign(u) !== Math.sign(uRef[i])) flipped++;
        excludedIn.set(name, (excludedIn.get(name) ?? 0) + 1);
        assert.ok(Math.abs(u) <= cfg.lr * (1 + TOL_UPDATE), `${what}.${name}[${i}]: update ${u} exceeds lr`);
        continue;
      }
      const d = Math.abs(u - uRef[i]);
      if (!(d <= maxDiff)) (maxDiff = d), (at = i);
    }
    const err = maxDiff / cfg.lr;
    l.note("Adam updates (/lr)", err, `${what}.${name}`);
    assert.ok(err <= TOL_UPDATE,
      `${what}.${name}: update error ${err.toExponential(3)} * lr > ${TOL_UPDATE} (at ${at}: got ${after[at] - b[at]}, expected ${uRef[at]})`);
  }
  const where = [...excludedIn].map(([n, k]) => `${n} ${k}`).join(", ");
  return { excluded, flipped, total, where };
}

function expectUnchanged(m: Module, before: Map<string, Float32Array>, what: string): void {
  for (const [name, p] of m.namedParameters()) {
    assert.deepEqual(p.toArray(), before.get(name), `${what}.${name} changed`);
  }
}

/** A model holding the fixture's official weights (strict load: every name must match). */
function loadedModel(device: DeviceName): C3GAN {
  const model = new C3GAN(spec, device, new Generator(0n));
  tidy(() => {
    model.G.loadStateDict(stateMap(fixture.stateG, "stateG"));
    model.D.loadStateDict(stateMap(fixture.stateD, "stateD"));
  });
  model.train();
  return model;
}

function codes(which: 1 | 2, device: DeviceName): Codes {
  const i = fixture.inputs;
  const [z, cz, c, clusters] = which === 1 ? [i.z, i.cz, i.c, i.clusters] : [i.z2, i.cz2, i.c2, i.clusters2];
  return {
    z: tensor(z, "z", device), cz: tensor(cz, "cz", device), c: tensor(c, "c", device), clusters: Int32Array.from(clusters),
  };
}

function grid(theta: Fx, device: DeviceName): Tensor {
  return noGrad(() => F.affineGrid(tensor(theta, "theta", device), spec.imageSize, spec.imageSize));
}

test("model fixture matches the spec and the official parameter names", () => {
  const model = loadedModel("cpu");
  try {
    const names = (m: Module) => [...m.stateDict().keys()].sort();
    assert.deepEqual(names(model.G), Object.keys(fixture.stateG).sort());
    assert.deepEqual(names(model.D), Object.keys(fixture.stateD).sort());
    for (const n of ["bg_gen.layers.0.1.weight", "fg_gen.emb_c.0.bias", "fg_gen.to_img.1.0.block.3.weight"]) {
      assert.ok(n in fixture.stateG, `official name ${n}`);
    }
    for (const n of ["base.2.weight", "info_head.3.bias", "rf_head.0.weight", "centroids.weight"]) {
      assert.ok(n in fixture.stateD, `official name ${n}`);
    }
  } finally {
    model.dispose();
  }
});

const devices: DeviceName[] = native().cudaAvailable() ? ["cpu", "cuda"] : ["cpu"];

// CUDA's matrix products run on TF32 by default; f runs with the given mode, then it is restored
function withCudaMath<T>(device: DeviceName, mode: "tf32" | "fp32", f: () => T): T {
  if (device !== "cuda") return f();
  const N = native();
  const before = N.cudaMath();
  N.setCudaMath(mode);
  try {
    return f();
  } finally {
    N.setCudaMath(before);
  }
}

function forwardMatches(device: DeviceName, tol: number, t: { diagnostic(msg: string): void }): void {
  const l = new Ledger();
  const model = loadedModel(device);
  try {
    tidy(() => {
      const k = codes(1, device);
      const out = noGrad(() => model.G.forward(k.z, k.cz, k.c, grid(fixture.inputs.theta, device)));
      const f = fixture.forward;
      expectTensor(l, "outputs", out.background, f.bg, "G.background", tol);
      expectTensor(l, "outputs", out.mask, f.mask, "G.mask (perturbed)", tol);
      expectTensor(l, "outputs", out.foreground, f.fg, "G.foreground (perturbed)", tol);
      expectTensor(l, "outputs", out.final, f.final, "G.final", tol);
      noGrad(() => {
        const h = model.D.encode(tensor(fixture.inputs.real, "real", device));
        expectTensor(l, "outputs", model.D.info(h), f.realInfo, "D.info(real)", tol);
        expectTensor(l, "outputs", model.D.realFake(h), f.realRf, "D.realFake(real)", tol);
        expectTensor(l, "outputs", model.D.centroidEmbeddings(), f.centroids, "D.centroids(eye)", tol);
      });
    });
  } finally {
    model.dispose();
  }
  l.report(t);
}

// TF32 keeps 11 significant bits per operand: through the model's ~10 layers of products the
// outputs stay within a few 1e-2 of their scale (1.9e-2 measured on the emulated device)
const TOL_TF32_OUT = 6e-2;
if (devices.includes("cuda")) {
  test("G and D forward on CUDA in TF32 mode stay within TF32's error of PyTorch", (t) => {
    withCudaMath("cuda", "tf32", () => forwardMatches("cuda", TOL_TF32_OUT, t));
  });
}

// On CUDA the parity checks run in exact-fp32 mode: the fixtures and these tolerances are fp32's.
for (const device of devices) {
  test(`G and D forward in train mode match PyTorch (${device})`, (t) => {
    withCudaMath(device, "fp32", () => forwardMatches(device, TOL_OUT, t));
  });

  test(`one D step then one G step match PyTorch: losses, gradients, Adam updates, BN statistics (${device})`, (t) =>
    withCudaMath(device, "fp32", () => {
    const l = new Ledger();
    const model = loadedModel(device);
    const adam = { lr: cfg.lr, betas: cfg.betas, eps: cfg.eps };
    const optD = new Adam(model.D.parameters(), adam);
    const optG = new Adam(model.G.parameters(), adam);
    try {
      tidy(() => {
        const real = tensor(fixture.inputs.real, "real", device);
        const aug = tensor(fixture.inputs.aug, "aug", device);
        const dIn: StepInputs = { codes: codes(1, device), grid: grid(fixture.inputs.theta, device) };
        const gBefore = snapshot(model.G);
        const dBefore = snapshot(model.D);
        const dLosses = discriminatorStepWith(model, optD, real, aug, dIn, stepOptions);
        expectLosses(l, { ...dLosses }, fixture.dStep.losses, "D step");
        const d = expectStep(l, model.D, dBefore, fixture.dStep, "D step");
        expectUnchanged(model.G, gBefore, "D step: G");
        expectBuffers(l, model.G, fixture.dStep.buffersG, "after D step: G");
        expectBuffers(l, model.D, fixture.dStep.buffersD, "after D step: D");

        const gIn: StepInputs = { codes: codes(2, device), grid: grid(fixture.inputs.theta2, device) };
        const dAfter = snapshot(model.D);
        const gBefore2 = snapshot(model.G);
        const gLosses = generatorStepWith(model, optG, gIn, stepOptions);
        expectLosses(l, { ...gLosses }, fixture.gStep.losses, "G step");
        const g = expectStep(l, model.G, gBefore2, fixture.gStep, "G step");
        expectUnchanged(model.D, dAfter, "G step: D");
        expectBuffers(l, model.G, fixture.gStep.buffersG, "after G step: G");
        expectBuffers(l, model.D, fixture.gStep.buffersD, "after G step: D");
        for (const [who, r] of [["D", d], ["G", g]] as const) {
          t.diagnostic(`${who}: ${r.excluded}/${r.total} Adam updates excluded (|grad| within the gradient error; ` +
            `${r.flipped} of them flipped sign)${r.where ? `: ${r.where}` : ""}`);
        }
      });
    } finally {
      optD.dispose();
      optG.dispose();
      model.dispose();
    }
    l.report(t);
  }));
}
