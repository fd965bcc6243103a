// The three views of the official pipeline, with torchvision 0.14's definitions:
//   train: Resize(S) -> RandomCrop(S) -> RandomHorizontalFlip -> ToTensor -> Normalize(0.5, 0.5)
//   aug:   RandomResizedCrop(S, scale, ratio) -> RandomHorizontalFlip
//          -> RandomApply([ColorJitter(b, c, s, h)], p) -> RandomGrayscale(p) -> ToTensor -> Normalize
//   test:  Resize(S) -> CenterCrop(S) -> ToTensor -> Normalize
// Parameters are drawn from our own Rng in torchvision's order (so a view's parameters depend only
// on the image's (seed, epoch, index) stream); the pixels are computed in uint8 as PIL does.
// Deviations from torchvision, all deliberate:
// - the random numbers are ours, not torch's generator (same distributions);
// - RandomResizedCrop's log-ratio and area draws are in float64 (torch draws float32);
// - none in the resizing by default: `resampler: "pil"` is an exact port of PIL's antialiased
//   bilinear resize (resample.ts, run by WebAssembly kernels); `resampler: "sharp"` resizes
//   reductions with libvips instead (its linear kernel, 0.25-0.5/255 mean difference from PIL,
//   see decode.ts; slower here: each sharp call costs more than the exact resize);
// - the horizontal flip is applied when the view is written out (it commutes with jitter and
//   grayscale: contrast uses the image mean, the other steps are per pixel).
import { Rng } from "./rng";
import { RawImage, Region, resizeWithSharp } from "./decode";
import { resampleBilinearFast } from "./resample-wasm";
import { JitterParams, applyJitter, grayscaleInPlace } from "./color";

export interface AugmentOptions {
  /** RandomResizedCrop area fraction range */
  scale: [number, number];
  /** RandomResizedCrop aspect ratio (w / h) range */
  ratio: [number, number];
  /** probability of the horizontal flip (both random views) */
  flip: number;
  /** ColorJitter brightness, contrast, saturation, hue */
  jitter: [number, number, number, number];
  /** RandomApply probability of the jitter */
  jitterP: number;
  /** RandomGrayscale probability */
  grayscaleP: number;
}

/** the official C3-GAN augmentation */
export const OFFICIAL_AUGMENT: Readonly<AugmentOptions> = Object.freeze({
  scale: [0.2, 1.0] as [number, number],
  ratio: [3 / 4, 4 / 3] as [number, number],
  flip: 0.5,
  jitter: [0.4, 0.4, 0.4, 0.1] as [number, number, number, number],
  jitterP: 0.8,
  grayscaleP: 0.2,
});

export type Resampler = "sharp" | "pil";

export interface ViewConfig {
  size: number;
  channels: 1 | 3;
  augment: AugmentOptions;
  resampler: Resampler;
}

/** Python's round(): halves to even */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision's _compute_resized_output_size for Resize(int): [width, height] */
export function resizeShorterDims(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

export interface TrainViewParams {
  /** size after Resize(S) */
  width: number;
  height: number;
  /** RandomCrop offsets in the resized image */
  top: number;
  left: number;
  flip: boolean;
}

export function sampleTrainView(rng: Rng, width: number, height: number, cfg: ViewConfig): TrainViewParams {
  const S = cfg.size;
  const [w, h] = resizeShorterDims(width, height, S);
  const top = rng.randint(0, h - S + 1);
  const left = rng.randint(0, w - S + 1);
  const flip = rng.random() < cfg.augment.flip;
  return { width: w, height: h, top, left, flip };
}

/** RandomResizedCrop.get_params: 10 tries, then the centre crop clamped to the ratio range */
export function randomResizedCropParams(
  rng: Rng, width: number, height: number, scale: [number, number], ratio: [number, number],
): Region {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.randint(0, height - h + 1);
      const left = rng.randint(0, width - w + 1);
      return { top, left, width: w, height: h };
    }
  }
  return centreFallback(width, height, ratio);
}

export function centreFallback(width: number, height: number, ratio: [number, number]): Region {
  const inRatio = width / height;
  const lo = Math.min(ratio[0], ratio[1]);
  const hi = Math.max(ratio[0], ratio[1]);
  let w: number;
  let h: number;
  if (inRatio < lo) {
    w = width;
    h = pyRound(w / lo);
  } else if (inRatio > hi) {
    h = height;
    w = pyRound(h * hi);
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), width: w, height: h };
}

export interface AugViewParams {
  crop: Region;
  flip: boolean;
  jitter: JitterParams | null;
  grayscale: boolean;
}

export function sampleAugView(rng: Rng, width: number, height: number, cfg: ViewConfig): AugViewParams {
  const a = cfg.augment;
  const crop = randomResizedCropParams(rng, width, height, a.scale, a.ratio);
  const flip = rng.random() < a.flip;
  let jitter: JitterParams | null = null;
  // RandomApply skips when p < rand, so it applies when rand <= p
  if (!(a.jitterP < rng.random())) {
    const order = Array.from(rng.permutation(4));
    const [b, c, s, hue] = a.jitter;
    jitter = {
      order,
      brightness: rng.uniform(Math.max(0, 1 - b), 1 + b),
      contrast: rng.uniform(Math.max(0, 1 - c), 1 + c),
      saturation: rng.uniform(Math.max(0, 1 - s), 1 + s),
      hue: rng.uniform(-hue, hue),
    };
  }
  const grayscale = rng.random() < a.grayscaleP;
  return { crop, flip, jitter, grayscale };
}

export interface TestViewParams {
  width: number;
  height: number;
  top: number;
  left: number;
}

/** Resize(S) + CenterCrop(S): crop offsets int(round((size - S) / 2)) as torchvision */
export function testViewParams(width: number, height: number, size: number): TestViewParams {
  const [w, h] = resizeShorterDims(width, height, size);
  return { width: w, height: h, top: pyRound((h - size) / 2), left: pyRound((w - size) / 2) };
}

/**
 * Resizes `box` of img to outWidth x outHeight and returns `window` of it (HWC, tight): with the
 * exact port of PIL (resample.ts, WebAssembly kernels), or for reductions on both axes with
 * sharp when the resampler is "sharp".
 */
export async function resizeRegion(
  img: RawImage, box: Region, outWidth: number, outHeight: number, window: Region, resampler: Resampler,
): Promise<Uint8Array> {
  const same = outWidth === box.width && outHeight === box.height;
  const reduces = outWidth <= box.width && outHeight <= box.height;
  if (!same && reduces && resampler === "sharp") return resizeWithSharp(img, box, outWidth, outHeight, window);
  return resampleBilinearFast(img.data, img.width, img.channels, box, outWidth, outHeight, window);
}

export function fullBox(img: { width: number; height: number }): Region {
  return { left: 0, top: 0, width: img.width, height: img.height };
}

/** the train view before flip/normalisation: S x S HWC uint8 */
export function renderTrainView(img: RawImage, p: TrainViewParams, cfg: ViewConfig): Promise<Uint8Array> {
  const S = cfg.size;
  return resizeRegion(img, fullBox(img), p.width, p.height, { left: p.left, top: p.top, width: S, height: S }, cfg.resampler);
}

export function renderTestView(img: RawImage, p: TestViewParams, cfg: ViewConfig): Promise<Uint8Array> {
  const S = cfg.size;
  return resizeRegion(img, fullBox(img), p.width, p.height, { left: p.left, top: p.top, width: S, height: S }, cfg.resampler);
}

/** the augmented view before flip/normalisation: S x S HWC uint8, jitter and grayscale applied */
export async function renderAugView(img: RawImage, p: AugViewParams, cfg: ViewConfig): Promise<Uint8Array> {
  const S = cfg.size;
  const out = await resizeRegion(img, p.crop, S, S, { left: 0, top: 0, width: S, height: S }, cfg.resampler);
  if (p.jitter) applyJitter(out, img.channels, p.jitter);
  if (p.grayscale) grayscaleInPlace(out, img.channels);
  return out;
}

/** ToTensor then Normalize(0.5, 0.5) in float32, tabulated: x -> ((x / 255) - 0.5) / 0.5 */
export const NORMALIZE_LUT: Float32Array = (() => {
  const t = new Float32Array(256);
  const f = Math.fround;
  for (let v = 0; v < 256; v++) t[v] = f(f(f(v / 255) - 0.5) / 0.5);
  return t;
})();

/** Writes an S x S HWC uint8 view as CHW float32 in [-1, 1] at out[offset..], flipped if asked. */
export function writeNormalized(
  src: Uint8Array, size: number, channels: number, flip: boolean, out: Float32Array, offset: number,
): void {
  const S = size;
  const plane = S * S;
  const lut = NORMALIZE_LUT;
  if (channels === 3) {
    // one pass over the pixels, three output planes
    const o1 = offset + plane, o2 = offset + 2 * plane;
    for (let y = 0; y < S; y++) {
      const row = y * S;
      let s = (flip ? row + S - 1 : row) * 3;
      const step = flip ? -3 : 3;
      for (let x = 0; x < S; x++, s += step) {
        const o = row + x;
        out[offset + o] = lut[src[s]];
        out[o1 + o] = lut[src[s + 1]];
        out[o2 + o] = lut[src[s + 2]];
      }
    }
    return;
  }
  for (let c = 0; c < channels; c++) {
    const base = offset + c * plane;
    for (let y = 0; y < S; y++) {
      const row = y * S;
      const o = base + row;
      if (flip) {
        for (let x = 0, s = (row + S - 1) * channels + c; x < S; x++, s -= channels) out[o + x] = lut[src[s]];
      } else {
        for (let x = 0, s = row * channels + c; x < S; x++, s += channels) out[o + x] = lut[src[s]];
      }
    }
  }
}
