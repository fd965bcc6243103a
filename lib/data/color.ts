// torchvision 0.14's ColorJitter and Grayscale on PIL images, reproduced in uint8 exactly as PIL
// computes them (checked bit for bit against torchvision + Pillow 9.4 on the committed fixtures):
//   brightness f: Image.blend(black, img, f)
//   contrast f:   Image.blend(gray(mean), img, f), mean = int(mean(L(img)) + 0.5)
//   saturation f: Image.blend(L(img) as RGB, img, f)
//   hue h:        RGB -> HSV (uint8), H += uint8(h * 255) modulo 256, HSV -> RGB
//   grayscale:    L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, replicated to every channel
// Image.blend works in C float: out = in1 + alpha * (in2 - in1), truncated to uint8 (clamped to
// 0..255 when alpha is outside [0, 1]). We keep PIL's uint8 rounding between the four steps
// instead of working in float, so the augmented view is the one torchvision would produce.
// Images are HWC uint8 with 1 or 3 channels, changed in place. On 1-channel images saturation and
// hue are the identity, as in PIL ("L" mode). The hue step looks Pillow's HSV conversion up in
// tables (hsv-tables.ts) and runs as a WebAssembly kernel (hue-wasm.ts); adjustHueJs is the same
// in JavaScript.

import { hsvTables } from "./hsv-tables";
import { adjustHueWasm } from "./hue-wasm";

const f32 = Math.fround;

/** PIL's rgb2l (ITU-R 601-2 luma, 16-bit fixed point with rounding) */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/** 256-entry table of Image.blend(constant in1, v, alpha) */
function blendTable(in1: number, alpha: number): Uint8Array {
  const t = new Uint8Array(256);
  for (let v = 0; v < 256; v++) t[v] = blendOne(in1, v, f32(alpha));
  return t;
}

/** one value of ImagingBlend; `a` must already be float32-rounded */
function blendOne(in1: number, in2: number, a: number): number {
  const r = f32(in1 + f32(a * (in2 - in1)));
  if (a >= 0 && a <= 1) return Math.trunc(r);
  return r <= 0 ? 0 : r >= 255 ? 255 : Math.trunc(r);
}

function applyTable(img: Uint8Array, t: Uint8Array): void {
  for (let i = 0; i < img.length; i++) img[i] = t[img[i]];
}

export function adjustBrightness(img: Uint8Array, channels: number, factor: number): void {
  void channels;
  if (factor === 1) return; // PIL's blend returns a copy of the image at alpha 1
  applyTable(img, blendTable(0, factor));
}

/** mean of the L image as ImageStat computes it, rounded as ImageEnhance.Contrast does */
export function contrastMean(img: Uint8Array, channels: number): number {
  let sum = 0;
  const n = img.length / channels;
  if (channels === 3) {
    for (let i = 0; i < img.length; i += 3) sum += luma(img[i], img[i + 1], img[i + 2]);
  } else {
    for (let i = 0; i < img.length; i++) sum += img[i];
  }
  return Math.trunc(sum / n + 0.5);
}

export function adjustContrast(img: Uint8Array, channels: number, factor: number): void {
  const mean = contrastMean(img, channels);
  if (factor === 1) return;
  applyTable(img, blendTable(mean, factor));
}

export function adjustSaturation(img: Uint8Array, channels: number, factor: number): void {
  if (channels !== 3 || factor === 1) return;
  const a = f32(factor);
  const inside = a >= 0 && a <= 1;
  // f32(alpha * (v - gray)) depends on the difference only: tabulated for -255..255
  const prod = new Float32Array(511);
  for (let d = -255; d <= 255; d++) prod[d + 255] = a * d;
  for (let i = 0; i < img.length; i += 3) {
    const g = luma(img[i], img[i + 1], img[i + 2]);
    const base = 255 - g;
    for (let c = 0; c < 3; c++) {
      const r = f32(g + prod[base + img[i + c]]);
      img[i + c] = inside ? r : r <= 0 ? 0 : r >= 255 ? 255 : r;
    }
  }
}

/** hue shift as torchvision's F_pil.adjust_hue; `factor` in [-0.5, 0.5] */
export function adjustHue(img: Uint8Array, channels: number, factor: number): void {
  if (!(factor >= -0.5 && factor <= 0.5)) throw new Error(`c3gan data: hue factor ${factor} is not in [-0.5, 0.5]`);
  if (channels !== 3) return;
  // np.uint8(hue_factor * 255): truncation toward zero, then modulo 256
  const shift = ((Math.trunc(factor * 255) % 256) + 256) % 256;
  if (adjustHueWasm(img, shift)) return;
  adjustHueJs(img, shift);
}

/** the hue shift in JavaScript: the reference for the WebAssembly kernel, and its fallback */
export function adjustHueJs(img: Uint8Array, shift: number): void {
  const { hue, sat, sector, p: P, q: Q, t: TT } = hsvTables();
  for (let i = 0; i < img.length; i += 3) {
    const r = img[i], g = img[i + 1], b = img[i + 2];
    let order: number, v: number, mid: number, min: number;
    if (r >= g && r >= b) {
      v = r;
      if (g >= b) { order = 0; mid = g; min = b; } else { order = 1; mid = b; min = g; }
    } else if (g >= b) {
      v = g;
      if (r >= b) { order = 3; mid = r; min = b; } else { order = 2; mid = b; min = r; }
    } else {
      v = b;
      if (g >= r) { order = 5; mid = g; min = r; } else { order = 4; mid = r; min = g; }
    }
    const cr = v - min;
    if (cr === 0) continue; // gray: s = 0, hsv2rgb gives back (v, v, v)
    const s = sat[cr * 256 + v];
    if (s === 0) {
      img[i] = v;
      img[i + 1] = v;
      img[i + 2] = v;
      continue;
    }
    const h = (hue[order * 65536 + cr * 256 + v - mid] + shift) & 255;
    // hsv2rgb: products are >= 0, so C's round() is Math.round; each sector needs q or t, not both
    const k = s * 256 + h;
    const pp = P[v * 256 + s];
    switch (sector[h]) {
      case 0: img[i] = v; img[i + 1] = Math.round(v * (1.0 - TT[k])); img[i + 2] = pp; break;
      case 1: img[i] = Math.round(v * (1.0 - Q[k])); img[i + 1] = v; img[i + 2] = pp; break;
      case 2: img[i] = pp; img[i + 1] = v; img[i + 2] = Math.round(v * (1.0 - TT[k])); break;
      case 3: img[i] = pp; img[i + 1] = Math.round(v * (1.0 - Q[k])); img[i + 2] = v; break;
      case 4: img[i] = Math.round(v * (1.0 - TT[k])); img[i + 1] = pp; img[i + 2] = v; break;
      default: img[i] = v; img[i + 1] = pp; img[i + 2] = Math.round(v * (1.0 - Q[k])); break;
    }
  }
}

/** RGB -> L replicated on the three channels (torchvision rgb_to_grayscale, 3 output channels) */
export function grayscaleInPlace(img: Uint8Array, channels: number): void {
  if (channels !== 3) return;
  for (let i = 0; i < img.length; i += 3) {
    const l = luma(img[i], img[i + 1], img[i + 2]);
    img[i] = l;
    img[i + 1] = l;
    img[i + 2] = l;
  }
}

/** RGB HWC -> L (one channel), as PIL's convert("L") */
export function rgbToL(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; j < out.length; i += 3, j++) out[j] = luma(rgb[i], rgb[i + 1], rgb[i + 2]);
  return out;
}

/** L -> RGB replicated, as PIL's convert("RGB") */
export function lToRgb(l: Uint8Array): Uint8Array {
  const out = new Uint8Array(l.length * 3);
  for (let j = 0, i = 0; j < l.length; j++, i += 3) {
    const v = l[j];
    out[i] = v;
    out[i + 1] = v;
    out[i + 2] = v;
  }
  return out;
}

export interface JitterParams {
  /** the order the four adjustments run in: 0 brightness, 1 contrast, 2 saturation, 3 hue */
  order: number[];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

export function applyJitter(img: Uint8Array, channels: number, p: JitterParams): void {
  for (const op of p.order) {
    if (op === 0) adjustBrightness(img, channels, p.brightness);
    else if (op === 1) adjustContrast(img, channels, p.contrast);
    else if (op === 2) adjustSaturation(img, channels, p.saturation);
    else if (op === 3) adjustHue(img, channels, p.hue);
  }
}
