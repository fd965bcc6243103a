// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, N
// bytes of JSON header ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}, padded with spaces), then the tensors' bytes, offsets relative to the end of
// the header. We write F32, and I64 for the integer tensors of PyTorch state dicts (BatchNorm's
// num_batches_tracked); we read every float and integer dtype but the 8-bit floats, each converted
// to float32 values (c3gan's tensors are float32; an int64 count stays exact to 2^24). The reader
// checks everything the reference implementation checks: bounded header, offsets contiguous from
// 0 with no gaps or overlaps, sizes equal to shape x dtype size, nothing after the last tensor.
import * as fs from "node:fs";
import * as os from "node:os";
import { writeFileAtomic, writeFileAtomicSync, AtomicWriteHooks } from "./atomic";

/**
 * A tensor as c3gan writes or has read it: `data` holds float32 values either way. "I64" marks an
 * integer tensor (whole values, written as little-endian int64, as PyTorch keeps
 * num_batches_tracked); a file's other integer dtypes read as "I64" too, its float dtypes as "F32".
 */
export interface TensorRecord {
  dtype: RecordDtype;
  shape: number[];
  data: Float32Array;
}

export type RecordDtype = "F32" | "I64";

export type TensorMap = Map<string, TensorRecord> | Record<string, TensorRecord>;

export interface SafetensorsFile {
  tensors: Map<string, TensorRecord>;
  metadata: Record<string, string>;
  /** tensors left out because of their dtype (only with skipUnsupported) */
  skipped: { name: string; dtype: string; shape: number[] }[];
}

export interface HeaderEntry {
  dtype: string;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** in file order of their data */
  entries: Map<string, HeaderEntry>;
  metadata: Record<string, string>;
  /** byte offset of the data buffer in the file (8 + header length) */
  dataStart: number;
}

export interface ReadOptions {
  /** leave out tensors of dtypes c3gan does not read (the 8-bit floats) instead of failing */
  skipUnsupported?: boolean;
}

/** The reference implementation's limit (MAX_HEADER_SIZE): a bad length must not allocate gigabytes. */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
// element i of an integer tensor's little-endian bytes, as a number
const INTEGER_READERS: Record<string, (b: Buffer, i: number) => number> = {
  BOOL: (b, i) => b[i],
  U8: (b, i) => b[i],
  I8: (b, i) => b.readInt8(i),
  I16: (b, i) => b.readInt16LE(2 * i),
  U16: (b, i) => b.readUInt16LE(2 * i),
  I32: (b, i) => b.readInt32LE(4 * i),
  U32: (b, i) => b.readUInt32LE(4 * i),
  I64: (b, i) => Number(b.readBigInt64LE(8 * i)),
  U64: (b, i) => Number(b.readBigUInt64LE(8 * i)),
};
const FLOATS = ["F32", "F16", "BF16", "F64"];
const READABLE = [...FLOATS, ...Object.keys(INTEGER_READERS)];
const WRITTEN_BYTES: Record<RecordDtype, number> = { F32: 4, I64: 8 };
const LITTLE_ENDIAN = os.endianness() === "LE";

function bad(source: string, what: string): Error {
  return new Error(`c3gan: ${source} is not a valid safetensors file: ${what}`);
}

function numel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isDim(d: unknown): d is number {
  return typeof d === "number" && Number.isSafeInteger(d) && d >= 0;
}

function entriesOf(tensors: TensorMap): [string, TensorRecord][] {
  return tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
}

/** Checkpoint metadata as strings (safetensors metadata values must be strings). */
export function checkpointMetadata(
  config: unknown, epoch: number, step: number, version: string, extra: Record<string, string> = {},
): Record<string, string> {
  return {
    format: "c3gan-checkpoint",
    c3gan_version: version,
    epoch: String(epoch),
    step: String(step),
    config: JSON.stringify(config),
    ...extra,
  };
}

/** Serialises tensors (in their iteration order) and metadata into one buffer. */
export function encodeSafetensors(tensors: TensorMap, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new Error(`c3gan: safetensors metadata "${k}" must be a string, got ${typeof v}`);
    }
    meta[k] = v;
  }
  if (Object.keys(meta).length > 0) header.__metadata__ = meta;
  const list = entriesOf(tensors);
  let offset = 0;
  for (const [name, t] of list) {
    if (name === "__metadata__" || name.length === 0) throw new Error(`c3gan: invalid tensor name ${JSON.stringify(name)}`);
    if (Object.prototype.hasOwnProperty.call(header, name)) throw new Error(`c3gan: duplicate tensor name "${name}"`);
    if (t.dtype !== "F32" && t.dtype !== "I64") {
      throw new Error(`c3gan: tensor "${name}": only F32 and I64 tensors are written, got ${String(t.dtype)}`);
    }
    if (!(t.data instanceof Float32Array)) throw new Error(`c3gan: tensor "${name}": data must be a Float32Array`);
    if (t.dtype === "I64") {
      const i = t.data.findIndex((v) => !Number.isInteger(v) || v >= 2 ** 63 || v < -(2 ** 63));
      if (i >= 0) throw new Error(`c3gan: tensor "${name}": I64 data must be whole numbers within int64, got ${t.data[i]} at element ${i}`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every(isDim)) {
      throw new Error(`c3gan: tensor "${name}": shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
    }
    if (numel(t.shape) !== t.data.length) {
      throw new Error(`c3gan: tensor "${name}": shape [${t.shape}] has ${numel(t.shape)} elements but data has ${t.data.length}`);
    }
    const end = offset + t.data.length * WRITTEN_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  // Pad with spaces so the data starts 8-byte aligned (as the reference writer does).
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.allocUnsafe(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const [, t] of list) {
    if (t.dtype === "I64") {
      for (let i = 0; i < t.data.length; i++) out.writeBigInt64LE(BigInt(t.data[i]), pos + 8 * i);
    } else if (LITTLE_ENDIAN) {
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
    } else {
      for (let i = 0; i < t.data.length; i++) out.writeFloatLE(t.data[i], pos + 4 * i);
    }
    pos += t.data.length * WRITTEN_BYTES[t.dtype];
  }
  return out;
}

/** Parses and validates the header; `fileSize` is the whole file's length. */
export function parseHeader(prefix: Buffer, fileSize: number, source: string): SafetensorsHeader {
  if (fileSize < 8 || prefix.length < 8) throw bad(source, `${fileSize} bytes is too short for the 8-byte header length`);
  const n64 = prefix.readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw bad(source, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(n64);
  if (n < 2) throw bad(source, `header length ${n} is too small for a JSON object`);
  if (8 + n > fileSize) throw bad(source, `header length ${n} runs past the end of the file (${fileSize} bytes; truncated?)`);
  if (prefix.length < 8 + n) throw bad(source, "internal: header bytes not supplied");
  const text = prefix.subarray(8, 8 + n).toString("utf8");
  if (text[0] !== "{") throw bad(source, "the header does not start with '{'");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(source, `the header is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw bad(source, "the header is not a JSON object");
  const dataStart = 8 + n;
  const dataLen = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const raw: [string, HeaderEntry][] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(source, "__metadata__ is not an object");
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== "string") throw bad(source, `__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (typeof e !== "object" || e === null) throw bad(source, `tensor "${name}": entry is not an object`);
    if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BYTES)) {
      throw bad(source, `tensor "${name}": unknown dtype ${JSON.stringify(e.dtype)}`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every(isDim)) {
      throw bad(source, `tensor "${name}": shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isDim) || off[1] < off[0]) {
      throw bad(source, `tensor "${name}": data_offsets ${JSON.stringify(off)} is not [begin, end] with begin <= end`);
    }
    const want = numel(e.shape) * DTYPE_BYTES[e.dtype];
    if (off[1] - off[0] !== want) {
      throw bad(source, `tensor "${name}": ${e.dtype} [${e.shape}] needs ${want} bytes but data_offsets [${off}] span ${off[1] - off[0]}`);
    }
    raw.push([name, { dtype: e.dtype, shape: e.shape.slice(), dataOffsets: [off[0], off[1]] }]);
  }
  // Stable sort by begin, then by end so that zero-size tensors sit before data at the same offset.
  raw.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let expect = 0;
  for (const [name, e] of raw) {
    const [b, end] = e.dataOffsets;
    if (b < expect) throw bad(source, `tensor "${name}": data_offsets [${b}, ${end}] overlap the previous tensor (which ends at ${expect})`);
    if (b > expect) throw bad(source, `tensor "${name}": data_offsets [${b}, ${end}] leave a gap after offset ${expect}`);
    expect = end;
  }
  if (expect > dataLen) throw bad(source, `tensor data needs ${expect} bytes after the header but the file has ${dataLen} (truncated?)`);
  if (expect < dataLen) throw bad(source, `${dataLen - expect} unexpected bytes after the last tensor`);
  return { entries: new Map(raw), metadata, dataStart };
}

function toF32(buf: Buffer, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  switch (dtype) {
    case "F32":
      if (LITTLE_ENDIAN) Buffer.from(out.buffer).set(buf);
      else for (let i = 0; i < count; i++) out[i] = buf.readFloatLE(4 * i);
      break;
    case "F64":
      for (let i = 0; i < count; i++) out[i] = buf.readDoubleLE(8 * i);
      break;
    case "BF16": {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = buf.readUInt16LE(2 * i) << 16;
      break;
    }
    case "F16":
      for (let i = 0; i < count; i++) out[i] = halfToFloat(buf.readUInt16LE(2 * i));
      break;
    default: {
      const read = INTEGER_READERS[dtype];
      if (!read) throw new Error(`internal: no conversion for ${dtype}`);
      for (let i = 0; i < count; i++) out[i] = read(buf, i);
    }
  }
  return out;
}

/** IEEE binary16 to a number (exact: every half is a float). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Parses a whole safetensors image held in memory. */
export function decodeSafetensors(buf: Buffer, source = "<buffer>", opts: ReadOptions = {}): SafetensorsFile {
  const header = parseHeader(buf, buf.length, source);
  const tensors = new Map<string, TensorRecord>();
  const skipped: SafetensorsFile["skipped"] = [];
  for (const [name, e] of header.entries) {
    if (!READABLE.includes(e.dtype)) {
      if (opts.skipUnsupported) { skipped.push({ name, dtype: e.dtype, shape: e.shape }); continue; }
      throw new Error(`c3gan: ${source}: tensor "${name}" has dtype ${e.dtype}; c3gan reads only ` +
        `${READABLE.join(", ")} (pass skipUnsupported to leave such tensors out)`);
    }
    const bytes = buf.subarray(header.dataStart + e.dataOffsets[0], header.dataStart + e.dataOffsets[1]);
    const dtype: RecordDtype = e.dtype in INTEGER_READERS ? "I64" : "F32";
    tensors.set(name, { dtype, shape: e.shape, data: toF32(bytes, e.dtype, numel(e.shape)) });
  }
  return { tensors, metadata: header.metadata, skipped };
}

/** Reads only the header (cheap on large checkpoints). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 8));
    fs.readSync(fd, head, 0, head.length, 0);
    if (size < 8) return parseHeader(head, size, file);
    const n = head.readBigUInt64LE(0);
    const want = n <= BigInt(Math.min(MAX_HEADER_BYTES, size - 8)) ? Number(n) : 0;
    const prefix = Buffer.alloc(8 + want);
    head.copy(prefix);
    if (want > 0) fs.readSync(fd, prefix, 8, want, 8);
    return parseHeader(prefix, size, file);
  } finally {
    fs.closeSync(fd);
  }
}

export function readSafetensorsSync(file: string, opts: ReadOptions = {}): SafetensorsFile {
  return decodeSafetensors(fs.readFileSync(file), file, opts);
}

export async function readSafetensors(file: string, opts: ReadOptions = {}): Promise<SafetensorsFile> {
  return decodeSafetensors(await fs.promises.readFile(file), file, opts);
}

/** Writes atomically: a crash mid-write leaves the previous file as it was. */
export async function writeSafetensors(
  file: string, tensors: TensorMap, metadata: Record<string, string> = {}, hooks: AtomicWriteHooks = {},
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata), hooks);
}

export function writeSafetensorsSync(
  file: string, tensors: TensorMap, metadata: Record<string, string> = {}, hooks: AtomicWriteHooks = {},
): void {
  writeFileAtomicSync(file, encodeSafetensors(tensors, metadata), hooks);
}
