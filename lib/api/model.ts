// A trained C3-GAN for applications: load a checkpoint, cluster images, generate per cluster.
import * as fs from "node:fs";
import { readSafetensorsHeader } from "../io/safetensors";
import { C3GAN } from "../model/c3gan";
import type { DeviceName } from "../native";
import { Generator } from "../tensor";
import { C3Config, parseConfig, loadConfig } from "../train/config";
import { loadModel as loadWeights } from "../train/checkpoint";
import { specFromConfig } from "../train/trainer";
import { DeviceChoice, resolveDevice } from "../device";
import { clusterImages, ClusterInput, ClusterOptions, ClusterReport } from "./cluster";
import { generateClusters, generateImages, GenerateOptions, GeneratedCluster } from "./generate";

export interface LoadModelOptions {
  /** the config the checkpoint was trained with; default: the one stored in the checkpoint */
  config?: C3Config | string;
  /** "cpu", "cuda", "cuda:N" or "auto"; default: the config's */
  device?: DeviceChoice;
}

export class C3Model {
  constructor(readonly gan: C3GAN, readonly config: C3Config, readonly checkpoint: string | null) {}

  get device(): DeviceName {
    return this.gan.device;
  }

  get numClusters(): number {
    return this.gan.spec.numClusters;
  }

  /** Cluster of each image (test transform, batched). See ClusterInput for what it takes. */
  cluster(input: ClusterInput, opts: ClusterOptions = {}): Promise<ClusterReport> {
    return clusterImages(this, input, opts);
  }

  /** Images per cluster: final composites, optionally with background, mask and foreground. */
  generate(opts: GenerateOptions = {}): GeneratedCluster[] {
    return generateImages(this, opts);
  }

  /** The same images one cluster at a time: memory for one cluster's, however many clusters. */
  generateEach(opts: GenerateOptions = {}): IterableIterator<GeneratedCluster> {
    return generateClusters(this, opts);
  }

  dispose(): void {
    this.gan.dispose();
  }
}

/** The config stored in a c3gan checkpoint's metadata. */
export function checkpointConfig(file: string): C3Config {
  const h = readSafetensorsHeader(file);
  if (!h.metadata.config) throw new Error(`${file} holds no c3gan config in its metadata: pass the config explicitly`);
  return parseConfig(JSON.parse(h.metadata.config), `${file} (stored config)`);
}

export async function loadModel(file: string, opts: LoadModelOptions = {}): Promise<C3Model> {
  if (!fs.existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  let config = typeof opts.config === "string" ? loadConfig(opts.config) : opts.config ?? checkpointConfig(file);
  // (validated by resolveDevice below: an unknown name is an error, not the CPU)
  if (opts.device) config = { ...config, device: opts.device };
  // every weight and buffer comes from the file (loadWeights refuses a missing one): no official init
  const gan = new C3GAN(specFromConfig(config), resolveDevice(config.device), new Generator(BigInt(config.seed)),
    { officialInit: false });
  try {
    loadWeights(file, gan);
  } catch (e) {
    gan.dispose();
    throw e;
  }
  gan.train(false);
  return new C3Model(gan, config, file);
}
