// Where the time of native work goes: while a profile is active, native() hands out a wrapper of
// the addon that times every op call (on CUDA it waits for each call's kernels, so the time is
// the op's and not its launch's) and adds it up by op name and by op name with its tensor
// shapes. Calls made outside native ops (JS, autograd bookkeeping) are what the profile's time
// leaves over. With { waitForDevice: false } (`bench --profile host`) nothing waits: on CUDA an
// op's time is then its host cost (binding, launches), and the device's backlog shows up in the
// calls that read results back (toFloat32), so the two together tell whether the host or the GPU
// sets an iteration's pace. Meant for `c3gan bench --profile`; a library user can wrap any code in run().
import { DeviceName, native, NativeAddon, NativeTensor, setNativeWrapper } from "./native";

export interface OpProfileOptions {
  /** on CUDA, wait for each op call's kernels (default true); false times the host side only */
  waitForDevice?: boolean;
}

/** The addon calls that bring results back to the host (they wait for the device's queue). */
export const READBACK_OPS = new Set(["toFloat32"]);

export interface OpTime {
  op: string;
  /** the tensor arguments' shapes, "8x16x128x128, 32x16x3x3" (empty in per-op totals) */
  shapes: string;
  calls: number;
  seconds: number;
  /** CUDA kernels the calls launched (0 on the CPU) */
  launches: number;
}

// Queries, knobs and constructors, not work: left unwrapped.
const NOT_OPS = new Set([
  "version", "cudaStatus", "cudaAvailable", "cudaMath", "setCudaMath", "cudaTile", "setCudaTile", "cudaConv", "setCudaConv",
  "cudnnStatus", "cudaBuild", "cudaLaunches",
  "numThreads", "setNumThreads", "liveBytes", "liveTensors", "memoryStats", "resetPeakMemory", "emptyCache",
  "synchronize", "peakGflops", "setConvPath", "cpuFeatures", "gemmKernel", "Generator", "NativeTensor",
]);

let active: OpProfile | null = null;

export class OpProfile {
  private readonly byShape = new Map<string, OpTime>();
  private elapsed = 0n;
  // the wrapper's own bookkeeping after each call (reading shapes, building keys: a few us a call,
  // as much as the JS it would be mistaken for); left out of the totals
  private bookkeeping = 0n;
  private launchCount = 0;

  readonly waitForDevice: boolean;

  /** device: the one whose queue is waited on after each call (cuda), none needed for the cpu */
  constructor(readonly device: DeviceName, opts: OpProfileOptions = {}) {
    this.waitForDevice = opts.waitForDevice ?? true;
  }

  /** runs fn (synchronous) with every native op call timed; profiles do not nest */
  run<T>(fn: () => T): T {
    if (active) throw new Error("OpProfile.run: another op profile is active (profiles do not nest)");
    active = this;
    setNativeWrapper((addon) => this.wrap(addon));
    let t0: bigint | null = null;
    const launches0 = native().cudaLaunches();
    try {
      native().synchronize(this.device); // work queued before the profile is not counted in it
      t0 = process.hrtime.bigint();
      const out = fn();
      if (out instanceof Promise) throw new Error("OpProfile.run: fn returned a Promise; profile synchronous code (the op calls after its first await would be missed)");
      return out;
    } finally {
      if (t0 !== null) this.elapsed += process.hrtime.bigint() - t0;
      this.launchCount += native().cudaLaunches() - launches0;
      setNativeWrapper(null);
      active = null;
    }
  }

  /** seconds spent inside run(), less the profile's own bookkeeping */
  get totalSeconds(): number {
    return Number(this.elapsed - this.bookkeeping) / 1e9;
  }

  /** CUDA kernels launched inside run() (0 on the CPU) */
  get launches(): number {
    return this.launchCount;
  }

  /** seconds inside native op calls */
  get opSeconds(): number {
    let s = 0;
    for (const t of this.byShape.values()) s += t.seconds;
    return s;
  }

  /** seconds inside the calls that read results back (READBACK_OPS) */
  get readbackSeconds(): number {
    let s = 0;
    for (const t of this.byShape.values()) if (READBACK_OPS.has(t.op)) s += t.seconds;
    return s;
  }

  /** per op, the most time first */
  ops(): OpTime[] {
    const by = new Map<string, OpTime>();
    for (const t of this.byShape.values()) {
      const o = by.get(t.op) ?? { op: t.op, shapes: "", calls: 0, seconds: 0, launches: 0 };
      o.calls += t.calls;
      o.seconds += t.seconds;
      o.launches += t.launches;
      by.set(t.op, o);
    }
    return [...by.values()].sort((a, b) => b.seconds - a.seconds);
  }

  /** per op and tensor shapes, the most time first */
  shapes(): OpTime[] {
    return [...this.byShape.values()].map((t) => ({ ...t })).sort((a, b) => b.seconds - a.seconds);
  }

  private wrap(addon: NativeAddon): NativeAddon {
    const wrapped = new Map<PropertyKey, unknown>();
    const isTensor = (a: unknown): a is NativeTensor => a instanceof (addon.NativeTensor as new () => unknown);
    const shapeOf = (a: unknown): string | null => {
      if (isTensor(a)) return a.shape.join("x") || "scalar";
      if (Array.isArray(a) && a.length > 0 && a.every(isTensor)) {
        // a short list by its shapes (concat's inputs); a parameter list (adamSteps) by its length
        return a.length <= 4 ? `[${a.map((t) => t.shape.join("x")).join(", ")}]` : `[${a.length} tensors]`;
      }
      return null;
    };
    const wait = this.device === "cuda" && this.waitForDevice ? () => addon.synchronize("cuda") : null;
    // kernels per call, from the launch counter read around it (outside the timed span)
    const launchCount = this.device === "cuda" ? () => addon.cudaLaunches() : () => 0;
    return new Proxy(addon, {
      get: (target, prop, receiver) => {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function" || typeof prop !== "string" || NOT_OPS.has(prop)) return v;
        let w = wrapped.get(prop);
        if (!w) {
          w = (...args: unknown[]) => {
            const b0 = process.hrtime.bigint();
            const l0 = launchCount();
            const t0 = process.hrtime.bigint();
            const out = (v as (...a: unknown[]) => unknown).apply(target, args); // a throw passes through, uncounted
            if (wait) wait();
            const t1 = process.hrtime.bigint();
            const launches = launchCount() - l0;
            const seconds = Number(t1 - t0) / 1e9;
            const shapes = args.map(shapeOf).filter((s): s is string => s !== null).join(", ");
            const key = `${prop} ${shapes}`;
            const t = this.byShape.get(key);
            if (t) {
              t.calls++;
              t.seconds += seconds;
              t.launches += launches;
            } else this.byShape.set(key, { op: prop, shapes, calls: 1, seconds, launches });
            this.bookkeeping += process.hrtime.bigint() - t1 + (t0 - b0);
            return out;
          };
          wrapped.set(prop, w);
        }
        return w;
      },
    });
  }
}
