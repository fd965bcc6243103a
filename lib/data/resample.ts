// PIL's bilinear resampling (Pillow's libImaging/Resample.c, 8 bits per channel), reproduced bit
// for bit: a triangle filter whose support widens with the reduction factor (PIL's antialias),
// coefficients normalised per output pixel and rounded to 22-bit fixed point, a horizontal pass
// into a uint8 image, then a vertical pass. Tested equal to PIL's Image.resize(BILINEAR) on the
// committed fixtures. These loops are the reference; resample-wasm.ts runs the same arithmetic as
// WebAssembly SIMD kernels for the pipeline.

const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);
const MAX_VALUE = (1 << PRECISION_BITS) * 256;

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface Coeffs {
  ksize: number;
  /** per output pixel: first input index, number of taps */
  bounds: Int32Array;
  /** fixed-point weights, ksize per output pixel */
  kk: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1) */
export function coefficients(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      let t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      const v = t < 1 ? 1 - t : 0;
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  return v >= MAX_VALUE ? 255 : v <= 0 ? 0 : v >> PRECISION_BITS;
}

/**
 * Resizes the `box` region of `src` (HWC uint8, `channels` per pixel, row stride srcWidth) to
 * outWidth x outHeight exactly as PIL's `img.crop(box).resize((outWidth, outHeight), BILINEAR)`,
 * and returns only the `window` of that output (default: all of it) as a tight HWC buffer.
 * Computing only the window gives the same pixels as resizing everything and cropping after.
 */
export function resampleBilinear(
  src: Uint8Array,
  srcWidth: number,
  channels: number,
  box: Box,
  outWidth: number,
  outHeight: number,
  window: Box = { left: 0, top: 0, width: outWidth, height: outHeight },
): Uint8Array {
  const C = channels;
  if (window.left < 0 || window.top < 0 || window.left + window.width > outWidth || window.top + window.height > outHeight) {
    throw new Error(`c3gan data: resample window out of the ${outWidth}x${outHeight} output`);
  }
  const H = outWidth !== box.width ? coefficients(box.width, outWidth) : null;
  const V = outHeight !== box.height ? coefficients(box.height, outHeight) : null;
  const { rowFirst, rowCount } = V ? rowsNeeded(V, window) : { rowFirst: window.top, rowCount: window.height };
  const rowLen = window.width * C;
  const tmp = new Uint8Array(rowCount * rowLen);
  horizontalJs(src, srcWidth, C, box, rowFirst, rowCount, window, H, tmp);
  if (!V) return tmp;
  const out = new Uint8Array(window.height * rowLen);
  vertical(tmp, rowLen, window.top, window.height, rowFirst, V, out);
  return out;
}

/** the rows of the box that the window's output rows read */
export function rowsNeeded(V: Coeffs, window: Box): { rowFirst: number; rowCount: number } {
  const rowFirst = V.bounds[window.top * 2];
  const lastRow = window.top + window.height - 1;
  return { rowFirst, rowCount: V.bounds[lastRow * 2] + V.bounds[lastRow * 2 + 1] - rowFirst };
}

/**
 * The horizontal pass over box rows rowFirst .. rowFirst + rowCount - 1, for the window's
 * columns, into tmp (rowCount x window.width x C); with H null (no horizontal resize) a copy.
 */
export function horizontalJs(
  src: Uint8Array, srcWidth: number, C: number, box: Box, rowFirst: number, rowCount: number,
  window: Box, H: Coeffs | null, tmp: Uint8Array,
): void {
  const rowLen = window.width * C;
  if (!H) {
    for (let y = 0; y < rowCount; y++) {
      const s = ((box.top + rowFirst + y) * srcWidth + box.left + window.left) * C;
      tmp.set(src.subarray(s, s + rowLen), y * rowLen);
    }
    return;
  }
  horizontal(src, srcWidth, C, box.left, box.top + rowFirst, rowCount, window.left, window.width, H, tmp);
}

function horizontal(
  src: Uint8Array, srcWidth: number, C: number, x0: number, yStart: number, rows: number,
  colStart: number, cols: number, H: Coeffs, tmp: Uint8Array,
): void {
  const { bounds, kk, ksize } = H;
  let o = 0;
  for (let y = 0; y < rows; y++) {
    const row = ((yStart + y) * srcWidth + x0) * C;
    for (let xx = colStart; xx < colStart + cols; xx++) {
      const xmin = bounds[2 * xx];
      const xmax = bounds[2 * xx + 1];
      let kb = xx * ksize;
      let p = row + xmin * C;
      const pe = p + xmax * C;
      if (C === 3) {
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (; p < pe; p += 3, kb++) {
          const k = kk[kb];
          s0 += src[p] * k;
          s1 += src[p + 1] * k;
          s2 += src[p + 2] * k;
        }
        tmp[o++] = clip8(s0);
        tmp[o++] = clip8(s1);
        tmp[o++] = clip8(s2);
      } else if (C === 1) {
        let s0 = HALF;
        for (; p < pe; p++, kb++) s0 += src[p] * kk[kb];
        tmp[o++] = clip8(s0);
      } else {
        for (let c = 0; c < C; c++) {
          let s = HALF;
          for (let q = p + c, k = kb; q < pe; q += C, k++) s += src[q] * kk[k];
          tmp[o++] = clip8(s);
        }
      }
    }
  }
}

function vertical(
  tmp: Uint8Array, rowLen: number, outTop: number, outRows: number, rowFirst: number, V: Coeffs, out: Uint8Array,
): void {
  const { bounds, kk, ksize } = V;
  const acc = new Float64Array(rowLen); // exact: sums stay far below 2^53
  for (let r = 0; r < outRows; r++) {
    const yy = outTop + r;
    const ymin = bounds[yy * 2] - rowFirst;
    const ymax = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < ymax; y++) {
      const k = kk[kb + y];
      const p = (ymin + y) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += tmp[p + i] * k;
    }
    const ob = r * rowLen;
    for (let i = 0; i < rowLen; i++) out[ob + i] = clip8(acc[i]);
  }
}
