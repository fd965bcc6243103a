// Windows bitmaps, which torchvision's folders accept and sharp's libvips build does not read.
// Decoded as PIL 9.4's BmpImagePlugin does, then converted to RGB as its convert("RGB"):
// - headers: OS/2 core (12 bytes; rows bottom-up) and Windows (40, 64, 108, 124; a negative
//   height is top-down);
// - 1, 4 and 8 bits through the palette (BGRX entries, BGR in core headers; `colors` of them, or
//   2^bits), uncompressed or RLE8 / RLE4, whose pixels fill rows in order from the bottom, as
//   PIL's decoder does (what a run leaves unwritten is palette entry 0). Two deviations where
//   PIL 9.4 misreads the format (later Pillow reads it as here): a delta's two bytes are its
//   offsets (9.4 reads two more), and an RLE4 literal run of odd length keeps its last pixel;
// - 16 bits: 5-5-5 unless bit fields say 5-6-5 (PIL's BGR;15 / BGR;16); 24 bits BGR; 32 bits
//   BGRX, or the bit-field layouts PIL knows (XBGR, ABGR, RGBA, BGRA), alpha dropped as
//   convert("RGB") drops it.
// Anything else (JPEG or PNG inside a BMP, other bit fields) is an error naming what it found.
import type { RawImage } from "./decode";

const BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3;

/** PIL refuses images over twice Image.MAX_IMAGE_PIXELS (DecompressionBombError) */
export const MAX_PIXELS = 2 * 89478485;

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d; // "BM"
}

// bit masks (r, g, b, a) -> byte positions of r, g, b in a little-endian pixel
const MASKS32: [number[], number[]][] = [
  [[0xff0000, 0xff00, 0xff, 0], [2, 1, 0]], // BGRX
  [[0xff0000, 0xff00, 0xff, 0xff000000], [2, 1, 0]], // BGRA
  [[0, 0, 0, 0], [2, 1, 0]], // BGRA
  [[0xff000000, 0xff0000, 0xff00, 0], [3, 2, 1]], // XBGR
  [[0xff000000, 0xff0000, 0xff00, 0xff], [3, 2, 1]], // ABGR
  [[0xff, 0xff00, 0xff0000, 0xff000000], [0, 1, 2]], // RGBA
];

export function decodeBmp(bytes: Uint8Array): RawImage {
  const fail = (why: string): never => {
    throw new Error(`BMP: ${why}`);
  };
  if (bytes.length < 26) fail(`a ${bytes.length}-byte file is shorter than a BMP header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = v.getUint32(10, true);
  const headerSize = v.getUint32(14, true);
  let width: number, height: number, bits: number, compression = BI_RGB, colors = 0;
  let masks = [0, 0, 0, 0];
  let paletteEntry = 4;
  if (headerSize === 12) {
    width = v.getUint16(18, true);
    height = v.getUint16(20, true);
    bits = v.getUint16(24, true);
    paletteEntry = 3;
  } else if ([40, 64, 108, 124].includes(headerSize)) {
    if (bytes.length < 14 + headerSize) fail("truncated header");
    width = v.getInt32(18, true);
    height = v.getInt32(22, true);
    bits = v.getUint16(28, true);
    compression = v.getUint32(30, true);
    colors = v.getUint32(46, true);
    if (compression === BI_BITFIELDS) {
      // three masks after a 40-byte header, four inside the longer ones: both start at byte 54
      if (bytes.length < 66) fail("truncated bit fields");
      masks = [v.getUint32(54, true), v.getUint32(58, true), v.getUint32(62, true), headerSize > 40 ? v.getUint32(66, true) : 0];
    }
  } else {
    return fail(`unsupported header size ${headerSize}`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height === 0) fail(`bad size ${width} x ${height}`);
  if (width * height > MAX_PIXELS) fail(`${width} x ${height} pixels is over PIL's limit of ${MAX_PIXELS} (a decompression bomb)`);
  const out = new Uint8Array(width * height * 3);
  const put = (x: number, y: number, r: number, g: number, b: number) => {
    const i = ((topDown ? y : height - 1 - y) * width + x) * 3;
    out[i] = r;
    out[i + 1] = g;
    out[i + 2] = b;
  };

  if (bits <= 8) {
    if (![1, 4, 8].includes(bits)) fail(`${bits} bits a pixel`);
    const entries = colors || 1 << bits;
    if (entries > 65536) fail(`a palette of ${entries} colours`);
    const palStart = 14 + headerSize;
    if (palStart + entries * paletteEntry > bytes.length) fail("truncated palette");
    // an offset pointing at the palette is taken to mean the pixels after it, as PIL does
    if (offset === 14 + headerSize) offset += 4 * entries;
    if (offset === 0) offset = palStart + entries * paletteEntry;
    // RGB of every index a pixel can hold (past the palette: black), read once
    const rgb = new Uint8Array(Math.max(entries, 1 << bits) * 3);
    for (let k = 0; k < entries; k++) {
      const p = palStart + k * paletteEntry;
      rgb.set([bytes[p + 2], bytes[p + 1], bytes[p]], 3 * k);
    }
    const setIndex = (x: number, y: number, k: number) => put(x, y, rgb[3 * k], rgb[3 * k + 1], rgb[3 * k + 2]);
    if (compression === BI_RLE8 || compression === BI_RLE4) {
      const indices = decodeRle(bytes, offset, compression === BI_RLE4, width, height);
      for (let i = 0; i < width * height; i++) setIndex(i % width, Math.floor(i / width), indices[i]);
    } else if (compression === BI_RGB) {
      const stride = Math.floor((width * bits + 31) / 32) * 4;
      if (offset + stride * (height - 1) + Math.ceil((width * bits) / 8) > bytes.length) fail("truncated pixel data");
      const perByte = 8 / bits, mask = (1 << bits) - 1;
      for (let y = 0; y < height; y++) {
        const row = offset + y * stride;
        for (let x = 0; x < width; x++) {
          const byte = bytes[row + Math.floor(x / perByte)];
          const k = (byte >> (8 - bits * ((x % perByte) + 1))) & mask;
          setIndex(x, y, k);
        }
      }
    } else {
      fail(`compression ${compression} with ${bits} bits a pixel`);
    }
    return { data: out, width, height, channels: 3 };
  }

  if (compression !== BI_RGB && compression !== BI_BITFIELDS) {
    fail(`compression ${compression} (JPEG or PNG inside a BMP) is not supported`);
  }
  const bitfields = compression !== BI_RGB;
  const stride = Math.floor((width * bits + 31) / 32) * 4;
  if (![16, 24, 32].includes(bits)) fail(`${bits} bits a pixel`);
  if (offset + stride * (height - 1) + (width * bits) / 8 > bytes.length) fail("truncated pixel data");
  const hex = (m: number[]) => m.map((x) => `0x${x.toString(16)}`).join(", ");
  if (bits === 16) {
    // PIL's BGR;15 (5-5-5, also without bit fields) and BGR;16 (5-6-5)
    const rgb = masks.slice(0, 3).join();
    const six = bitfields && rgb === [0xf800, 0x7e0, 0x1f].join();
    if (bitfields && !six && rgb !== [0x7c00, 0x3e0, 0x1f].join()) fail(`16-bit fields (${hex(masks.slice(0, 3))})`);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const p = v.getUint16(offset + y * stride + 2 * x, true);
        if (six) put(x, y, (((p >> 11) & 31) * 255 / 31) | 0, (((p >> 5) & 63) * 255 / 63) | 0, ((p & 31) * 255 / 31) | 0);
        else put(x, y, (((p >> 10) & 31) * 255 / 31) | 0, (((p >> 5) & 31) * 255 / 31) | 0, ((p & 31) * 255 / 31) | 0);
      }
    return { data: out, width, height, channels: 3 };
  }
  let pos = [2, 1, 0]; // BGR, BGRX
  if (bits === 32 && bitfields) {
    const hit = MASKS32.find(([m]) => m.every((x, i) => x === masks[i]));
    if (!hit) fail(`32-bit fields (${hex(masks)})`);
    pos = hit![1];
  } else if (bits === 24 && bitfields && masks.slice(0, 3).join() !== [0xff0000, 0xff00, 0xff].join()) {
    fail(`24-bit fields (${hex(masks.slice(0, 3))})`);
  }
  const px = bits / 8;
  for (let y = 0; y < height; y++) {
    const row = offset + y * stride;
    for (let x = 0; x < width; x++) {
      const p = row + x * px;
      put(x, y, bytes[p + pos[0]], bytes[p + pos[1]], bytes[p + pos[2]]);
    }
  }
  return { data: out, width, height, channels: 3 };
}

// RLE8 / RLE4 palette indices, rows from the bottom, as PIL's BmpRleDecoder lays them out: one
// linear run of pixels; a run is cut at its row's end; end of line pads the row with index 0; a
// delta pads (dx + dy * width) zeros; literal runs (padded to 16 bits) are not cut. Past the end
// of the data the image keeps index 0.
function decodeRle(bytes: Uint8Array, start: number, rle4: boolean, width: number, height: number): Uint8Array {
  const total = width * height;
  const data = new Uint8Array(total);
  let n = 0, x = 0, p = start;
  const push = (k: number) => {
    if (n < total) data[n] = k;
    n++;
  };
  while (n < total && p + 1 < bytes.length) {
    const count = bytes[p], code = bytes[p + 1];
    p += 2;
    if (count > 0) {
      const run = Math.min(count, Math.max(0, width - x));
      for (let i = 0; i < run; i++) push(rle4 ? (i % 2 === 0 ? code >> 4 : code & 15) : code);
      x += run;
    } else if (code === 0) {
      while (n % width !== 0) push(0);
      x = 0;
    } else if (code === 1) {
      break;
    } else if (code === 2) {
      if (p + 1 >= bytes.length) break;
      const pad = bytes[p] + bytes[p + 1] * width;
      p += 2;
      for (let i = 0; i < pad; i++) push(0);
      x = n % width;
    } else {
      const used = rle4 ? Math.ceil(code / 2) : code;
      if (p + used > bytes.length) break;
      for (let i = 0; i < code; i++) push(rle4 ? (i % 2 === 0 ? bytes[p + (i >> 1)] >> 4 : bytes[p + (i >> 1)] & 15) : bytes[p + i]);
      x += code;
      p += used;
      if (p % 2 !== 0) p++; // literal runs end on a 16-bit boundary of the file, as PIL reads them
    }
  }
  return data;
}
