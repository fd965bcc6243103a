// The .npy writer and reader (lib/io/npy.ts): the header numpy.load expects, values to the bit.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { npyBytes, readNpy } from "../lib/io/npy";

test("npy: header as numpy writes it (64-byte aligned, 1-D shapes with a trailing comma), values to the bit", () => {
  const v = new Float32Array([1.5, -0, Number.NaN, 3e-41, -Infinity, 7]);
  for (const shape of [[6], [2, 3], [1, 2, 3], [6, 1]]) {
    const b = npyBytes(v, shape);
    assert.deepEqual([...b.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const hlen = b[8] | (b[9] << 8);
    assert.equal((10 + hlen) % 64, 0, "data starts on a 64-byte boundary");
    const header = Buffer.from(b.subarray(10, 10 + hlen)).toString("latin1");
    const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
    assert.equal(header.trimEnd(), `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`);
    assert.ok(header.endsWith("\n"));
    const r = readNpy(b);
    assert.deepEqual(r.shape, shape);
    assert.deepEqual(new Uint32Array(r.values.buffer), new Uint32Array(v.buffer));
  }
  // an empty array
  assert.deepEqual(readNpy(npyBytes(new Float32Array(0), [0, 4])).shape, [0, 4]);
});

test("npy: wrong shapes and foreign files are refused by name", () => {
  assert.throws(() => npyBytes(new Float32Array(5), [2, 3]), /shape \(2, 3\) does not hold 5 values/);
  assert.throws(() => readNpy(new Uint8Array(20)), /not an \.npy file/);
  const b = npyBytes(new Float32Array(4), [4]);
  assert.throws(() => readNpy(b.subarray(0, b.length - 1)), /15 data bytes for shape \(4\)/);
  const f8 = Buffer.from(b);
  f8.write("<f8", 10 + f8.subarray(10).indexOf("<f4"), "latin1");
  assert.throws(() => readNpy(f8), /dtype <f8 is not float32/);
});
