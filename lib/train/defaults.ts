// The embedded default run: `c3gan train` without a config trains on generated labelled images
// (no files needed) on the CPU in a few minutes and reports ACC/NMI.
export const DEFAULT_CONFIG = {
  name: "demo-synthetic",
  description: "built-in demo: generated labelled shapes, tiny nets, CPU",
  dataset: { format: "synthetic", numClasses: 4, perClass: 96, testPerClass: 32, seed: 1 },
  numGtClasses: 4,
  over: 1,
  batchSize: 32,
  temperature: 0.1,
  perturbation: "w",
  maxEpoch: 12,
  evalInterval: 3,
  logInterval: 10,
  zDim: 16,
  czDim: 4,
  imageSize: 32,
  channels: 3,
  ngf: 64,
  ndf: 16,
  device: "cpu",
  seed: 0,
  workers: 0,
} as const;
