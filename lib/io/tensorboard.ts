// TensorBoard event files without TensorFlow: TFRecord framing (uint64 LE length, masked
// CRC-32C of the length bytes, the data, masked CRC-32C of the data) around serialised
// tensorflow.Event protos:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//   Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
// The first record is an Event with file_version "brain.Event:2", as TensorFlow writes it.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { maskedCrc32c } from "./crc32c";
import {
  ProtoWriter, decodeFields, fieldBytes, fieldDouble, fieldFloat, fieldInt64, fieldString, ProtoField,
} from "./protobuf";

export const FILE_VERSION = "brain.Event:2";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface SummaryWriterOptions {
  /** flush queued events when the oldest is this old (checked on each add); default 10 s */
  flushSecs?: number;
  /** flush when this many bytes are queued; default 1 MiB */
  maxQueueBytes?: number;
  /** appended to the file name (e.g. ".eval") */
  filenameSuffix?: string;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function frameRecord(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

type Step = number | bigint;

function checkStep(step: Step): bigint {
  if (typeof step === "bigint") return step;
  if (!Number.isSafeInteger(step)) throw new Error(`c3gan: SummaryWriter: step must be an integer, got ${step}`);
  return BigInt(step);
}

function eventBytes(wallTime: number, step: bigint | null, fill: (e: ProtoWriter) => void): Uint8Array {
  const e = new ProtoWriter().double(1, wallTime);
  if (step !== null) e.varint(2, step);
  fill(e);
  return e.finish();
}

let fileCounter = 0;

function openEventFile(logdir: string, suffix: string): { fd: number; file: string } {
  const secs = String(Math.floor(Date.now() / 1000)).padStart(10, "0");
  const host = os.hostname().replace(/[/\\]/g, "_");
  // "wx": never append to another writer's file; the counter makes names unique per process.
  for (;;) {
    const file = path.join(logdir, `events.out.tfevents.${secs}.${host}.${process.pid}.${fileCounter++}${suffix}`);
    try {
      return { fd: fs.openSync(file, "wx", 0o644), file };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new Error(`c3gan: cannot create TensorBoard event file in ${logdir}: ${(e as Error).message}`);
      }
    }
  }
}

/** Writes one event file in `logdir`, in the shape TensorBoard (and torch's SummaryWriter) use. */
export class SummaryWriter {
  readonly logdir: string;
  readonly file: string;
  private fd: number | null;
  private queue: Buffer[] = [];
  private queued = 0;
  private oldest = 0;
  private readonly flushMs: number;
  private readonly maxQueueBytes: number;
  private readonly onExit = () => this.flush();

  constructor(logdir: string, opts: SummaryWriterOptions = {}) {
    this.logdir = logdir;
    this.flushMs = (opts.flushSecs ?? 10) * 1000;
    this.maxQueueBytes = opts.maxQueueBytes ?? 1 << 20;
    fs.mkdirSync(logdir, { recursive: true });
    const opened = openEventFile(logdir, opts.filenameSuffix ?? "");
    this.fd = opened.fd;
    this.file = opened.file;
    this.push(eventBytes(Date.now() / 1000, 0n, (e) => e.string(3, FILE_VERSION)));
    this.flush();
    process.on("exit", this.onExit);
  }

  get closed(): boolean { return this.fd === null; }

  private push(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`c3gan: SummaryWriter for ${this.file} is closed`);
    const rec = frameRecord(event);
    if (this.queue.length === 0) this.oldest = Date.now();
    this.queue.push(rec);
    this.queued += rec.length;
    if (this.queued >= this.maxQueueBytes || Date.now() - this.oldest >= this.flushMs) this.flush();
  }

  addScalar(tag: string, value: number, step: Step, wallTime = Date.now() / 1000): void {
    if (typeof tag !== "string" || tag === "") throw new Error("c3gan: SummaryWriter.addScalar: tag must be a non-empty string");
    if (typeof value !== "number") throw new Error(`c3gan: SummaryWriter.addScalar(${tag}): value must be a number`);
    const v = new ProtoWriter().string(1, tag).float(2, value);
    this.push(eventBytes(wallTime, checkStep(step), (e) => e.message(5, new ProtoWriter().message(1, v))));
  }

  /** `png`: an encoded PNG whose size is height x width; channels 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA). */
  addImage(tag: string, png: Uint8Array, height: number, width: number, channels: number, step: Step,
    wallTime = Date.now() / 1000): void {
    if (typeof tag !== "string" || tag === "") throw new Error("c3gan: SummaryWriter.addImage: tag must be a non-empty string");
    const b = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
    if (b.length < 24 || !b.subarray(0, 8).equals(PNG_SIGNATURE) || b.toString("latin1", 12, 16) !== "IHDR") {
      throw new Error(`c3gan: SummaryWriter.addImage(${tag}): the image bytes are not a PNG`);
    }
    const pw = b.readUInt32BE(16);
    const ph = b.readUInt32BE(20);
    if (pw !== width || ph !== height) {
      throw new Error(`c3gan: SummaryWriter.addImage(${tag}): the PNG is ${pw}x${ph} but ${width}x${height} was given`);
    }
    if (![1, 2, 3, 4].includes(channels)) {
      throw new Error(`c3gan: SummaryWriter.addImage(${tag}): channels must be 1, 2, 3 or 4, got ${channels}`);
    }
    const img = new ProtoWriter().varint(1, height).varint(2, width).varint(3, channels).bytes(4, png);
    const v = new ProtoWriter().string(1, tag).message(4, img);
    this.push(eventBytes(wallTime, checkStep(step), (e) => e.message(5, new ProtoWriter().message(1, v))));
  }

  flush(): void {
    if (this.fd === null || this.queue.length === 0) return;
    const all = Buffer.concat(this.queue);
    this.queue = [];
    this.queued = 0;
    let off = 0;
    while (off < all.length) off += fs.writeSync(this.fd, all, off, all.length - off);
  }

  close(): void {
    if (this.fd === null) return;
    this.flush();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = null;
    process.removeListener("exit", this.onExit);
  }
}

// ---- Reading back (tests, `c3gan` tools): every CRC checked, every field decoded. ----

export interface EventImage {
  height: number;
  width: number;
  colorspace: number;
  encoded: Uint8Array;
}

export interface EventValue {
  tag: string;
  simpleValue?: number;
  image?: EventImage;
}

export interface TfEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values?: EventValue[];
}

/** Splits a TFRecord stream into record payloads, verifying both CRCs of each. */
export function readRecords(buf: Buffer, source = "<buffer>"): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const where = `${source}: record ${out.length} at byte ${pos}`;
    if (pos + 12 > buf.length) throw new Error(`${where}: truncated header (${buf.length - pos} bytes left)`);
    const len = buf.readBigUInt64LE(pos);
    if (buf.readUInt32LE(pos + 8) !== maskedCrc32c(buf.subarray(pos, pos + 8))) throw new Error(`${where}: length CRC mismatch`);
    if (len > BigInt(buf.length - pos - 16)) throw new Error(`${where}: truncated data (length ${len})`);
    const n = Number(len);
    const data = buf.subarray(pos + 12, pos + 12 + n);
    if (buf.readUInt32LE(pos + 12 + n) !== maskedCrc32c(data)) throw new Error(`${where}: data CRC mismatch`);
    out.push(data);
    pos += 16 + n;
  }
  return out;
}

function decodeImage(fields: ProtoField[]): EventImage {
  const img: EventImage = { height: 0, width: 0, colorspace: 0, encoded: new Uint8Array(0) };
  for (const f of fields) {
    if (f.field === 1) img.height = Number(fieldInt64(f));
    else if (f.field === 2) img.width = Number(fieldInt64(f));
    else if (f.field === 3) img.colorspace = Number(fieldInt64(f));
    else if (f.field === 4) img.encoded = fieldBytes(f);
  }
  return img;
}

function decodeValue(fields: ProtoField[]): EventValue {
  const v: EventValue = { tag: "" };
  for (const f of fields) {
    if (f.field === 1) v.tag = fieldString(f);
    else if (f.field === 2) v.simpleValue = fieldFloat(f);
    else if (f.field === 4) v.image = decodeImage(decodeFields(fieldBytes(f)));
  }
  return v;
}

export function decodeEvent(data: Uint8Array): TfEvent {
  const ev: TfEvent = { wallTime: 0, step: 0 };
  for (const f of decodeFields(data)) {
    if (f.field === 1) ev.wallTime = fieldDouble(f);
    else if (f.field === 2) ev.step = Number(fieldInt64(f));
    else if (f.field === 3) ev.fileVersion = fieldString(f);
    else if (f.field === 5) {
      ev.values = ev.values ?? [];
      for (const sf of decodeFields(fieldBytes(f))) {
        if (sf.field === 1) ev.values.push(decodeValue(decodeFields(fieldBytes(sf))));
      }
    }
  }
  return ev;
}

export function readEventFile(file: string): TfEvent[] {
  return readRecords(fs.readFileSync(file), file).map((r, i) => {
    try {
      return decodeEvent(r);
    } catch (e) {
      throw new Error(`${file}: record ${i}: ${(e as Error).message}`);
    }
  });
}
