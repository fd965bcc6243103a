// Adam (PyTorch semantics: L2 weight decay added to the gradient, bias-corrected moments) over
// the native fused step. State (exp_avg, exp_avg_sq) lives in native tensors outside every tidy
// scope; each parameter keeps its own step count.
import { native, NativeTensor } from "../native";
import { shapeStr, Tensor } from "../tensor";

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface AdamParamState {
  step: number;
  exp_avg: Tensor;
  exp_avg_sq: Tensor;
}

export interface AdamGroup {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** indices into the optimizer's parameter list */
  params: number[];
}

/** As PyTorch's optimizer state_dict: state by parameter index, one parameter group. */
export interface AdamStateDict {
  state: Map<number, AdamParamState>;
  paramGroups: AdamGroup[];
}

function checkHyper(o: Required<AdamOptions>, where: string): void {
  const { lr, betas, eps, weightDecay } = o;
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0) throw new Error(`${where}: lr must be a finite number >= 0, got ${lr}`);
  if (!Array.isArray(betas) || betas.length !== 2) throw new Error(`${where}: betas must be [beta1, beta2]`);
  betas.forEach((b, i) => {
    if (typeof b !== "number" || !(b >= 0 && b < 1)) throw new Error(`${where}: betas[${i}] must be in [0, 1), got ${b}`);
  });
  if (typeof eps !== "number" || !Number.isFinite(eps) || eps < 0) throw new Error(`${where}: eps must be a finite number >= 0, got ${eps}`);
  if (typeof weightDecay !== "number" || !Number.isFinite(weightDecay) || weightDecay < 0) {
    throw new Error(`${where}: weightDecay must be a finite number >= 0, got ${weightDecay}`);
  }
}

export class Adam {
  readonly params: Tensor[];
  private _lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<Tensor, AdamParamState>();

  constructor(params: Tensor[], opts: AdamOptions = {}) {
    if (!Array.isArray(params)) throw new Error("Adam: params must be an array of Tensors");
    params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw new Error(`Adam: params[${i}] is not a Tensor`);
      if (!p.isLeaf) throw new Error(`Adam: params[${i}] (shape ${shapeStr(p.shape)}) is not a leaf tensor`);
    });
    if (new Set(params).size !== params.length) throw new Error("Adam: a parameter appears more than once");
    const o: Required<AdamOptions> = {
      lr: opts.lr ?? 1e-3,
      betas: opts.betas ? [opts.betas[0], opts.betas[1]] : [0.9, 0.999],
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? 0,
    };
    checkHyper(o, "Adam");
    this.params = params.slice();
    this._lr = o.lr;
    this.betas = o.betas;
    this.eps = o.eps;
    this.weightDecay = o.weightDecay;
  }

  get lr(): number {
    return this._lr;
  }

  /** for schedules */
  set lr(v: number) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new Error(`Adam: lr must be a finite number >= 0, got ${v}`);
    this._lr = v;
  }

  private stateFor(p: Tensor): AdamParamState {
    let s = this.state.get(p);
    if (!s) {
      const N = native();
      s = {
        step: 0,
        exp_avg: Tensor._untracked(N.full(p.shape, 0, p.device), "adam.exp_avg"),
        exp_avg_sq: Tensor._untracked(N.full(p.shape, 0, p.device), "adam.exp_avg_sq"),
      };
      this.state.set(p, s);
    }
    return s;
  }

  /** One update of every parameter that has a gradient, in one native call (one launch on CUDA). */
  step(): void {
    const params: NativeTensor[] = [], grads: NativeTensor[] = [], ms: NativeTensor[] = [], vs: NativeTensor[] = [];
    const states: AdamParamState[] = [];
    const stepped: Tensor[] = [];
    for (const p of this.params) {
      const g = p.grad;
      if (g === null) continue;
      const s = this.stateFor(p);
      stepped.push(p);
      params.push(p.use("Adam.step"));
      grads.push(g.use("Adam.step (grad)"));
      ms.push(s.exp_avg.use("Adam.step"));
      vs.push(s.exp_avg_sq.use("Adam.step"));
      states.push(s);
    }
    if (states.length === 0) return;
    const [b1, b2] = this.betas;
    // the counts move only once the step has been taken (a refused step leaves them as they were)
    native().adamSteps(params, grads, ms, vs, states.map((s) => s.step + 1), this._lr, b1, b2, this.eps, this.weightDecay);
    for (const s of states) s.step++;
    for (const p of stepped) p._version++;
  }

  /** Disposes the gradients (PyTorch's set_to_none). */
  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** The live state (not copies), as PyTorch's optimizer.state_dict(). */
  stateDict(): AdamStateDict {
    const state = new Map<number, AdamParamState>();
    this.params.forEach((p, i) => {
      const s = this.state.get(p);
      if (s) state.set(i, s);
    });
    return {
      state,
      paramGroups: [{
        lr: this._lr, betas: [this.betas[0], this.betas[1]], eps: this.eps, weightDecay: this.weightDecay,
        params: this.params.map((_, i) => i),
      }],
    };
  }

  /** Copies state in (values are copied; the given tensors stay the caller's). Restores lr too. */
  loadStateDict(sd: AdamStateDict): void {
    if (!sd || !(sd.state instanceof Map)) throw new Error("Adam.loadStateDict: expects {state: Map, paramGroups}");
    for (const [i, s] of sd.state) {
      const p = this.params[i];
      if (!p) throw new Error(`Adam.loadStateDict: state for parameter ${i}, but the optimizer has ${this.params.length}`);
      if (!Number.isInteger(s.step) || s.step < 0) throw new Error(`Adam.loadStateDict: parameter ${i} has step ${s.step}`);
      for (const k of ["exp_avg", "exp_avg_sq"] as const) {
        const t = s[k];
        if (!(t instanceof Tensor) || shapeStr(t.shape) !== shapeStr(p.shape)) {
          throw new Error(`Adam.loadStateDict: parameter ${i} ${k} must be a Tensor of shape ${shapeStr(p.shape)}, ` +
            `got ${t instanceof Tensor ? shapeStr(t.shape) : String(t)}`);
        }
      }
    }
    const g = sd.paramGroups?.[0];
    if (g) {
      checkHyper({ lr: g.lr, betas: g.betas, eps: g.eps, weightDecay: g.weightDecay }, "Adam.loadStateDict");
      if (g.eps !== this.eps || g.betas[0] !== this.betas[0] || g.betas[1] !== this.betas[1] || g.weightDecay !== this.weightDecay) {
        // betas/eps/weightDecay are fixed at construction; a mismatch means a different optimizer config
        throw new Error(`Adam.loadStateDict: saved betas/eps/weightDecay (${g.betas}, ${g.eps}, ${g.weightDecay}) differ from ` +
          `this optimizer's (${this.betas}, ${this.eps}, ${this.weightDecay})`);
      }
      this._lr = g.lr;
    }
    const N = native();
    for (const [i, s] of sd.state) {
      const p = this.params[i];
      const own = this.stateFor(p);
      for (const k of ["exp_avg", "exp_avg_sq"] as const) {
        const src = s[k].use("Adam.loadStateDict");
        const dst = own[k].use("Adam.loadStateDict");
        if (s[k] === own[k]) continue;
        if (s[k].device === own[k].device) {
          N.copy(dst, src);
        } else {
          const moved = N.toDevice(src, own[k].device);
          N.copy(dst, moved);
          moved.dispose();
        }
        own[k]._version++;
      }
      own.step = s.step;
    }
  }

  /** Frees the optimizer state. */
  dispose(): void {
    for (const s of this.state.values()) {
      s.exp_avg.dispose();
      s.exp_avg_sq.dispose();
    }
    this.state.clear();
  }
}
