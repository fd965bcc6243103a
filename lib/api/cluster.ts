// Cluster assignment of real images: the test transform, batched through D, argmax of the cosine
// to the centroids; with labels, ACC / NMI as the official evaluation.
import * as fs from "node:fs";
import * as path from "node:path";
import { DataLoader } from "../data/loader";
import { Dataset, IMAGE_EXTENSIONS, ImageSource, openDataset, SkippedImage } from "../data/formats";
import type { RawPixels } from "../data/decode";
import { DECODABLE_KINDS, sniffFile } from "../data/sniff";
import { ClusterUsage, clusterUsage, evaluateClustering, EvalResult } from "../eval";
import { noGrad, Tensor, tidy } from "../tensor";
import { assignClusters } from "../train/step";
import type { C3Model } from "./model";

/**
 * A folder (class subfolders give labels; otherwise every image below it), an official list file
 * ("relative/path label" lines, images under images/ beside it, or beside the list), one image
 * file, an array of image files, encoded images held in memory (a Buffer or Uint8Array, or an array
 * of them, each holding what an image file holds: JPEG, PNG, WebP, ...; named "#0", "#1", ... in
 * the report), decoded pixels of any size ({ data, width, height, channels: 1 | 3 | 4 }, or an
 * array of them: gray, RGB, or RGBA as a canvas's ImageData, alpha flattened onto black as for a
 * PNG; the test transform resizes and crops them as it does files), or already normalised pixels
 * (N, C, S, S) in [-1, 1].
 */
export type ClusterInput =
  | string | string[] | Uint8Array | Uint8Array[] | RawPixels | RawPixels[]
  | { images: Float32Array; shape: [number, number, number, number] };

export interface ClusterOptions {
  batchSize?: number;
  workers?: number;
  /** called after each batch with images done and the total */
  onProgress?: (done: number, total: number) => void;
  /** keep this many closest images per cluster (their pixels), for galleries */
  keepClosest?: number;
  /** leave out missing or undecodable image files (listed in the report's `skipped`) instead of failing */
  skipBadImages?: boolean;
  /** also return each image's L2-normalised D feature (the report's `features`) */
  features?: boolean;
  /** stops between batches: the promise rejects with the signal's reason (an AbortError) */
  signal?: AbortSignal;
}

export interface ClusterAssignment {
  /** the image's name: as the input gave it (a list file's path, a folder's relative one, "#3") */
  path: string;
  /** the file it was read from, resolved; null for images given in memory */
  file: string | null;
  cluster: number;
  /** cosine similarity to the assigned centroid */
  similarity: number;
  /** the three closest clusters, best first, with their similarities */
  top: { cluster: number; similarity: number }[];
  /** ground-truth label where the input has labels, else -1 */
  label: number;
}

export interface ClusterReport {
  assignments: ClusterAssignment[];
  /** ACC / NMI when every image has a label */
  metrics: EvalResult | null;
  /** per cluster, the closest images (test view, values in [-1, 1]) when keepClosest > 0 */
  closest: Map<number, { similarity: number; pixels: Float32Array; path: string }[]>;
  imageShape: [number, number, number];
  /** images left out (only with skipBadImages): path, where it came from, why */
  skipped: SkippedImage[];
  /**
   * with `features`: (images, dim) row-major in the order of `assignments`, each row the
   * L2-normalised D feature whose cosines with `centroids` (clusters, dim) give the clusters
   */
  features: { dim: number; values: Float32Array; centroids: Float32Array } | null;
  /** how the images spread over the model's clusters */
  usage: ClusterUsage;
  /** what the input's reading noticed, e.g. files in a folder that are not images c3gan reads */
  notes: string[];
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  const what = typeof v === "object" ? (v as object).constructor?.name ?? "object" : typeof v;
  return `${/^[aeiou]/i.test(what) ? "an" : "a"} ${what}`;
}

function isImageFile(p: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(p).toLowerCase());
}

function filesDataset(files: string[], skipBadImages: boolean): Dataset {
  if (!files.length) throw new Error("cluster: no images given");
  const skipped: SkippedImage[] = [];
  const kept: string[] = [];
  for (const f of files) {
    const st = fs.statSync(f, { throwIfNoEntry: false });
    if (st?.isDirectory() && files.length > 1) throw new Error(`cluster: ${f} is a folder: give a folder on its own, or image files`);
    if (st) kept.push(f);
    else if (skipBadImages) skipped.push({ index: -1, path: f, where: "the given files", reason: "does not exist" });
    else throw new Error(`cluster: image ${f} does not exist`);
  }
  if (!kept.length) throw new Error(`cluster: none of the ${files.length} given images exists`);
  return {
    format: "folder", split: "test", description: `${kept.length} image file${kept.length === 1 ? "" : "s"}`, size: kept.length,
    labels: new Int32Array(kept.length).fill(-1), numClasses: 0, classNames: null, names: kept,
    listFile: null, lines: null, source: { kind: "files", files: kept.map((f) => path.resolve(f)) }, channels: 3,
    skipped, skipBadImages, notes: [],
  };
}

// images a caller holds in memory, unlabelled, named #0, #1, ...
function memoryDataset(source: ImageSource & { images: unknown[] }, what: string, skipBadImages: boolean): Dataset {
  const n = source.images.length;
  return {
    format: "folder", split: "test", description: `${n} ${what}${n === 1 ? "" : "s"}`, size: n,
    labels: new Int32Array(n).fill(-1), numClasses: 0, classNames: null, names: source.images.map((_, i) => `#${i}`),
    listFile: null, lines: null, source, channels: 3, skipped: [], skipBadImages, notes: [],
  };
}

function isRawPixels(v: unknown): v is RawPixels {
  return typeof v === "object" && v !== null && "data" in v && "width" in v && "height" in v && "channels" in v;
}

function rawDataset(images: RawPixels[]): Dataset {
  images.forEach((im, i) => {
    const ok = (d: unknown) => Number.isInteger(d) && (d as number) >= 1;
    if (!(im.data instanceof Uint8Array || im.data instanceof Uint8ClampedArray)) {
      throw new Error(`cluster: pixels #${i}: data must be a Uint8Array or Uint8ClampedArray, got ${describe(im.data)}`);
    }
    if (!ok(im.width) || !ok(im.height) || ![1, 3, 4].includes(im.channels)) {
      throw new Error(`cluster: pixels #${i}: width and height must be positive integers and channels 1, 3 or 4, ` +
        `got ${im.width} x ${im.height} x ${im.channels}`);
    }
    if (im.data.length !== im.width * im.height * im.channels) {
      throw new Error(`cluster: pixels #${i}: ${im.data.length} bytes for ${im.width} x ${im.height} x ${im.channels} ` +
        `(${im.width * im.height * im.channels} expected, rows without padding)`);
    }
  });
  return memoryDataset({ kind: "raw", images }, "decoded image", false);
}

/** Opens what the user pointed at as a dataset of the test split. */
export async function openClusterInput(input: string | string[] | Uint8Array[] | RawPixels[], numClasses?: number,
  skipBadImages = false): Promise<Dataset> {
  if (Array.isArray(input)) {
    if (!input.length) throw new Error("cluster: no images given");
    const kinds = input.map((x) =>
      typeof x === "string" ? "paths" : x instanceof Uint8Array ? "encoded images" : isRawPixels(x) ? "decoded pixels" : null);
    const bad = kinds.indexOf(null);
    if (bad >= 0) {
      throw new Error(`cluster: item ${bad} of the array is ${describe(input[bad])}: give image paths (strings), encoded ` +
        "images (Buffer / Uint8Array) or decoded pixels ({ data, width, height, channels })");
    }
    const mixed = [...new Set(kinds)];
    if (mixed.length > 1) throw new Error(`cluster: the array mixes ${mixed.join(" and ")}: give one kind`);
    if (kinds[0] === "encoded images") {
      return memoryDataset({ kind: "encoded", images: input as Uint8Array[] }, "encoded image", skipBadImages);
    }
    if (kinds[0] === "decoded pixels") return rawDataset(input as RawPixels[]);
    return filesDataset(input as string[], skipBadImages);
  }
  if (!fs.existsSync(input)) throw new Error(`cluster: ${input} does not exist`);
  const st = fs.statSync(input);
  if (st.isDirectory()) {
    const hasClassFolders = fs.readdirSync(input, { withFileTypes: true }).some((e) => e.isDirectory()) &&
      fs.readdirSync(input, { withFileTypes: true }).filter((e) => e.isFile() && isImageFile(e.name)).length === 0;
    return openDataset({ format: hasClassFolders ? "imagefolder" : "folder", root: input, skipBadImages }, "test");
  }
  if (isImageFile(input)) return filesDataset([input], false);
  // not named as an image: an image all the same (by its first bytes; a HEIC photo too, which
  // decodes where libvips has HEVC and is otherwise refused with advice), or a list file (text)
  const kind = sniffFile(input);
  if (DECODABLE_KINDS.has(kind) || kind === "heif") return filesDataset([input], false);
  if (kind !== "text") {
    throw new Error(`cluster: ${input} is neither an image c3gan reads (${IMAGE_EXTENSIONS.join(" ")}, or such an ` +
      "image under another name) nor a list file (text lines `relative/path label`)");
  }
  // a list file: images under images/ beside it when that folder exists
  const root = path.dirname(path.resolve(input));
  const imagesDir = fs.existsSync(path.join(root, "images")) ? "images" : ".";
  return openDataset({ format: "lists", root, testList: path.basename(input), imagesDir, numClasses, skipBadImages }, "test");
}

export async function clusterImages(model: C3Model, input: ClusterInput, opts: ClusterOptions = {}): Promise<ClusterReport> {
  const S = model.gan.spec.imageSize;
  const C = model.gan.spec.channels;
  const keep = opts.keepClosest ?? 0;
  const closest = new Map<number, { similarity: number; pixels: Float32Array; path: string }[]>();
  const assignments: ClusterAssignment[] = [];
  let skipped: SkippedImage[] = [];
  let notes: string[] = [];
  const featureRows: Float32Array[] = [];

  const handle = (images: Float32Array, shape: [number, number, number, number], paths: string[], labels: Int32Array,
    files: (string | null)[]) => {
    const r = tidy(() => assignClusters(model.gan, Tensor.fromArray(images, shape, { device: model.device }), { features: opts.features }));
    if (r.features) featureRows.push(r.features);
    const per = shape[1] * shape[2] * shape[3];
    for (let i = 0; i < shape[0]; i++) {
      assignments.push({
        path: paths[i], file: files[i], cluster: r.clusters[i], similarity: r.similarity[i], top: r.top[i], label: labels[i],
      });
      if (keep > 0) {
        const list = closest.get(r.clusters[i]) ?? [];
        list.push({ similarity: r.similarity[i], pixels: images.slice(i * per, (i + 1) * per), path: paths[i] });
        list.sort((a, b) => b.similarity - a.similarity);
        if (list.length > keep) list.length = keep;
        closest.set(r.clusters[i], list);
      }
    }
    return r;
  };

  opts.signal?.throwIfAborted();
  if (input instanceof Uint8Array) input = [input];
  else if (isRawPixels(input)) input = [input];
  if (typeof input !== "string" && !Array.isArray(input) && (typeof input !== "object" || input === null ||
      !(input.images instanceof Float32Array) || !Array.isArray(input.shape) || input.shape.length !== 4)) {
    throw new Error("cluster: expected a path, paths, encoded images, decoded pixels, or { images: Float32Array, shape: [N, C, S, S] }, " +
      `got ${describe(input)}`);
  }
  if (!Array.isArray(input) && typeof input === "object") {
    const [N, c, h, w] = input.shape;
    if (c !== C || h !== S || w !== S) throw new Error(`cluster: images must be (N, ${C}, ${S}, ${S}) for this model, got (${input.shape.join(", ")})`);
    if (input.images.length !== N * c * h * w) throw new Error(`cluster: ${input.images.length} values for shape (${input.shape.join(", ")})`);
    const B = opts.batchSize ?? 64;
    for (let s = 0; s < N; s += B) {
      // the event loop runs between batches (an abort, the host program's own work)
      if (s > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      opts.signal?.throwIfAborted();
      const n = Math.min(B, N - s);
      handle(input.images.subarray(s * C * S * S, (s + n) * C * S * S), [n, C, S, S],
        Array.from({ length: n }, (_, i) => `#${s + i}`), new Int32Array(n).fill(-1), new Array<null>(n).fill(null));
      opts.onProgress?.(s + n, N);
    }
  } else {
    const ds = await openClusterInput(input, model.config.numGtClasses, opts.skipBadImages === true);
    notes = ds.notes;
    // the skipped images come back in the report; the loader's per-epoch warning would repeat them
    const loader = new DataLoader(ds, {
      mode: "test", batchSize: opts.batchSize ?? 64, imageSize: S, channels: C, workers: opts.workers ?? 0, onWarning: () => {},
      skipHint: "skipBadImages / --skip-bad-images leaves such images out",
    });
    try {
      let done = 0;
      for await (const b of loader.epoch(0)) {
        opts.signal?.throwIfAborted();
        const src = ds.source;
        const files = Array.from(b.indices, (i) => (src.kind === "files" ? path.resolve(src.files[i]) : null));
        handle(b.images, b.shape, b.paths, b.labels, files);
        done += b.shape[0];
        opts.onProgress?.(done, ds.size);
      }
      skipped = loader.lastReport?.skipped ?? [];
      if (done < ds.size) opts.onProgress?.(ds.size, ds.size);  // the last batches lost images
    } finally {
      await loader.close();
    }
  }
  if (assignments.length === 0 && skipped.length > 0) {
    throw new Error(`cluster: none of the ${skipped.length} images could be read; the first: ${skipped[0].path}: ${skipped[0].reason}`);
  }
  const labelled = assignments.length > 0 && assignments.every((a) => a.label >= 0);
  const metrics = labelled
    ? evaluateClustering(assignments.map((a) => a.label), assignments.map((a) => a.cluster),
      { numGtClasses: model.config.numGtClasses, over: model.config.over })
    : null;
  const usage = clusterUsage(assignments.map((a) => a.cluster), model.numClusters, assignments.map((a) => a.similarity));
  return {
    assignments, metrics, closest, imageShape: [C, S, S], skipped, usage, notes,
    features: opts.features ? gatherFeatures(model, featureRows) : null,
  };
}

function gatherFeatures(model: C3Model, rows: Float32Array[]): { dim: number; values: Float32Array; centroids: Float32Array } {
  const centroids = tidy(() => noGrad(() => model.gan.D.normalizedCentroids().toArray()));
  const values = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    values.set(r, at);
    at += r.length;
  }
  return { dim: centroids.length / model.numClusters, values, centroids };
}
