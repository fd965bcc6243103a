// Loader worker thread: holds its shard's decode cache and renders the items of each task straight
// into the batch's shared output buffers. Protocol (see loader.ts, WorkerPool):
//   in:  { type: "task", id, epoch, pos: Int32Array, idx: Int32Array, outA, outB }, { type: "close" }
//   out: { type: "ready" } once, { type: "done", id, failures }, { type: "fatal", message }
import { parentPort, workerData } from "node:worker_threads";
import type { Dataset } from "./formats";
import { ItemProcessor, PipelineConfig, processItems } from "./pipeline";

export interface WorkerInit {
  dataset: Dataset;
  config: PipelineConfig;
  /** images in flight in this worker (overlaps decoding with the JS parts) */
  concurrency: number;
}

export interface TaskMessage {
  type: "task";
  id: number;
  epoch: number;
  pos: Int32Array;
  idx: Int32Array;
  outA: Float32Array;
  outB: Float32Array | null;
}

function main(): void {
  const port = parentPort;
  if (!port) throw new Error("c3gan data: worker.ts must run as a worker thread");
  let proc: ItemProcessor;
  const init = workerData as WorkerInit;
  try {
    proc = new ItemProcessor(init.dataset, init.config);
  } catch (e) {
    port.postMessage({ type: "fatal", message: e instanceof Error ? e.message : String(e) });
    return;
  }
  port.on("message", (m: TaskMessage | { type: "close" }) => {
    if (m.type === "close") {
      port.close(); // nothing is in flight (the pool waited): the thread ends with its event loop
      return;
    }
    processItems(proc, m.epoch, m.pos, m.idx, m.outA, m.outB, init.concurrency).then(
      (failures) => port.postMessage({ type: "done", id: m.id, failures }),
      (e) => port.postMessage({ type: "fatal", message: e instanceof Error ? e.stack ?? e.message : String(e) }),
    );
  });
  port.postMessage({ type: "ready" });
}

main();
