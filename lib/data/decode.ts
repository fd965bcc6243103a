// Decoding with sharp, and sharp's resize where it stands in for PIL's.
//
// Every input is decoded to 8-bit sRGB with 3 channels, then reduced to 1 channel when the run is
// configured for 1 (PIL's convert("L") formula, so a grayscale file round-trips exactly):
// - grayscale (1 channel, 8 or 16 bit): replicated to R = G = B, as PIL's convert("RGB");
// - 16-bit: scaled to 8 bits by libvips (v * 255 / 65535, rounded), PIL would clip instead;
// - alpha (RGBA, grayscale + alpha, palette with transparency): flattened onto black, i.e. the
//   colour is premultiplied by alpha (PIL's convert("RGB") drops alpha without compositing;
//   both agree where transparent pixels are stored black);
// - CMYK: converted to sRGB by libvips with the embedded ICC profile or its built-in CMYK profile
//   (PIL's naive 255 - C - K formula is not colour-managed);
// - EXIF orientation is ignored, as PIL's Image.open does;
// - BMP and Netpbm (PBM / PGM / PPM) files are decoded by bmp.ts and pnm.ts as PIL decodes them.
// Undecodable data (corrupt, truncated) throws, as PIL does; decoder warnings (PIL ignores them
// too) do not. The caller
// adds the list file and line.
import * as fs from "node:fs";
import * as path from "node:path";
import sharp, { type OutputInfo } from "sharp";
import { decodeBmp, isBmp } from "./bmp";
import { decodePnm, isPnm } from "./pnm";
import { FileKind, HEIF_ADVICE, sniffBytes, sniffFile } from "./sniff";

export interface RawImage {
  /** HWC, `channels` interleaved bytes a pixel */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * Tunes sharp for c3gan's loaders: one libvips thread per image (parallelism comes from decoding
 * several images at once on the libuv pool and the loader's workers; libvips' own threads per
 * image only add hand-offs) and no operation cache (every file is decoded once an epoch). These
 * are process-wide settings of sharp, so the library never makes them on its own: the `c3gan`
 * command calls this at start, and a program that uses c3gan's loaders and no sharp of its own
 * may call it too.
 */
export function configureSharp(): void {
  sharp.cache(false);
  sharp.concurrency(1);
}

/** A file's path, or an encoded image's bytes. */
type Encoded = string | Buffer;

// `raw`: the input is pixels of that layout, not a file's bytes
function decodeRgb(input: Encoded, raw?: { width: number; height: number; channels: 4 }):
  Promise<{ data: Buffer; info: OutputInfo }> {
  return sharp(input, { failOn: "error", raw })
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .toColourspace("srgb")
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
}

// libvips keeps one error buffer for the process, and every decode clears it when it ends, while
// another's failure may write into it: a failed decode's message may lose its detail ("Input file
// has corrupt header:" with nothing after it, or sharp's "Unknown error" when the buffer was
// empty: a truncated JPEG among 12 concurrent decodes read "Unknown error" 45% of the time) or
// carry another file's ("tiff2vips: Not a TIFF file" for a truncated JPEG, ~1 in 400 there). So
// a failure is tried again, the retries queued one behind another, until two tries give the same
// detailed message (8 tries at most). Failures are rare; good files never wait.
let retries: Promise<unknown> = Promise.resolve();
const noDetail = (e: unknown): boolean => !(e instanceof Error) || /:\s*$/.test(e.message) || e.message === "Unknown error";
const MAX_TRIES = 8;

async function decodeRgbReported(input: Encoded): Promise<{ data: Buffer; info: OutputInfo }> {
  try {
    return await decodeRgb(input);
  } catch (first) {
    const again = retries.then(async () => {
      const seen = new Set<string>();
      let last: unknown = first;
      let detailed: unknown = null;
      for (let i = 0; ; i++) {
        if (!noDetail(last)) {
          const m = (last as Error).message;
          if (seen.has(m)) throw last;
          seen.add(m);
          detailed = last;
        }
        if (i === MAX_TRIES) throw detailed ?? last;
        try {
          return await decodeRgb(input);
        } catch (e) {
          last = e;
        }
      }
    });
    retries = again.catch(() => undefined);
    return again;
  }
}

// Bitmaps and Netpbm files, which this libvips build cannot read, are decoded here (bmp.ts,
// pnm.ts), known by their first bytes; a file named so that holds another format goes to sharp.
const OWN_FORMATS = new Set([".bmp", ".dib", ".ppm", ".pgm", ".pbm", ".pnm"]);

async function decodeOwnFormat(file: string): Promise<RawImage | null> {
  const bytes = new Uint8Array(await fs.promises.readFile(file));
  if (isBmp(bytes)) return decodeBmp(bytes);
  if (isPnm(bytes)) return decodePnm(bytes);
  return null;
}

export async function decodeImageFile(file: string, channels: 1 | 3): Promise<RawImage> {
  const ownName = OWN_FORMATS.has(path.extname(file).toLowerCase());
  if (ownName) {
    const own = await decodeOwnFormat(file);
    if (own) return toChannels(own, channels);
  }
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await decodeRgbReported(file);
  } catch (e) {
    // what libvips could not read may be a bitmap or Netpbm file under another name, or a HEIC
    // photo, whose libvips error ("heif: Unsupported feature: ...") does not say what to do
    let kind: FileKind | null = null;
    try {
      kind = sniffFile(file);
    } catch {
      throw e;  // unreadable: libvips's error says why
    }
    if (!ownName && (kind === "bmp" || kind === "netpbm")) {
      const own = await decodeOwnFormat(file);
      if (own) return toChannels(own, channels);
    }
    throw kind === "heif" ? heifError(e) : e;
  }
  return fromSharp(decoded, channels);
}

/**
 * An encoded image held in memory (the bytes of a JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP or Netpbm
 * file), decoded as decodeImageFile decodes that file.
 */
export async function decodeImageBytes(bytes: Uint8Array, channels: 1 | 3): Promise<RawImage> {
  if (bytes.length === 0) throw new Error("no bytes (an empty image)");
  const kind = sniffBytes(bytes.subarray(0, 4096));
  if (kind === "bmp") return toChannels(decodeBmp(bytes), channels);
  if (kind === "netpbm") return toChannels(decodePnm(bytes), channels);
  if (kind === "text") throw new Error(`not an image: ${bytes.length} bytes of text`);
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await decodeRgbReported(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw kind === "heif" ? heifError(e) : e;
  }
  return fromSharp(decoded, channels);
}

// a HEIC photo libvips could not decode: what to do, with libvips's own first line
function heifError(e: unknown): Error {
  return new Error(`${HEIF_ADVICE} (libvips: ${String((e as Error).message ?? e).split("\n")[0]})`);
}

/** Pixels already decoded: HWC bytes, 1 (gray), 3 (RGB) or 4 (RGBA, as a canvas's ImageData holds). */
export interface RawPixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/**
 * Decoded pixels brought to what decodeImageFile gives for a file holding them: alpha flattened
 * onto black by libvips, as a PNG with alpha is, then the configured channels.
 */
export async function fromRawPixels(raw: RawPixels, channels: 1 | 3): Promise<RawImage> {
  const data = new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
  if (raw.channels !== 4) return toChannels({ data, width: raw.width, height: raw.height, channels: raw.channels }, channels);
  const rgba = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return fromSharp(await decodeRgb(rgba, { width: raw.width, height: raw.height, channels: 4 }), channels);
}

function fromSharp({ data, info }: { data: Buffer; info: OutputInfo }, channels: 1 | 3): RawImage {
  if (info.channels !== 3) throw new Error(`decoder returned ${info.channels} channels, expected 3`);
  const rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const img: RawImage = { data: rgb, width: info.width, height: info.height, channels: 3 };
  return channels === 3 ? img : toChannels(img, 1);
}

/** Converts between 1 and 3 channels the way PIL's convert("L") / convert("RGB") do. */
export function toChannels(img: RawImage, channels: 1 | 3): RawImage {
  if (img.channels === channels) return img;
  const n = img.width * img.height;
  const src = img.data;
  if (channels === 1) {
    const out = new Uint8Array(n);
    for (let i = 0, j = 0; j < n; i += 3, j++) {
      out[j] = (src[i] * 19595 + src[i + 1] * 38470 + src[i + 2] * 7471 + 0x8000) >> 16;
    }
    return { data: out, width: img.width, height: img.height, channels: 1 };
  }
  const out = new Uint8Array(n * 3);
  for (let j = 0, i = 0; j < n; j++, i += 3) {
    const v = src[j];
    out[i] = v;
    out[i + 1] = v;
    out[i + 2] = v;
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * sharp's resize of `box` of `img` to outWidth x outHeight, returning only `window` of the result.
 * Kernel "linear": libvips' triangle filter widened by the reduction factor, the same filter as
 * PIL's antialiased bilinear; measured against PIL on reductions of 1.2-6x, 0.25-0.35/255 mean
 * absolute difference, at most 3-4 on photographs (up to 10 on noise). Only for reductions on both
 * axes, when the "sharp" resampler is asked for: enlargements always use the exact port of PIL
 * (libvips samples them on another pixel-centre convention, 3/255 off on average).
 */
export async function resizeWithSharp(
  img: RawImage, box: Region, outWidth: number, outHeight: number, window: Region,
): Promise<Uint8Array> {
  let p = sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
  if (box.left !== 0 || box.top !== 0 || box.width !== img.width || box.height !== img.height) p = p.extract(box);
  p = p.resize(outWidth, outHeight, { fit: "fill", kernel: "linear" });
  if (window.left !== 0 || window.top !== 0 || window.width !== outWidth || window.height !== outHeight) p = p.extract(window);
  // sharp writes sRGB (3 bands) unless told otherwise; b-w keeps one band, values untouched
  if (img.channels === 1) p = p.toColourspace("b-w");
  const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== window.width || info.height !== window.height || info.channels !== img.channels) {
    throw new Error(`c3gan data: sharp resize returned ${info.width}x${info.height}x${info.channels}, expected ${window.width}x${window.height}x${img.channels}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
