// torch.save checkpoints without PyTorch: the zip reader, the safe unpickler, tensor
// materialisation (dtypes, strides, shared storages) and `c3gan import` of an official-format
// C3-GAN checkpoint, against test/fixtures/pt/ (made by test/fixtures/make_pt_fixtures.py with
// torch 1.13; expected.json holds what each file contains).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../lib/native";
import { BufferSource, ZipReader } from "../lib/io/zip";
import { StorageRef, TorchTensor, unpickle } from "../lib/io/unpickle";
import {
  decodeTorchCheckpoint, readTorchCheckpoint, stateDictArrays, tensorToBigInt64, tensorToFloat32,
} from "../lib/io/torch-checkpoint";
import { readSafetensorsSync } from "../lib/io/safetensors";
import { importCommand, importOfficialCheckpoint } from "../lib/train/import";
import { C3Config, parseConfig } from "../lib/train/config";
import { loadModel } from "../lib/train/checkpoint";
import { C3GAN } from "../lib/model/c3gan";
import { specFromConfig } from "../lib/train/trainer";
import { Generator, noGrad, Tensor, tidy } from "../lib/tensor";
import * as F from "../lib/ops";
import { tempDir } from "./helpers/tmp";

const FX = path.join(packageRoot(), "test", "fixtures");
const PT = path.join(FX, "pt");
const pt = (name: string) => path.join(PT, name);

interface TensorFx {
  dtype: string;
  shape: number[];
  stride: number[];
  offset: number;
  requiresGrad: boolean;
  f32: (number | string)[];
  i64?: string[];
}
const expected = JSON.parse(fs.readFileSync(pt("expected.json"), "utf8")) as {
  dtypes: { tensors: Record<string, TensorFx>; meta: Record<string, unknown> };
  views: Record<string, TensorFx>;
  parameter: { w: TensorFx; sd: Record<string, TensorFx> };
  c3gan_small: { config: Record<string, number>; tensors: { netG: number; netD: number } };
};

function num(v: number | string): number {
  return typeof v === "number" ? v : v === "inf" ? Infinity : v === "-inf" ? -Infinity : NaN;
}

function expectTensor(t: unknown, fx: TensorFx, what: string): void {
  assert.ok(t instanceof TorchTensor, `${what}: not a tensor`);
  assert.equal(t.dtype, fx.dtype, `${what}: dtype`);
  assert.deepEqual(t.shape, fx.shape, `${what}: shape`);
  assert.deepEqual(t.stride, fx.stride, `${what}: stride`);
  assert.equal(t.offset, fx.offset, `${what}: offset`);
  assert.equal(t.requiresGrad, fx.requiresGrad, `${what}: requires_grad`);
  const got = tensorToFloat32(t);
  assert.equal(got.length, fx.f32.length, `${what}: numel`);
  // exact, -0 and NaN included (Object.is)
  fx.f32.forEach((v, i) => assert.ok(Object.is(got[i], num(v)), `${what}[${i}]: got ${got[i]}, expected ${v}`));
  if (fx.i64) assert.deepEqual([...tensorToBigInt64(t)].map(String), fx.i64, `${what}: int64 values`);
}

/** The expected.json form of plain values: big ints as {int}, tuples as arrays. */
function expectPlain(got: unknown, want: unknown, what: string): void {
  if (want !== null && typeof want === "object" && !Array.isArray(want) && "int" in want) {
    assert.equal(got, BigInt((want as { int: string }).int), what);
  } else if (Array.isArray(want)) {
    assert.ok(Array.isArray(got), `${what}: not a list/tuple`);
    assert.equal(got.length, want.length, `${what}: length`);
    want.forEach((w, i) => expectPlain(got[i], w, `${what}[${i}]`));
  } else if (want !== null && typeof want === "object") {
    assert.ok(got instanceof Map, `${what}: not a dict`);
    assert.deepEqual([...got.keys()], Object.keys(want), `${what}: keys`);
    for (const [k, w] of Object.entries(want)) expectPlain(got.get(k), w, `${what}.${k}`);
  } else {
    assert.ok(Object.is(got, typeof want === "string" && /^-?inf$|^nan$/.test(want) ? num(want) : want), `${what}: got ${String(got)}, expected ${String(want)}`);
  }
}

const DTYPE_FILES = ["dtypes.pt", "dtypes_p4.pt", "dtypes_deflate.pt", "dtypes_zip64.pt", "dtypes_big.pt"];

test("zip: every variant of the archive lists the same entries with the same bytes", () => {
  const ref = ZipReader.open(pt("dtypes.pt"));
  try {
    const names = ref.names();
    assert.ok(names.includes("dtypes/data.pkl") && names.includes("dtypes/version"), names.join(", "));
    assert.equal(ref.read("dtypes/version").toString().trim(), "3");
    for (const f of ["dtypes_deflate.pt", "dtypes_zip64.pt"]) {
      const z = ZipReader.open(pt(f));
      try {
        assert.deepEqual(z.names(), names, f);
        if (f === "dtypes_deflate.pt") assert.ok(names.some((n) => z.entry(n).method === 8), "deflated entries");
        for (const n of names) assert.ok(z.read(n).equals(ref.read(n)), `${f}: ${n}`);
      } finally {
        z.close();
      }
    }
    assert.throws(() => ref.read("dtypes/nope"), /has no entry "dtypes\/nope"/);
    assert.throws(() => ref.read("dtypes/data.pkl", 10), /more than the 10 allowed/);
  } finally {
    ref.close();
  }
});

/** Offset of the central-directory record of `name` in a zip image. */
function centralRecord(buf: Buffer, name: string): number {
  for (let p = buf.length - 22; p >= 0; p--) {
    if (buf.readUInt32LE(p) === 0x02014b50 && buf.toString("latin1", p + 46, p + 46 + buf.readUInt16LE(p + 28)) === name) return p;
  }
  throw new Error(`no central record for ${name}`);
}

test("zip: damaged archives are refused with what is wrong", () => {
  const whole = fs.readFileSync(pt("dtypes.pt"));
  assert.throws(() => ZipReader.open(pt("truncated.pt")), /no end-of-central-directory record \(the file is truncated/);
  assert.throws(() => ZipReader.fromBuffer(Buffer.alloc(10), "tiny"), /tiny is not a valid zip archive: 10 bytes/);

  // an entry whose size runs past the data area
  const big = Buffer.from(whole);
  const c = centralRecord(big, "dtypes/data/0");
  big.writeUInt32LE(0x7fffffff, c + 20);
  big.writeUInt32LE(0x7fffffff, c + 24);
  assert.throws(() => ZipReader.fromBuffer(big, "big.pt"), /entry "dtypes\/data\/0": 2147483647 bytes at \d+ run past the data area/);

  // an absurd entry count in the ZIP64 end record
  const many = Buffer.from(whole);
  let z64 = -1;
  for (let p = many.length - 56; p >= 0 && z64 < 0; p--) if (many.readUInt32LE(p) === 0x06064b50) z64 = p;
  assert.ok(z64 > 0, "torch writes a ZIP64 end record");
  many.writeBigUInt64LE(5_000_000n, z64 + 24);
  many.writeBigUInt64LE(5_000_000n, z64 + 32);
  assert.throws(() => ZipReader.fromBuffer(many, "many.pt"), /5000000 entries is more than the 1000000 allowed/);

  // a flipped data byte: caught by the CRC when the entry is read
  const z = ZipReader.fromBuffer(whole, "ok.pt");
  const e = z.entry("dtypes/data/0");
  const flipped = Buffer.from(whole);
  flipped[e.dataOffset] ^= 0x40;
  assert.throws(() => ZipReader.fromBuffer(flipped, "flipped.pt").read("dtypes/data/0"), /CRC-32 [0-9a-f]+ does not match .* \(corrupt file\)/);

  // a local header that disagrees with the central directory
  const moved = Buffer.from(whole);
  moved.writeUInt32LE(moved.readUInt32LE(c + 42) + 1, c + 42);
  assert.throws(() => ZipReader.fromBuffer(moved, "moved.pt"), /entry "dtypes\/data\/0": no local header/);
  assert.equal(new BufferSource(whole).size, whole.length);
});

test("unpickle: all dtypes, in protocol 2 and 4, stored, deflated, ZIP64 and big-endian archives, read exactly", () => {
  for (const f of DTYPE_FILES) {
    const top = readTorchCheckpoint(pt(f));
    assert.deepEqual([...top.keys()], ["tensors", "meta"], f);
    const tensors = top.get("tensors");
    assert.ok(tensors instanceof Map);
    assert.deepEqual([...tensors.keys()], Object.keys(expected.dtypes.tensors), `${f}: names in order`);
    for (const [k, fx] of Object.entries(expected.dtypes.tensors)) expectTensor(tensors.get(k), fx, `${f}: ${k}`);
    expectPlain(top.get("meta"), expected.dtypes.meta, `${f}: meta`);
    const meta = top.get("meta") as Map<string, unknown>;
    assert.ok(Object.isFrozen(meta.get("tuple")) && !Object.isFrozen(meta.get("list")), "tuples are frozen, lists are not");
  }
  // the int64 values beyond 2^53 come out exactly as BigInt
  const i64 = (readTorchCheckpoint(pt("dtypes.pt")).get("tensors") as Map<string, TorchTensor>).get("i64")!;
  assert.deepEqual([...tensorToBigInt64(i64)], [0n, -1n, 7n, 2n ** 40n, 2n ** 62n + 12345n, -(2n ** 63n)]);
  assert.throws(() => tensorToBigInt64((readTorchCheckpoint(pt("dtypes.pt")).get("tensors") as Map<string, TorchTensor>).get("f32")!), /float32, not int64/);
});

test("unpickle: non-contiguous views and a storage shared at two offsets", () => {
  const top = readTorchCheckpoint(pt("views.pt"));
  for (const [k, fx] of Object.entries(expected.views)) expectTensor(top.get(k), fx, `views: ${k}`);
  const a = top.get("a") as TorchTensor;
  const b = top.get("b") as TorchTensor;
  assert.ok(a.storage instanceof StorageRef && a.storage === b.storage, "a and b share one storage");
  assert.deepEqual([a.offset, b.offset, a.storage.numel], [2, 10, 24]);
  assert.deepEqual((top.get("e") as TorchTensor).stride, [0, 1]);
});

test("unpickle: a Parameter and a module state_dict (with its _metadata)", () => {
  const top = readTorchCheckpoint(pt("parameter.pt"));
  expectTensor(top.get("w"), expected.parameter.w, "w");
  const sd = stateDictArrays(top.get("sd"), "sd");
  assert.deepEqual([...sd.keys()], Object.keys(expected.parameter.sd));
  for (const [k, fx] of Object.entries(expected.parameter.sd)) {
    assert.deepEqual(sd.get(k)!.shape, fx.shape, k);
    assert.deepEqual([...sd.get(k)!.data], fx.f32.map(num), k);
  }
  assert.equal(sd.get("1.num_batches_tracked")!.dtype, "int64");
  assert.throws(() => stateDictArrays(top, "top"), /top: "w" is not a tensor|top: "sd" is not a tensor/);
});

test("unpickle: code-running pickles are refused, naming what they asked for", () => {
  const refuse = (file: string, re: RegExp) => assert.throws(() => unpickle(fs.readFileSync(pt(file)), { source: file }), re, file);
  refuse("reject_os_system.pkl", /unpickle reject_os_system\.pkl: refusing GLOBAL posix\.system/);
  refuse("reject_eval.pkl", /refusing GLOBAL __builtin__\.eval/);
  refuse("reject_eval_p4.pkl", /refusing STACK_GLOBAL builtins\.eval/);
  refuse("reject_custom.pkl", /refusing GLOBAL __main__\.Custom/);
  refuse("reject_inst.pkl", /refusing INST os\.system/);
  assert.throws(() => readTorchCheckpoint(pt("reject_torch_save.pt")), /reject_torch_save\/data\.pkl: refusing GLOBAL posix\.system/);
});

test("readTorchCheckpoint: legacy, truncated and foreign files get clear messages", () => {
  assert.throws(() => readTorchCheckpoint(pt("legacy.pt")), /legacy format \(PyTorch < 1\.6.*torch\.save\(torch\.load/);
  assert.throws(() => readTorchCheckpoint(pt("truncated.pt")), /truncated\.pt is not a valid zip archive: no end-of-central-directory/);
  assert.throws(() => readTorchCheckpoint(pt("missing.pt")), /missing\.pt does not exist/);
  assert.throws(() => decodeTorchCheckpoint(Buffer.from("hello world"), "text.txt"), /text\.txt is not a PyTorch checkpoint/);
  // a zip without data.pkl
  const zip = fs.readFileSync(pt("dtypes.pt"));
  const renamed = Buffer.from(zip.toString("latin1").replaceAll("dtypes/data.pkl", "dtypes/xxxx.pkl"), "latin1");
  assert.throws(() => decodeTorchCheckpoint(renamed, "nopkl.pt"), /no <archive>\/data\.pkl/);
});

// --- hand-made pickles: malformed, oversized, out-of-bounds ---
const b = (...xs: (number | string | Buffer)[]): Buffer =>
  Buffer.concat(xs.map((x) => (typeof x === "number" ? Buffer.from([x]) : typeof x === "string" ? Buffer.from(x, "latin1") : x)));
const uni = (s: string): Buffer => {
  const u = Buffer.from(s, "utf8");
  const n = Buffer.alloc(4);
  n.writeUInt32LE(u.length);
  return b("X", n, u);
};
const glob = (m: string, n: string) => b("c", `${m}\n${n}\n`);
/** _rebuild_tensor_v2 of a FloatStorage of `numel` elements with the given view */
const tensorPickle = (numel: number, offset: number, size: number[], stride: number[]) => b(
  0x80, 2, glob("torch._utils", "_rebuild_tensor_v2"), "(",
  "(", uni("storage"), glob("torch", "FloatStorage"), uni("0"), uni("cpu"), "K", numel, "t", "Q",
  "K", offset, "(", ...size.map((s) => b("K", s)), "t", "(", ...stride.map((s) => b("K", s)), "t", 0x89,
  glob("collections", "OrderedDict"), ")", "R", "t", "R", ".");

test("unpickle: malformed and oversized pickles fail with where and why", () => {
  const fails = (buf: Buffer, re: RegExp, limits = {}) => assert.throws(() => unpickle(buf, { source: "t", limits }), re);
  const ok = unpickle(tensorPickle(6, 1, [2, 2], [2, 1]));
  assert.ok(ok instanceof TorchTensor && ok.numel === 4);
  fails(tensorPickle(4, 0, [5], [1]), /reaches element 4 of a 4-element storage/);
  fails(tensorPickle(6, 1, [2, 2], [4, 1]), /a view of size \[2,2\], stride \[4,1\], offset 1 reaches element 6 of a 6-element storage/);
  assert.ok(unpickle(tensorPickle(6, 0, [0, 9], [9, 9])) instanceof TorchTensor, "an empty view needs no storage");
  fails(tensorPickle(6, 0, [2], [1, 1]), /size \[2\] and stride \[1,1\] differ in length/);
  fails(b(0x80, 2, "X", Buffer.from([0xff, 0xff, 0xff, 0x00]), "ab"), /needs 16777215 more bytes but the pickle ends at 9 \(truncated\?\)/);
  fails(b(0x80, 2, uni("abcdef"), "."), /a 6-byte string is longer than the 4 allowed/, { maxString: 4 });
  fails(b(0x80, 2, "h", 3, "."), /GET of memo entry 3, which was never stored/);
  fails(b(0x80, 2, "(", "(", "(", "N", "."), /stack deeper than 3/, { maxStack: 3 });
  fails(b(0x80, 2, "N", "N", "."), /STOP with 2 values on the stack/);
  fails(b(0x80, 2, "N"), /truncated/);
  fails(b(0x80, 2, "(", "0", "."), /POP on an empty stack/);
  fails(b(0x80, 2, "]", "(", "K", 1, "K", 2, "K", 3, "e", "."), /more than 2 container elements/, { maxElements: 2 });
  fails(b(0x80, 6, "N", "."), /pickle protocol 6 is newer than 5/);
  fails(b(0x80, 2, 0xfe), /unsupported opcode 0xfe/);
  fails(b(0x80, 2, 0x82, 1), /refusing EXT/);
  fails(b(0x80, 2, glob("torch", "Tensor"), ")", 0x81, "."), /refusing NEWOBJ torch\.Tensor/);
  fails(b(0x80, 2, glob("torch", "FloatStorage"), ")", "R", "."), /refusing to call torch\.FloatStorage/);
  fails(b(0x80, 2, "}", glob("collections", "OrderedDict"), "b", "."), /refusing BUILD \(__setstate__\) on a dict with collections\.OrderedDict/);
  fails(b(0x80, 2, "}", "]", "N", "s", "."), /a dict key of a list is not supported/);
  fails(b(0x80, 2, "(", uni("storage"), glob("torch", "FloatStorage"), uni("../x"), uni("cpu"), "K", 1, "t", "Q", "."), /bad storage key "\.\.\/x"/);
  // plain values in the text (protocol 0) forms
  assert.deepEqual(unpickle(b("(", "I12\n", "L-99999999999999999999L\n", "F-1.5e3\n", "I01\n", "l", ".")),
    [12, -99999999999999999999n, -1500, true]);
  const d = unpickle(b(0x80, 2, "}", "q", 0, "(", uni("k"), "h", 0, "u", "."));
  assert.ok(d instanceof Map && d.get("k") === d, "a dict may hold itself through the memo");
});

// --- the official-format C3-GAN checkpoint ---

interface Fx {
  shape: number[];
  f32: string;
}
const model = JSON.parse(fs.readFileSync(path.join(FX, "model_small.json"), "utf8")) as {
  config: Record<string, number>;
  inputs: Record<string, Fx>;
  forward: Record<string, Fx>;
};
function decode(fx: Fx): Float32Array {
  const bytes = Buffer.from(fx.f32, "base64");
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

function smallConfig(over: Record<string, unknown> = {}): C3Config {
  const c = model.config;
  return parseConfig({
    name: "small", dataset: { format: "synthetic", numClasses: 6 }, numGtClasses: 6, over: 1,
    imageSize: c.imageSize, channels: c.channels, ngf: c.ngf, ndf: c.ndf, zDim: c.zDim, czDim: c.czDim, ...over,
  }, "small.json");
}

function tmpDir(): string {
  return tempDir("import");
}

test("import: the official small checkpoint becomes a safetensors file with exactly its values", () => {
  const dir = tmpDir();
  try {
    const out = path.join(dir, "model.safetensors");
    const r = importOfficialCheckpoint(pt("c3gan_small.pt"), smallConfig(), out);
    r.model.dispose();
    assert.ok(r.strippedPrefix);
    assert.equal(r.tensors, expected.c3gan_small.tensors.netG + expected.c3gan_small.tensors.netD);

    const top = readTorchCheckpoint(pt("c3gan_small.pt"));
    const want = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const w of ["netG", "netD"]) {
      const sd = stateDictArrays(top.get(w), w);
      for (const [k, t] of sd) {
        assert.ok(k.startsWith("module."), k);
        if (k.endsWith("num_batches_tracked")) assert.equal(t.dtype, "int64");
        want.set(k.slice("module.".length), t);
      }
    }
    const f = readSafetensorsSync(out);
    assert.equal(f.metadata.format, "c3gan-checkpoint");
    assert.equal(f.metadata.source, pt("c3gan_small.pt"));
    assert.equal(JSON.parse(f.metadata.config).numGtClasses, 6);
    assert.deepEqual([...f.tensors.keys()].sort(), [...want.keys()].sort());
    for (const [k, t] of want) {
      const got = f.tensors.get(k)!;
      assert.equal(got.dtype, k.endsWith("num_batches_tracked") ? "I64" : "F32", k); // the official file's dtypes
      assert.deepEqual(got.shape, t.shape, k);
      assert.ok(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength)
        .equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), `${k}: values differ`);
    }
    // and our own loader takes it
    const m = new C3GAN(specFromConfig(smallConfig()), "cpu", new Generator(1n));
    try {
      assert.equal(loadModel(out, m).source, pt("c3gan_small.pt"));
    } finally {
      m.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("import: the imported G reproduces the official forward (train mode, same codes and grid)", (tc) => {
  const r = importOfficialCheckpoint(pt("c3gan_small.pt"), smallConfig());
  try {
    r.model.train();
    tidy(() => {
      const t = (k: string) => Tensor.fromArray(decode(model.inputs[k]), model.inputs[k].shape);
      const S = model.config.imageSize;
      const grid = noGrad(() => F.affineGrid(t("theta"), S, S));
      const out = noGrad(() => r.model.G.forward(t("z"), t("cz"), t("c"), grid));
      const pairs: [string, Tensor][] = [["bg", out.background], ["mask", out.mask], ["fg", out.foreground], ["final", out.final]];
      for (const [k, got] of pairs) {
        const ref = decode(model.forward[k]);
        const a = got.toArray();
        assert.deepEqual(got.shape, model.forward[k].shape, k);
        let diff = 0;
        let scale = 0;
        for (let i = 0; i < ref.length; i++) {
          diff = Math.max(diff, Math.abs(a[i] - ref[i]));
          scale = Math.max(scale, Math.abs(ref[i]));
        }
        assert.ok(diff / scale <= 1e-4, `${k}: relative error ${(diff / scale).toExponential(2)}`);
        tc.diagnostic(`${k}: max |diff| / max |ref| = ${(diff / scale).toExponential(2)}`);
      }
    });
  } finally {
    r.model.dispose();
  }
});

test("import: a config that does not fit lists every mismatch and what the checkpoint says", () => {
  assert.throws(() => importOfficialCheckpoint(pt("c3gan_small.pt"), smallConfig({ numGtClasses: 5, dataset: { format: "synthetic", numClasses: 5 } })),
    (e: Error) => {
      assert.match(e.message, /c3gan_small\.pt does not fit the model built from config "small" \(3 problems\)/);
      assert.match(e.message, /netG: fg_gen\.emb_c\.0\.weight is \[16, 6\] in the checkpoint, \[16, 5\] in the model/);
      assert.match(e.message, /netG: fg_gen\.to_img\.0\.0\.weight is \[4, 8, 3, 3\] in the checkpoint, \[4, 7, 3, 3\] in the model/);
      assert.match(e.message, /netD: centroids\.weight is \[32, 6\] in the checkpoint, \[32, 5\] in the model/);
      assert.match(e.message, /did you set numGtClasses \/ over \/ imageSize/);
      assert.match(e.message, /6 clusters \(the config has numGtClasses 5 x over 1 = 5\)/);
      return true;
    });
  assert.throws(() => importOfficialCheckpoint(pt("c3gan_small.pt"), smallConfig({ imageSize: 64 })),
    (e: Error) => {
      assert.match(e.message, /netG: missing bg_gen\.layers\.3\.1\.weight/);
      assert.match(e.message, /netG: unexpected bg_gen\.layers\.3\.0\.block\.0\.weight/);
      assert.match(e.message, /imageSize 32 \(the config has 64\)/);
      return true;
    });
  assert.throws(() => importOfficialCheckpoint(pt("views.pt"), smallConfig()), /views\.pt has no netG or netD: it holds "a", "b"/);
  assert.throws(() => importOfficialCheckpoint(pt("reject_torch_save.pt"), smallConfig()), /refusing GLOBAL posix\.system/);
});

test("importCommand: config file in, safetensors out, with a summary line", () => {
  const dir = tmpDir();
  try {
    const cfgFile = path.join(dir, "small.json");
    fs.writeFileSync(cfgFile, JSON.stringify(smallConfig()));
    const out = path.join(dir, "m.safetensors");
    const line = importCommand(pt("c3gan_small.pt"), { out, config: cfgFile });
    assert.match(line, /imported 203 tensors from .*c3gan_small\.pt \(DataParallel "module\." prefix removed\) into .*m\.safetensors/);
    assert.ok(fs.statSync(out).size > 600_000);
    assert.throws(() => importCommand(pt("c3gan_small.pt"), { out }), /needs --config/);
    assert.throws(() => importCommand(pt("c3gan_small.pt"), { out: pt("c3gan_small.pt"), config: cfgFile }), /would overwrite the checkpoint/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
