// Netpbm images (P1-P6: PBM, PGM, PPM, plain and raw), which torchvision's folders accept and
// sharp's libvips build does not read. Decoded as PIL 9.4's PpmImagePlugin does, then converted
// to RGB as its convert("RGB"): bitmaps 1 = black; samples with maxval != 255 scaled to
// round-half-even(v / maxval * 255), in double as Python computes it. One deviation: PIL keeps
// grey samples over 8 bits (maxval > 255) as 32-bit "I" and clips them at 255 on conversion; here
// they are scaled like every other sample (as decode.ts scales sharp's 16-bit images).
import { MAX_PIXELS } from "./bmp";
import type { RawImage } from "./decode";

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]);

/** Python's round() of a double: ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

export function isPnm(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x50 && bytes[1] >= 0x31 && bytes[1] <= 0x36 &&
    (bytes.length === 2 || WHITESPACE.has(bytes[2]));
}

class Reader {
  pos = 2;
  constructor(readonly bytes: Uint8Array) {}

  /** a header or plain-data token: whitespace and # comments (to the end of the line) skipped */
  token(what: string): string {
    const b = this.bytes;
    for (;;) {
      while (this.pos < b.length && WHITESPACE.has(b[this.pos])) this.pos++;
      if (b[this.pos] !== 0x23) break;
      while (this.pos < b.length && b[this.pos] !== 0x0a && b[this.pos] !== 0x0d) this.pos++;
    }
    const start = this.pos;
    while (this.pos < b.length && !WHITESPACE.has(b[this.pos]) && b[this.pos] !== 0x23) this.pos++;
    if (this.pos === start) throw new Error(`PNM: the file ends before its ${what}`);
    return String.fromCharCode(...b.subarray(start, this.pos));
  }

  int(what: string, min: number, max: number): number {
    const t = this.token(what);
    const v = /^\d{1,10}$/.test(t) ? Number(t) : NaN;
    if (!(v >= min && v <= max)) throw new Error(`PNM: ${what} ${JSON.stringify(t)} is not an integer in [${min}, ${max}]`);
    return v;
  }
}

export function decodePnm(bytes: Uint8Array): RawImage {
  const kind = bytes[1] - 0x30; // 1..6
  const r = new Reader(bytes);
  const width = r.int("width", 1, MAX_PIXELS);
  const height = r.int("height", 1, MAX_PIXELS);
  if (width * height > MAX_PIXELS) throw new Error(`PNM: ${width} x ${height} pixels is over PIL's limit of ${MAX_PIXELS} (a decompression bomb)`);
  const bitmap = kind === 1 || kind === 4;
  const maxval = bitmap ? 1 : r.int("maxval", 1, 65535);
  const bands = kind === 3 || kind === 6 ? 3 : 1;
  const n = width * height;
  const samples = new Uint8Array(n * bands);
  const plain = kind <= 3;
  const scale = (v: number) => (maxval === 255 ? v : Math.min(255, roundHalfEven((v / maxval) * 255)));
  if (bitmap && plain) {
    // plain PBM: one '0' or '1' a pixel, whitespace optional
    let i = 0;
    for (let p = r.pos; i < n && p < bytes.length; p++) {
      const c = bytes[p];
      if (c === 0x23) {
        while (p < bytes.length && bytes[p] !== 0x0a && bytes[p] !== 0x0d) p++;
      } else if (c === 0x30 || c === 0x31) {
        samples[i++] = c === 0x31 ? 0 : 255;
      } else if (!WHITESPACE.has(c)) {
        throw new Error(`PNM: byte ${JSON.stringify(String.fromCharCode(c))} in a plain bitmap's data`);
      }
    }
    if (i < n) throw new Error(`PNM: ${i} of ${n} pixels in the file`);
  } else if (plain) {
    for (let i = 0; i < samples.length; i++) {
      const v = r.int("sample", 0, 65535);
      if (v > maxval) throw new Error(`PNM: sample ${v} is over maxval ${maxval}`);
      samples[i] = scale(v);
    }
  } else {
    const start = r.pos + 1; // one whitespace byte ends the header
    if (bitmap) {
      const rowBytes = Math.ceil(width / 8);
      if (bytes.length - start < rowBytes * height) throw new Error(`PNM: ${bytes.length - start} data bytes, expected ${rowBytes * height}`);
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) samples[y * width + x] = (bytes[start + y * rowBytes + (x >> 3)] >> (7 - (x & 7))) & 1 ? 0 : 255;
    } else {
      const wide = maxval > 255;
      const need = samples.length * (wide ? 2 : 1);
      if (bytes.length - start < need) throw new Error(`PNM: ${bytes.length - start} data bytes, expected ${need}`);
      for (let i = 0; i < samples.length; i++) {
        samples[i] = scale(wide ? (bytes[start + 2 * i] << 8) | bytes[start + 2 * i + 1] : bytes[start + i]);
      }
    }
  }
  if (bands === 3) return { data: samples, width, height, channels: 3 };
  return { data: samples, width, height, channels: 1 };
}
