// The device the op test suites run on: C3GAN_DEVICE=cpu (the default) or cuda. Asking for cuda
// where this build or machine has none is an error that says why, not a silent CPU run.
import { native, type DeviceName } from "../../lib/native";

let chosen: DeviceName | undefined;

/** The device from C3GAN_DEVICE ("cpu" when unset); throws if it is cuda and CUDA is unavailable. */
export function testDevice(): DeviceName {
  if (chosen) return chosen;
  const raw = process.env.C3GAN_DEVICE ?? "";
  const v = raw.trim().toLowerCase() || "cpu";
  if (v !== "cpu" && v !== "cuda") throw new Error(`C3GAN_DEVICE must be 'cpu' or 'cuda', got '${raw}'`);
  if (v === "cuda" && !native().cudaAvailable()) {
    throw new Error(`C3GAN_DEVICE=cuda, but CUDA is ${native().cudaStatus()}`);
  }
  chosen = v;
  return v;
}

/**
 * Whether the test device is CUDA run by the emulator on the host CPU (C3GAN_ADDON=build-emu's
 * addon): every CUDA thread a fiber, so thousands of steps cost minutes there. Endurance loops run
 * fewer steps on it; their logic is the same, and a real GPU runs them in full.
 */
export function emulatedCuda(): boolean {
  return testDevice() === "cuda" && native().cudaStatus().includes("emulator");
}

/** The CUDA matrix-math mode the native layer reads (C3GAN_CUDA_MATH: tf32, the default, or fp32). */
export function cudaMath(): "tf32" | "fp32" {
  return (process.env.C3GAN_CUDA_MATH ?? "").trim().toLowerCase() === "fp32" ? "fp32" : "tf32";
}

/** Whether matrix products (conv2d, linear, matmul) on the test device round their operands to TF32. */
export function tf32Products(): boolean {
  return testDevice() === "cuda" && cudaMath() === "tf32";
}

/**
 * Tolerance for results that go through matrix products: `base` on the CPU and in exact-fp32
 * CUDA mode; at least 5e-3 (scaled max error) under TF32, whose operands keep 11 significant bits
 * (a relative error of up to 2^-10 per product).
 */
export function productTol(base: number): number {
  return tf32Products() ? Math.max(base, 5e-3) : base;
}
