// Invalid calls throw a JS Error with a helpful message (and never take the process down).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { native } from "../lib/native";
import { BatchNorm2d, Conv2d, Linear } from "../lib/nn";
import { orthogonal_ } from "../lib/nn/init";
import * as ops from "../lib/ops";
import { Adam } from "../lib/optim/adam";
import { Generator, Tensor, tidy } from "../lib/tensor";
import { testDevice } from "./helpers/device";
import { throwsError } from "./helpers/errors";

// every tensor and module on the device named by C3GAN_DEVICE (cpu by default)
const device = testDevice();
const on = { device };

test("shape mismatches name both shapes", () => {
  tidy(() => {
    const x = Tensor.zeros([2, 3, 8, 8], on);
    const w = Tensor.zeros([4, 5, 3, 3], on);
    throwsError(() => ops.conv2d(x, w, null, 1, 1), /conv2d: input \[2, 3, 8, 8\] has 3 channels but weight \[4, 5, 3, 3\] expects 5/);
    throwsError(() => ops.add(Tensor.zeros([2, 3], on), Tensor.zeros([4], on)), /add: shapes \[2, 3\] and \[4\] are not broadcastable/);
    throwsError(() => ops.mul(Tensor.zeros([2, 3], on), Tensor.zeros([3, 2], on)), /mul: shapes \[2, 3\] and \[3, 2\]/);
    throwsError(() => ops.linear(Tensor.zeros([4, 6], on), Tensor.zeros([3, 5], on), null), /linear: input \[4, 6\] has 6 features but weight \[3, 5\]/);
    throwsError(() => new Linear(5, 3, on).forward(Tensor.zeros([2, 4], on)), /linear: input \[2, 4\] has 4 features/);
    throwsError(() => ops.matmul(Tensor.zeros([2, 3], on), Tensor.zeros([2, 3], on)), /matmul: inner dimensions differ/);
    throwsError(() => ops.conv2d(x, Tensor.zeros([4, 3, 3, 3], on), Tensor.zeros([5], on)), /conv2d: bias shape \[5\]/);
    throwsError(() => ops.concat([Tensor.zeros([2, 3], on), Tensor.zeros([3, 3], on)], 1), /concat: xs\[1\] has shape \[3, 3\]/);
    throwsError(() => ops.reshape(Tensor.zeros([2, 3], on), [4, 2]), /reshape: cannot reshape \[2, 3\]/);
    throwsError(() => ops.expand(Tensor.zeros([2, 3], on), [3, 3]), /expand/);
    throwsError(() => ops.batchNorm(x, Tensor.ones([4], on), Tensor.zeros([3], on), Tensor.zeros([3], on), Tensor.ones([3], on), true),
      /batchNorm: weight has shape \[4\] but input \[2, 3, 8, 8\] has 3 channels/);
    throwsError(() => new BatchNorm2d(4, on).forward(x), /BatchNorm2d\(4\): input \[2, 3, 8, 8\] has 3 channels/);
    throwsError(() => ops.glu(Tensor.zeros([2, 3], on)), /glu: dim 1 of shape \[2, 3\] has odd size 3/);
    throwsError(() => ops.gridSample(x, Tensor.zeros([2, 4, 4, 3], on)), /gridSample: grid must have shape \[2, OH, OW, 2\]/);
    throwsError(() => ops.slice(Tensor.zeros([2, 3], on), 1, 2, 5), /slice: range \[2, 5\) is invalid for dim 1/);
    throwsError(() => ops.sum(Tensor.zeros([2, 3], on), [2]), /sum: dim 2 is out of range for shape \[2, 3\]/);
    throwsError(() => ops.conv2d(Tensor.zeros([1, 3, 2, 2], on), Tensor.zeros([1, 3, 5, 5], on), null, 1, 0), /does not fit input/);
  });
});

test("wrong rank", () => {
  tidy(() => {
    throwsError(() => ops.conv2d(Tensor.zeros([3, 8, 8], on), Tensor.zeros([4, 3, 3, 3], on)), /conv2d: input \(N, C, H, W\) must have rank 4, got shape \[3, 8, 8\]/);
    throwsError(() => ops.conv2d(Tensor.zeros([1, 3, 8, 8], on), Tensor.zeros([4, 3, 3], on)), /conv2d: weight \(K, C, R, S\) must have rank 4/);
    throwsError(() => ops.linear(Tensor.zeros([2, 3, 4], on), Tensor.zeros([3, 4], on)), /linear: input \(M, K\) must have rank 2/);
    throwsError(() => ops.softmax(Tensor.zeros([5], on)), /softmax: x \(N, D\) must have rank 2/);
    throwsError(() => ops.upsample2x(Tensor.zeros([4, 4], on)), /upsample2x/);
    throwsError(() => new BatchNorm2d(3, on).forward(Tensor.zeros([2, 3], on)), /BatchNorm2d: expects a rank-4 input, got shape \[2, 3\]/);
    throwsError(() => ops.affineGrid(Tensor.zeros([2, 3, 2], on), 4, 4), /affineGrid: theta must have shape \[N, 2, 3\]/);
    throwsError(() => ops.ntXent(Tensor.zeros([3, 4], on), 0.1), /ntXent: .* even number/);
    throwsError(() => orthogonal_(Tensor.zeros([5], on), new Generator(0)), /orthogonal_: needs a tensor with 2 or more dims/);
  });
});

test("use after dispose names the op and the tensor's shape", () => {
  const t = Tensor.ones([2, 5], on);
  t.dispose();
  assert.equal(t.disposed, true);
  throwsError(() => ops.relu(t), /relu: tensor of shape \[2, 5\] \(made by ones\) was used after dispose\(\)/);
  throwsError(() => t.toArray(), /toArray: tensor of shape \[2, 5\]/);
  throwsError(() => ops.conv2d(Tensor.zeros([1, 5, 4, 4], on), t.detach(), null), /detach: tensor of shape \[2, 5\]/);
  t.dispose(); // idempotent
  const m = new Linear(3, 2, on);
  m.dispose();
  throwsError(() => m.forward(Tensor.zeros([1, 3], on)), /linear: tensor of shape \[2, 3\] .* used after dispose/);
});

test("native handles: a disposed one, an empty one and a look-alike are refused by name; dispose is idempotent", () => {
  const N = native();
  const live = N.liveTensors();
  const h = N.full([2, 3], 1, device);
  assert.deepEqual(h.shape, [2, 3]);
  assert.equal(h.device, device);
  assert.equal(h.numel, 6);
  assert.equal(h.disposed, false);
  assert.equal(N.liveTensors(), live + 1);
  h.dispose();
  assert.equal(h.disposed, true);
  assert.equal(h.device, "none");
  assert.equal(N.liveTensors(), live);
  h.dispose();
  assert.equal(N.liveTensors(), live, "a second dispose changes nothing");
  throwsError(() => h.shape, /NativeTensor.shape: the tensor was disposed/);
  throwsError(() => N.unary("relu", h, 0), /c3gan unary: argument 'x' is a disposed tensor/);
  const Ctor = N.NativeTensor as unknown as new () => typeof h;
  throwsError(() => N.unary("relu", new Ctor(), 0), /argument 'x' is a disposed tensor/);
  const alive = N.full([2], 1, device);
  const lookAlike = { shape: [2], device, numel: 2, disposed: false, dispose() {} } as unknown as typeof h;
  throwsError(() => N.unary("relu", lookAlike, 0), /argument 'x' must be a tensor/);
  throwsError(() => N.unary("relu", Object.create(Object.getPrototypeOf(alive)), 0), /argument 'x' is a disposed tensor/);
  throwsError(() => N.concat([alive, h], 0), /element 1 of 'tensors' is disposed/);
  throwsError(() => N.concat([alive, 7 as unknown as typeof h], 0), /element 1 of 'tensors' is not a tensor/);
  // share: a second handle on the same storage, which outlives the first
  const a = N.full([3], 2, device);
  const b = N.share(a);
  assert.deepEqual(b.shape, [3]);
  assert.equal(N.liveTensors(), live + 3);
  N.fill(a, 5);
  a.dispose();
  assert.deepEqual(Array.from(N.toFloat32(b)), [5, 5, 5]);
  b.dispose();
  throwsError(() => N.share(a), /c3gan share: argument 'x' is a disposed tensor/);
  // a tensor behind a Tensor disposed through its raw handle is refused by the op, naming the argument
  const t = Tensor.ones([2], on);
  t.handle.dispose();
  throwsError(() => ops.relu(t), /argument 'x' is a disposed tensor/);
  t.dispose();
  alive.dispose();
  assert.equal(N.liveTensors(), live);
});

test("adamSteps refuses lists of different lengths, mismatched shapes and bad step counts, naming the parameter", () => {
  const N = native();
  const [p0, p1, g1, z0, z1, bad] = [[2], [3], [3], [2], [3], [4]].map((s) => N.full(s, 0, device));
  const hyper = [1e-3, 0.9, 0.999, 1e-8, 0] as const;
  throwsError(() => N.adamSteps([p0, p1], [p0], [z0, z1], [z0, z1], [1, 1], ...hyper), /adamSteps: .*one entry per parameter, got 2, 1, 2, 2 and 2/);
  throwsError(() => N.adamSteps([p0, p1], [p0, bad], [z0, z1], [z0, z1], [1, 1], ...hyper), /adam: parameter 1: param \[3\], grad \[4\]/);
  throwsError(() => N.adamSteps([p0, p1], [p0, g1], [z0, z1], [z0, z1], [1, 0], ...hyper), /steps\[1\] must be an integer >= 1, got 0/);
  throwsError(() => N.adamSteps([p0, p1], [p0, g1], [z0, z1], [z0, z1], [1, 1], NaN, 0.9, 0.999, 1e-8, 0), /lr/);
  N.adamSteps([], [], [], [], [], ...hyper); // nothing to do
  for (const h of [p0, p1, g1, z0, z1, bad]) h.dispose();
});

test("negative, huge and non-integer sizes", () => {
  throwsError(() => Tensor.zeros([1e9, 1e9], on), /Tensor.zeros: shape \[1000000000, 1000000000\] has 1000000000000000000 elements, more than 2\^40/);
  throwsError(() => Tensor.zeros([2, -1], on), /negative dimension -1/);
  throwsError(() => Tensor.ones([2.5, 2], on), /non-integer dimension 2.5/);
  throwsError(() => Tensor.full([NaN], 1, on), /non-integer dimension NaN/);
  throwsError(() => Tensor.zeros([1, 1, 1, 1, 1, 1, 1], on), /rank 7/);
  throwsError(() => new Conv2d(3, 0, 3, on), /Conv2d: outChannels must be a positive integer, got 0/);
  throwsError(() => new Linear(2.5, 3, on), /Linear: inFeatures must be a positive integer/);
  throwsError(() => ops.conv2d(Tensor.zeros([1, 1, 4, 4], on), Tensor.zeros([1, 1, 3, 3], on), null, 0, 0), /conv2d: stride must be an integer >= 1, got 0/);
  throwsError(() => ops.affineGrid(Tensor.zeros([1, 2, 3], on), 0, 4), /affineGrid: H must be an integer >= 1/);
  throwsError(() => ops.affineGrid(Tensor.zeros([1, 2, 3], on), 1e7, 1e7), /affineGrid: grid shape .* more than 2\^40/);
  throwsError(() => ops.reshape(Tensor.zeros([4], on), [-1, -1]), /at most one -1/);
});

test("the native layer also rejects bad sizes with an Error", () => {
  const N = native();
  throwsError(() => N.full([1e9, 1e9], 0, device), /2\^40|elements|size|shape/i);
  throwsError(() => N.full([-3], 0, device), /negative|shape|dim/i);
});

test("a device that is not there is an Error, not a crash", { skip: native().cudaAvailable() }, () => {
  throwsError(() => Tensor.zeros([2], { device: "cuda" }), /cuda/i);
  throwsError(() => new Linear(2, 2, { device: "cuda" }), /cuda/i);
  throwsError(() => native().synchronize("cuda"), /device: cuda is unavailable/);
});

test("setConvPath names the paths it knows", () => {
  throwsError(() => native().setConvPath("fast" as never, 1), /setConvPath: unknown conv path 'fast' \(winograd, winogradTile, winogradS2, direct, directWide, dataPath\)/);
});

test("synchronize: a no-op on the CPU, a named error for a device that is not one", () => {
  native().synchronize("cpu");
  throwsError(() => native().synchronize("gpu" as never), /synchronize: argument 'device'/);
});

test("cross-entropy targets must be integer classes in range", () => {
  tidy(() => {
    const logits = Tensor.zeros([3, 4], on);
    throwsError(() => ops.crossEntropy(logits, [0, 1, 4]), /crossEntropy: target 2 is 4, not an integer class in \[0, 4\)/);
    throwsError(() => ops.crossEntropy(logits, [0, -1, 2]), /target 1 is -1/);
    throwsError(() => ops.crossEntropy(logits, [0, 1.5, 2]), /target 1 is 1.5/);
    throwsError(() => ops.crossEntropy(logits, [0, NaN, 2]), /target 1 is NaN/);
    throwsError(() => ops.crossEntropy(logits, [0, 1]), /crossEntropy: 2 targets for logits \[3, 4\] \(needs 3\)/);
  });
});

test("non-finite or out-of-range hyperparameters", () => {
  tidy(() => {
    const x = Tensor.zeros([4, 3], on);
    const args = [Tensor.ones([3], on), Tensor.zeros([3], on), Tensor.zeros([3], on), Tensor.ones([3], on)] as const;
    throwsError(() => ops.batchNorm(x, ...args, true, NaN), /batchNorm: momentum must be a number in \[0, 1\], got NaN/);
    throwsError(() => ops.batchNorm(x, ...args, true, 0.1, -1e-5), /batchNorm: eps must be a finite number > 0, got -0.00001/);
    throwsError(() => ops.batchNorm(x, ...args, true, 0.1, Infinity), /eps must be a finite number/);
    throwsError(() => ops.batchNorm(x, ...args, true, 0.1, 1e-5, null, Tensor.zeros([4, 2], on)),
      /batchNorm: residual \[4, 2\] does not match the input \[4, 3\]/);
    throwsError(() => ops.conv2d(Tensor.zeros([1, 3, 4, 4], on), Tensor.zeros([2, 3, 3, 3], on), null, 1, 1, -1),
      /conv2d: leakySlope must be a finite number >= 0, got -1/);
    throwsError(() => native().conv2d(Tensor.zeros([1, 3, 4, 4], on).handle, Tensor.zeros([2, 3, 3, 3], on).handle, null, 1, 1, -1),
      /conv2d: the LeakyReLU slope must be finite and >= 0, got -1/);
    throwsError(() => ops.batchNorm(x, ...args, true, 0.1, 1e-5, null, null, -0.1),
      /batchNorm: leakySlope must be a finite number >= 0, got -0.1/);
    throwsError(() => ops.batchNorm(x, ...args, true, 0.1, 1e-5, null, Tensor.zeros([4, 3], on), 0.2),
      /batchNorm: a residual and a LeakyReLU together are not supported/);
    throwsError(() => new BatchNorm2d(3, { device, momentum: NaN }), /BatchNorm2d: momentum must be a number in \[0, 1\]/);
    throwsError(() => new BatchNorm2d(3, { device, eps: -1 }), /BatchNorm2d: eps must be a finite number > 0/);
    const p = [Tensor.zeros([2], { device, requiresGrad: true })];
    throwsError(() => new Adam(p, { lr: Infinity }), /Adam: lr must be a finite number >= 0, got Infinity/);
    throwsError(() => new Adam(p, { lr: NaN }), /Adam: lr must be a finite number/);
    throwsError(() => new Adam(p, { betas: [0.5, 1] }), /Adam: betas\[1\] must be in \[0, 1\), got 1/);
    throwsError(() => new Adam(p, { eps: -1 }), /Adam: eps must be a finite number >= 0/);
    throwsError(() => new Adam(p, { weightDecay: NaN }), /Adam: weightDecay/);
    const opt = new Adam(p);
    throwsError(() => {
      opt.lr = -1;
    }, /Adam: lr must be a finite number >= 0/);
    throwsError(() => ops.ntXent(Tensor.zeros([4, 3], on), 0), /ntXent: temperature must be a finite number > 0, got 0/);
    throwsError(() => ops.ntXent(Tensor.zeros([4, 3], on), NaN), /temperature/);
    throwsError(() => ops.leakyRelu(x, NaN), /leakyRelu: slope must be a finite number/);
    throwsError(() => ops.normalize(x, -1), /normalize: eps must be a finite number >= 0/);
    throwsError(() => Tensor.randn([2], new Generator(0), { device, std: -1 }), /Tensor.randn: mean and std must be finite/);
    throwsError(() => Tensor.rand([2], new Generator(0), 1, 0, on), /Tensor.rand: bounds must be finite with lo <= hi/);
  });
});

test("fromArray with the wrong data length or bad data", () => {
  throwsError(() => Tensor.fromArray([1, 2, 3], [2, 2], on), /Tensor.fromArray: data has 3 values but shape \[2, 2\] needs 4/);
  throwsError(() => Tensor.fromArray(new Float32Array(5), [5, 1, 2], on), /data has 5 values but shape \[5, 1, 2\] needs 10/);
  throwsError(() => Tensor.fromArray(null as unknown as number[], [1], on), /data must be an array or typed array/);
  throwsError(() => Tensor.fromArray([1], [1], { device: "tpu" as "cpu" }), /unknown device 'tpu'/);
});

test("backward misuse and state-dict mismatches", () => {
  tidy(() => {
    const x = Tensor.zeros([2], { device, requiresGrad: true });
    const y = ops.mul(x, 2);
    throwsError(() => y.backward(Tensor.zeros([3], on)), /backward: grad shape \[3\] does not match the output shape \[2\]/);
    const a = new Linear(3, 2, on);
    const b = new Linear(3, 4, on);
    throwsError(() => a.loadStateDict(b.stateDict()), /loadStateDict\(Linear\): weight: shape \[4, 3\] in the state dict, \[2, 3\] in the module/);
    const sd = a.stateDict();
    sd.delete("bias");
    sd.set("extra", Tensor.zeros([1], on));
    throwsError(() => a.loadStateDict(sd), /missing keys: bias; unexpected keys: extra/);
    a.dispose();
    b.dispose();
  });
});

test("errors thrown mid-graph leave the process and the tape usable", () => {
  tidy(() => {
    const x = Tensor.ones([2, 3], { device, requiresGrad: true });
    const h = ops.tanh(x);
    throwsError(() => ops.add(h, Tensor.zeros([4], on)), /not broadcastable/);
    ops.sum(h).backward();
    assert.equal(x.grad!.shape.join(), "2,3");
  });
});

test("the CUDA knobs: names checked, and a clear error where CUDA is unavailable", () => {
  const N = native();
  const build = N.cudaBuild();
  assert.match(build, /^(none \(built without the CUDA backend\)|the host emulator|sm_\d+a?( sm_\d+a?)*( \+ compute_\d+a?( compute_\d+a?)* PTX)?)/,
    `cudaBuild() says ${build}`);
  throwsError(() => N.setCudaTile("tma" as never), /setCudaTile: argument 'pipeline' must be one of "registers", "async", "wgmma"/);
  if (!N.cudaAvailable()) {
    throwsError(() => N.cudaTile(), /cudaTile: CUDA is unavailable/);
    throwsError(() => N.setCudaTile("async"), /setCudaTile: CUDA is unavailable/);
    return;
  }
  const before = N.cudaTile();
  try {
    for (const t of ["async", "registers"] as const) {
      N.setCudaTile(t);
      assert.equal(N.cudaTile(), t);
    }
  } finally {
    N.setCudaTile(before);
  }
});
