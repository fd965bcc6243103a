// One image through the pipeline: load (decode, or a view of in-memory pixels, optionally through
// the decode cache), draw its view parameters from its (seed, epoch, index) stream, render the
// views and write them normalised into the batch. Runs the same in the main thread and in loader
// workers, so the pixels do not depend on where an image was processed.
import type { Dataset } from "./formats";
import { RawImage, decodeImageBytes, decodeImageFile, fromRawPixels, toChannels } from "./decode";
import { Rng, Stream } from "./rng";
import {
  AugmentOptions, Resampler, ViewConfig, fullBox, renderAugView, renderTestView, renderTrainView,
  resizeRegion, resizeShorterDims, sampleAugView, sampleTrainView, testViewParams, writeNormalized,
} from "./transforms";

export type LoaderMode = "train" | "test";

export interface CacheConfig {
  /** images are kept with their shorter side at this size (smaller ones as they are) */
  size: number;
  /** this worker's budget; images past it are recomputed each time (same pixels) */
  maxBytes: number;
}

/** Everything a worker needs besides the dataset: plain data, structured-cloneable. */
export interface PipelineConfig {
  mode: LoaderMode;
  size: number;
  channels: 1 | 3;
  seed: number;
  augment: AugmentOptions;
  resampler: Resampler;
  cache: CacheConfig | null;
}

/** Decoded images kept in memory, keyed by dataset index. */
export class DecodeCache {
  private readonly images = new Map<number, RawImage>();
  bytes = 0;
  constructor(readonly config: CacheConfig) {}
  get(index: number): RawImage | undefined {
    return this.images.get(index);
  }
  /** keeps img if the budget allows; returns whether it did */
  put(index: number, img: RawImage): boolean {
    if (this.bytes + img.data.byteLength > this.config.maxBytes) return false;
    // a private copy: sharp's output buffers may be views into larger pooled memory
    const data = new Uint8Array(img.data);
    this.images.set(index, { ...img, data });
    this.bytes += data.byteLength;
    return true;
  }
  get count(): number {
    return this.images.size;
  }
}

export class ItemProcessor {
  readonly view: ViewConfig;
  readonly cache: DecodeCache | null;

  constructor(
    readonly dataset: Dataset,
    readonly config: PipelineConfig,
  ) {
    this.view = { size: config.size, channels: config.channels, augment: config.augment, resampler: config.resampler };
    // in-memory pixel data (IDX, synthetic) needs no decode cache
    this.cache = config.cache && dataset.source.kind === "files" ? new DecodeCache(config.cache) : null;
  }

  /** the image as decoded (or as cached), in the configured channels */
  async load(index: number): Promise<RawImage> {
    const src = this.dataset.source;
    if (src.kind === "pixels") {
      const n = src.width * src.height * src.channels;
      const img: RawImage = {
        data: src.pixels.subarray(index * n, (index + 1) * n),
        width: src.width, height: src.height, channels: src.channels,
      };
      return toChannels(img, this.config.channels);
    }
    if (src.kind === "encoded") return decodeImageBytes(src.images[index], this.config.channels);
    if (src.kind === "raw") return fromRawPixels(src.images[index], this.config.channels);
    if (this.cache) {
      const hit = this.cache.get(index);
      if (hit) return hit;
    }
    const img = await decodeImageFile(src.files[index], this.config.channels);
    if (!this.cache) return img;
    const reduced = await this.reduceForCache(img);
    this.cache.put(index, reduced);
    return reduced;
  }

  /** shorter side down to the cache size (the cached image then stands in for the file) */
  private async reduceForCache(img: RawImage): Promise<RawImage> {
    const size = this.cache!.config.size;
    if (Math.min(img.width, img.height) <= size) return img;
    const [w, h] = resizeShorterDims(img.width, img.height, size);
    const data = await resizeRegion(img, fullBox(img), w, h, { left: 0, top: 0, width: w, height: h }, this.config.resampler);
    return { data, width: w, height: h, channels: img.channels };
  }

  /**
   * Renders image `index` for `epoch` into out A (train: the real view; test: the test view) and,
   * in training, out B (the augmented view), at item offset `pos`.
   */
  async process(index: number, epoch: number, pos: number, outA: Float32Array, outB: Float32Array | null): Promise<void> {
    const img = await this.load(index);
    const S = this.config.size;
    const C = this.config.channels;
    const per = C * S * S;
    if (this.config.mode === "test") {
      const p = testViewParams(img.width, img.height, S);
      const view = await renderTestView(img, p, this.view);
      writeNormalized(view, S, C, false, outA, pos * per);
      return;
    }
    const rng = new Rng(this.config.seed, Stream.views, epoch, index);
    const pt = sampleTrainView(rng, img.width, img.height, this.view);
    const pa = sampleAugView(rng, img.width, img.height, this.view);
    const [real, aug] = await Promise.all([renderTrainView(img, pt, this.view), renderAugView(img, pa, this.view)]);
    writeNormalized(real, S, C, pt.flip, outA, pos * per);
    if (outB) writeNormalized(aug, S, C, pa.flip, outB, pos * per);
  }
}

/**
 * A decoder's message on one line: libvips repeats its decoder's warnings on lines of their own
 * ("...corrupt header: VipsJpeg: Unsupported marker type 0x20\nVipsJpeg: Unsupported marker
 * type 0x20\n..."), each line kept once, joined with "; ".
 */
export function oneLine(message: string): string {
  const seen = new Set<string>();
  const kept: string[] = [];
  for (const line of message.split("\n").map((l) => l.trim()).filter((l) => l.length > 0)) {
    if (seen.has(line) || kept.some((k) => k.endsWith(line))) continue;
    seen.add(line);
    kept.push(line);
  }
  return kept.join("; ");
}

export interface ItemFailure {
  pos: number;
  index: number;
  message: string;
}

/**
 * Processes items (pos, index) with at most `concurrency` in flight; failures are collected, not
 * thrown, so one bad image does not leave the others of its batch half-written.
 */
export async function processItems(
  proc: ItemProcessor, epoch: number, pos: Int32Array, idx: Int32Array,
  outA: Float32Array, outB: Float32Array | null, concurrency: number,
): Promise<ItemFailure[]> {
  const failures: ItemFailure[] = [];
  let next = 0;
  const lane = async () => {
    while (next < idx.length) {
      const k = next++;
      try {
        await proc.process(idx[k], epoch, pos[k], outA, outB);
      } catch (e) {
        failures.push({ pos: pos[k], index: idx[k], message: oneLine(e instanceof Error ? e.message : String(e)) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, idx.length)) }, lane));
  failures.sort((a, b) => a.pos - b.pos);
  return failures;
}
