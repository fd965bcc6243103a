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
  for (let i = 0; i < img.length; i += 3) {
    const g = luma(img[i], img[i + 1], img[i + 2]);
    for (let c = 0; c < 3; c++) {
      const r = f32(g + f32(a * (img[i + c] - g)));
      img[i + c] = inside ? Math.trunc(r) : r <= 0 ? 0 : r >= 255 ? 255 : Math.trunc(r);
    }
  }
}

/** hue shift as torchvision's F_pil.adjust_hue; `factor` in [-0.5, 0.5] */
export function adjustHue(img: Uint8Array, channels: number, factor: number): void {
  if (!(factor >= -0.5 && factor <= 0.5)) throw new Error(`c3gan data: hue factor ${factor} is not in [-0.5, 0.5]`);
  if (channels !== 3) return;
  // np.uint8(hue_factor * 255): truncation toward zero, then modulo 256
  const shift = ((Math.trunc(factor * 255) % 256) + 256) % 256;
  for (let i = 0; i < img.length; i += 3) {
    const r = img[i], g = img[i + 1], b = img[i + 2];
    // rgb2hsv_row (Pillow Convert.c), float/double mix kept as in C
    const maxc = r > g ? (r > b ? r : b) : g > b ? g : b;
    const minc = r < g ? (r < b ? r : b) : g < b ? g : b;
    let h = 0;
    let s = 0;
    const v = maxc;
    if (minc !== maxc) {
      const cr = maxc - minc;
      const sf = f32(cr / maxc);
      const rc = f32((maxc - r) / cr);
      const gc = f32((maxc - g) / cr);
      const bc = f32((maxc - b) / cr);
      let hf: number;
      if (r === maxc) hf = f32(bc - gc);
      else if (g === maxc) hf = f32(2.0 + rc - bc);
      else hf = f32(4.0 + gc - rc);
      hf = f32((hf / 6.0 + 1.0) % 1.0);
      h = clampByte(Math.trunc(hf * 255.0));
      s = clampByte(Math.trunc(sf * 255.0));
    }
    h = (h + shift) & 255;
    // hsv2rgb
    if (s === 0) {
      img[i] = v;
      img[i + 1] = v;
      img[i + 2] = v;
      continue;
    }
    const hi = Math.floor((h * 6.0) / 255.0);
    const f = f32((h * 6.0) / 255.0 - hi);
    const fs = f32(s / 255.0);
    const p = clampByte(roundHalfAway(v * (1.0 - fs)));
    const q = clampByte(roundHalfAway(v * (1.0 - f32(fs * f))));
    const t = clampByte(roundHalfAway(v * (1.0 - fs * (1.0 - f))));
    let R: number, G: number, B: number;
    switch (hi % 6) {
      case 0: R = v; G = t; B = p; break;
      case 1: R = q; G = v; B = p; break;
      case 2: R = p; G = v; B = t; break;
      case 3: R = p; G = q; B = v; break;
      case 4: R = t; G = p; B = v; break;
      default: R = v; G = p; B = q; break;
    }
    img[i] = R;
    img[i + 1] = G;
    img[i + 2] = B;
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
