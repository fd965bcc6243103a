// Module: named parameters, buffers and child modules in registration order, with PyTorch's
// dotted names (fc.0.weight, bn.running_mean) so state dicts map one to one onto PyTorch's.
import { native } from "../native";
import { shapeStr, Tensor } from "../tensor";

/** Anything with a one-tensor forward (what Sequential chains). */
export interface Layer {
  forward(x: Tensor): Tensor;
}

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export class Module {
  training = true;
  private readonly _parameters = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  private readonly _integerBuffers = new Set<string>();
  private readonly _modules = new Map<string, Module>();

  private checkName(name: string, kind: string): void {
    if (typeof name !== "string" || name === "" || name.includes(".")) {
      throw new Error(`${this.constructor.name}.register${kind}: name must be a non-empty string without '.', got '${String(name)}'`);
    }
    if (this._parameters.has(name) || this._buffers.has(name) || this._modules.has(name)) {
      throw new Error(`${this.constructor.name}.register${kind}: '${name}' is already registered`);
    }
  }

  /** Registers a parameter (a leaf that requires grad, exempt from tidy); null is allowed (absent bias). */
  registerParameter<T extends Tensor | null>(name: string, t: T): T {
    this.checkName(name, "Parameter");
    if (t !== null) {
      if (!(t instanceof Tensor)) throw new Error(`registerParameter: '${name}' must be a Tensor or null`);
      if (!t.isLeaf) throw new Error(`registerParameter: '${name}' is the result of ${t.op}, not a leaf; detach() it first`);
      t.requiresGrad = true;
      t.keep();
    }
    this._parameters.set(name, t);
    return t;
  }

  /**
   * Registers a buffer (state saved in the state dict but not trained). `integer`: PyTorch keeps
   * it as int64 (a count); it is a float32 tensor here, written to checkpoints as int64.
   */
  registerBuffer<T extends Tensor | null>(name: string, t: T, opts: { integer?: boolean } = {}): T {
    this.checkName(name, "Buffer");
    if (t !== null) {
      if (!(t instanceof Tensor)) throw new Error(`registerBuffer: '${name}' must be a Tensor or null`);
      t.keep();
    }
    this._buffers.set(name, t);
    if (opts.integer) this._integerBuffers.add(name);
    return t;
  }

  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name, "Module");
    if (!(m instanceof Module)) throw new Error(`registerModule: '${name}' must be a Module`);
    this._modules.set(name, m);
    return m;
  }

  /** This module and all below it, pre-order, with dotted prefixes ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, p: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([p, m]);
      for (const [n, c] of m._modules) walk(c, p ? `${p}.${n}` : n);
    };
    walk(this, prefix);
    return out;
  }

  children(): Module[] {
    return [...this._modules.values()];
  }

  namedChildren(): [string, Module][] {
    return [...this._modules.entries()];
  }

  /**
   * Brings buffers that a module updates lazily up to date (BatchNorm's batch count); runs
   * before any walk hands buffers out. Subclasses with such state override it.
   */
  protected syncBuffers(): void {}

  private namedTensors(kind: "_parameters" | "_buffers"): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [p, m] of this.namedModules()) {
      if (kind === "_buffers") m.syncBuffers();
      for (const [n, t] of m[kind]) {
        if (t === null || seen.has(t)) continue;
        seen.add(t);
        out.push([p ? `${p}.${n}` : n, t]);
      }
    }
    return out;
  }

  /** Parameters with PyTorch-style dotted names, each once, in registration order. */
  namedParameters(): [string, Tensor][] {
    return this.namedTensors("_parameters");
  }

  namedBuffers(): [string, Tensor][] {
    return this.namedTensors("_buffers");
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  /** As PyTorch's state_dict: per module its parameters, then its buffers, then its children. */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const walk = (m: Module, p: string): void => {
      m.syncBuffers();
      for (const [n, t] of m._parameters) if (t) out.set(p + n, t);
      for (const [n, t] of m._buffers) if (t) out.set(p + n, t);
      for (const [n, c] of m._modules) walk(c, `${p}${n}.`);
    };
    walk(this, "");
    return out;
  }

  /** The state-dict keys of buffers registered as integers (PyTorch's int64 ones). */
  integerStateKeys(): Set<string> {
    const out = new Set<string>();
    const walk = (m: Module, p: string): void => {
      for (const n of m._integerBuffers) if (m._buffers.get(n)) out.add(p + n);
      for (const [n, c] of m._modules) walk(c, `${p}${n}.`);
    };
    walk(this, "");
    return out;
  }

  /**
   * Copies values into this module's parameters and buffers. strict (default) requires the keys
   * to match exactly; shapes must always match. Nothing is copied when a check fails.
   */
  loadStateDict(sd: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const strict = opts.strict ?? true;
    const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !src.has(k));
    const unexpectedKeys = [...src.keys()].filter((k) => !own.has(k));
    const where = this.constructor.name;
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      const parts: string[] = [];
      if (missingKeys.length) parts.push(`missing keys: ${missingKeys.join(", ")}`);
      if (unexpectedKeys.length) parts.push(`unexpected keys: ${unexpectedKeys.join(", ")}`);
      throw new Error(`loadStateDict(${where}): ${parts.join("; ")}`);
    }
    const bad: string[] = [];
    for (const [k, dst] of own) {
      const s = src.get(k);
      if (s === undefined) continue;
      if (!(s instanceof Tensor)) {
        bad.push(`${k} is not a Tensor`);
      } else if (shapeStr(s.shape) !== shapeStr(dst.shape)) {
        bad.push(`${k}: shape ${shapeStr(s.shape)} in the state dict, ${shapeStr(dst.shape)} in the module`);
      } else if (s.disposed) {
        bad.push(`${k} was disposed`);
      }
    }
    if (bad.length) throw new Error(`loadStateDict(${where}): ${bad.join("; ")}`);
    const N = native();
    for (const [k, dst] of own) {
      const s = src.get(k);
      if (!s || s === dst) continue;
      if (s.device === dst.device) {
        N.copy(dst.use("loadStateDict"), s.use("loadStateDict"));
      } else {
        const moved = N.toDevice(s.use("loadStateDict"), dst.device);
        try {
          N.copy(dst.use("loadStateDict"), moved);
        } finally {
          moved.dispose();
        }
      }
      dst._version++;
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Sets training mode here and below. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = Boolean(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Disposes the gradients of all parameters. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Frees all parameters and buffers (the module is unusable after). */
  dispose(): void {
    for (const t of this.parameters()) t.dispose();
    for (const t of this.buffers()) t.dispose();
  }
}
