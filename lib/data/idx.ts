// IDX files (MNIST, Fashion-MNIST): magic 0x00 0x00 <type> <ndims>, ndims big-endian int32 sizes,
// then the data in row-major order, big-endian for multi-byte types. Gzip is detected from its
// magic bytes, not the file name.
import * as fs from "node:fs";
import * as zlib from "node:zlib";

export interface IdxArray {
  dims: number[];
  /** 0x08 ubyte, 0x09 byte, 0x0b int16, 0x0c int32, 0x0d float32, 0x0e float64 */
  type: number;
  /** decoded values (ubyte data stays a Uint8Array over its own buffer) */
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const TYPE_SIZE: Record<number, number> = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };

export function readIdxFile(file: string): IdxArray {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`c3gan data: cannot read IDX file ${file}: ${(e as Error).message}`);
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = zlib.gunzipSync(buf);
    } catch (e) {
      throw new Error(`c3gan data: IDX file ${file} looks gzipped but does not decompress: ${(e as Error).message}`);
    }
  }
  return parseIdx(buf, file);
}

export function parseIdx(buf: Uint8Array, file: string): IdxArray {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) {
    throw new Error(`c3gan data: ${file} is not an IDX file (magic must start with two zero bytes)`);
  }
  const type = buf[2];
  const ndims = buf[3];
  const size = TYPE_SIZE[type];
  if (size === undefined) throw new Error(`c3gan data: ${file}: unknown IDX data type 0x${type.toString(16)}`);
  if (ndims === 0) throw new Error(`c3gan data: ${file}: IDX file has no dimensions`);
  const header = 4 + 4 * ndims;
  if (buf.length < header) throw new Error(`c3gan data: ${file}: IDX header truncated`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const expected = header + count * size;
  if (buf.length !== expected) {
    throw new Error(
      `c3gan data: ${file}: IDX dims [${dims.join(", ")}] need ${expected} bytes, the file has ${buf.length}` +
        (buf.length < expected ? " (truncated)" : " (trailing data)"),
    );
  }
  let data: IdxArray["data"];
  switch (type) {
    case 0x08:
      data = new Uint8Array(buf.buffer.slice(buf.byteOffset + header, buf.byteOffset + expected));
      break;
    case 0x09:
      data = new Int8Array(buf.buffer.slice(buf.byteOffset + header, buf.byteOffset + expected));
      break;
    default: {
      const out =
        type === 0x0b ? new Int16Array(count) : type === 0x0c ? new Int32Array(count)
          : type === 0x0d ? new Float32Array(count) : new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const o = header + i * size;
        out[i] =
          type === 0x0b ? view.getInt16(o, false) : type === 0x0c ? view.getInt32(o, false)
            : type === 0x0d ? view.getFloat32(o, false) : view.getFloat64(o, false);
      }
      data = out;
    }
  }
  return { dims, type, data };
}

/** Writes an IDX ubyte file (used by tests and tools). */
export function encodeIdxU8(dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

export interface IdxImages {
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** count * height * width * channels bytes, HWC per image, on a SharedArrayBuffer */
  pixels: Uint8Array;
  labels: Int32Array | null;
}

/**
 * Loads an image IDX file (N x H x W ubyte, or N x H x W x C with C 1 or 3) and an optional label
 * file (N labels). Pixels are copied onto a SharedArrayBuffer so loader workers share them.
 */
export function loadIdxImages(imagesFile: string, labelsFile?: string): IdxImages {
  const im = readIdxFile(imagesFile);
  if (im.type !== 0x08) throw new Error(`c3gan data: ${imagesFile}: image IDX data must be unsigned bytes (type 0x08), got 0x${im.type.toString(16)}`);
  const d = im.dims;
  if (!(d.length === 3 || (d.length === 4 && (d[3] === 1 || d[3] === 3)))) {
    throw new Error(`c3gan data: ${imagesFile}: image IDX dims must be N x H x W or N x H x W x C (C 1 or 3), got [${d.join(", ")}]`);
  }
  const [count, height, width] = d;
  if (count === 0 || height === 0 || width === 0) throw new Error(`c3gan data: ${imagesFile} holds no images (dims [${d.join(", ")}])`);
  const channels = (d.length === 4 ? d[3] : 1) as 1 | 3;
  const pixels = new Uint8Array(new SharedArrayBuffer(im.data.length));
  pixels.set(im.data as Uint8Array);
  let labels: Int32Array | null = null;
  if (labelsFile !== undefined) {
    const lb = readIdxFile(labelsFile);
    if (lb.dims.length !== 1) throw new Error(`c3gan data: ${labelsFile}: label IDX must be one-dimensional, got [${lb.dims.join(", ")}]`);
    if (lb.type === 0x0d || lb.type === 0x0e) throw new Error(`c3gan data: ${labelsFile}: labels must be integers, the IDX holds floats`);
    if (lb.dims[0] !== count) {
      throw new Error(`c3gan data: ${labelsFile} holds ${lb.dims[0]} labels but ${imagesFile} holds ${count} images`);
    }
    labels = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const v = lb.data[i];
      if (v < 0) throw new Error(`c3gan data: ${labelsFile}: label ${v} of item ${i} is negative`);
      labels[i] = v;
    }
  }
  return { count, height, width, channels, pixels, labels };
}
