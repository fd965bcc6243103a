// NumPy's .npy format (version 1.0) for float32 arrays, so features and similarities load with
// numpy.load: the magic, a little-endian header length, a Python-literal header padded with
// spaces to a multiple of 64 bytes (numpy's own alignment), then the raw little-endian values.

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** The .npy bytes of a float32 array of the given shape (C order). */
export function npyBytes(values: Float32Array, shape: number[]): Uint8Array {
  const count = shape.reduce((n, d) => n * d, 1);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count !== values.length) {
    throw new Error(`npy: shape (${shape.join(", ")}) does not hold ${values.length} values`);
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const fixed = MAGIC.length + 2 + 2; // magic, version, header length
  header += " ".repeat((64 - ((fixed + header.length + 1) % 64)) % 64) + "\n";
  if (header.length > 0xffff) throw new Error("npy: header too long for format 1.0");
  const out = new Uint8Array(fixed + header.length + values.length * 4);
  out.set(MAGIC, 0);
  out[6] = 1; // version 1.0
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[fixed + i] = header.charCodeAt(i);
  const body = new DataView(out.buffer, fixed + header.length);
  for (let i = 0; i < values.length; i++) body.setFloat32(i * 4, values[i], true);
  return out;
}

/** Reads a float32 .npy array (C order, as npyBytes writes and numpy.save of float32 does). */
export function readNpy(bytes: Uint8Array): { shape: number[]; values: Float32Array } {
  const bad = (why: string) => new Error(`npy: ${why}`);
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) throw bad("not an .npy file (no \\x93NUMPY magic)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const hlen = major === 1 ? view.getUint16(8, true) : major === 2 || major === 3 ? view.getUint32(8, true) : -1;
  if (hlen < 0) throw bad(`format version ${major} is not supported`);
  const start = major === 1 ? 10 : 12;
  if (start + hlen > bytes.length) throw bad("truncated header");
  const header = new TextDecoder("latin1").decode(bytes.subarray(start, start + hlen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  if (descr !== "<f4") throw bad(`dtype ${descr ?? "?"} is not float32 ('<f4')`);
  if (!/'fortran_order':\s*False/.test(header)) throw bad("Fortran-order arrays are not supported");
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (dims === undefined) throw bad("no shape in the header");
  const shape = dims.split(",").map((d) => d.trim()).filter((d) => d.length > 0).map(Number);
  const count = shape.reduce((n, d) => n * d, 1);
  const body = start + hlen;
  if (bytes.length - body !== count * 4) throw bad(`${bytes.length - body} data bytes for shape (${shape.join(", ")})`);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(body + i * 4, true);
  return { shape, values };
}
