import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { packageRoot } from "../lib/native";
import {
  TensorRecord, checkpointMetadata, decodeSafetensors, encodeSafetensors, halfToFloat, readSafetensors,
  readSafetensorsHeader, readSafetensorsSync, writeSafetensors, writeSafetensorsSync,
} from "../lib/io/safetensors";
import { writeFileAtomicSync, isTempNameFor } from "../lib/io/atomic";
import { tempDir } from "./helpers/tmp";

const fixtures = path.join(packageRoot(), "test", "fixtures");
const script = path.join(fixtures, "make_io_fixtures.py");
const PY = "/usr/bin/python3";

function tmpdir(): string {
  return tempDir("st");
}

function f32(shape: number[], values: number[]): TensorRecord {
  return { dtype: "F32", shape, data: Float32Array.from(values) };
}

/** JSON fixtures spell NaN and infinities as strings. */
function num(v: number | string): number {
  return v === "nan" ? NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : (v as number);
}

function sample(): Map<string, TensorRecord> {
  return new Map<string, TensorRecord>([
    ["G.fc.0.weight", f32([2, 3], [1, -2, 3.5, 1e-30, -0, 65504.125])],
    ["D.special", f32([4], [NaN, Infinity, -Infinity, 0])],
    ["empty", f32([0, 3], [])],
    ["scalar", f32([], [7])],
  ]);
}

function sameTensors(a: Map<string, TensorRecord>, b: Map<string, TensorRecord>): void {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, t] of a) {
    const u = b.get(k)!;
    assert.equal(u.dtype, "F32", k);
    assert.deepEqual(u.shape, t.shape, k);
    // deepEqual on arrays uses Object.is: NaN equals NaN, -0 differs from 0 (bit-exact check)
    assert.deepEqual(Array.from(u.data), Array.from(t.data), k);
  }
}

/** A file from a hand-made header (for corruption tests). */
function craft(header: unknown, data: Buffer, headerText?: string): Buffer {
  const h = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

test("round trip keeps order, shapes, bits and metadata", async () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, "ckpt.safetensors");
    const meta = checkpointMetadata({ name: "x", batchSize: 4 }, 3, 120, "0.1.0");
    await writeSafetensors(file, sample(), meta);
    const back = await readSafetensors(file);
    sameTensors(sample(), back.tensors);
    assert.deepEqual(back.metadata, meta);
    assert.deepEqual(JSON.parse(back.metadata.config), { name: "x", batchSize: 4 });
    assert.equal(back.metadata.epoch, "3");
    assert.equal(back.metadata.step, "120");
    assert.equal(back.metadata.c3gan_version, "0.1.0");
    assert.deepEqual(back.skipped, []);
    const raw = fs.readFileSync(file);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal(n % 8, 0, "header padded to 8 bytes");
    assert.equal(raw[8], "{".charCodeAt(0));
    assert.equal(raw.length, 8 + n + 4 * (6 + 4 + 0 + 1));
    // the record form and the sync API write the same bytes
    const file2 = path.join(dir, "b.safetensors");
    writeSafetensorsSync(file2, Object.fromEntries(sample()), meta);
    assert.ok(fs.readFileSync(file2).equals(raw));
    sameTensors(sample(), readSafetensorsSync(file2).tensors);
    const h = readSafetensorsHeader(file);
    assert.deepEqual(h.entries.get("D.special"), { dtype: "F32", shape: [4], dataOffsets: [24, 40] });
    assert.equal(h.dataStart, 8 + n);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("reads a file built independently (Python, struct): F32, F16, BF16, F64 -> F32", () => {
  const expected = JSON.parse(fs.readFileSync(path.join(fixtures, "io", "reference.json"), "utf8"));
  const got = readSafetensorsSync(path.join(fixtures, "io", "reference.safetensors"));
  assert.deepEqual(got.metadata, expected.metadata);
  assert.deepEqual([...got.tensors.keys()], Object.keys(expected.tensors));
  for (const [name, e] of Object.entries(expected.tensors) as [string, { shape: number[]; values: (number | string)[] }][]) {
    const t = got.tensors.get(name)!;
    assert.deepEqual(t.shape, e.shape, name);
    assert.deepEqual(Array.from(t.data), e.values.map(num), name);
  }
});

test("reads a file written by the safetensors library itself, its int64 count included", () => {
  const expected = JSON.parse(fs.readFileSync(path.join(fixtures, "io", "official.json"), "utf8"));
  const file = path.join(fixtures, "io", "official.safetensors");
  const got = readSafetensorsSync(file);
  assert.deepEqual(got.metadata, expected.metadata);
  assert.deepEqual(got.skipped, []);
  assert.deepEqual([...got.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
  assert.deepEqual(expected.integers, ["bn.num_batches_tracked"]);
  for (const [name, e] of Object.entries(expected.tensors) as [string, { shape: number[]; values: (number | string)[] }][]) {
    const t = got.tensors.get(name)!;
    assert.equal(t.dtype, expected.integers.includes(name) ? "I64" : "F32", name);
    assert.deepEqual(t.shape, e.shape, name);
    assert.deepEqual(Array.from(t.data), e.values.map(num), name);
  }
});

test("half-precision conversion covers subnormals, infinities and NaN", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.ok(Object.is(halfToFloat(0x8000), -0));
});

test("integer tensors read as whole float32 values marked I64; 8-bit floats are rejected, or skipped on request", () => {
  const file = path.join(fixtures, "io", "with-int64.safetensors");
  const got = readSafetensorsSync(file);
  assert.deepEqual([...got.tensors.keys()], ["bn.running_mean", "bn.num_batches_tracked"]);
  assert.deepEqual(Array.from(got.tensors.get("bn.running_mean")!.data), [0.5, -0.5]);
  assert.equal(got.tensors.get("bn.running_mean")!.dtype, "F32");
  assert.deepEqual(got.tensors.get("bn.num_batches_tracked"), { dtype: "I64", shape: [], data: Float32Array.of(7) });

  // every integer dtype, from hand-made bytes: extremes, signs, and an int64 past 2^24 rounded as a float32
  const ints: [string, number[], (b: Buffer, v: number, i: number) => void, number][] = [
    ["BOOL", [0, 1], (b, v, i) => b.writeUInt8(v, i), 1],
    ["U8", [0, 255], (b, v, i) => b.writeUInt8(v, i), 1],
    ["I8", [-128, 127], (b, v, i) => b.writeInt8(v, i), 1],
    ["I16", [-32768, 32767], (b, v, i) => b.writeInt16LE(v, 2 * i), 2],
    ["U16", [0, 65535], (b, v, i) => b.writeUInt16LE(v, 2 * i), 2],
    ["I32", [-(2 ** 31), 2 ** 31 - 1], (b, v, i) => b.writeInt32LE(v, 4 * i), 4],
    ["U32", [0, 2 ** 32 - 1], (b, v, i) => b.writeUInt32LE(v, 4 * i), 4],
    ["I64", [-(2 ** 40), 2 ** 24 + 1], (b, v, i) => b.writeBigInt64LE(BigInt(v), 8 * i), 8],
    ["U64", [0, 2 ** 53], (b, v, i) => b.writeBigUInt64LE(BigInt(v), 8 * i), 8],
  ];
  for (const [dtype, values, put, size] of ints) {
    const data = Buffer.alloc(size * values.length);
    values.forEach((v, i) => put(data, v, i));
    const t = decodeSafetensors(craft({ t: { dtype, shape: [values.length], data_offsets: [0, data.length] } }, data)).tensors.get("t")!;
    assert.equal(t.dtype, "I64", dtype);
    assert.deepEqual(Array.from(t.data), Array.from(Float32Array.from(values)), dtype);
  }

  const f8 = craft({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, q: { dtype: "F8_E4M3", shape: [2], data_offsets: [4, 6] } }, Buffer.alloc(6));
  assert.throws(() => decodeSafetensors(f8, "f8.safetensors"),
    /f8\.safetensors: tensor "q" has dtype F8_E4M3; c3gan reads only F32, F16, BF16, F64, BOOL, U8, I8, I16, U16, I32, U32, I64, U64/);
  const some = decodeSafetensors(f8, "f8.safetensors", { skipUnsupported: true });
  assert.deepEqual([...some.tensors.keys()], ["a"]);
  assert.deepEqual(some.skipped, [{ name: "q", dtype: "F8_E4M3", shape: [2] }]);
});

test("I64 tensors are written as int64 and read back; fractional values are refused", () => {
  const counts: TensorRecord = { dtype: "I64", shape: [3], data: Float32Array.of(0, -5, 2 ** 24) };
  const buf = encodeSafetensors({ w: f32([1], [0.5]), "bn.num_batches_tracked": counts });
  const h = decodeSafetensors(buf);
  assert.deepEqual(h.tensors.get("bn.num_batches_tracked"), counts);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal(buf.length, 8 + n + 4 + 8 * 3);
  assert.equal(buf.readBigInt64LE(8 + n + 4 + 8), -5n);
  assert.throws(() => encodeSafetensors({ c: { dtype: "I64", shape: [2], data: Float32Array.of(1, 1.5) } }),
    /tensor "c": I64 data must be whole numbers within int64, got 1.5 at element 1/);
  assert.throws(() => encodeSafetensors({ c: { dtype: "I64", shape: [1], data: Float32Array.of(NaN) } }), /within int64, got NaN/);
  assert.throws(() => encodeSafetensors({ c: { dtype: "I64", shape: [1], data: Float32Array.of(2 ** 63) } }), /within int64, got 9223372036854776000/);
  assert.equal(decodeSafetensors(encodeSafetensors({ c: { dtype: "I64", shape: [1], data: Float32Array.of(-(2 ** 63)) } }))
    .tensors.get("c")!.data[0], -(2 ** 63));
});

test("corrupt files fail with errors that say what is wrong", () => {
  const good = encodeSafetensors(sample(), { a: "b" });
  const bad = (buf: Buffer, re: RegExp) =>
    assert.throws(() => decodeSafetensors(buf, "f.st"), (e: unknown) => {
      assert.match((e as Error).message, /^c3gan: f\.st is not a valid safetensors file: /);
      assert.match((e as Error).message, re);
      return true;
    });
  bad(good.subarray(0, good.length - 4), /tensor data needs 44 bytes after the header but the file has 40 \(truncated\?\)/);
  bad(good.subarray(0, 5), /5 bytes is too short/);
  bad(good.subarray(0, 20), /runs past the end of the file/);
  bad(Buffer.concat([good, Buffer.from([0, 0])]), /2 unexpected bytes after the last tensor/);
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(1n << 40n, 0);
  bad(huge, /header length 1099511627776 exceeds the 100000000-byte limit/);
  const notJson = Buffer.from(good);
  notJson[9] = 0x21; // '{!__metadata__"...': no longer JSON
  bad(notJson, /the header is not valid JSON/);
  const noBrace = Buffer.from(good);
  noBrace[8] = 0x5b; // '['
  bad(noBrace, /does not start with '\{'/);

  const d16 = Buffer.alloc(16);
  bad(craft({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, d16.subarray(0, 12)),
    /tensor "b": data_offsets \[4, 12\] overlap the previous tensor \(which ends at 8\)/);
  bad(craft({ a: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, d16), /tensor "a": data_offsets \[8, 16\] leave a gap after offset 0/);
  bad(craft({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, d16.subarray(0, 8)),
    /tensor "a": F32 \[3\] needs 12 bytes but data_offsets \[0,8\] span 8/);
  bad(craft({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, d16), /is not \[begin, end\] with begin <= end/);
  bad(craft({ a: { dtype: "F33", shape: [2], data_offsets: [0, 8] } }, d16.subarray(0, 8)), /tensor "a": unknown dtype "F33"/);
  bad(craft({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, d16.subarray(0, 8)), /shape \[-2\] is not a list of non-negative integers/);
  bad(craft({ __metadata__: { epoch: 3 } }, Buffer.alloc(0)), /__metadata__\.epoch is not a string/);
  bad(craft(null, Buffer.alloc(0), "[1, 2]   "), /does not start with '\{'/);
  // padded with spaces (as the reference writer does) is fine
  const ok = decodeSafetensors(craft(null, d16.subarray(0, 8), '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   '));
  assert.deepEqual(Array.from(ok.tensors.get("a")!.data), [0, 0]);
});

test("writing validates tensors and metadata", () => {
  assert.throws(() => encodeSafetensors({ a: f32([2, 2], [1, 2, 3]) }), /tensor "a": shape \[2,2\] has 4 elements but data has 3/);
  assert.throws(() => encodeSafetensors({ a: { dtype: "F16", shape: [1], data: new Float32Array(1) } as unknown as TensorRecord }),
    /only F32 and I64 tensors are written, got F16/);
  assert.throws(() => encodeSafetensors({ __metadata__: f32([1], [1]) }), /invalid tensor name "__metadata__"/);
  assert.throws(() => encodeSafetensors({ a: f32([1.5], [1]) }), /shape must be non-negative integers/);
  assert.throws(() => encodeSafetensors({}, { epoch: 3 as unknown as string }), /metadata "epoch" must be a string/);
  // a view into a larger buffer writes only its own elements
  const big = Float32Array.from([9, 1, 2, 9]);
  const back = decodeSafetensors(encodeSafetensors({ v: { dtype: "F32", shape: [2], data: big.subarray(1, 3) } }));
  assert.deepEqual(Array.from(back.tensors.get("v")!.data), [1, 2]);
});

function leftovers(dir: string, base: string): string[] {
  return fs.readdirSync(dir).filter((n) => isTempNameFor(base, n));
}

test("an interrupted write leaves the previous file intact and no temp files", async () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, "last.safetensors");
    writeSafetensorsSync(file, { a: f32([1], [1]) }, { step: "1" });
    const before = fs.readFileSync(file);
    let sawTemp = "";
    assert.throws(() => writeSafetensorsSync(file, { a: f32([1], [2]) }, { step: "2" }, {
      beforeRename: (tmp) => {
        // the temp file is complete and valid before the rename
        sawTemp = tmp;
        assert.equal(path.dirname(tmp), dir);
        assert.equal(readSafetensorsSync(tmp).metadata.step, "2");
        throw new Error("simulated crash");
      },
    }), /writing .*last\.safetensors failed while preparing to rename: simulated crash/);
    assert.ok(sawTemp !== "");
    assert.ok(fs.readFileSync(file).equals(before));
    assert.deepEqual(leftovers(dir, "last.safetensors"), []);

    await assert.rejects(writeSafetensors(file, { a: f32([1], [3]) }, { step: "3" }, {
      beforeRename: async () => { throw new Error("async crash"); },
    }), /failed while preparing to rename: async crash/);
    assert.ok(fs.readFileSync(file).equals(before));
    assert.deepEqual(leftovers(dir, "last.safetensors"), []);
    assert.deepEqual(fs.readdirSync(dir), ["last.safetensors"]);

    // and an uninterrupted write replaces it
    await writeSafetensors(file, { a: f32([1], [4]) }, { step: "4" });
    assert.equal(readSafetensorsSync(file).metadata.step, "4");
    assert.deepEqual(fs.readdirSync(dir), ["last.safetensors"]);
    assert.throws(() => writeFileAtomicSync(path.join(dir, "no", "such", "x"), new Uint8Array(1)),
      /writing .*x failed while creating the temp file: ENOENT/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const havePy = spawnSync(PY, ["-c", "import numpy"]).status === 0;

test("an independent Python reader agrees with what we write", { skip: havePy ? false : `${PY} with numpy not found` }, () => {
  const dir = tmpdir();
  try {
    const file = path.join(dir, "x.safetensors");
    const tensors = new Map([...sample(), ["bn.num_batches_tracked", { dtype: "I64", shape: [], data: Float32Array.of(1234567) }]]);
    writeSafetensorsSync(file, tensors, { config: '{"a":1}', epoch: "2" });
    const r = spawnSync(PY, [script, "check-safetensors", file], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const py = JSON.parse(r.stdout);
    assert.deepEqual(py.metadata, { config: '{"a":1}', epoch: "2" });
    assert.deepEqual(py.order, [...tensors.keys()]);
    assert.equal(py.header_bytes % 8, 0);
    for (const [k, t] of tensors) {
      assert.equal(py.tensors[k].dtype, t.dtype);
      assert.deepEqual(py.tensors[k].shape, t.shape);
      assert.deepEqual(py.tensors[k].values.map(num), Array.from(t.data), k);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
