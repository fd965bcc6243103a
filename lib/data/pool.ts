// Where a batch's images are processed: in this thread (sharp's async calls overlap on the libuv
// pool, the JavaScript steps run here), or in worker threads, image i always in worker i % W (so
// its decode cache lives in one place), each writing straight into the batch's SharedArrayBuffers.
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { Dataset } from "./formats";
import { ItemFailure, ItemProcessor, PipelineConfig, processItems } from "./pipeline";
import type { TaskMessage, WorkerInit } from "./worker";

export interface Task {
  epoch: number;
  idx: Int32Array;
  outA: Float32Array;
  outB: Float32Array | null;
}

export interface Executor {
  run(task: Task): Promise<ItemFailure[]>;
  /** whether outputs must live on SharedArrayBuffers */
  readonly shared: boolean;
  close(): Promise<void>;
}

export class InThreadExecutor implements Executor {
  readonly shared = false;
  private readonly proc: ItemProcessor;
  constructor(dataset: Dataset, config: PipelineConfig, private readonly concurrency: number) {
    this.proc = new ItemProcessor(dataset, config);
  }
  run(task: Task): Promise<ItemFailure[]> {
    const pos = Int32Array.from(task.idx.keys());
    return processItems(this.proc, task.epoch, pos, task.idx, task.outA, task.outB, this.concurrency);
  }
  async close(): Promise<void> {}
}

function workerEntry(): { file: string; execArgv?: string[] } {
  if (__filename.endsWith(".ts")) return { file: path.join(__dirname, "worker.ts"), execArgv: ["--import", "tsx"] };
  return { file: path.join(__dirname, "worker.js") };
}

interface Pending {
  parts: number;
  failures: ItemFailure[];
  resolve: (f: ItemFailure[]) => void;
  reject: (e: Error) => void;
  settled: Promise<unknown>;
}

export class WorkerPool implements Executor {
  readonly shared = true;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private broken: Error | null = null;
  private closing = false;

  constructor(dataset: Dataset, config: PipelineConfig, count: number, concurrency: number) {
    const entry = workerEntry();
    for (let w = 0; w < count; w++) {
      const init: WorkerInit = { dataset, config, concurrency };
      const worker = new Worker(entry.file, { workerData: init, execArgv: entry.execArgv });
      worker.on("message", (m: { type: string; id?: number; failures?: ItemFailure[]; message?: string }) => {
        if (m.type === "done") this.partDone(m.id!, m.failures!);
        else if (m.type === "fatal") this.fail(new Error(`c3gan data: loader worker ${w} failed: ${m.message}`));
      });
      worker.on("error", (e) => this.fail(new Error(`c3gan data: loader worker ${w} crashed: ${e.message}`)));
      worker.on("exit", (code) => {
        if (!this.closing) this.fail(new Error(`c3gan data: loader worker ${w} exited (code ${code})`));
      });
      worker.unref(); // idle workers do not keep the process alive; ref()'d while tasks are out
      this.workers.push(worker);
    }
  }

  private partDone(id: number, failures: ItemFailure[]): void {
    const p = this.pending.get(id);
    if (!p) return;
    p.failures.push(...failures);
    if (--p.parts === 0) {
      this.pending.delete(id);
      this.updateRefs();
      p.failures.sort((a, b) => a.pos - b.pos);
      p.resolve(p.failures);
    }
  }

  private fail(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.updateRefs();
  }

  private updateRefs(): void {
    const busy = this.pending.size > 0;
    for (const w of this.workers) {
      if (busy) w.ref();
      else w.unref();
    }
  }

  run(task: Task): Promise<ItemFailure[]> {
    if (this.broken) return Promise.reject(this.broken);
    const W = this.workers.length;
    const pos: number[][] = Array.from({ length: W }, () => []);
    const idx: number[][] = Array.from({ length: W }, () => []);
    task.idx.forEach((i, k) => {
      pos[i % W].push(k);
      idx[i % W].push(i);
    });
    const id = this.nextId++;
    let entry: Pending | undefined;
    const promise = new Promise<ItemFailure[]>((resolve, reject) => {
      const parts = pos.filter((p) => p.length > 0).length;
      entry = { parts, failures: [], resolve, reject, settled: Promise.resolve() };
      this.pending.set(id, entry);
      this.updateRefs();
      for (let w = 0; w < W; w++) {
        if (pos[w].length === 0) continue;
        const m: TaskMessage = {
          type: "task", id, epoch: task.epoch, pos: Int32Array.from(pos[w]), idx: Int32Array.from(idx[w]),
          outA: task.outA, outB: task.outB,
        };
        this.workers[w].postMessage(m);
      }
    });
    entry!.settled = promise.then(() => undefined, () => undefined);
    return promise;
  }

  /**
   * Lets the tasks in flight finish (an abandoned epoch leaves up to `prefetch` batches), then
   * asks the workers to exit: terminating a thread while sharp works for it is not safe.
   * Workers that do not exit within `graceMs` are terminated.
   */
  async close(graceMs = 30000): Promise<void> {
    this.closing = true;
    const timeout = <T>(p: Promise<T>) => Promise.race([p, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref())]);
    await timeout(Promise.all([...this.pending.values()].map((p) => p.settled)));
    await Promise.all(this.workers.map(async (w) => {
      const exited = new Promise<void>((r) => w.once("exit", () => r()));
      w.ref();
      w.postMessage({ type: "close" });
      if ((await timeout(exited)) === "timeout") await w.terminate();
    }));
  }
}

