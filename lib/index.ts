// The public API of c3gan.
import { C3Config, loadConfig, parseConfig } from "./train/config";
import {
  train as trainLoop, TrainOptions, TrainResult, evaluateModel, scoreModel, ModelScore, specFromConfig,
} from "./train/trainer";
import { resolveDevice } from "./device";
import { openTrainingData, TrainingData } from "./train/data-source";
import type { C3GAN } from "./model/c3gan";
import { EvalResult } from "./eval";
import { C3Model, loadModel } from "./api/model";

export { Tensor, Generator, tidy, noGrad } from "./tensor";
export * as F from "./ops";
export * as nn from "./nn";
export { Adam } from "./optim/adam";
export { native } from "./native";
export { OpProfile } from "./profile";
export type { OpTime } from "./profile";
export { C3GAN, sampleCodes, randomGrid } from "./model/c3gan";
export type { C3GANOptions } from "./model/c3gan";
export type { ModelSpec } from "./model/spec";
export { parseConfig, loadConfig, describeConfig, clusterCount } from "./train/config";
export type { C3Config } from "./train/config";
export { parseDeviceChoice } from "./device";
export type { DeviceChoice } from "./device";
export { evaluateClustering, linearSumAssignment, nmiOfficial, nmiSklearn, ariSklearn, clusterUsage, describeUsage } from "./eval";
export type { EvalResult, ClusterUsage } from "./eval";
export { loadModel, C3Model, checkpointConfig } from "./api/model";
export type { ClusterInput, ClusterOptions, ClusterReport, ClusterAssignment } from "./api/cluster";
export type { GenerateOptions, GeneratedCluster } from "./api/generate";
export type { TrainOptions, TrainResult, TrainProgress, EvalRecord, ModelScore } from "./train/trainer";
export { readSafetensors, writeSafetensors } from "./io/safetensors";
export { SummaryWriter } from "./io/tensorboard";
export { gridPng } from "./train/samples";
export { configureSharp } from "./data/decode";
export type { RawPixels } from "./data/decode";

function asConfig(config: C3Config | string | object): C3Config {
  if (typeof config === "string") return loadConfig(config);
  return parseConfig(config, "train(config)");
}

/**
 * Trains C3-GAN. `config` is a config object (validated as a JSON config is) or a path to one.
 * The loop yields to the event loop between steps; pass `signal` to stop it (the last epoch's
 * checkpoint stays for `resume`).
 */
export function train(config: C3Config | string | object, opts: TrainOptions = {}): Promise<TrainResult> {
  return trainLoop(asConfig(config), opts);
}

/** ACC / NMI of a model (or a checkpoint path) on its config's test set (an error for images without labels). */
export async function evaluate(model: C3Model | string, config?: C3Config | string | object): Promise<EvalResult> {
  return withTestData(model, config, evaluateModel);
}

/** ACC / NMI where the test set has labels (else null), and how its images spread over the clusters. */
export async function score(model: C3Model | string, config?: C3Config | string | object): Promise<ModelScore> {
  return withTestData(model, config, scoreModel);
}

async function withTestData<T>(model: C3Model | string, config: C3Config | string | object | undefined,
  fn: (gan: C3GAN, data: TrainingData, cfg: C3Config) => Promise<T>): Promise<T> {
  const m = typeof model === "string" ? await loadModel(model, config ? { config: asConfig(config) } : {}) : model;
  const cfg = config ? asConfig(config) : m.config;
  const data = await openTrainingData(cfg);
  try {
    return await fn(m.gan, data, cfg);
  } finally {
    await data.close();
    if (typeof model === "string") m.dispose();
  }
}

export { specFromConfig, resolveDevice };
