// Reads torch.save checkpoints (the zip format, PyTorch >= 1.6) without PyTorch: the archive's
// `<archive>/data.pkl` through the safe unpickler, its tensors resolved against the storages in
// `<archive>/data/<key>`, converted to Float32Array (or BigInt64Array for int64) with their
// strides honoured. The legacy pre-1.6 format (a bare pickle stream, or a tar) is refused with
// how to convert it.
import * as fs from "node:fs";
import * as os from "node:os";
import { halfToFloat } from "./safetensors";
import { DTYPE_SIZE, storagesOf, StorageRef, TorchDType, TorchTensor, unpickle, UnpickleLimits } from "./unpickle";
import { BufferSource, ByteSource, FileSource, ZipReader } from "./zip";

export { TorchTensor } from "./unpickle";
export type { TorchDType } from "./unpickle";

/** data.pkl of a state dict is a few bytes per tensor; anything near this is not a checkpoint. */
export const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

export interface StateTensor {
  /** the dtype in the file (data is converted to float32) */
  dtype: TorchDType;
  shape: number[];
  data: Float32Array;
}

export interface ReadTorchOptions {
  limits?: Partial<UnpickleLimits>;
}

interface StorageBytes {
  bytes: Buffer;
  littleEndian: boolean;
  source: string;
}

// The bytes behind each storage of a checkpoint read here (kept off the descriptors, which the
// unpickler makes without knowing about archives).
const storageBytes = new WeakMap<StorageRef, StorageBytes>();
const HOST_LE = os.endianness() === "LE";

const LEGACY_HINT = "it was written by torch.save in the legacy format (PyTorch < 1.6, or " +
  "_use_new_zipfile_serialization=False). c3gan reads the zip format; convert it with PyTorch: " +
  "python -c \"import torch, sys; torch.save(torch.load(sys.argv[1], map_location='cpu'), sys.argv[2])\" old.pt new.pt";

function sniff(src: ByteSource): void {
  const head = src.read(0, Math.min(src.size, 512));
  if (head.length >= 4 && head.readUInt32LE(0) === 0x04034b50) return;
  if (head.length >= 2 && head[0] === 0x80 && head[1] <= 5) throw new Error(`${src.name}: ${LEGACY_HINT}`);
  if (head.length >= 262 && head.subarray(257, 262).toString("latin1") === "ustar") {
    throw new Error(`${src.name}: a tar archive; ${LEGACY_HINT}`);
  }
  throw new Error(`${src.name} is not a PyTorch checkpoint (no zip signature; ${src.size} bytes)`);
}

function archivePrefix(zip: ZipReader, name: string): string {
  const pkl = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length === 1) return pkl[0].slice(0, -"/data.pkl".length);
  if (pkl.length > 1) throw new Error(`${name}: more than one data.pkl (${pkl.join(", ")})`);
  const jit = zip.names().some((n) => /^[^/]+\/(constants\.pkl|code\/)/.test(n));
  throw new Error(`${name}: the zip has no <archive>/data.pkl, so it is not a torch.save checkpoint` +
    (jit ? " (it looks like a TorchScript archive from torch.jit.save: save its state_dict() with torch.save instead)" : ""));
}

function decode(src: ByteSource, opts: ReadTorchOptions): unknown {
  sniff(src);
  const zip = ZipReader.from(src);
  const prefix = archivePrefix(zip, src.name);
  let littleEndian = true;
  const bo = `${prefix}/byteorder`;
  if (zip.has(bo)) {
    const s = zip.read(bo, 16).toString("latin1").trim();
    if (s !== "little" && s !== "big") throw new Error(`${src.name}: ${bo} says "${s}" (expected little or big)`);
    littleEndian = s === "little";
  }
  const root = unpickle(zip.read(`${prefix}/data.pkl`, MAX_PICKLE_BYTES), { source: `${src.name}:${prefix}/data.pkl`, limits: opts.limits });
  for (const s of storagesOf(root)) {
    const entry = `${prefix}/data/${s.key}`;
    if (!zip.has(entry)) throw new Error(`${src.name}: storage ${s.key} (${s.dtype} x ${s.numel}) has no entry ${entry}`);
    const need = s.numel * DTYPE_SIZE[s.dtype];
    const size = zip.entry(entry).size;
    if (size < need) {
      throw new Error(`${src.name}: ${entry} holds ${size} bytes, but storage ${s.key} is ${s.dtype} x ${s.numel} = ${need} bytes`);
    }
    storageBytes.set(s, { bytes: zip.read(entry), littleEndian, source: `${src.name}:${entry}` });
  }
  return root;
}

function topLevel(root: unknown, name: string): Map<string, unknown> {
  if (!(root instanceof Map)) throw new Error(`${name}: the saved object is not a dict (torch.save of a ${root === null ? "None" : typeof root})`);
  for (const k of root.keys()) {
    if (typeof k !== "string") throw new Error(`${name}: the saved dict has a non-string key ${String(k)}`);
  }
  return root as Map<string, unknown>;
}

/**
 * The top-level dict of a torch.save file (e.g. {netG: OrderedDict, netD: OrderedDict}, or a
 * state dict itself). Storages are read into memory; tensors convert on demand.
 */
export function readTorchCheckpoint(file: string, opts: ReadTorchOptions = {}): Map<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  const src = new FileSource(file);
  try {
    return topLevel(decode(src, opts), file);
  } finally {
    src.close();
  }
}

/** The same from bytes in memory. */
export function decodeTorchCheckpoint(buf: Buffer, name = "<buffer>", opts: ReadTorchOptions = {}): Map<string, unknown> {
  return topLevel(decode(new BufferSource(buf, name), opts), name);
}

function bytesOf(t: TorchTensor): StorageBytes {
  const b = storageBytes.get(t.storage);
  if (!b) throw new Error(`tensor of storage ${t.storage.key} does not come from a checkpoint read by readTorchCheckpoint`);
  return b;
}

function isContiguous(t: TorchTensor): boolean {
  let expect = 1;
  for (let d = t.shape.length - 1; d >= 0; d--) {
    if (t.shape[d] !== 1 && t.stride[d] !== expect) return false;
    expect *= t.shape[d];
  }
  return true;
}

/** Calls fn(i, storageIndex) for each element in row-major order of the view. */
function forEachIndex(t: TorchTensor, fn: (i: number, at: number) => void): void {
  const n = t.numel;
  if (n === 0) return;
  if (isContiguous(t)) {
    for (let i = 0; i < n; i++) fn(i, t.offset + i);
    return;
  }
  const dims = t.shape.length;
  const counter = new Array<number>(dims).fill(0);
  let at = t.offset;
  for (let i = 0; i < n; i++) {
    fn(i, at);
    for (let d = dims - 1; d >= 0; d--) {
      counter[d]++;
      at += t.stride[d];
      if (counter[d] < t.shape[d]) break;
      at -= t.stride[d] * t.shape[d];
      counter[d] = 0;
    }
  }
}

const scratchU32 = new Uint32Array(1);
const scratchF32 = new Float32Array(scratchU32.buffer);

/** The tensor's values as float32, row-major (float64 / int64 values round to nearest). */
export function tensorToFloat32(t: TorchTensor): Float32Array {
  const { bytes, littleEndian: le } = bytesOf(t);
  const n = t.numel;
  const out = new Float32Array(n);
  if (t.dtype === "float32" && le === HOST_LE && isContiguous(t)) {
    new Uint8Array(out.buffer).set(bytes.subarray(t.offset * 4, (t.offset + n) * 4));
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let get: (at: number) => number;
  switch (t.dtype) {
    case "float32": get = (a) => dv.getFloat32(a * 4, le); break;
    case "float64": get = (a) => dv.getFloat64(a * 8, le); break;
    case "float16": get = (a) => halfToFloat(dv.getUint16(a * 2, le)); break;
    case "bfloat16": get = (a) => ((scratchU32[0] = dv.getUint16(a * 2, le) << 16), scratchF32[0]); break;
    case "int64": get = (a) => Number(dv.getBigInt64(a * 8, le)); break;
    case "int32": get = (a) => dv.getInt32(a * 4, le); break;
    case "int16": get = (a) => dv.getInt16(a * 2, le); break;
    case "int8": get = (a) => dv.getInt8(a); break;
    case "uint8": get = (a) => dv.getUint8(a); break;
    case "bool": get = (a) => (dv.getUint8(a) ? 1 : 0); break;
  }
  forEachIndex(t, (i, a) => (out[i] = get(a)));
  return out;
}

/** An int64 tensor's exact values, row-major. */
export function tensorToBigInt64(t: TorchTensor): BigInt64Array {
  if (t.dtype !== "int64") throw new Error(`tensorToBigInt64: the tensor is ${t.dtype}, not int64`);
  const { bytes, littleEndian: le } = bytesOf(t);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out = new BigInt64Array(t.numel);
  forEachIndex(t, (i, a) => (out[i] = dv.getBigInt64(a * 8, le)));
  return out;
}

/** A value that should be a state dict (a dict of tensors), checked; `what` names it in errors. */
export function asStateDict(v: unknown, what: string): Map<string, TorchTensor> {
  if (!(v instanceof Map)) throw new Error(`${what} is not a state dict (a dict of tensors)`);
  for (const [k, t] of v) {
    if (typeof k !== "string") throw new Error(`${what}: key ${String(k)} is not a string`);
    if (!(t instanceof TorchTensor)) throw new Error(`${what}: "${k}" is not a tensor`);
  }
  return v as Map<string, TorchTensor>;
}

/** A state dict's tensors as float32 arrays with their shapes. */
export function stateDictArrays(v: unknown, what: string): Map<string, StateTensor> {
  const out = new Map<string, StateTensor>();
  for (const [k, t] of asStateDict(v, what)) out.set(k, { dtype: t.dtype, shape: t.shape.slice(), data: tensorToFloat32(t) });
  return out;
}
