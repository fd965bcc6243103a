// The few protobuf wire-format pieces the TensorBoard event writer needs, and a generic decoder
// for reading them back. Wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit.

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** Builds one message; fields are written in call order (as generated encoders do, by number). */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(b: Uint8Array): void { this.chunks.push(b); this.size += b.length; }

  private tag(field: number, wire: number): void {
    if (!Number.isInteger(field) || field < 1 || field > 0x1fffffff) throw new Error(`protobuf: bad field number ${field}`);
    this.push(encodeVarint(BigInt(field) << 3n | BigInt(wire)));
  }

  /** int32/int64/uint64/bool/enum: negative values take 10 bytes (two's complement), as protobuf does. */
  varint(field: number, value: number | bigint): this {
    let v = typeof value === "bigint" ? value : BigInt(checkInt(value));
    if (v < 0n) v = BigInt.asUintN(64, v);
    if (v >= 1n << 64n) throw new Error(`protobuf: field ${field}: ${value} does not fit 64 bits`);
    this.tag(field, WIRE_VARINT);
    this.push(encodeVarint(v));
    return this;
  }

  double(field: number, value: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(value, 0);
    this.tag(field, WIRE_I64);
    this.push(b);
    return this;
  }

  float(field: number, value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeFloatLE(value, 0);
    this.tag(field, WIRE_I32);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.push(encodeVarint(BigInt(value.length)));
    this.push(value);
    return this;
  }

  string(field: number, value: string): this { return this.bytes(field, Buffer.from(value, "utf8")); }

  message(field: number, msg: ProtoWriter): this { return this.bytes(field, msg.finish()); }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
}

function checkInt(v: number): number {
  if (!Number.isSafeInteger(v)) throw new Error(`protobuf: varint value ${v} is not a safe integer`);
  return v;
}

export function encodeVarint(v: bigint): Uint8Array {
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Uint8Array.from(out);
}

export interface ProtoField {
  field: number;
  wire: number;
  /** varint: the unsigned 64-bit value; I64/I32: the raw little-endian bytes; LEN: the payload */
  varint?: bigint;
  bytes?: Uint8Array;
}

/** Splits one message into its fields (no schema), rejecting truncation and unknown wire types. */
export function decodeFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  const readVarint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= buf.length) throw new Error("protobuf: truncated varint");
      const b = buf[pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return BigInt.asUintN(64, v);
    }
    throw new Error("protobuf: varint longer than 10 bytes");
  };
  const take = (n: number): Uint8Array => {
    if (pos + n > buf.length) throw new Error(`protobuf: field runs ${pos + n - buf.length} bytes past the end`);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  while (pos < buf.length) {
    const key = readVarint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new Error("protobuf: field number 0");
    switch (wire) {
      case WIRE_VARINT: out.push({ field, wire, varint: readVarint() }); break;
      case WIRE_I64: out.push({ field, wire, bytes: take(8) }); break;
      case WIRE_I32: out.push({ field, wire, bytes: take(4) }); break;
      case WIRE_LEN: out.push({ field, wire, bytes: take(Number(readVarint())) }); break;
      default: throw new Error(`protobuf: unsupported wire type ${wire} (field ${field})`);
    }
  }
  return out;
}

function payload(f: ProtoField, wire: number, what: string): DataView {
  if (f.wire !== wire || !f.bytes) throw new Error(`protobuf: field ${f.field} has wire type ${f.wire}, expected ${what}`);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength);
}

/** Typed views of decoded fields; each checks the wire type. */
export function fieldDouble(f: ProtoField): number { return payload(f, WIRE_I64, "a double").getFloat64(0, true); }
export function fieldFloat(f: ProtoField): number { return payload(f, WIRE_I32, "a float").getFloat32(0, true); }
export function fieldBytes(f: ProtoField): Uint8Array { payload(f, WIRE_LEN, "bytes"); return f.bytes!; }
export function fieldString(f: ProtoField): string { return Buffer.from(fieldBytes(f)).toString("utf8"); }
export function fieldInt64(f: ProtoField): bigint {
  if (f.wire !== WIRE_VARINT || f.varint === undefined) throw new Error(`protobuf: field ${f.field} has wire type ${f.wire}, expected a varint`);
  return BigInt.asIntN(64, f.varint);
}
