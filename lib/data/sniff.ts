// What a file's first bytes say it holds: an image format, text, or other bytes. Used where a
// name does not settle it: an image under an unusual name given to `cluster` (against a list
// file), and the messages for files c3gan passes over or cannot decode (HEIC photos above all:
// sharp's libvips has no HEVC decoder).
import * as fs from "node:fs";
import { isBmp } from "./bmp";
import { isPnm } from "./pnm";

export type FileKind = "jpeg" | "png" | "gif" | "webp" | "tiff" | "avif" | "heif" | "bmp" | "netpbm" | "text" | "other";

/** the kinds that decode (sharp, or bmp.ts / pnm.ts) */
export const DECODABLE_KINDS: ReadonlySet<FileKind> = new Set(["jpeg", "png", "gif", "webp", "tiff", "avif", "bmp", "netpbm"]);

// ISO-BMFF brands of HEVC-coded HEIF (HEIC); AVIF files say "avif" / "avis" among theirs
const HEVC_BRANDS = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs"]);
const SAMPLE = 4096;

export function sniffBytes(b: Uint8Array): FileKind {
  const ascii = (at: number, n: number) => (b.length >= at + n ? String.fromCharCode(...b.subarray(at, at + n)) : "");
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (ascii(0, 8) === "\x89PNG\r\n\x1a\n") return "png";
  if (ascii(0, 4) === "GIF8") return "gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return "webp";
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return "tiff";
  if (ascii(4, 4) === "ftyp") {
    // the ftyp box: its size, "ftyp", the major brand, a version, then the compatible brands
    const end = Math.min(b.length, ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0);
    const brands = [ascii(8, 4)];
    for (let at = 16; at + 4 <= end; at += 4) brands.push(ascii(at, 4));
    if (brands.includes("avif") || brands.includes("avis")) return "avif";
    if (brands.some((x) => HEVC_BRANDS.has(x)) || brands[0] === "mif1" || brands[0] === "msf1") return "heif";
  }
  if (isBmp(b)) return "bmp";
  if (isPnm(b)) return "netpbm";
  if (b.includes(0)) return "other";
  try {
    // (stream: a character cut at the sample's end is not an error)
    new TextDecoder("utf-8", { fatal: true }).decode(b, { stream: true });
    return "text";
  } catch {
    return "other";
  }
}

/** sniffBytes of the file's first 4 KiB */
export function sniffFile(file: string): FileKind {
  const fd = fs.openSync(file, "r");
  try {
    const buf = new Uint8Array(SAMPLE);
    return sniffBytes(buf.subarray(0, fs.readSync(fd, buf, 0, SAMPLE, 0)));
  } finally {
    fs.closeSync(fd);
  }
}

export const HEIF_ADVICE = "HEIC/HEIF photos (HEVC) cannot be decoded here: sharp's libvips has no HEVC decoder; " +
  "convert them to JPEG or PNG (e.g. `heif-convert`, or macOS's `sips -s format jpeg`)";

// extensions of image files that c3gan's file lists leave out, and what to do about them
const EXTENSION_ADVICE: Record<string, string> = {
  ".heic": HEIF_ADVICE, ".heif": HEIF_ADVICE, ".hif": HEIF_ADVICE,
  ".jfif": "JPEG files named .jfif / .jpe are left out as torchvision leaves them out: rename them .jpg",
  ".jpe": "JPEG files named .jfif / .jpe are left out as torchvision leaves them out: rename them .jpg",
};

/**
 * The note for files a folder scan left out: how many, of which extensions (most first), and
 * advice for the image types among them, e.g. `3 files under photos not used (not image files
 * c3gan reads): 2 .heic, 1 .txt; HEIC/HEIF photos ...`.
 */
export function ignoredFilesNote(ignored: readonly string[], where: string, outcome = "not used"): string {
  const byExt = new Map<string, number>();
  for (const f of ignored) {
    const base = f.slice(f.lastIndexOf("/") + 1);
    const dot = base.lastIndexOf(".");
    const ext = dot > 0 ? base.slice(dot).toLowerCase() : "";
    byExt.set(ext, (byExt.get(ext) ?? 0) + 1);
  }
  const kinds = [...byExt].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([ext, n]) => `${n} ${ext || "without an extension"}`);
  const advice = [...new Set([...byExt.keys()].map((e) => EXTENSION_ADVICE[e]).filter(Boolean))];
  const n = ignored.length;
  return `${n} file${n > 1 ? "s" : ""} under ${where} ${outcome} (not image files c3gan reads): ${kinds.join(", ")}` +
    advice.map((a) => `; ${a}`).join("");
}
