// A minimal, bounded ZIP reader for torch.save's archives (PyTorch >= 1.6). torch writes stored
// (uncompressed) entries, sets the data-descriptor flag (sizes live only in the central
// directory) and always adds ZIP64 end records; deflated entries (a re-zipped checkpoint) are
// accepted too. Everything is read from the central directory and checked against the file
// before any data is touched: offsets and sizes inside the file, local headers that agree,
// no duplicate names, a bounded entry count. Entry data is read (and its CRC-32 checked) only
// when asked for.
import * as fs from "node:fs";
import { constants as bufferConstants } from "node:buffer";
import * as zlib from "node:zlib";

/** Random access to the bytes of a file or buffer. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** exactly `length` bytes at `offset` (throws past the end) */
  read(offset: number, length: number): Buffer;
  close(): void;
}

export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(private readonly buf: Buffer, readonly name = "<buffer>") {
    this.size = buf.length;
  }
  read(offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new Error(`${this.name}: read of ${length} bytes at ${offset} is past the end (${this.size} bytes)`);
    }
    return this.buf.subarray(offset, offset + length);
  }
  close(): void {}
}

export class FileSource implements ByteSource {
  readonly size: number;
  private fd: number | null;
  constructor(readonly name: string) {
    this.fd = fs.openSync(name, "r");
    try {
      this.size = fs.fstatSync(this.fd).size;
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }
  read(offset: number, length: number): Buffer {
    if (this.fd === null) throw new Error(`${this.name}: read after close`);
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new Error(`${this.name}: read of ${length} bytes at ${offset} is past the end (${this.size} bytes)`);
    }
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) throw new Error(`${this.name}: unexpected end of file at ${offset + done}`);
      done += n;
    }
    return out;
  }
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** where the entry's (compressed) bytes begin */
  dataOffset: number;
}

/** No real archive comes near this; a corrupt count must not make us loop for hours. */
export const MAX_ZIP_ENTRIES = 1_000_000;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

function u64(buf: Buffer, at: number, what: string, source: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${source}: zip ${what} ${v} is too large`);
  return Number(v);
}

export class ZipReader {
  private readonly byName = new Map<string, ZipEntry>();

  private constructor(readonly source: ByteSource) {}

  /** Opens a file (kept open for lazy reads until close()). */
  static open(file: string): ZipReader {
    const src = new FileSource(file);
    try {
      return ZipReader.from(src);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static fromBuffer(buf: Buffer, name = "<buffer>"): ZipReader {
    return ZipReader.from(new BufferSource(buf, name));
  }

  static from(src: ByteSource): ZipReader {
    const z = new ZipReader(src);
    z.parse();
    return z;
  }

  private fail(what: string): never {
    throw new Error(`${this.source.name} is not a valid zip archive: ${what}`);
  }

  private parse(): void {
    const src = this.source;
    if (src.size < EOCD_SIZE) this.fail(`${src.size} bytes is too short (truncated?)`);
    const tailLen = Math.min(src.size, EOCD_SIZE + MAX_COMMENT);
    const tailStart = src.size - tailLen;
    const tail = src.read(tailStart, tailLen);
    // the end record is the last signature whose comment runs exactly to the end of the file
    let eocd = -1;
    for (let p = tailLen - EOCD_SIZE; p >= 0; p--) {
      if (tail.readUInt32LE(p) === SIG_EOCD && p + EOCD_SIZE + tail.readUInt16LE(p + 20) === tailLen) {
        eocd = p;
        break;
      }
    }
    if (eocd < 0) this.fail("no end-of-central-directory record (the file is truncated or not a zip)");
    const eocdAbs = tailStart + eocd;
    let disk = tail.readUInt16LE(eocd + 4);
    let cdDisk = tail.readUInt16LE(eocd + 6);
    let onDisk = tail.readUInt16LE(eocd + 8);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    let cdLimit = eocdAbs; // the central directory must end before the end records

    // ZIP64: a locator right before the end record points at the 64-bit end record
    if (eocdAbs >= 20 && src.read(eocdAbs - 20, 4).readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
      const loc = src.read(eocdAbs - 20, 20);
      if (loc.readUInt32LE(4) !== 0 || loc.readUInt32LE(16) > 1) this.fail("multi-disk archives are not supported");
      const at = u64(loc, 8, "ZIP64 end record offset", src.name);
      if (at + 56 > eocdAbs - 20) this.fail(`ZIP64 end record at ${at} runs past its locator`);
      const rec = src.read(at, 56);
      if (rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) this.fail(`no ZIP64 end record at ${at}`);
      disk = rec.readUInt32LE(16);
      cdDisk = rec.readUInt32LE(20);
      onDisk = u64(rec, 24, "entry count", src.name);
      count = u64(rec, 32, "entry count", src.name);
      cdSize = u64(rec, 40, "central directory size", src.name);
      cdOffset = u64(rec, 48, "central directory offset", src.name);
      cdLimit = at;
    } else if (cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // (a count of 0xffff alone can be real: 65535 entries fit the classic record)
      this.fail("the end record asks for ZIP64 but there is no ZIP64 locator");
    }
    if (disk !== 0 || cdDisk !== 0 || onDisk !== count) this.fail("multi-disk archives are not supported");
    if (count > MAX_ZIP_ENTRIES) this.fail(`${count} entries is more than the ${MAX_ZIP_ENTRIES} allowed`);
    if (cdOffset + cdSize > cdLimit) {
      this.fail(`central directory (${cdSize} bytes at ${cdOffset}) runs past its end records at ${cdLimit}`);
    }
    if (count * 46 > cdSize) this.fail(`${count} entries cannot fit in a ${cdSize}-byte central directory`);

    const cd = src.read(cdOffset, cdSize);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cd.readUInt32LE(p) !== SIG_CENTRAL) this.fail(`central directory entry ${i} at ${cdOffset + p} is damaged`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc32 = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const startDisk = cd.readUInt16LE(p + 34);
      let local = cd.readUInt32LE(p + 42);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) this.fail(`central directory entry ${i} runs past the directory`);
      const nameBytes = cd.subarray(p + 46, p + 46 + nameLen);
      const name = nameBytes.toString(flags & 0x800 ? "utf8" : "latin1");
      const where = `entry "${name}"`;
      // ZIP64 extended information: 8-byte values for exactly the saturated fields, in order
      const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
      for (let q = 0; q + 4 <= extra.length;) {
        const id = extra.readUInt16LE(q);
        const len = extra.readUInt16LE(q + 2);
        if (q + 4 + len > extra.length) this.fail(`${where}: extra field runs past its end`);
        if (id === 0x0001) {
          let r = q + 4;
          const take = (what: string): number => {
            if (r + 8 > q + 4 + len) this.fail(`${where}: ZIP64 extra field is too short for the ${what}`);
            const v = u64(extra, r, what, src.name);
            r += 8;
            return v;
          };
          if (size === 0xffffffff) size = take("size");
          if (compressedSize === 0xffffffff) compressedSize = take("compressed size");
          if (local === 0xffffffff) local = take("local header offset");
        }
        q += 4 + len;
      }
      if (startDisk !== 0 && startDisk !== 0xffff) this.fail(`${where}: multi-disk archives are not supported`);
      if (flags & 0x41) this.fail(`${where} is encrypted`);
      if (method !== 0 && method !== 8) this.fail(`${where} uses compression method ${method} (only stored and deflate are supported)`);
      if (method === 0 && compressedSize !== size) this.fail(`${where} is stored but its sizes differ (${compressedSize} vs ${size})`);
      if (this.byName.has(name)) this.fail(`duplicate entry "${name}"`);

      // the local header must agree on the name; the data must end before the central directory
      if (local + 30 > cdOffset) this.fail(`${where}: local header offset ${local} is past the data area`);
      const lh = src.read(local, 30);
      if (lh.readUInt32LE(0) !== SIG_LOCAL) this.fail(`${where}: no local header at ${local}`);
      const lName = lh.readUInt16LE(26);
      const lExtra = lh.readUInt16LE(28);
      const dataOffset = local + 30 + lName + lExtra;
      if (lName !== nameLen || dataOffset > cdOffset || !src.read(local + 30, lName).equals(nameBytes)) {
        this.fail(`${where}: its local header at ${local} does not match the central directory`);
      }
      if (dataOffset + compressedSize > cdOffset) {
        this.fail(`${where}: ${compressedSize} bytes at ${dataOffset} run past the data area (ends at ${cdOffset}; truncated?)`);
      }
      if (size > bufferConstants.MAX_LENGTH) this.fail(`${where}: ${size} bytes is larger than a Buffer can hold`);
      this.byName.set(name, { name, method, compressedSize, size, crc32, dataOffset });
      p = end;
    }
  }

  /** Entry names in central-directory order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  entry(name: string): ZipEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`${this.source.name}: the archive has no entry "${name}"`);
    return e;
  }

  /** An entry's uncompressed bytes, CRC-checked. `maxBytes` bounds what a caller is willing to hold. */
  read(nameOrEntry: string | ZipEntry, maxBytes = bufferConstants.MAX_LENGTH): Buffer {
    const e = typeof nameOrEntry === "string" ? this.entry(nameOrEntry) : nameOrEntry;
    const where = `${this.source.name}: entry "${e.name}"`;
    if (e.size > maxBytes) throw new Error(`${where} is ${e.size} bytes, more than the ${maxBytes} allowed`);
    const raw = this.source.read(e.dataOffset, e.compressedSize);
    let data: Buffer;
    if (e.method === 0) {
      data = raw;
    } else {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        throw new Error(`${where}: cannot inflate: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (data.length !== e.size) throw new Error(`${where}: inflated to ${data.length} bytes, the directory says ${e.size}`);
    }
    const crc = zlib.crc32(data) >>> 0;
    if (crc !== e.crc32) {
      throw new Error(`${where}: CRC-32 ${crc.toString(16)} does not match the directory's ${e.crc32.toString(16)} (corrupt file)`);
    }
    return data;
  }

  close(): void {
    this.source.close();
  }
}
