// Where a model runs, as configs, the CLI and the library name it: "cpu", "cuda" (the CUDA
// backend's device: 0, or C3GAN_CUDA_DEVICE), "cuda:N" (CUDA device N, as `c3gan info` lists
// them) or "auto" (CUDA when usable, else the CPU). One GPU per process: the native runtime
// starts on the chosen device at its first use and refuses another after that.
import { native, DeviceName } from "./native";

export type DeviceChoice = "cpu" | "cuda" | "auto" | `cuda:${number}`;

export const DEVICE_CHOICES = `"cpu", "cuda", "cuda:N" (N: a CUDA device index, as \`c3gan info\` lists them) or "auto"`;

/** The choice v names, or null when it names none */
export function parseDeviceChoice(v: unknown): DeviceChoice | null {
  if (v === "cpu" || v === "cuda" || v === "auto") return v;
  if (typeof v === "string" && /^cuda:(0|[1-9][0-9]{0,3})$/.test(v) && Number(v.slice(5)) <= 1023) return v as DeviceChoice;
  return null;
}

/** N of "cuda:N"; null for the other choices */
export function cudaIndexOf(choice: DeviceChoice): number | null {
  return choice.startsWith("cuda:") ? Number(choice.slice(5)) : null;
}

/** cpu; cuda or cuda:N (an error naming why when it is not usable); auto (cuda when usable) */
export function resolveDevice(choice: DeviceChoice | string): DeviceName {
  const c = parseDeviceChoice(choice);
  if (c === null) throw new Error(`device must be ${DEVICE_CHOICES}, got ${JSON.stringify(choice)}`);
  if (c === "cpu") return "cpu";
  const N = native();
  const index = cudaIndexOf(c);
  if (index !== null) {
    try {
      N.selectCudaDevice(index);
    } catch (e) {
      throw new Error(`device "${c}": ${(e as Error).message}`);
    }
  }
  if (N.cudaAvailable()) return "cuda";
  if (c !== "auto") throw new Error(`device "${c}" was asked for, but cuda is ${N.cudaStatus()}`);
  return "cpu";
}
