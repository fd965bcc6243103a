// Pillow's RGB <-> HSV conversion (libImaging/Convert.c), tabulated for the hue jitter: see
// color.ts (adjustHue) and hue-wasm.ts, which both read these tables.

const f32 = Math.fround;

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : v;
}

/** C's round(): halves away from zero */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/**
 * Tables for the HSV round trip, built on first use (about 0.8 MB). In Pillow's rgb2hsv one of
 * the three channel differences in the hue formula is always the full range cr, so the hue byte
 * depends only on (which channel is the maximum and which the minimum, cr, max - the middle
 * channel): one lookup. hsv2rgb's p depends on (v, s) only; q and t are computed per pixel from
 * tabulated (s, h) products, with C's operation order and float/double types.
 */
export interface HsvTables {
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

let built: HsvTables | null = null;

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

export function hsvTables(): HsvTables {
  if (built) return built;
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
  built = { hue, sat, sector, p, q, t };
  return built;
}

