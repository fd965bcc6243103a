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
// hue are the identity, as in PIL ("L" mode).

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

/**
 * Tables for the HSV round trip, built on first use (about 0.8 MB). In Pillow's rgb2hsv one of
 * the three channel differences in the hue formula is always the full range cr, so the hue byte
 * depends only on (which channel is the maximum and which the minimum, cr, max - the middle
 * channel): one lookup. hsv2rgb's p depends on (v, s) only; q and t are computed per pixel from
 * tabulated (s, h) products, with C's operation order and float/double types.
 */
interface HsvTables {
  /** hue byte at order * 65536 + cr * 256 + (max - mid); order as in hueOrder below */
  hue: Uint8Array;
  /** rgb2hsv's s byte at cr * 256 + maxc */
  sat: Uint8Array;
  /** hsv2rgb's sector i % 6 of each h byte */
  sector: Uint8Array;
  /** p byte at v * 256 + s */
  p: Uint8Array;
  /** f32(fs * f) and fs * (1 - f) at s * 256 + h */
  q: Float32Array;
  t: Float64Array;
}

let hsvTables: HsvTables | null = null;

/** Pillow's hue byte for max channel `maxIs` (0 r, 1 g, 2 b) and channel differences from max */
function hueByte(maxIs: number, dr: number, dg: number, db: number, cr: number): number {
  const rc = f32(dr / cr), gc = f32(dg / cr), bc = f32(db / cr);
  let h: number;
  if (maxIs === 0) h = f32(bc - gc);
  else if (maxIs === 1) h = f32(2.0 + rc - bc);
  else h = f32(4.0 + gc - rc);
  h = f32((h / 6.0 + 1.0) % 1.0);
  return clampByte(Math.trunc(h * 255.0));
}

function tables(): HsvTables {
  if (hsvTables) return hsvTables;
  // orders: 0 r max b min, 1 r max g min, 2 g max r min, 3 g max b min, 4 b max g min, 5 b max r min;
  // d = max - mid. (Ties for the maximum resolve as Pillow's if-chain does: r, then g.)
  const hue = new Uint8Array(6 * 65536);
  const sat = new Uint8Array(65536);
  for (let cr = 1; cr < 256; cr++) {
    for (let d = 0; d <= cr; d++) {
      const at = cr * 256 + d;
      hue[0 * 65536 + at] = hueByte(0, 0, d, cr, cr);
      hue[1 * 65536 + at] = hueByte(0, 0, cr, d, cr);
      hue[2 * 65536 + at] = hueByte(1, cr, 0, d, cr);
      hue[3 * 65536 + at] = hueByte(1, d, 0, cr, cr);
      hue[4 * 65536 + at] = hueByte(2, d, cr, 0, cr);
      hue[5 * 65536 + at] = hueByte(2, cr, d, 0, cr);
    }
    for (let maxc = cr; maxc < 256; maxc++) sat[cr * 256 + maxc] = clampByte(Math.trunc(f32(cr / maxc) * 255.0));
  }
  const sector = new Uint8Array(256);
  const frac = new Float32Array(256);
  for (let h = 0; h < 256; h++) {
    const i = Math.floor((h * 6.0) / 255.0);
    sector[h] = i % 6;
    frac[h] = (h * 6.0) / 255.0 - i;
  }
  const p = new Uint8Array(65536);
  const q = new Float32Array(65536);
  const t = new Float64Array(65536);
  for (let s = 0; s < 256; s++) {
    const fs = f32(s / 255.0);
    for (let v = 0; v < 256; v++) p[v * 256 + s] = clampByte(roundHalfAway(v * (1.0 - fs)));
    for (let h = 0; h < 256; h++) {
      q[s * 256 + h] = fs * frac[h];
      t[s * 256 + h] = fs * (1.0 - frac[h]);
    }
  }
  hsvTables = { hue, sat, sector, p, q, t };
  return hsvTables;
}

/** hue shift as torchvision's F_pil.adjust_hue; `factor` in [-0.5, 0.5] */
export function adjustHue(img: Uint8Array, channels: number, factor: number): void {
  if (!(factor >= -0.5 && factor <= 0.5)) throw new Error(`c3gan data: hue factor ${factor} is not in [-0.5, 0.5]`);
  if (channels !== 3) return;
  // np.uint8(hue_factor * 255): truncation toward zero, then modulo 256
  const shift = ((Math.trunc(factor * 255) % 256) + 256) % 256;
  const { hue, sat, sector, p: P, q: Q, t: TT } = tables();
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
    // hsv2rgb: products are >= 0, so C's round() is Math.round
    const k = s * 256 + h;
    const pp = P[v * 256 + s];
    const qq = Math.round(v * (1.0 - Q[k]));
    const tt = Math.round(v * (1.0 - TT[k]));
    switch (sector[h]) {
      case 0: img[i] = v; img[i + 1] = tt; img[i + 2] = pp; break;
      case 1: img[i] = qq; img[i + 1] = v; img[i + 2] = pp; break;
      case 2: img[i] = pp; img[i + 1] = v; img[i + 2] = tt; break;
      case 3: img[i] = pp; img[i + 1] = qq; img[i + 2] = v; break;
      case 4: img[i] = tt; img[i + 1] = pp; img[i + 2] = v; break;
      default: img[i] = v; img[i + 1] = pp; img[i + 2] = qq; break;
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

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : v;
}

/** C's round(): halves away from zero */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
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
