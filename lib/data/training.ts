// The trainer's view of the data (lib/train/data-source.ts): the training and test datasets of a
// C3Config opened through lib/data, with a training loader (pairs) and a test loader (in order).
import * as path from "node:path";
import type { C3Config } from "../train/config";
import type { PairBatch as TrainerPair, TestBatch as TrainerTest, TrainingData } from "../train/data-source";
import { DataSpec, Dataset, Split, openDataset } from "./formats";
import { DataLoader } from "./loader";
import { syntheticDataset } from "./synthetic";

/** The config's dataset section as a DataSpec for one split. */
export function specForSplit(cfg: C3Config, split: Split): DataSpec {
  const d = cfg.dataset;
  const common = { numClasses: cfg.numGtClasses, skipBadImages: cfg.skipBadImages };
  switch (d.format) {
    case "lists":
      return { ...common, format: "lists", root: cfg.dataDir, trainList: d.trainList, testList: d.testList, imagesDir: d.imageDir };
    case "imagefolder": {
      const dir = split === "train" || d.testDir === null ? d.trainDir : d.testDir;
      return { ...common, format: "imagefolder", root: path.resolve(cfg.dataDir, dir) };
    }
    case "idx":
      return {
        ...common, format: "idx", root: cfg.dataDir,
        idx: { trainImages: d.trainImages, trainLabels: d.trainLabels, testImages: d.testImages, testLabels: d.testLabels },
      };
    case "synthetic":
      return { ...common, format: "synthetic" };
    case "folder":  // unlabelled: the evaluations cluster the training images themselves
      return { ...common, format: "folder", root: path.resolve(cfg.dataDir, d.dir) };
  }
}

async function openSplit(cfg: C3Config, split: Split): Promise<Dataset> {
  const d = cfg.dataset;
  if (d.format === "synthetic") {
    // test images are further images of the same generator, not the training ones
    const perClass = split === "train" ? d.perClass : d.testPerClass;
    const firstIndex = split === "train" ? 0 : d.numClasses * d.perClass;
    return syntheticDataset({ numClasses: d.numClasses, perClass, size: cfg.imageSize, channels: cfg.channels, seed: d.seed, firstIndex }, split);
  }
  return openDataset(specForSplit(cfg, split), split);
}

export async function openDatasetsForTraining(cfg: C3Config): Promise<TrainingData & {
  train: Dataset;
  trainLoader: DataLoader<"train">;
}> {
  const train = await openSplit(cfg, "train");
  for (const note of train.notes) console.warn(`c3gan data: ${note}`);
  const common = {
    batchSize: cfg.batchSize, imageSize: cfg.imageSize, channels: cfg.channels, seed: cfg.seed,
    workers: cfg.workers, skipBadImages: cfg.skipBadImages, decodeCache: cfg.decodeCache,
    skipHint: "\"skipBadImages\": true in the config leaves such images out",
  };
  const trainLoader = new DataLoader(train, { ...common, mode: "train" });
  let testLoader: DataLoader<"test"> | null = null;
  return {
    train,
    trainLoader,
    batchesPerEpoch: trainLoader.batchesPerEpoch,
    async *trainEpoch(epoch: number, startBatch = 0): AsyncIterable<TrainerPair> {
      for await (const b of trainLoader.epoch(epoch, startBatch)) {
        yield { real: b.real.images, aug: b.aug.images, shape: b.real.shape };
      }
    },
    async *testBatches(): AsyncIterable<TrainerTest> {
      if (!testLoader) {
        const test = await openSplit(cfg, "test");
        testLoader = new DataLoader(test, { ...common, mode: "test" });
      }
      for await (const b of testLoader.epoch(0)) {
        yield { images: b.images, shape: b.shape, labels: b.labels, paths: b.paths };
      }
    },
    async close(): Promise<void> {
      await trainLoader.close();
      if (testLoader) await testLoader.close();
    },
  };
}
