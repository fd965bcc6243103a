// The batched, prefetching loader. An epoch's order comes from (seed, epoch); each image's views
// from (seed, epoch, index); so batches are identical for any worker count or prefetch depth, and
// a run resumed at (epoch, batch) sees the batches the original run would have.
//
// Work is split by image: with workers, image i always goes to worker i % W (its decode cache
// shard), every worker renders its items of a batch straight into the batch's SharedArrayBuffers,
// and up to `prefetch` batches are in flight while the caller computes. Decoding (sharp) runs on
// the libuv thread pool, which this module widens (UV_THREADPOOL_SIZE) when it is loaded, if it
// has not been set: the pool is per process, shared by all workers, 4 threads by default, and is
// sized when first used (so the CLI should set it before any asynchronous I/O).
import * as os from "node:os";
import { Dataset, SkippedImage, itemName, itemWhere } from "./formats";
import { ItemFailure, LoaderMode, PipelineConfig } from "./pipeline";
import { Executor, InThreadExecutor, Task, WorkerPool } from "./pool";
import { Rng, Stream } from "./rng";
import { AugmentOptions, OFFICIAL_AUGMENT, Resampler } from "./transforms";

const CORES = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(Math.min(128, Math.max(4, 2 * CORES)));
}

export interface DecodeCacheOptions {
  /** shorter side images are kept at (default 1.5 x imageSize); views are then made from it */
  size?: number;
  /** memory for the whole cache (default 40% of RAM); images past it are decoded every time */
  maxBytes?: number;
}

export interface LoaderOptions<M extends LoaderMode = LoaderMode> {
  /** train: pairs { real, aug }, shuffled, drop-last; test: the test view, in order, all images */
  mode: M;
  batchSize: number;
  /** S: views are S x S */
  imageSize: number;
  /** 1 or 3 (default: the dataset's own channels) */
  channels?: 1 | 3;
  seed?: number;
  /** worker threads; 0 runs in this thread (default: cores - 1, at least 1) */
  workers?: number;
  /** batches in flight ahead of the one being used (default 3) */
  prefetch?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  /**
   * Keep decoded images in memory, shorter side reduced to `size`. Deviation: later views are
   * cut from the reduced image (RandomResizedCrop's area is then a fraction of the reduced image;
   * small crops get enlarged), not from the file.
   */
  decodeCache?: boolean | DecodeCacheOptions;
  /** default: the dataset's skipBadImages */
  skipBadImages?: boolean;
  augment?: Partial<AugmentOptions>;
  /** "pil" (default): the exact port of PIL's resize; "sharp": libvips for reductions */
  resampler?: Resampler;
  /** images in flight per worker (or in this thread when workers is 0), default 2 (4 in-thread) */
  concurrency?: number;
  /** where skip warnings go (default console.warn) */
  onWarning?: (message: string) => void;
  /** appended to the error for an unreadable image: how the caller leaves such images out */
  skipHint?: string;
}

export interface ImageBatch {
  /** N x C x S x S, values in [-1, 1] */
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  paths: string[];
  /** dataset indices */
  indices: Int32Array;
}

export interface PairBatch {
  /** the training view (resize, random crop, flip) */
  real: ImageBatch;
  /** the augmented view of the same images */
  aug: ImageBatch;
  labels: Int32Array;
  paths: string[];
  indices: Int32Array;
  epoch: number;
  batch: number;
}

export interface TestBatch extends ImageBatch {
  epoch: number;
  batch: number;
}

export type BatchOf<M extends LoaderMode> = M extends "train" ? PairBatch : TestBatch;

export interface EpochReport {
  epoch: number;
  batches: number;
  images: number;
  /** images left out: when the dataset was opened, and undecodable ones this epoch */
  skipped: SkippedImage[];
}

interface Settled {
  failures?: ItemFailure[];
  error?: Error;
  task: Task;
}

export class DataLoader<M extends LoaderMode = LoaderMode> {
  readonly config: PipelineConfig;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly workers: number;
  readonly skipBadImages: boolean;
  /** the report of the last epoch that ran to its end */
  lastReport: EpochReport | null = null;
  private readonly executor: Executor;
  private readonly onWarning: (m: string) => void;
  private readonly skipHint: string | undefined;
  private closed = false;

  constructor(
    readonly dataset: Dataset,
    options: LoaderOptions<M>,
  ) {
    const o = options;
    if (o.mode !== "train" && o.mode !== "test") throw new Error(`c3gan data: loader mode must be "train" or "test", got ${JSON.stringify(o.mode)}`);
    const positiveInt = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 1) throw new Error(`c3gan data: ${name} must be a positive integer, got ${v}`);
      return v;
    };
    this.batchSize = positiveInt("batchSize", o.batchSize);
    const size = positiveInt("imageSize", o.imageSize);
    const channels = o.channels ?? dataset.channels;
    if (channels !== 1 && channels !== 3) throw new Error(`c3gan data: channels must be 1 or 3, got ${channels}`);
    const train = o.mode === "train";
    this.shuffle = o.shuffle ?? train;
    this.dropLast = o.dropLast ?? train;
    this.prefetch = positiveInt("prefetch", o.prefetch ?? 3);
    this.workers = o.workers ?? Math.max(1, Math.min(16, CORES - 1));
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new Error(`c3gan data: workers must be an integer >= 0, got ${this.workers}`);
    this.skipBadImages = o.skipBadImages ?? dataset.skipBadImages;
    this.onWarning = o.onWarning ?? ((m) => console.warn(m));
    this.skipHint = o.skipHint;
    const augment: AugmentOptions = { ...OFFICIAL_AUGMENT, ...(o.augment ?? {}) };
    let cache: PipelineConfig["cache"] = null;
    if (o.decodeCache) {
      const c = o.decodeCache === true ? {} : o.decodeCache;
      const cacheSize = positiveInt("decodeCache.size", c.size ?? Math.ceil(1.5 * size));
      if (cacheSize < size) throw new Error(`c3gan data: decodeCache.size ${cacheSize} is smaller than imageSize ${size}`);
      const total = c.maxBytes ?? Math.floor(0.4 * os.totalmem());
      cache = { size: cacheSize, maxBytes: Math.floor(total / Math.max(1, this.workers)) };
    }
    const resampler = o.resampler ?? "pil";
    if (resampler !== "sharp" && resampler !== "pil") throw new Error(`c3gan data: resampler must be "sharp" or "pil", got ${JSON.stringify(resampler)}`);
    this.config = { mode: o.mode, size, channels, seed: o.seed ?? 0, augment, resampler, cache };
    if (this.batchesPerEpoch === 0) {
      throw new Error(`c3gan data: ${dataset.description} holds ${dataset.size} images, fewer than one batch of ${this.batchSize} (drop-last)`);
    }
    this.executor = this.workers === 0
      ? new InThreadExecutor(dataset, this.config, o.concurrency ?? 4)
      : new WorkerPool(dataset, this.config, this.workers, o.concurrency ?? 2);
  }

  get batchesPerEpoch(): number {
    const n = this.dataset.size;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** the epoch's order of dataset indices */
  order(epoch: number): Int32Array {
    const n = this.dataset.size;
    if (this.shuffle) return new Rng(this.config.seed, Stream.shuffle, epoch).permutation(n);
    return Int32Array.from({ length: n }, (_, i) => i);
  }

  /**
   * The batches of `epoch` from batch `startBatch` on (for resuming). Undecodable images throw
   * (naming file and list line) unless skipBadImages, which leaves them out of their batch and
   * reports them when the epoch ends.
   */
  async *epoch(epoch: number, startBatch = 0): AsyncGenerator<BatchOf<M>, void, undefined> {
    if (this.closed) throw new Error("c3gan data: the loader is closed");
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`c3gan data: epoch must be an integer >= 0, got ${epoch}`);
    const nb = this.batchesPerEpoch;
    if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > nb) {
      throw new Error(`c3gan data: startBatch ${startBatch} is outside 0..${nb}`);
    }
    const order = this.order(epoch);
    const queue: Promise<Settled>[] = [];
    let scheduled = startBatch;
    const refill = () => {
      while (queue.length < this.prefetch && scheduled < nb) queue.push(this.start(epoch, order, scheduled++));
    };
    const skipped: SkippedImage[] = [...this.dataset.skipped];
    let images = 0;
    refill();
    for (let b = startBatch; b < nb; b++) {
      const next = queue.shift()!;
      refill();
      const r = await next;
      if (r.error) throw r.error;
      const batch = this.finish(r.task, r.failures!, epoch, b, skipped);
      if (!batch) continue;
      images += batch.indices.length;
      yield batch;
    }
    const report: EpochReport = { epoch, batches: nb - startBatch, images, skipped };
    this.lastReport = report;
    if (skipped.length > 0) {
      const list = skipped.slice(0, 50).map((s) => `  ${s.path} (${s.where}): ${s.reason}`);
      if (skipped.length > 50) list.push(`  ... and ${skipped.length - 50} more`);
      // a training epoch counted from 1, as the progress line counts it; a test pass is an evaluation
      const pass = this.config.mode === "train" ? `epoch ${epoch + 1}` : "evaluation";
      this.onWarning(`c3gan data: ${pass}: ${skipped.length} bad image${skipped.length > 1 ? "s" : ""} skipped:\n${list.join("\n")}`);
    }
  }

  private start(epoch: number, order: Int32Array, b: number): Promise<Settled> {
    const B = this.batchSize;
    const idx = order.slice(b * B, Math.min(order.length, (b + 1) * B));
    const per = this.config.channels * this.config.size * this.config.size;
    const alloc = (n: number) => this.executor.shared ? new Float32Array(new SharedArrayBuffer(n * 4)) : new Float32Array(n);
    const outA = alloc(idx.length * per);
    const outB = this.config.mode === "train" ? alloc(idx.length * per) : null;
    const task: Task = { epoch, idx, outA, outB };
    return this.executor.run(task).then(
      (failures) => ({ failures, task }),
      (error: Error) => ({ error, task }),
    );
  }

  private finish(task: Task, failures: ItemFailure[], epoch: number, b: number, skipped: SkippedImage[]): BatchOf<M> | null {
    const ds = this.dataset;
    if (failures.length > 0 && !this.skipBadImages) {
      const f = failures[0];
      const more = failures.length > 1 ? ` (and ${failures.length - 1} more in this batch)` : "";
      const file = ds.source.kind === "files" ? ds.source.files[f.index] : itemName(ds, f.index);
      const hint = this.skipHint ? ` (${this.skipHint})` : "";
      throw new Error(`c3gan data: cannot read image ${file} (${itemWhere(ds, f.index)}): ${f.message}${more}${hint}`);
    }
    let { idx, outA, outB } = task;
    const S = this.config.size;
    const C = this.config.channels;
    const per = C * S * S;
    if (failures.length > 0) {
      const bad = new Set(failures.map((f) => f.pos));
      for (const f of failures) {
        const file = ds.source.kind === "files" ? ds.source.files[f.index] : itemName(ds, f.index);
        skipped.push({ index: f.index, path: file, where: itemWhere(ds, f.index), reason: f.message });
      }
      const keep = Array.from(idx.keys()).filter((k) => !bad.has(k));
      if (keep.length === 0) return null;
      const compact = (src: Float32Array) => {
        const dst = new Float32Array(keep.length * per);
        keep.forEach((k, j) => dst.set(src.subarray(k * per, (k + 1) * per), j * per));
        return dst;
      };
      idx = Int32Array.from(keep.map((k) => idx[k]));
      outA = compact(outA);
      outB = outB ? compact(outB) : null;
    }
    const n = idx.length;
    const labels = Int32Array.from(idx, (i) => ds.labels[i]);
    const paths = Array.from(idx, (i) => itemName(ds, i));
    const shape: [number, number, number, number] = [n, C, S, S];
    const view = (images: Float32Array): ImageBatch => ({ images, shape, labels, paths, indices: idx });
    if (this.config.mode === "test") return { ...view(outA), epoch, batch: b } as BatchOf<M>;
    return { real: view(outA), aug: view(outB!), labels, paths, indices: idx, epoch, batch: b } as BatchOf<M>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.executor.close();
  }
}
