// The N-API addon: its typed surface and its loader. Everything here mirrors native/core/ops.h;
// the functions take and return NativeTensor handles whose memory is native-owned and freed by
// dispose() (deterministically; the GC is only a safety net).
import * as path from "node:path";

export type DeviceName = "cpu" | "cuda";
export type UnaryOpName =
  | "relu" | "leaky_relu" | "tanh" | "sigmoid" | "exp" | "log" | "neg" | "square" | "sqrt" | "abs";
export type BinaryOpName = "add" | "sub" | "mul" | "div";

export interface NativeTensor {
  readonly shape: number[];
  readonly device: DeviceName;
  readonly numel: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeGenerator {
  /** [key, offset]: the whole state, for checkpoints */
  getState(): [bigint, bigint];
  setState(key: bigint, offset: bigint): void;
}

/**
 * Memory of one device. liveBytes/peakLiveBytes count live tensors exactly; the allocator's
 * figures are rounded to its size classes, and its inUseBytes + cachedBytes (summed over the
 * devices) is what V8 is told as the addon's external memory. The CPU cache keeps in use + cached
 * at or below limitBytes (3/2 of the in-use high-water mark since the last emptyCache;
 * C3GAN_CPU_CACHE=0 turns it off). For CUDA the allocator fields are present when a device is
 * usable.
 */
export interface MemoryStats {
  liveBytes: number;
  peakLiveBytes: number;
  inUseBytes?: number;
  cachedBytes?: number;
  peakInUseBytes?: number;
  limitBytes?: number;
  /** blocks taken from the system or driver (cache misses) */
  systemAllocs?: number;
  systemFrees?: number;
  cacheHits?: number;
  cacheEnabled?: boolean;
  /** CPU, glibc only: the C heap in use outside the cache (kernel scratch, Node's own) */
  mallocBytes?: number;
  /** CPU: the Winograd transformed weights kept between calls (C3GAN_WINOGRAD_CACHE_MB; emptyCache clears them) */
  weightCacheBytes?: number;
  /** CPU: the kernels' per-thread scratch, grown to the largest call and kept for the thread's life */
  scratchBytes?: number;
  deviceFreeBytes?: number;
  deviceTotalBytes?: number;
}

export type CudaTile = "registers" | "async" | "wgmma";
export type CudaConv = "native" | "cudnn" | "auto";

/** One of the "auto" conv engine's choices: a pass and shape timed on both engines (cudnnMs null: cuDNN could not run it, note says why) */
export interface CudaConvChoice {
  pass: string;
  conv: string;
  engine: "native" | "cudnn";
  nativeMs: number;
  cudnnMs: number | null;
  note: string;
}

export interface NativeAddon {
  version: string;
  cudaStatus(): string;
  cudaAvailable(): boolean;
  /** The GPU the CUDA backend starts on (C3GAN_CUDA_DEVICE, else 0), chosen before its first use (cudaStatus and
   * cudaAvailable count as use); one GPU per process, so another once it runs throws, naming both */
  selectCudaDevice(index: number): void;
  /** The device index chosen or in use */
  cudaDevice(): number;
  /** Every CUDA device the driver sees: "0: NVIDIA H200, sm_90, 132 SMs, 139.8 GiB", or ["none (<why>)"] */
  cudaDevices(): string[];
  /** The CUDA matrix-math mode (gemm, conv): TF32 tensor cores (the default) or exact fp32. Throws without CUDA. */
  cudaMath(): "tf32" | "fp32";
  setCudaMath(mode: "tf32" | "fp32"): void;
  /** How the CUDA tile GEMM stages and multiplies (C3GAN_CUDA_TILE); "wgmma" needs an sm_90a build on an H100/H200 */
  cudaTile(): CudaTile;
  setCudaTile(pipeline: CudaTile): void;
  /** Who runs the plain convolutions on CUDA (C3GAN_CUDA_CONV): c3gan's tile kernels ("native") or cuDNN. Throws without CUDA. */
  cudaConv(): CudaConv;
  /** "cudnn" throws, saying why, where cuDNN cannot be loaded; "auto" times both engines per pass and shape, once */
  setCudaConv(engine: CudaConv): void;
  /** The "auto" engine's choices so far, in the order made ([] without CUDA or before any) */
  cudaConvChoices(): CudaConvChoice[];
  /** "9.6.0 (/path/libcudnn.so.9)" or "unavailable (<why>)": cuDNN, looked for at run time (C3GAN_CUDNN, else the loader's path) */
  cudnnStatus(): string;
  /** The tensor-core layouts the CUDA kernels assume (mma.sync; wgmma where the device runs sm_90a code), asked of
   * the device: "" where it agrees, else what it did instead. Throws without CUDA. */
  cudaLayoutProbe(): { mma: string; wgmmaRan: boolean; wgmma: string };
  /** "" while the products run as chosen; else which gave way, and why (asked before each instruction's first product) */
  cudaTensorCoreFallback(): string;
  /** The GPU code this addon carries ("sm_80 sm_86 sm_89 sm_90a + compute_90 PTX"), or why none */
  cudaBuild(): string;
  /** Kernels launched since the process started (0 without a CUDA backend) */
  cudaLaunches(): number;
  numThreads(): number;
  setNumThreads(n: number): void;
  /** bytes held by live tensors on a device */
  liveBytes(device: DeviceName): number;
  liveTensors(): number;
  /** live tensor bytes, their high-water mark and the device allocator's cache */
  memoryStats(device: DeviceName): MemoryStats;
  /** the high-water marks restart from what is live now */
  resetPeakMemory(device: DeviceName): void;
  /** returns the allocator's cached (freed, kept for reuse) blocks to the system */
  emptyCache(device: DeviceName): void;
  /** waits for the device's queued work (CUDA launches are asynchronous; a no-op on the CPU) */
  synchronize(device: DeviceName): void;
  /** measured fp32 FMA throughput over `threads` threads (GFLOP/s) */
  peakGflops(seconds: number, threads: number): number;
  /**
   * For benchmarks and tests: switch a CPU conv path, process-wide. "winograd" 0|1,
   * "winogradTile" 0 (by shape)|2|4, "winogradS2" 0|1, "direct" 0|1, "directWide" 0|1 (the direct
   * loops' AVX-512VL register blocks, where the CPU has them), "dataPath" -1 (by shape)|0 (stride
   * phases)|1 (fused col2im).
   */
  setConvPath(name: "winograd" | "winogradTile" | "winogradS2" | "direct" | "directWide" | "dataPath", value: number): void;
  /** CPU features the addon sees (e.g. "sse4.2 avx avx2 fma") */
  cpuFeatures(): string;
  /** the CPU GEMM micro-kernel in use (e.g. "avx2-fma 6x16"; C3GAN_GEMM_KERNEL picks another) */
  gemmKernel(): string;
  /** in place: Q (positive-diagonal thin QR) of a row-major m x n Float64Array, m >= n */
  orthonormalColumns(a: Float64Array, m: number, n: number): void;
  /** the m rows of the row-major m x n matrix a (m <= n), in place: Gram-Schmidt in row order */
  orthonormalRows(a: Float64Array, m: number, n: number): void;

  Generator: new (seed: bigint | number) => NativeGenerator;
  NativeTensor: Function;

  empty(shape: number[], device: DeviceName): NativeTensor;
  full(shape: number[], value: number, device: DeviceName): NativeTensor;
  fromFloat32(data: Float32Array, shape: number[], device: DeviceName): NativeTensor;
  toFloat32(t: NativeTensor): Float32Array;
  toDevice(t: NativeTensor, device: DeviceName): NativeTensor;
  clone(t: NativeTensor): NativeTensor;
  /** a second handle on x's storage: disposing either leaves the other as it was */
  share(x: NativeTensor): NativeTensor;
  reshape(t: NativeTensor, shape: number[]): NativeTensor;
  fill(t: NativeTensor, value: number): void;
  copy(dst: NativeTensor, src: NativeTensor): void;
  /** y += alpha * x */
  axpy(y: NativeTensor, alpha: number, x: NativeTensor): void;
  /** dsts[i] += srcs[i] for each pair in order (the bits of those axpys), in one call (one launch on CUDA) */
  addInto(dsts: NativeTensor[], srcs: NativeTensor[]): void;
  randn(shape: number[], device: DeviceName, gen: NativeGenerator, mean: number, std: number): NativeTensor;
  rand(shape: number[], device: DeviceName, gen: NativeGenerator, lo: number, hi: number): NativeTensor;

  affine(x: NativeTensor, scale: number, shift: number): NativeTensor;
  /** x = scale * x + shift, in place */
  affineInPlace(x: NativeTensor, scale: number, shift: number): void;
  unary(op: UnaryOpName, x: NativeTensor, alpha: number): NativeTensor;
  unaryBackward(op: UnaryOpName, dy: NativeTensor, x: NativeTensor, y: NativeTensor, alpha: number): NativeTensor;
  binary(op: BinaryOpName, a: NativeTensor, b: NativeTensor): NativeTensor;
  expand(x: NativeTensor, shape: number[]): NativeTensor;
  sumTo(x: NativeTensor, shape: number[]): NativeTensor;
  /** dims empty = all; negative dims count from the end */
  sum(x: NativeTensor, dims: number[], keepdim: boolean): NativeTensor;

  /** with leakySlope (>= 0): LeakyReLU(conv2d(...)) in one pass */
  conv2d(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null, stride: number, pad: number,
    leakySlope?: number | null): NativeTensor;
  /** conv2d and its output's per-channel [mean, biased variance] (K, 2): [y, moments] */
  conv2dMoments(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null, stride: number, pad: number): NativeTensor[];
  conv2dBackwardData(dy: NativeTensor, w: NativeTensor, xShape: number[], stride: number, pad: number): NativeTensor;
  /** into += conv2dBackwardData(dy, w, into.shape, stride, pad); on CUDA in the conv's epilogue */
  conv2dBackwardDataAdd(into: NativeTensor, dy: NativeTensor, w: NativeTensor, stride: number, pad: number): void;
  conv2dBackwardWeight(dy: NativeTensor, x: NativeTensor, wShape: number[], stride: number, pad: number): NativeTensor;
  /** conv2d(upsample2x(x), w, bias, 1, 1) for a (K, C, 3, 3) w, without the upsampled tensor */
  conv2dUp(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null): NativeTensor;
  /** conv2dUp and its output's moments, as conv2dMoments: [y, moments] */
  conv2dUpMoments(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null): NativeTensor[];
  conv2dUpBackwardData(dy: NativeTensor, w: NativeTensor, xShape: number[]): NativeTensor;
  conv2dUpBackwardWeight(dy: NativeTensor, x: NativeTensor, wShape: number[]): NativeTensor;
  /**
   * conv2d(concat(x, code tiled over H x W), w), stride 1, 'same' padding (odd square kernel):
   * x (N, Cx, H, W), code (N, Kc), w (K, Cx + Kc, R, R). Forward (dy null): [y]; backward:
   * [dx, dw, dcode], null where not asked for.
   */
  conv2dConstChannels(x: NativeTensor, w: NativeTensor, code: NativeTensor, dy: NativeTensor | null, needDx: boolean,
    needDw: boolean, needDcode: boolean): (NativeTensor | null)[];
  linear(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null): NativeTensor;
  linearBackwardData(dy: NativeTensor, w: NativeTensor): NativeTensor;
  linearBackwardWeight(dy: NativeTensor, x: NativeTensor): NativeTensor;
  matmul(a: NativeTensor, b: NativeTensor, transA: boolean, transB: boolean): NativeTensor;

  /**
   * returns [y, saveMean, saveInvstd]; training updates runningMean/runningVar in place. moments
   * (training only): x's own (C, 2) statistics from the conv that made it (conv2dMoments).
   * residual (x's shape): added to y in the same pass; leakySlope (>= 0): a LeakyReLU after it.
   */
  batchNorm(x: NativeTensor, gamma: NativeTensor, beta: NativeTensor, runningMean: NativeTensor,
    runningVar: NativeTensor, training: boolean, momentum: number, eps: number, moments?: NativeTensor | null,
    residual?: NativeTensor | null, leakySlope?: number | null): NativeTensor[];
  /** returns [dx, dgamma, dbeta] */
  batchNormBackward(dy: NativeTensor, x: NativeTensor, gamma: NativeTensor, saveMean: NativeTensor,
    saveInvstd: NativeTensor, training: boolean): NativeTensor[];
  /** batchNormBackward through the LeakyReLU of batchNorm's leakySlope: y is that op's output */
  batchNormLeakyBackward(dy: NativeTensor, y: NativeTensor, slope: number, x: NativeTensor, gamma: NativeTensor,
    saveMean: NativeTensor, saveInvstd: NativeTensor, training: boolean): NativeTensor[];

  /** glu(batchNorm(x), 1) in one pass: returns [y (N, C/2, ...), saveMean, saveInvstd] */
  batchNormGlu(x: NativeTensor, gamma: NativeTensor, beta: NativeTensor, runningMean: NativeTensor,
    runningVar: NativeTensor, training: boolean, momentum: number, eps: number, moments?: NativeTensor | null): NativeTensor[];
  /** returns [dx, dgamma, dbeta], recomputing the normalised values from x */
  batchNormGluBackward(dy: NativeTensor, x: NativeTensor, gamma: NativeTensor, beta: NativeTensor,
    saveMean: NativeTensor, saveInvstd: NativeTensor, training: boolean): NativeTensor[];

  glu(x: NativeTensor, dim: number): NativeTensor;
  gluBackward(dy: NativeTensor, x: NativeTensor, dim: number): NativeTensor;
  upsample2x(x: NativeTensor): NativeTensor;
  upsample2xBackward(dy: NativeTensor): NativeTensor;
  concat(xs: NativeTensor[], dim: number): NativeTensor;
  slice(x: NativeTensor, dim: number, start: number, end: number): NativeTensor;
  sliceBackward(dy: NativeTensor, xShape: number[], dim: number, start: number): NativeTensor;

  /** returns [y, norms] */
  l2normalize(x: NativeTensor, eps: number): NativeTensor[];
  l2normalizeBackward(dy: NativeTensor, x: NativeTensor, norms: NativeTensor, eps: number): NativeTensor;
  softmax(x: NativeTensor, log: boolean): NativeTensor;
  softmaxBackward(dy: NativeTensor, y: NativeTensor, log: boolean): NativeTensor;
  /** returns [loss (shape []), probs] */
  crossEntropy(logits: NativeTensor, targets: Int32Array): NativeTensor[];
  crossEntropyBackward(dloss: NativeTensor, probs: NativeTensor, targets: Int32Array): NativeTensor;
  /** returns [loss, z, norms, p] */
  ntXent(x: NativeTensor, temperature: number): NativeTensor[];
  ntXentBackward(dloss: NativeTensor, x: NativeTensor, z: NativeTensor, norms: NativeTensor, p: NativeTensor,
    temperature: number): NativeTensor;

  affineGrid(theta: NativeTensor, H: number, W: number): NativeTensor;
  affineGridBackward(dgrid: NativeTensor): NativeTensor;
  gridSample(x: NativeTensor, grid: NativeTensor): NativeTensor;
  /** returns [dx or null, dgrid or null] */
  gridSampleBackward(dy: NativeTensor, x: NativeTensor, grid: NativeTensor, needDx: boolean,
    needDgrid: boolean): (NativeTensor | null)[];

  /** PyTorch Adam over a parameter list in place, in one call (one launch on CUDA); steps[k] is parameter k's count (from 1) */
  adamSteps(params: NativeTensor[], grads: NativeTensor[], ms: NativeTensor[], vs: NativeTensor[], steps: number[], lr: number,
    beta1: number, beta2: number, eps: number, weightDecay: number): void;
}

let cached: NativeAddon | undefined;
// While an op profile runs (lib/profile.ts), native() hands out its timing wrapper of the addon.
let wrapper: NativeAddon | undefined;

/** For lib/profile.ts: wrap(addon) becomes what native() returns, until setNativeWrapper(null). */
export function setNativeWrapper(wrap: ((addon: NativeAddon) => NativeAddon) | null): void {
  wrapper = wrap ? wrap(loadAddon()) : undefined;
}

/** The package root (where binding.gyp, build/ and prebuilds/ live), from dist/lib or lib. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (require("node:fs").existsSync(path.join(dir, "package.json"))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, "..", "..");
}

/** The addon file native() loads: C3GAN_ADDON's when set, else node-gyp-build's choice (a prebuild or build/Release). */
export function addonFilePath(): string {
  const explicit = process.env.C3GAN_ADDON;
  if (explicit) return path.resolve(explicit);
  return (require("node-gyp-build") as { resolve: (dir: string) => string }).resolve(packageRoot());
}

export function native(): NativeAddon {
  return wrapper ?? loadAddon();
}

function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  // C3GAN_ADDON names one addon file to load instead (the emulated-CUDA build in build-emu/,
  // an addon carried to another machine)
  const explicit = process.env.C3GAN_ADDON;
  if (explicit) {
    try {
      cached = require(path.resolve(explicit)) as NativeAddon;
    } catch (e) {
      const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
      throw new Error(`c3gan: could not load the native addon named by C3GAN_ADDON (${explicit}): ${why}`);
    }
    return cached;
  }
  try {
    // node-gyp-build looks in prebuilds/<platform>-<arch>/ and build/Release (cmake-js and node-gyp)
    cached = require("node-gyp-build")(root) as NativeAddon;
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new Error(
      `c3gan: could not load the native addon (looked in ${path.join(root, "prebuilds", `${process.platform}-${process.arch}`)}` +
        ` and ${path.join(root, "build", "Release")}): ${why}. Build it with \`npm run build:native\` ` +
        `(needs cmake and a C++17 compiler) or \`npx node-gyp rebuild\`.`,
    );
  }
  return cached;
}
