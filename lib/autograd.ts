// The reverse-mode tape. Each op result that needs a gradient carries a Node: its inputs, the
// native handles its backward needs (owned by the node) and the backward closure. The tape holds
// no native state of its own: gradients are NativeTensor handles owned by the tape while it runs.
//
// Lifetime: a node is freed (its saved handles disposed) either when backward() runs through it
// or when nothing can reach it any more: it counts one reference for its output Tensor and one
// for each unfreed consumer node; disposing the output and all consumers frees it, so a forward
// pass whose loss is never backpropagated releases its graph when tidy() disposes the results.
import { native, NativeTensor } from "./native";
import type { Tensor } from "./tensor";

/**
 * Backward closure: input gradients (null where not needed) from the output gradient. It may
 * return dy itself for one input (the tape then owns it); other results must be fresh handles.
 * `into[i]`, when given, is the gradient input i already has from other consumers: the closure
 * may add input i's gradient into it in place (a conv's epilogue does) and return `into[i]`
 * itself, which tells the tape the sum is made. `into` is passed only when some entry is set.
 */
export type BackwardFn = (dy: NativeTensor, into?: (NativeTensor | null)[]) => (NativeTensor | null)[];

export class Node {
  readonly op: string;
  readonly inputs: (Tensor | null)[];
  readonly needs: boolean[];
  saved: NativeTensor[];
  readonly backwardFn: BackwardFn;
  readonly outShape: number[];
  /** the Tensor this node produced (set by the op layer right after creating it) */
  output: Tensor | null = null;
  refs = 1;
  freed = false;
  /** each input's _version when the forward pass read it */
  readonly versions: number[];

  constructor(op: string, inputs: (Tensor | null)[], needs: boolean[], saved: NativeTensor[], fn: BackwardFn,
    outShape: number[]) {
    this.op = op;
    this.inputs = inputs;
    this.needs = needs;
    this.saved = saved;
    this.backwardFn = fn;
    this.outShape = outShape;
    this.versions = inputs.map((t) => (t ? t._version : 0));
  }

  /** disposes the saved handles; the node stays as a marker that its graph is gone */
  releaseSaved(): void {
    for (const h of this.saved) if (!h.disposed) h.dispose();
    this.saved = [];
    this.freed = true;
  }
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording the tape (results do not require grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs fn with the tape recording, also inside noGrad. */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Whether an op over these inputs records a node. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/** Called when a node is created: each input's node gains a consumer. */
export function retainInputs(node: Node): void {
  for (let i = 0; i < node.inputs.length; i++) {
    const n = node.needs[i] ? node.inputs[i]?._node : null;
    if (n && !n.freed) n.refs++;
  }
}

/** Drops one reference to a node; frees it and, transitively, what only it reached. */
export function releaseNode(start: Node): void {
  const stack = [start];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.freed) continue;
    if (--n.refs > 0) continue;
    n.releaseSaved();
    for (let i = 0; i < n.inputs.length; i++) {
      const inNode = n.needs[i] ? n.inputs[i]?._node : null;
      if (inNode && !inNode.freed) stack.push(inNode);
    }
  }
}

function shapeStr(s: number[]): string {
  return `[${s.join(", ")}]`;
}

/**
 * Refuses a graph whose inputs were written in place after the forward pass read them (an
 * optimizer step or a loadStateDict between forward and backward): backward would combine the
 * new values with the saved forward-time ones. PyTorch refuses it too (its version counter).
 * Checked before any gradient is computed, so a refused backward leaves no partial gradients.
 */
function checkVersions(order: Node[]): void {
  for (const n of order) {
    for (let i = 0; i < n.inputs.length; i++) {
      const t = n.inputs[i];
      if (!t || t._version === n.versions[i]) continue;
      throw new Error(
        `backward: input ${i} (shape ${shapeStr(t.shape)}, made by ${t.op}) of ${n.op} (output shape ` +
          `${shapeStr(n.outShape)}) was modified in place after the forward pass used it (version ` +
          `${n.versions[i]}, now ${t._version}: an optimizer step, loadStateDict or init); call backward() ` +
          `before changing it, or run the forward pass again`,
      );
    }
  }
}

/** Nodes reachable from root, inputs before consumers (iterative DFS: graphs can be deep). */
function topoOrder(root: Node): Node[] {
  const order: Node[] = [];
  const state = new Map<Node, number>(); // 1 = on the stack, 2 = done
  const stack: [Node, number][] = [[root, 0]];
  state.set(root, 1);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [n, i] = top;
    if (n.freed) {
      throw new Error(
        `backward: the graph through ${n.op} (output shape ${shapeStr(n.outShape)}) was already freed by an ` +
          `earlier backward(); a graph can be backpropagated once, so run the forward pass again`,
      );
    }
    if (i < n.inputs.length) {
      top[1] = i + 1;
      const inNode = n.needs[i] ? n.inputs[i]?._node : null;
      if (inNode && !state.has(inNode)) {
        state.set(inNode, 1);
        stack.push([inNode, 0]);
      }
      continue;
    }
    stack.pop();
    state.set(n, 2);
    order.push(n);
  }
  return order;
}

let leafSumsHeldBytes = 256 * 1024 * 1024;

/** @internal How many bytes of leaf contributions a backward pass holds before adding them (tests). */
export function setLeafSumsHeldBytes(bytes: number): number {
  const prev = leafSumsHeldBytes;
  leafSumsHeldBytes = bytes;
  return prev;
}

/**
 * Gradients for leaves that already hold one, summed in one call (one launch on CUDA) when the
 * backward pass ends instead of an axpy each: a module run several times in one graph (D sees
 * four batches a step) gets each parameter's contributions added in arrival order, so the bits
 * are those of the axpys. Held contributions are added early past leafSumsHeldBytes.
 */
class LeafSums {
  private dsts: NativeTensor[] = [];
  private srcs: NativeTensor[] = [];
  private bytes = 0;

  add(dst: NativeTensor, g: NativeTensor): void {
    this.dsts.push(dst);
    this.srcs.push(g);
    this.bytes += 4 * g.numel;
    if (this.bytes > leafSumsHeldBytes) this.flush();
  }

  /** adds what is held, then frees the contributions */
  flush(): void {
    const { dsts, srcs } = this;
    this.dsts = [];
    this.srcs = [];
    this.bytes = 0;
    try {
      if (dsts.length) native().addInto(dsts, srcs);
    } finally {
      for (const g of srcs) g.dispose();
    }
  }
}

/**
 * Backpropagates from `root` with output gradient `seed` (a handle the tape takes over).
 * `adoptGrad` wraps a handle as an untracked Tensor for a leaf's .grad.
 */
export function runBackward(root: Tensor, seed: NativeTensor, adoptGrad: (h: NativeTensor) => Tensor): void {
  const N = native();
  const rootNode = root._node;
  if (!rootNode) {
    // a leaf: its gradient is the seed
    accumulateLeaf(root, seed, adoptGrad);
    return;
  }
  let order: Node[];
  try {
    order = topoOrder(rootNode);
    checkVersions(order);
  } catch (e) {
    seed.dispose();
    throw e;
  }
  // gradients of non-leaf tensors, keyed by the Tensor object (its handle may be disposed already)
  const grads = new Map<Tensor, NativeTensor>();
  grads.set(root, seed);
  const leafSums = new LeafSums();
  let ok = false;
  try {
    for (let k = order.length - 1; k >= 0; k--) {
      const node = order[k];
      const out = node.output;
      const dy = out ? grads.get(out) : undefined;
      if (out) grads.delete(out);
      if (!dy) {
        node.releaseSaved();
        continue;
      }
      const into = heldGrads(node, grads);
      let gs: (NativeTensor | null)[];
      try {
        gs = into ? node.backwardFn(dy, into) : node.backwardFn(dy);
      } catch (e) {
        dy.dispose();
        throw e;
      }
      // each returned handle must be owned once: clone repeats (and dy if returned twice); a
      // gradient added into the one held is already where it belongs
      const seen = new Set<NativeTensor>();
      const owned: (NativeTensor | null)[] = [];
      for (let i = 0; i < node.inputs.length; i++) {
        let g = gs[i] ?? null;
        if (g && into && g === into[i]) g = null;
        else if (g && seen.has(g)) g = N.clone(g);
        if (g) seen.add(g);
        owned.push(g);
      }
      const dyOwned = seen.has(dy);
      for (let i = 0; i < node.inputs.length; i++) {
        const g = owned[i];
        if (!g) continue;
        const input = node.inputs[i];
        if (!input || !node.needs[i]) {
          g.dispose();
          continue;
        }
        if (input._node) {
          const prev = grads.get(input);
          if (prev) {
            N.axpy(prev, 1, g);
            g.dispose();
          } else {
            grads.set(input, g);
          }
        } else {
          accumulateLeaf(input, g, adoptGrad, leafSums);
        }
      }
      if (!dyOwned && !dy.disposed) dy.dispose();
      node.releaseSaved();
    }
    ok = true;
  } finally {
    // what reached the leaves is added even when the pass failed (as immediate axpys were)
    try {
      leafSums.flush();
    } catch (e) {
      if (ok) throw e; // after a failure, that first error is the one to report
    } finally {
      for (const g of grads.values()) if (!g.disposed) g.dispose();
      for (const n of order) n.releaseSaved();
    }
  }
}

/**
 * The gradients node's inputs already hold (non-leaf inputs another consumer reached first),
 * or null when none does. An input listed twice gets the entry once.
 */
function heldGrads(node: Node, grads: Map<Tensor, NativeTensor>): (NativeTensor | null)[] | null {
  let into: (NativeTensor | null)[] | null = null;
  const inputs = node.inputs;
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    if (!input || !node.needs[i] || !input._node) continue;
    const prev = grads.get(input);
    if (!prev || inputs.indexOf(input) !== i) continue;
    into ??= new Array<NativeTensor | null>(inputs.length).fill(null);
    into[i] = prev;
  }
  return into;
}

function accumulateLeaf(leaf: Tensor, g: NativeTensor, adoptGrad: (h: NativeTensor) => Tensor, sums?: LeafSums): void {
  if (!leaf.requiresGrad) {
    g.dispose();
    return;
  }
  const cur = leaf.grad;
  if (cur && !cur.disposed) {
    if (sums) sums.add(cur.handle, g);
    else {
      native().axpy(cur.handle, 1, g);
      g.dispose();
    }
  } else {
    leaf._setGradInternal(adoptGrad(g));
  }
}
