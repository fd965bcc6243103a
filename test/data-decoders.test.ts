// The BMP and Netpbm decoders (lib/data/bmp.ts, pnm.ts) against what PIL 9.4 decodes from the same
// files (test/fixtures/make_image_fixtures.py), their errors, and their place in the loaders.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { decodeImageFile, toChannels } from "../lib/data/decode";
import { ignoredFilesNote, sniffBytes, sniffFile } from "../lib/data/sniff";
import { decodeBmp } from "../lib/data/bmp";
import { decodePnm } from "../lib/data/pnm";
import { openDataset } from "../lib/data/formats";
import { DataLoader } from "../lib/data/loader";
import { packageRoot } from "../lib/native";
import { tempDir } from "./helpers/tmp";

const fixtures = path.join(packageRoot(), "test", "fixtures");
const spec = JSON.parse(fs.readFileSync(path.join(fixtures, "image_fixtures.json"), "utf8")) as {
  cases: Record<string, { width: number; height: number; rgb: string; note?: string }>;
};

test("BMP and Netpbm files decode as PIL decodes them (every layout of the fixtures), in 3 and 1 channels", async () => {
  const names = Object.keys(spec.cases);
  assert.ok(names.length >= 29, "the fixtures are there");
  for (const name of names) {
    const c = spec.cases[name];
    const want = new Uint8Array(Buffer.from(c.rgb, "base64"));
    const got = await decodeImageFile(path.join(fixtures, "images", name), 3);
    assert.deepEqual([got.width, got.height, got.channels], [c.width, c.height, 3], name);
    assert.deepEqual(Buffer.from(got.data), Buffer.from(want), name);
    const grey = await decodeImageFile(path.join(fixtures, "images", name), 1);
    const wantGrey = toChannels({ data: want, width: c.width, height: c.height, channels: 3 }, 1);
    assert.deepEqual(Buffer.from(grey.data), Buffer.from(wantGrey.data), `${name} in 1 channel`);
  }
});

function bmp24(width: number, height: number): Uint8Array {
  const stride = Math.ceil((width * 3) / 4) * 4;
  const b = Buffer.alloc(54 + stride * height);
  b.write("BM", 0, "latin1");
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  for (let i = 54; i < b.length; i++) b[i] = i & 255;
  return new Uint8Array(b);
}

test("BMP and Netpbm errors name what is wrong", () => {
  const ok = bmp24(3, 2);
  assert.equal(decodeBmp(ok).width, 3);
  assert.throws(() => decodeBmp(ok.subarray(0, ok.length - 4)), /^Error: BMP: truncated pixel data$/);
  assert.throws(() => decodeBmp(ok.subarray(0, 20)), /BMP: a 20-byte file is shorter than a BMP header/);
  const v3 = Buffer.from(ok);
  v3.writeUInt32LE(52, 14);
  assert.throws(() => decodeBmp(v3), /BMP: unsupported header size 52/);
  const bits2 = Buffer.from(ok);
  bits2.writeUInt16LE(2, 28);
  assert.throws(() => decodeBmp(bits2), /BMP: 2 bits a pixel/);
  const jpeg = Buffer.from(ok);
  jpeg.writeUInt32LE(4, 30);
  assert.throws(() => decodeBmp(jpeg), /BMP: compression 4 \(JPEG or PNG inside a BMP\) is not supported/);
  // 10-bit channels (bit fields PIL does not know)
  const fields = Buffer.concat([Buffer.from(ok.subarray(0, 54)), Buffer.alloc(12), Buffer.alloc(24)]);
  fields.writeUInt32LE(3, 30);
  fields.writeUInt32LE(66, 10);
  fields.writeUInt16LE(32, 28);
  [0x3ff00000, 0xffc00, 0x3ff].forEach((m, i) => fields.writeUInt32LE(m, 54 + 4 * i));
  assert.throws(() => decodeBmp(fields), /BMP: 32-bit fields \(0x3ff00000, 0xffc00, 0x3ff, 0x0\)/);
  const pnm = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
  assert.throws(() => decodePnm(pnm("P6\n3 2\n255\n" + "x".repeat(17))), /PNM: 17 data bytes, expected 18/);
  assert.throws(() => decodePnm(pnm("P5\n3 two\n255\n")), /PNM: height "two" is not an integer in \[1, 178956970\]/);
  assert.throws(() => decodePnm(pnm("P5\n100000 100000\n255\n")), /PNM: 100000 x 100000 pixels is over PIL's limit of 178956970/);
  const bomb = Buffer.from(ok);
  bomb.writeInt32LE(100000, 18);
  bomb.writeInt32LE(-100000, 22);
  assert.throws(() => decodeBmp(bomb), /BMP: 100000 x 100000 pixels is over PIL's limit/);
  assert.throws(() => decodePnm(pnm("P2\n2 1\n15\n3 16\n")), /PNM: sample 16 is over maxval 15/);
  assert.throws(() => decodePnm(pnm("P2\n2 1\n15\n3\n")), /PNM: the file ends before its sample/);
  assert.throws(() => decodePnm(pnm("P1\n2 2\n1 0 2 1")), /PNM: byte "2" in a plain bitmap's data/);
  assert.throws(() => decodePnm(pnm("P5\n2 2\n0\n")), /PNM: maxval "0" is not an integer in \[1, 65535\]/);
});

test("RLE data that ends early leaves palette entry 0 (PIL 9.4 refuses it)", () => {
  // 2 x 2, 8 bits, palette [red, green]: the bottom row's two pixels, then end of bitmap
  const b = Buffer.alloc(14 + 40 + 8 + 6);
  b.write("BM", 0, "latin1");
  b.writeUInt32LE(14 + 40 + 8, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(2, 18);
  b.writeInt32LE(2, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(8, 28);
  b.writeUInt32LE(1, 30);
  b.writeUInt32LE(2, 46);
  Buffer.from([0, 0, 255, 0, 0, 255, 0, 0]).copy(b, 54); // BGRX red, green
  Buffer.from([2, 1, 0, 0, 0, 1]).copy(b, 62);
  const img = decodeBmp(new Uint8Array(b));
  assert.deepEqual([...img.data], [255, 0, 0, 255, 0, 0, 0, 255, 0, 0, 255, 0]);
});

test("the loaders read BMP and Netpbm files; a .bmp holding a PNG goes to sharp", async () => {
  const dir = tempDir("decoders");
  for (const f of ["pil_rgb24.bmp", "plain.ppm", "grey_16bit.pgm"]) fs.copyFileSync(path.join(fixtures, "images", f), path.join(dir, f));
  const c = spec.cases["pil_rgb24.bmp"];
  await sharp(Buffer.from(c.rgb, "base64"), { raw: { width: c.width, height: c.height, channels: 3 } }).png()
    .toFile(path.join(dir, "png_named.bmp"));
  const png = await decodeImageFile(path.join(dir, "png_named.bmp"), 3);
  assert.deepEqual(Buffer.from(png.data), Buffer.from(c.rgb, "base64"));
  const ds = await openDataset({ format: "folder", root: dir }, "test");
  assert.equal(ds.size, 4);
  const loader = new DataLoader(ds, { mode: "test", batchSize: 4, imageSize: 32, channels: 3, workers: 0 });
  try {
    let n = 0;
    for await (const b of loader.epoch(0)) n += b.shape[0];
    assert.equal(n, 4);
  } finally {
    await loader.close();
  }
});

/** the start of an ISO-BMFF file: its ftyp box with the major brand and the compatible brands */
function ftyp(major: string, compatible: string[]): Buffer {
  const body = Buffer.concat([Buffer.from("ftyp" + major), Buffer.alloc(4), Buffer.from(compatible.join(""))]);
  const size = Buffer.alloc(4);
  size.writeUInt32BE(body.length + 4);
  return Buffer.concat([size, body, Buffer.alloc(64, 7)]);
}

test("sniffing tells image formats, HEIC, text and other bytes apart by their first bytes", async () => {
  const dir = tempDir("sniff");
  const c = spec.cases["pil_rgb24.bmp"];
  const raw = sharp(Buffer.from(c.rgb, "base64"), { raw: { width: c.width, height: c.height, channels: 3 } });
  const kinds: [Buffer, string][] = [
    [await raw.clone().jpeg().toBuffer(), "jpeg"], [await raw.clone().png().toBuffer(), "png"],
    [await raw.clone().webp().toBuffer(), "webp"], [await raw.clone().tiff().toBuffer(), "tiff"],
    [await raw.clone().gif().toBuffer(), "gif"], [await raw.clone().avif().toBuffer(), "avif"],
    [fs.readFileSync(path.join(fixtures, "images", "pil_rgb24.bmp")), "bmp"],
    [fs.readFileSync(path.join(fixtures, "images", "plain.ppm")), "netpbm"],
    [ftyp("heic", ["mif1", "heic"]), "heif"], [ftyp("mif1", ["mif1", "heix"]), "heif"],
    [ftyp("mif1", ["mif1", "avif"]), "avif"], [ftyp("isom", ["isom", "mp41"]), "other"],
    [Buffer.from("images/a.jpg 0\nimages/b é.jpg 1\n"), "text"],
    [Buffer.from([0x61, 0x00, 0x62]), "other"], [Buffer.from([0xc3, 0x28, 0x41]), "other"],
  ];
  for (const [bytes, want] of kinds) assert.equal(sniffBytes(bytes), want, `${want}: ${bytes.subarray(0, 12).toString("hex")}`);
  // a character cut by the 4 KiB sample is still text
  const long = Buffer.concat([Buffer.alloc(4095, "a"), Buffer.from("é\n")]);
  fs.writeFileSync(path.join(dir, "list.txt"), long);
  assert.equal(sniffFile(path.join(dir, "list.txt")), "text");
});

test("a bitmap under another name decodes; a HEIC photo is refused with what to do", async () => {
  const dir = tempDir("sniff-decode");
  const c = spec.cases["pil_rgb24.bmp"];
  fs.copyFileSync(path.join(fixtures, "images", "pil_rgb24.bmp"), path.join(dir, "bitmap.jpg"));
  const img = await decodeImageFile(path.join(dir, "bitmap.jpg"), 3);
  assert.deepEqual(Buffer.from(img.data), Buffer.from(c.rgb, "base64"));
  fs.writeFileSync(path.join(dir, "IMG_0001.jpg"), ftyp("heic", ["mif1", "heic"]));
  await assert.rejects(decodeImageFile(path.join(dir, "IMG_0001.jpg"), 3), /HEIC\/HEIF photos \(HEVC\) cannot be decoded here.*convert them to JPEG or PNG/);
});

test("the note for files a folder leaves out counts them by extension, with advice for HEIC and .jfif", () => {
  assert.equal(ignoredFilesNote(["a/notes.txt", "b.TXT", "README"], "photos"),
    "3 files under photos not used (not image files c3gan reads): 2 .txt, 1 without an extension");
  const note = ignoredFilesNote(["IMG_1.HEIC", "IMG_2.heic", "x.jfif"], "photos", "not listed");
  assert.match(note, /^3 files under photos not listed \(not image files c3gan reads\): 2 \.heic, 1 \.jfif; HEIC\/HEIF photos .*; JPEG files named \.jfif/);
});
