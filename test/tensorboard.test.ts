import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { packageRoot } from "../lib/native";
import { crc32c, maskCrc } from "../lib/io/crc32c";
import { ProtoWriter, decodeFields, encodeVarint, fieldDouble, fieldFloat, fieldInt64, fieldString } from "../lib/io/protobuf";
import { FILE_VERSION, SummaryWriter, TfEvent, frameRecord, readEventFile, readRecords } from "../lib/io/tensorboard";
import { tempDir } from "./helpers/tmp";

const fixtures = path.join(packageRoot(), "test", "fixtures");
const reference = JSON.parse(fs.readFileSync(path.join(fixtures, "io", "reference.json"), "utf8"));
const PNG = Buffer.from(reference.png_hex as string, "hex"); // 3 x 2 RGB
const PY = "/usr/bin/python3";

function tmpdir(): string {
  return tempDir("tb");
}

test("crc32c matches the standard test vectors", () => {
  assert.equal(crc32c("123456789"), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // RFC 3720 (iSCSI) appendix B.4
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  // continuing over chunks equals one pass
  assert.equal(crc32c("56789", crc32c("1234")), 0xe3069283);
  // the mask is a rotate-right-15 plus a constant, mod 2^32
  assert.equal(maskCrc(0), 0xa282ead8);
  assert.equal(maskCrc(0x00008000), (1 + 0xa282ead8) >>> 0);
  assert.equal(maskCrc(0xffffffff), (0xffffffff + 0xa282ead8) >>> 0);
});

test("protobuf pieces encode and decode", () => {
  assert.deepEqual(Array.from(encodeVarint(300n)), [0xac, 0x02]);
  assert.deepEqual(Array.from(encodeVarint(0n)), [0]);
  const msg = new ProtoWriter().double(1, 1.5).varint(2, -1).string(3, "héllo").float(4, 0.1).varint(5, 2n ** 40n).finish();
  const f = decodeFields(msg);
  assert.deepEqual(f.map((x) => [x.field, x.wire]), [[1, 1], [2, 0], [3, 2], [4, 5], [5, 0]]);
  assert.equal(fieldDouble(f[0]), 1.5);
  assert.equal(fieldInt64(f[1]), -1n);
  assert.equal(fieldString(f[2]), "héllo");
  assert.equal(fieldFloat(f[3]), Math.fround(0.1));
  assert.equal(fieldInt64(f[4]), 2n ** 40n);
  // -1 as int64 takes ten bytes
  assert.equal(new ProtoWriter().varint(1, -1).finish().length, 11);
  assert.throws(() => decodeFields(msg.subarray(0, msg.length - 2)), /protobuf: truncated varint/);
  assert.throws(() => decodeFields(new ProtoWriter().string(1, "abcd").finish().subarray(0, 4)), /protobuf: field runs 2 bytes past the end/);
  assert.throws(() => fieldDouble(f[1]), /field 2 has wire type 0, expected a double/);
  assert.throws(() => new ProtoWriter().varint(1, 0.5), /not a safe integer/);
});

test("reads an event file built independently (Python, struct)", () => {
  const events = readEventFile(path.join(fixtures, "io", "reference.tfevents"));
  const exp = reference.events as {
    wall_time: number; step: number; file_version?: string;
    values?: { tag: string; simple_value?: number; image?: { height: number; width: number; colorspace: number; png_hex: string } }[];
  }[];
  assert.equal(events.length, exp.length);
  events.forEach((ev, i) => {
    assert.equal(ev.wallTime, exp[i].wall_time);
    assert.equal(ev.step, exp[i].step);
    assert.equal(ev.fileVersion, exp[i].file_version);
    assert.deepEqual(ev.values?.map((v) => ({
      tag: v.tag,
      ...(v.simpleValue !== undefined ? { simple_value: v.simpleValue } : {}),
      ...(v.image ? { image: { height: v.image.height, width: v.image.width, colorspace: v.image.colorspace,
        png_hex: Buffer.from(v.image.encoded).toString("hex") } } : {}),
    })), exp[i].values);
  });
  assert.equal(events[2].step, 3000000000);
});

test("reads an event file written by tensorboardX", () => {
  const official = JSON.parse(fs.readFileSync(path.join(fixtures, "io", "official.json"), "utf8"));
  const events = readEventFile(path.join(fixtures, "io", "official.tfevents"));
  const exp = official.events as { wall_time?: number; step: number; file_version?: string; values?: { tag: string; simple_value?: number; image?: { height: number; width: number; colorspace: number; png_hex: string } }[] }[];
  assert.equal(events.length, exp.length);
  assert.equal(events[0].fileVersion, FILE_VERSION);
  for (let i = 1; i < exp.length; i++) {
    assert.equal(events[i].wallTime, exp[i].wall_time);
    assert.equal(events[i].step, exp[i].step);
    const v = events[i].values![0];
    const e = exp[i].values![0];
    assert.equal(v.tag, e.tag);
    assert.equal(v.simpleValue, e.simple_value);
    if (e.image) {
      assert.deepEqual({ ...v.image!, encoded: Buffer.from(v.image!.encoded).toString("hex") },
        { height: e.image.height, width: e.image.width, colorspace: e.image.colorspace, encoded: e.image.png_hex });
    }
  }
  assert.equal(events[2].values![0].simpleValue, Math.fround(0.276));
});

function fileEvents(dir: string): { name: string; events: TfEvent[] } {
  const names = fs.readdirSync(dir);
  assert.equal(names.length, 1, names.join(","));
  return { name: names[0], events: readEventFile(path.join(dir, names[0])) };
}

test("SummaryWriter writes TFRecord-framed events that read back field for field", () => {
  const dir = tmpdir();
  try {
    const t0 = Date.now() / 1000;
    const w = new SummaryWriter(dir);
    assert.match(path.basename(w.file), new RegExp(`^events\\.out\\.tfevents\\.\\d{10}\\..+\\.${process.pid}\\.\\d+$`));
    assert.equal(path.dirname(w.file), dir);
    // the version record is on disk as soon as the writer exists
    assert.equal(readEventFile(w.file)[0].fileVersion, FILE_VERSION);
    w.addScalar("D/real_loss", 0.1, 0);
    w.addScalar("G/adv_loss", -3.25, 500);
    w.addScalar("test/NaN", NaN, 501);
    w.addImage("Image_sample", PNG, 2, 3, 3, 3000000000);
    w.addScalar("late", 1, 2 ** 53 - 1, 1234.5);
    w.flush();
    assert.equal(readEventFile(w.file).length, 6);
    w.close();
    assert.ok(w.closed);
    const t1 = Date.now() / 1000;

    const { events } = fileEvents(dir);
    assert.equal(events.length, 6);
    assert.equal(events[0].fileVersion, "brain.Event:2");
    assert.equal(events[0].values, undefined);
    for (const ev of events.slice(0, 5)) assert.ok(ev.wallTime >= t0 - 1 && ev.wallTime <= t1 + 1, String(ev.wallTime));
    assert.deepEqual(events[1].values, [{ tag: "D/real_loss", simpleValue: Math.fround(0.1) }]);
    assert.equal(events[1].step, 0);
    assert.deepEqual(events[2].values, [{ tag: "G/adv_loss", simpleValue: -3.25 }]);
    assert.equal(events[2].step, 500);
    assert.ok(Number.isNaN(events[3].values![0].simpleValue));
    const img = events[4].values![0];
    assert.equal(img.tag, "Image_sample");
    assert.equal(events[4].step, 3000000000);
    assert.deepEqual({ ...img.image!, encoded: Buffer.from(img.image!.encoded).toString("hex") },
      { height: 2, width: 3, colorspace: 3, encoded: reference.png_hex });
    assert.equal(events[5].step, 2 ** 53 - 1);
    assert.equal(events[5].wallTime, 1234.5);
    assert.throws(() => w.addScalar("x", 1, 1), /is closed/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("framing damage is detected by the CRCs", () => {
  const rec = frameRecord(new ProtoWriter().double(1, 1).string(3, FILE_VERSION).finish());
  const two = Buffer.concat([rec, rec]);
  assert.equal(readRecords(two).length, 2);
  const data = Buffer.from(two);
  data[rec.length + 14] ^= 1;
  assert.throws(() => readRecords(data, "f"), /^Error: f: record 1 at byte 40: data CRC mismatch$/);
  const len = Buffer.from(two);
  len[0] ^= 1;
  assert.throws(() => readRecords(len, "f"), /f: record 0 at byte 0: length CRC mismatch/);
  assert.throws(() => readRecords(two.subarray(0, two.length - 1), "f"), /record 1 at byte 40: truncated data/);
  assert.throws(() => readRecords(two.subarray(0, rec.length + 5), "f"), /record 1 at byte 40: truncated header/);
});

test("addImage checks its PNG and arguments; queued events flush by size", () => {
  const dir = tmpdir();
  try {
    const w = new SummaryWriter(dir, { maxQueueBytes: 64, flushSecs: 3600 });
    assert.throws(() => w.addImage("x", Buffer.from("not a png at all, really not"), 2, 3, 3, 0), /the image bytes are not a PNG/);
    assert.throws(() => w.addImage("x", PNG, 3, 2, 3, 0), /the PNG is 3x2 but 2x3 was given/);
    assert.throws(() => w.addImage("x", PNG, 2, 3, 5, 0), /channels must be 1, 2, 3 or 4, got 5/);
    assert.throws(() => w.addScalar("", 1, 0), /tag must be a non-empty string/);
    assert.throws(() => w.addScalar("x", 1, 1.5), /step must be an integer, got 1.5/);
    w.addScalar("a", 1, 1); // ~40 bytes: stays queued
    assert.equal(readEventFile(w.file).length, 1);
    w.addScalar("b", 2, 2); // past 64 bytes: flushed without asking
    assert.equal(readEventFile(w.file).length, 3);
    const w2 = new SummaryWriter(dir, { filenameSuffix: ".eval" });
    assert.notEqual(w2.file, w.file);
    assert.ok(w2.file.endsWith(".eval"));
    w.close();
    w2.close();
    w2.close(); // idempotent
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const havePy = spawnSync(PY, ["-c", "import numpy"]).status === 0;

test("an independent Python reader agrees with what we write", { skip: havePy ? false : `${PY} with numpy not found` }, () => {
  const dir = tmpdir();
  try {
    const w = new SummaryWriter(dir);
    w.addScalar("loss", 0.5, 7, 100.25);
    w.addScalar("neg", -2, -3, 101);
    w.addImage("img", PNG, 2, 3, 3, 8, 102);
    w.close();
    const r = spawnSync(PY, [path.join(fixtures, "make_io_fixtures.py"), "check-events", w.file], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const py = JSON.parse(r.stdout);
    assert.equal(py.length, 4);
    assert.equal(py[0].file_version, "brain.Event:2");
    assert.deepEqual(py.slice(1), [
      { wall_time: 100.25, step: 7, values: [{ tag: "loss", simple_value: 0.5 }] },
      { wall_time: 101, step: -3, values: [{ tag: "neg", simple_value: -2 }] },
      { wall_time: 102, step: 8, values: [{ tag: "img", image: { height: 2, width: 3, colorspace: 3, png_hex: reference.png_hex } }] },
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
