// Tensor: a float32 tensor over a native handle, with deterministic release (dispose, tidy) and
// the autograd hooks (requiresGrad, grad, backward). The ops are in ops.ts, the tape in
// autograd.ts. Native memory is accounted by the native layer (napi_adjust_external_memory);
// nothing here reports to V8.
import { DeviceName, native, NativeGenerator, NativeTensor } from "./native";
import { Node, releaseNode, runBackward } from "./autograd";

export { noGrad, enableGrad, isGradEnabled } from "./autograd";

export interface TensorOptions {
  device?: DeviceName;
  requiresGrad?: boolean;
}

export function shapeStr(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

const MAX_NUMEL = 2 ** 40;

/** Checks a shape's dims (non-negative integers, product at most 2^40); returns a copy. */
export function checkShape(shape: readonly number[], op: string, what = "shape"): number[] {
  if (!Array.isArray(shape)) throw new Error(`${op}: ${what} must be an array of integers, got ${String(shape)}`);
  if (shape.length > 6) throw new Error(`${op}: ${what} ${shapeStr(shape)} has rank ${shape.length}; at most 6 dims`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isInteger(d)) {
      throw new Error(`${op}: ${what} ${shapeStr(shape)} has a non-integer dimension ${String(d)}`);
    }
    if (d < 0) throw new Error(`${op}: ${what} ${shapeStr(shape)} has a negative dimension ${d}`);
    n *= d;
  }
  if (n > MAX_NUMEL) throw new Error(`${op}: ${what} ${shapeStr(shape)} has ${n} elements, more than 2^40`);
  return shape.slice();
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkDevice(device: DeviceName | undefined, op: string): DeviceName {
  const d = device ?? "cpu";
  if (d !== "cpu" && d !== "cuda") throw new Error(`${op}: unknown device '${String(d)}' (use 'cpu' or 'cuda')`);
  return d;
}

// ---- tidy scopes ----------------------------------------------------------------------------

const scopes: Tensor[][] = [];
let liveCount = 0;

/** Number of Tensor objects created and not yet disposed (all scopes, grads and state included). */
export function liveTensors(): number {
  return liveCount;
}

function track(t: Tensor): void {
  if (scopes.length) scopes[scopes.length - 1].push(t);
}

function collectTensors(v: unknown, out: Set<Tensor>, seen: Set<unknown>): void {
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (v === null || typeof v !== "object" || seen.has(v)) return;
  seen.add(v);
  if (Array.isArray(v)) {
    for (const x of v) collectTensors(x, out, seen);
  } else if (v instanceof Map) {
    for (const x of v.values()) collectTensors(x, out, seen);
  } else if (Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collectTensors(x, out, seen);
  }
}

/**
 * Runs fn and disposes every Tensor created inside it, except those in its result (a Tensor, or
 * arrays, Maps and plain objects holding Tensors), which move to the enclosing scope, and those
 * marked keep(). Scopes nest. fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  return runScope(fn, null);
}

/**
 * @internal tidy() around a function returning one Tensor, and whether that Tensor was made
 * inside fn (not its input, a kept tensor or one from outside): what a caller chaining layers
 * may dispose once the next layer has used it.
 */
export function tidyMade(fn: () => Tensor): [Tensor, boolean] {
  const made: Tensor[] = [];
  const t = runScope(fn, made);
  return [t, made.includes(t)];
}

/** tidy(); `moved`, when given, receives the Tensors made in the scope that moved to the parent */
function runScope<T>(fn: () => T, moved: Tensor[] | null): T {
  if (typeof fn !== "function") throw new Error("tidy: expects a function");
  const scope: Tensor[] = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) if (!t._kept) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) if (!t._kept) t.dispose();
    throw new Error("tidy: fn returned a Promise; tidy scopes must be synchronous (await outside tidy)");
  }
  const keepSet = new Set<Tensor>();
  collectTensors(result, keepSet, new Set());
  const parent = scopes.length ? scopes[scopes.length - 1] : null;
  for (const t of scope) {
    if (t._kept || t.disposed) continue;
    if (keepSet.has(t)) {
      parent?.push(t);
      moved?.push(t);
    } else t.dispose();
  }
  return result;
}

// ---- Generator ------------------------------------------------------------------------------

/** A seeded counter-based RNG (Philox) over the native Generator; its whole state is (key, offset). */
export class Generator {
  readonly handle: NativeGenerator;

  constructor(seed: number | bigint) {
    if (typeof seed === "number" && (!Number.isSafeInteger(seed) || seed < 0)) {
      throw new Error(`Generator: seed must be a non-negative safe integer or a bigint, got ${seed}`);
    }
    if (typeof seed === "bigint" && (seed < 0n || seed >= 1n << 64n)) {
      throw new Error(`Generator: bigint seed must be in [0, 2^64), got ${seed}`);
    }
    this.handle = new (native().Generator)(seed);
  }

  getState(): { key: string; offset: string } {
    const [key, offset] = this.handle.getState();
    return { key: key.toString(), offset: offset.toString() };
  }

  setState(s: { key: string | bigint; offset: string | bigint }): void {
    let key: bigint;
    let offset: bigint;
    try {
      key = BigInt(s.key);
      offset = BigInt(s.offset);
    } catch {
      throw new Error(`Generator.setState: key and offset must be integers, got ${String(s?.key)}, ${String(s?.offset)}`);
    }
    if (key < 0n || offset < 0n || key >= 1n << 64n || offset >= 1n << 64n) {
      throw new Error(`Generator.setState: key and offset must be in [0, 2^64)`);
    }
    this.handle.setState(key, offset);
  }

  /** n uniform draws in [lo, hi) on the host (drawn by the native stream, so deterministic). */
  uniform(n: number, lo = 0, hi = 1): Float64Array {
    return this.draw(n, (N, s) => N.rand(s, "cpu", this.handle, lo, hi), "Generator.uniform");
  }

  /** n normal draws on the host. */
  normal(n: number, mean = 0, std = 1): Float64Array {
    return this.draw(n, (N, s) => N.randn(s, "cpu", this.handle, mean, std), "Generator.normal");
  }

  private draw(n: number, make: (N: ReturnType<typeof native>, s: number[]) => NativeTensor, op: string): Float64Array {
    checkShape([n], op, "count");
    const N = native();
    const h = make(N, [n]);
    try {
      return Float64Array.from(N.toFloat32(h));
    } finally {
      h.dispose();
    }
  }
}

let defaultGen: Generator | null = null;

/** The module-level generator used when no Generator is passed (layer init). */
export function defaultGenerator(): Generator {
  if (!defaultGen) defaultGen = new Generator(0);
  return defaultGen;
}

/** Reseeds the default generator. */
export function manualSeed(seed: number | bigint): Generator {
  defaultGen = new Generator(seed);
  return defaultGen;
}

// ---- Tensor ---------------------------------------------------------------------------------

export class Tensor {
  private _h: NativeTensor | null;
  private readonly _shape: number[];
  private readonly _device: DeviceName;
  /** the op that made this tensor (for error messages) */
  readonly op: string;
  private _requiresGrad = false;
  private _grad: Tensor | null = null;
  /** @internal the tape node that produced this tensor (null for leaves) */
  _node: Node | null = null;
  /** @internal exempt from tidy scopes */
  _kept = false;
  /**
   * @internal in-place writes so far (an optimizer step, loadStateDict, an init): as PyTorch's
   * version counter, the tape records it at forward time and backward refuses a changed input
   */
  _version = 0;

  /**
   * Wraps a native handle (the Tensor owns it from now on). `tracked: false` keeps it out of the
   * current tidy scope (used for gradients and optimizer state).
   */
  constructor(handle: NativeTensor, op = "tensor", tracked = true) {
    this._h = handle;
    this._shape = handle.shape; // a fresh array on every read
    this._device = handle.device;
    this.op = op;
    liveCount++;
    if (tracked) track(this);
  }

  /** @internal a Tensor outside every tidy scope */
  static _untracked(handle: NativeTensor, op: string): Tensor {
    return new Tensor(handle, op, false);
  }

  static fromArray(data: ArrayLike<number>, shape: number[], opts: TensorOptions = {}): Tensor {
    const s = checkShape(shape, "Tensor.fromArray");
    const device = checkDevice(opts.device, "Tensor.fromArray");
    if (data === null || typeof data !== "object" || typeof data.length !== "number") {
      throw new Error(`Tensor.fromArray: data must be an array or typed array, got ${String(data)}`);
    }
    const n = numelOf(s);
    if (data.length !== n) {
      throw new Error(`Tensor.fromArray: data has ${data.length} values but shape ${shapeStr(s)} needs ${n}`);
    }
    const f32 = data instanceof Float32Array ? data : Float32Array.from(data);
    return Tensor.finish(native().fromFloat32(f32, s, device), "fromArray", opts);
  }

  static zeros(shape: number[], opts: TensorOptions = {}): Tensor {
    return Tensor.filled(shape, 0, opts, "zeros");
  }

  static ones(shape: number[], opts: TensorOptions = {}): Tensor {
    return Tensor.filled(shape, 1, opts, "ones");
  }

  static full(shape: number[], value: number, opts: TensorOptions = {}): Tensor {
    return Tensor.filled(shape, value, opts, "full");
  }

  private static filled(shape: number[], value: number, opts: TensorOptions, op: string): Tensor {
    const s = checkShape(shape, `Tensor.${op}`);
    const device = checkDevice(opts.device, `Tensor.${op}`);
    if (typeof value !== "number") throw new Error(`Tensor.${op}: value must be a number, got ${String(value)}`);
    return Tensor.finish(native().full(s, value, device), op, opts);
  }

  static randn(shape: number[], gen: Generator, opts: TensorOptions & { mean?: number; std?: number } = {}): Tensor {
    const s = checkShape(shape, "Tensor.randn");
    const device = checkDevice(opts.device, "Tensor.randn");
    if (!(gen instanceof Generator)) throw new Error("Tensor.randn: expects a Generator");
    const mean = opts.mean ?? 0;
    const std = opts.std ?? 1;
    if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0) {
      throw new Error(`Tensor.randn: mean and std must be finite and std >= 0, got mean ${mean}, std ${std}`);
    }
    return Tensor.finish(native().randn(s, device, gen.handle, mean, std), "randn", opts);
  }

  static rand(shape: number[], gen: Generator, lo = 0, hi = 1, opts: TensorOptions = {}): Tensor {
    const s = checkShape(shape, "Tensor.rand");
    const device = checkDevice(opts.device, "Tensor.rand");
    if (!(gen instanceof Generator)) throw new Error("Tensor.rand: expects a Generator");
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo) {
      throw new Error(`Tensor.rand: bounds must be finite with lo <= hi, got [${lo}, ${hi})`);
    }
    return Tensor.finish(native().rand(s, device, gen.handle, lo, hi), "rand", opts);
  }

  private static finish(h: NativeTensor, op: string, opts: TensorOptions): Tensor {
    const t = new Tensor(h, op);
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  get shape(): number[] {
    return this._shape.slice();
  }

  get ndim(): number {
    return this._shape.length;
  }

  get numel(): number {
    return numelOf(this._shape);
  }

  get device(): DeviceName {
    return this._device;
  }

  get disposed(): boolean {
    return this._h === null;
  }

  /** The native handle; throws if the tensor was disposed. */
  get handle(): NativeTensor {
    return this.use("handle");
  }

  /**
   * The native handle for `op`; the error names the op, this tensor's shape and its origin. (A
   * handle disposed behind this Tensor's back is refused by the op itself, naming the argument.)
   */
  use(op: string): NativeTensor {
    if (this._h === null) {
      throw new Error(
        `${op}: tensor of shape ${shapeStr(this._shape)} (made by ${this.op}) was used after dispose()`,
      );
    }
    return this._h;
  }

  get requiresGrad(): boolean {
    return this._requiresGrad || this._node !== null;
  }

  set requiresGrad(v: boolean) {
    if (this._node) {
      if (!v) throw new Error(`requiresGrad: the result of ${this.op} is not a leaf; use detach() instead`);
      return;
    }
    this._requiresGrad = Boolean(v);
  }

  /** true for tensors not produced by a recorded op */
  get isLeaf(): boolean {
    return this._node === null;
  }

  get grad(): Tensor | null {
    return this._grad;
  }

  set grad(g: Tensor | null) {
    if (g !== null) {
      if (!(g instanceof Tensor)) throw new Error("grad: must be a Tensor or null");
      if (shapeStr(g._shape) !== shapeStr(this._shape)) {
        throw new Error(`grad: shape ${shapeStr(g._shape)} does not match the tensor's shape ${shapeStr(this._shape)}`);
      }
    }
    this._grad = g;
  }

  /** @internal set by the tape (the grad Tensor is untracked) */
  _setGradInternal(g: Tensor): void {
    this._grad = g;
  }

  toArray(): Float32Array {
    return native().toFloat32(this.use("toArray"));
  }

  item(): number {
    if (this.numel !== 1) throw new Error(`item: tensor of shape ${shapeStr(this._shape)} has ${this.numel} elements, not 1`);
    return this.toArray()[0];
  }

  /**
   * Backpropagates from this tensor. Without `grad` the tensor must have one element (seed 1).
   * Gradients accumulate into `.grad` of leaves that require grad; the graph is freed after.
   */
  backward(grad?: Tensor): void {
    this.use("backward");
    if (!this.requiresGrad) {
      throw new Error(
        `backward: tensor of shape ${shapeStr(this._shape)} (made by ${this.op}) does not require grad: no input ` +
          `requires grad, or it was computed under noGrad`,
      );
    }
    const N = native();
    let seed: NativeTensor;
    if (grad === undefined) {
      if (this.numel !== 1) {
        throw new Error(
          `backward: tensor of shape ${shapeStr(this._shape)} is not a scalar; pass the output gradient explicitly`,
        );
      }
      seed = N.full(this._shape, 1, this._device);
    } else {
      if (!(grad instanceof Tensor)) throw new Error("backward: grad must be a Tensor");
      if (shapeStr(grad._shape) !== shapeStr(this._shape)) {
        throw new Error(`backward: grad shape ${shapeStr(grad._shape)} does not match the output shape ${shapeStr(this._shape)}`);
      }
      seed = N.clone(grad.use("backward"));
    }
    runBackward(this, seed, (g) => Tensor._untracked(g, "grad"));
  }

  /** Disposes the gradient and sets it to null. */
  zeroGrad(): void {
    if (this._grad) this._grad.dispose();
    this._grad = null;
  }

  /** A tensor sharing this one's storage, outside the tape. */
  detach(): Tensor {
    const h = this.use("detach");
    return new Tensor(native().share(h), "detach");
  }

  /** A copy (outside the tape). */
  clone(): Tensor {
    return new Tensor(native().clone(this.use("clone")), "clone");
  }

  /** A copy on another device (outside the tape). */
  to(device: DeviceName): Tensor {
    checkDevice(device, "to");
    return new Tensor(native().toDevice(this.use("to"), device), "to");
  }

  /** Exempts this tensor from the enclosing tidy scopes. */
  keep(): this {
    this._kept = true;
    return this;
  }

  /** Frees the native memory now (and the gradient's). Idempotent. */
  dispose(): void {
    if (this._h === null) return;
    const h = this._h;
    this._h = null;
    liveCount--;
    if (this._grad) {
      this._grad.dispose();
      this._grad = null;
    }
    if (this._node) releaseNode(this._node);
    h.dispose();
  }

  toString(): string {
    return `Tensor(${shapeStr(this._shape)}, ${this._device}${this.disposed ? ", disposed" : ""})`;
  }
}
