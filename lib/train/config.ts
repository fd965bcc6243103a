// The training configuration: one JSON file, validated field by field into a fully resolved
// C3Config (every default filled in), so that the config saved in a checkpoint describes the
// run completely. Field names are camelCase renderings of the official C3-GAN config.py
// (naver-ai/c3-gan); defaults follow it where it has one (CUB), and say why where they differ.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEVICE_CHOICES, DeviceChoice, parseDeviceChoice } from "../device";

/**
 * Loader workers where a config names none: a core left to the training loop, at most the
 * official's 8. On a GPU the loop mostly waits, and 128 px pairs cost a core ~3 ms each (~300
 * pairs/s without the decode cache), so a batch-64 iteration of ~20 ms wants about 10 of them;
 * a fixed 2 left GPU runs waiting for data. The count does not change the batches: each image's
 * augmentation draws from (seed, epoch, index).
 */
export function defaultWorkers(): number {
  const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  return Math.min(8, Math.max(1, cores - 1));
}

export type Perturbation = "s" | "w" | "none";
export type { DeviceChoice };
export type ImageSize = 32 | 64 | 128 | 256;

/** The official layout: list files of `relative/path label` lines, images under imageDir. */
export interface ListsDataset {
  format: "lists";
  trainList: string;
  testList: string;
  imageDir: string;
}

/** One sub-folder per class (sorted folder names give labels 0..n-1). testDir null: evaluate on trainDir. */
export interface ImageFolderDataset {
  format: "imagefolder";
  trainDir: string;
  testDir: string | null;
}

/** (gzip) IDX files as MNIST / Fashion-MNIST ship them; paths relative to dataDir. */
export interface IdxDataset {
  format: "idx";
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
}

/** Generated in memory, for smoke tests and CPU demos; numClasses equals numGtClasses. */
export interface SyntheticDataset {
  format: "synthetic";
  numClasses: number;
  perClass: number;
  testPerClass: number;
  seed: number;
}

/**
 * Images without labels: every image below dataDir/dir, searched recursively. C3-GAN trains
 * without labels; each evaluation clusters the same images and reports how they spread over the
 * clusters (ClusterUsage) where labelled data gives ACC / NMI.
 */
export interface FolderDataset {
  format: "folder";
  dir: string;
}

export type DatasetConfig = ListsDataset | ImageFolderDataset | IdxDataset | SyntheticDataset | FolderDataset;

export interface C3Config {
  name: string;
  description: string;
  dataDir: string;
  saveDir: string;
  modelPath: string | null;
  numGtClasses: number;
  over: number;
  batchSize: number;
  temperature: number;
  perturbation: Perturbation;
  maxEpoch: number;
  evalInterval: number;
  logInterval: number;
  zDim: number;
  czDim: number;
  imageSize: ImageSize;
  ngf: number;
  ndf: number;
  channels: 1 | 3;
  dataset: DatasetConfig;
  device: DeviceChoice;
  /** CUDA matrix products: TF32 tensor cores or exact fp32; null keeps the process's mode (C3GAN_CUDA_MATH, else tf32). */
  cudaMath: "tf32" | "fp32" | null;
  /** CUDA tile GEMM pipeline: registers, async (cp.async) or wgmma (H100/H200); null keeps C3GAN_CUDA_TILE's, else registers. */
  cudaTile: "registers" | "async" | "wgmma" | null;
  /** CUDA plain convolutions: c3gan's tile kernels, cuDNN (loaded at run time) or auto (per pass and shape the faster, timed once); null keeps C3GAN_CUDA_CONV's, else native. */
  cudaConv: "native" | "cudnn" | "auto" | null;
  seed: number;
  workers: number;
  threads: number;
  lr: number;
  beta1: number;
  beta2: number;
  skipBadImages: boolean;
  decodeCache: boolean;
}

export class ConfigError extends Error {
  constructor(readonly source: string, readonly field: string, message: string) {
    super(`${source}: ${field ? field + ": " : ""}${message}`);
    this.name = "ConfigError";
  }
}

const TOP_FIELDS = [
  "name", "description", "dataDir", "saveDir", "modelPath", "numGtClasses", "over", "batchSize",
  "temperature", "perturbation", "maxEpoch", "evalInterval", "logInterval", "zDim", "czDim",
  "imageSize", "ngf", "ndf", "channels", "dataset", "device", "cudaMath", "cudaTile", "cudaConv", "seed", "workers", "threads", "lr",
  "beta1", "beta2", "skipBadImages", "decodeCache",
] as const;

const DATASET_FIELDS: Record<DatasetConfig["format"], readonly string[]> = {
  lists: ["format", "trainList", "testList", "imageDir"],
  imagefolder: ["format", "trainDir", "testDir"],
  idx: ["format", "trainImages", "trainLabels", "testImages", "testLabels"],
  synthetic: ["format", "numClasses", "perClass", "testPerClass", "seed"],
  folder: ["format", "dir"],
};

function show(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  const s = JSON.stringify(v);
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

function levenshtein(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The closest allowed name, if close enough to be a typo (official SNAKE_CASE names match too). */
export function suggestField(name: string, allowed: readonly string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, "");
  const aliases: Record<string, string> = {
    temp: "temperature", pert: "perturbation", gtclasses: "numGtClasses", numclasses: "numGtClasses",
    classes: "numGtClasses", epochs: "maxEpoch", maxepochs: "maxEpoch", resume: "modelPath",
    checkpoint: "modelPath", outdir: "saveDir", outputdir: "saveDir", datadir: "dataDir",
    learningrate: "lr", size: "imageSize", imgsize: "imageSize",
  };
  const n = norm(name);
  const alias = aliases[n];
  if (alias && allowed.includes(alias)) return alias;
  let best: string | null = null;
  let bestD = Infinity;
  for (const a of allowed) {
    const d = norm(a) === n ? 0 : levenshtein(n, norm(a));
    if (d < bestD) { bestD = d; best = a; }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(n.length / 3)) ? best : null;
}

/** Reads typed fields of one JSON object, then reports any field it does not allow. */
class ObjectReader {
  constructor(
    readonly source: string,
    readonly prefix: string,
    readonly obj: Record<string, unknown>,
  ) {}

  at(key: string): string { return this.prefix ? `${this.prefix}.${key}` : key; }

  fail(key: string, message: string): never { throw new ConfigError(this.source, this.at(key), message); }

  has(key: string): boolean { return Object.prototype.hasOwnProperty.call(this.obj, key); }

  raw(key: string): unknown {
    return this.has(key) ? this.obj[key] : undefined;
  }

  int(key: string, def: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(key);
    if (v === undefined) {
      if (def === undefined) this.fail(key, `required: an integer >= ${min}`);
      return def;
    }
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.fail(key, `expected an integer >= ${min}, got ${show(v)}`);
    }
    if (v < min || v > max) {
      this.fail(key, `expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}, got ${v}`);
    }
    return v;
  }

  /** A finite number; `open` excludes the bounds. */
  num(key: string, def: number, lo: number, hi: number, open: { lo?: boolean; hi?: boolean }): number {
    const v = this.raw(key);
    const range = `${open.lo ? "(" : "["}${lo}, ${hi === Infinity ? "inf" : hi}${open.hi || hi === Infinity ? ")" : "]"}`;
    if (v === undefined) return def;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, `expected a finite number in ${range}, got ${show(v)}`);
    const bad = (open.lo ? v <= lo : v < lo) || (open.hi ? v >= hi : v > hi);
    if (bad) this.fail(key, `expected a number in ${range}, got ${v}`);
    return v;
  }

  str(key: string, def: string | undefined, allowEmpty = false): string {
    const v = this.raw(key);
    if (v === undefined) {
      if (def === undefined) this.fail(key, "required: a string");
      return def;
    }
    if (typeof v !== "string") this.fail(key, `expected a string, got ${show(v)}`);
    if (!allowEmpty && v.length === 0) this.fail(key, "expected a non-empty string");
    return v;
  }

  /** A path or null; "" means null too (the official MODEL_PATH = '' convention). */
  optStr(key: string): string | null {
    const v = this.raw(key);
    if (v === undefined || v === null || v === "") return null;
    if (typeof v !== "string") this.fail(key, `expected a string or null, got ${show(v)}`);
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return def;
    if (typeof v !== "boolean") this.fail(key, `expected true or false, got ${show(v)}`);
    return v;
  }

  /** One of allowed, or null when the field is absent or null. */
  optOneOf<T extends string | number>(key: string, allowed: readonly T[]): T | null {
    const v = this.raw(key);
    return v === undefined || v === null ? null : this.oneOf(key, undefined, allowed);
  }

  oneOf<T extends string | number>(key: string, def: T | undefined, allowed: readonly T[]): T {
    const v = this.raw(key);
    const list = allowed.map((a) => JSON.stringify(a)).join(", ");
    if (v === undefined) {
      if (def === undefined) this.fail(key, `required: one of ${list}`);
      return def;
    }
    if (!allowed.includes(v as T)) this.fail(key, `expected one of ${list}, got ${show(v)}`);
    return v as T;
  }

  /** "cpu", "cuda", "cuda:N" or "auto" (lib/device.ts) */
  device(key: string, def: DeviceChoice): DeviceChoice {
    const v = this.raw(key);
    if (v === undefined) return def;
    const c = parseDeviceChoice(v);
    if (c === null) this.fail(key, `expected ${DEVICE_CHOICES}, got ${show(v)}`);
    return c;
  }

  /** Unknown fields are errors: a typo would otherwise silently train with the default. */
  finish(allowed: readonly string[]): void {
    for (const key of Object.keys(this.obj)) {
      if (allowed.includes(key)) continue;
      const hint = suggestField(key, allowed);
      throw new ConfigError(
        this.source,
        this.at(key),
        hint
          ? `unknown field (did you mean "${hint}"?)`
          : `unknown field; allowed here: ${allowed.join(", ")}`,
      );
    }
  }
}

function asObject(v: unknown, source: string, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ConfigError(source, field, `expected a JSON object, got ${Array.isArray(v) ? "an array" : show(v)}`);
  }
  return v as Record<string, unknown>;
}

function defaultName(source: string): string {
  const base = path.basename(source).replace(/\.json$/i, "");
  return /^[A-Za-z0-9._-]+$/.test(base) && base !== "" && base !== "<config>" ? base : "c3gan";
}

function parseDataset(
  v: unknown, source: string, numGtClasses: number, seed: number,
): DatasetConfig {
  const r = new ObjectReader(source, "dataset", v === undefined ? {} : asObject(v, source, "dataset"));
  const format = r.oneOf("format", "lists", ["lists", "imagefolder", "idx", "synthetic", "folder"] as const);
  let ds: DatasetConfig;
  switch (format) {
    case "lists":
      ds = {
        format,
        trainList: r.str("trainList", "trainset.txt"),
        testList: r.str("testList", "testset.txt"),
        imageDir: r.str("imageDir", "images", true),
      };
      break;
    case "imagefolder": {
      const testDir = r.raw("testDir");
      if (testDir !== undefined && testDir !== null && (typeof testDir !== "string" || testDir === "")) {
        r.fail("testDir", `expected a non-empty string or null, got ${show(testDir)}`);
      }
      ds = { format, trainDir: r.str("trainDir", "train"), testDir: testDir === undefined ? "test" : (testDir as string | null) };
      break;
    }
    case "idx":
      ds = {
        format,
        trainImages: r.str("trainImages", "train-images-idx3-ubyte.gz"),
        trainLabels: r.str("trainLabels", "train-labels-idx1-ubyte.gz"),
        testImages: r.str("testImages", "t10k-images-idx3-ubyte.gz"),
        testLabels: r.str("testLabels", "t10k-labels-idx1-ubyte.gz"),
      };
      break;
    case "folder":
      ds = { format, dir: r.str("dir", ".") };
      break;
    case "synthetic": {
      const numClasses = r.int("numClasses", numGtClasses, 1);
      if (numClasses !== numGtClasses) {
        r.fail("numClasses", `must equal numGtClasses (${numGtClasses}), got ${numClasses}; ` +
          "the synthetic labels are the ground truth the clustering is scored against");
      }
      const perClass = r.int("perClass", 64, 1);
      ds = {
        format,
        numClasses,
        perClass,
        testPerClass: r.int("testPerClass", Math.max(1, Math.ceil(perClass / 4)), 1),
        seed: r.int("seed", seed, 0),
      };
      break;
    }
  }
  r.finish(DATASET_FIELDS[format]);
  return ds;
}

/**
 * Validates a parsed JSON value and returns the complete config. `source` names it in errors
 * (a file path, or e.g. "--config-json").
 */
export function parseConfig(json: unknown, source = "<config>"): C3Config {
  const r = new ObjectReader(source, "", asObject(json, source, ""));
  const name = r.str("name", defaultName(source));
  if (!/^[A-Za-z0-9._-]+$/.test(name)) r.fail("name", `expected letters, digits, '.', '_' or '-' (it names the run folder), got ${show(name)}`);
  const description = r.str("description", "", true);
  const seed = r.int("seed", 0, 0, 2 ** 53 - 1);
  const numGtClasses = r.int("numGtClasses", 200, 1);
  // config.py has OVER = 1; its README sets 2 for the released CUB model (examples/cub.json).
  const over = r.int("over", 1, 1);
  if (numGtClasses * over < 2) {
    r.fail("over", `numGtClasses * over must be >= 2 clusters (got ${numGtClasses} * ${over})`);
  }
  const dataset = parseDataset(r.raw("dataset"), source, numGtClasses, seed);
  const dataDir = dataset.format === "synthetic" ? r.str("dataDir", "", true) : r.str("dataDir", undefined);
  const ngf = r.int("ngf", 512, 32);
  // The last two generator up-blocks output ngf/32 channels (DESIGN.md: other sizes).
  if (ngf % 32 !== 0) r.fail("ngf", `must be a multiple of 32 (the last up-blocks have ngf/32 channels), got ${ngf}`);
  const cfg: C3Config = {
    name,
    description,
    dataDir,
    saveDir: r.str("saveDir", `runs/${name}`),
    modelPath: r.optStr("modelPath"),
    numGtClasses,
    over,
    // NT-Xent needs at least one negative: 2B - 2 > 0.
    batchSize: r.int("batchSize", 64, 2),
    temperature: r.num("temperature", 0.1, 0, Infinity, { lo: true }),
    perturbation: r.oneOf("perturbation", "s", ["s", "w", "none"] as const),
    maxEpoch: r.int("maxEpoch", 1000, 1),
    evalInterval: r.int("evalInterval", 20, 1),
    // The official logs losses every 500 steps (hard-coded in train.py).
    logInterval: r.int("logInterval", 500, 1),
    zDim: r.int("zDim", 64, 1),
    czDim: r.int("czDim", 8, 1),
    imageSize: r.oneOf("imageSize", 128, [32, 64, 128, 256] as const),
    ngf,
    ndf: r.int("ndf", 64, 1),
    channels: r.oneOf("channels", 3, [1, 3] as const),
    dataset,
    device: r.device("device", "auto"),
    cudaMath: r.optOneOf("cudaMath", ["tf32", "fp32"] as const),
    cudaTile: r.optOneOf("cudaTile", ["registers", "async", "wgmma"] as const),
    cudaConv: r.optOneOf("cudaConv", ["native", "cudnn", "auto"] as const),
    seed,
    workers: r.int("workers", defaultWorkers(), 0),
    threads: r.int("threads", 0, 0),
    lr: r.num("lr", 2e-4, 0, Infinity, { lo: true }),
    beta1: r.num("beta1", 0.5, 0, 1, { hi: true }),
    beta2: r.num("beta2", 0.999, 0, 1, { hi: true }),
    skipBadImages: r.bool("skipBadImages", false),
    decodeCache: r.bool("decodeCache", false),
  };
  r.finish(TOP_FIELDS);
  return cfg;
}

/** 1-based line and column of a 0-based character offset. */
function lineCol(text: string, pos: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) { line++; start = i + 1; }
  }
  return { line, col: pos - start + 1 };
}

/** Parses JSON text, turning V8's SyntaxError into one that names the file, line and column. */
export function parseConfigText(text: string, source: string): C3Config {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /position (\d+)/.exec(msg);
    const pos = m ? Number(m[1]) : text.length;
    const { line, col } = lineCol(text, pos);
    const what = msg.replace(/^JSON\.parse: /, "").replace(/\s*\(line \d+ column \d+\)$/, "");
    throw new ConfigError(source, "", `invalid JSON at line ${line}, column ${col} (offset ${pos}): ${what}`);
  }
  return parseConfig(json, source);
}

export function loadConfig(file: string): C3Config {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`c3gan: cannot read config file ${file}: ${why}`);
  }
  return parseConfigText(text, file);
}

export function clusterCount(cfg: C3Config): number {
  return cfg.numGtClasses * cfg.over;
}

/** A path named in the dataset section, resolved against dataDir (and the working directory). */
export function resolveDataPath(cfg: C3Config, p: string): string {
  return path.resolve(cfg.dataDir, p);
}

function describeDataset(cfg: C3Config): string {
  const d = cfg.dataset;
  switch (d.format) {
    case "lists": return `lists in ${cfg.dataDir} (${d.trainList} / ${d.testList}, images under ${d.imageDir || "."})`;
    case "imagefolder": return `image folders in ${cfg.dataDir} (train ${d.trainDir}, test ${d.testDir ?? "= train"})`;
    case "idx": return `IDX files in ${cfg.dataDir} (${d.trainImages}, ${d.testImages})`;
    case "synthetic": return `synthetic, ${d.numClasses} classes x ${d.perClass} train / ${d.testPerClass} test, seed ${d.seed}`;
    case "folder": return `unlabelled images under ${resolveDataPath(cfg, d.dir)} (evaluated by how they spread over the clusters)`;
  }
}

/** A few human-readable lines, for the CLI's start-of-run banner. */
/** the evaluated epochs (1-based): after the first and every evalInterval-th after it, as the official, and the last */
function evalSchedule(cfg: C3Config): string {
  const k = cfg.evalInterval, n = cfg.maxEpoch;
  const regular = Math.floor((n - 1) / k) + 1;  // 1, 1 + k, ... up to n
  const lastRegular = 1 + (regular - 1) * k;
  const total = regular + (lastRegular === n ? 0 : 1);
  const at = (i: number) => (i < regular ? 1 + i * k : n);  // the i-th evaluated epoch
  const shown = total <= 5 ? Array.from({ length: total }, (_, i) => String(at(i)))
    : [at(0), at(1), at(2), "...", at(total - 2), at(total - 1)].map(String);
  const list = shown.length > 1 ? `${shown.slice(0, -1).join(", ")} and ${shown[shown.length - 1]}` : shown[0];
  return `after epoch${total > 1 ? "s" : ""} ${list}`;
}

export function describeConfig(cfg: C3Config): string {
  const pert = { s: "strong (s)", w: "weak (w)", none: "none" }[cfg.perturbation];
  const lines = [
    `c3gan run "${cfg.name}"${cfg.description ? `: ${cfg.description}` : ""}`,
    `  data      ${describeDataset(cfg)}`,
    `  model     ${cfg.imageSize}x${cfg.imageSize} x ${cfg.channels} ch, z ${cfg.zDim}, cz ${cfg.czDim}, ` +
      `ngf ${cfg.ngf}, ndf ${cfg.ndf}; ${cfg.numGtClasses} classes x over ${cfg.over} = ${clusterCount(cfg)} clusters`,
    `  training  batch ${cfg.batchSize}, ${cfg.maxEpoch} epoch${cfg.maxEpoch === 1 ? "" : "s"}, eval ${evalSchedule(cfg)}, log every ` +
      `${cfg.logInterval} steps; Adam lr ${cfg.lr}, betas (${cfg.beta1}, ${cfg.beta2}); temperature ` +
      `${cfg.temperature}; perturbation ${pert}`,
    `  runtime   device ${cfg.device}${cfg.cudaMath ? ` (cuda math ${cfg.cudaMath})` : ""}${cfg.cudaTile ? ` (cuda tiles ${cfg.cudaTile})` : ""}${cfg.cudaConv ? ` (cuda convs ${cfg.cudaConv})` : ""}, threads ${cfg.threads === 0 ? "all cores" : cfg.threads}, ` +
      `loader workers ${cfg.workers}, seed ${cfg.seed}${cfg.decodeCache ? ", decode cache" : ""}` +
      `${cfg.skipBadImages ? ", skipping bad images" : ""}`,
    `  output    ${cfg.saveDir}${cfg.modelPath ? `; starting from ${cfg.modelPath}` : ""}`,
  ];
  return lines.join("\n");
}
