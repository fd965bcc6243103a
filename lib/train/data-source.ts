// What the trainer reads: per epoch, batches of (real view, augmented view) pairs; and the test
// set in order with labels. openTrainingData builds it from a config through lib/data.
import type { C3Config } from "./config";

export interface PairBatch {
  real: Float32Array;
  aug: Float32Array;
  shape: [number, number, number, number];
}

export interface TestBatch {
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  paths?: string[];
}

export interface TrainingData {
  /** full batches per epoch (the last partial batch is dropped) */
  batchesPerEpoch: number;
  /** shuffled from (seed, epoch), so a resumed run sees the same batches */
  trainEpoch(epoch: number): AsyncIterable<PairBatch>;
  testBatches(): AsyncIterable<TestBatch>;
  close(): Promise<void>;
}

export async function openTrainingData(cfg: C3Config): Promise<TrainingData> {
  const { openDatasetsForTraining } = await import("../data/training");
  return openDatasetsForTraining(cfg);
}
