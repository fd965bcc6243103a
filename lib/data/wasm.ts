// A very small WebAssembly assembler: enough to write the pipeline's hot loops (resampling passes)
// as SIMD kernels without a toolchain. A function body is a list of instructions built with the
// helpers below, in WAT order; `assemble` encodes the module (one exported memory, exported
// functions). Only what the kernels use is here.

export type ValType = "i32" | "f64" | "v128";
const VALTYPE: Record<ValType, number> = { i32: 0x7f, f64: 0x7c, v128: 0x7b };

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function name(s: string): number[] {
  const b = Buffer.from(s, "utf8");
  return [...uleb(b.length), ...b];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** instructions: each helper returns the bytes of one instruction */
export const I = {
  block: () => [0x02, 0x40],
  if: () => [0x04, 0x40],
  else: () => [0x05],
  loop: () => [0x03, 0x40],
  end: () => [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  get: (local: number) => [0x20, ...uleb(local)],
  set: (local: number) => [0x21, ...uleb(local)],
  tee: (local: number) => [0x22, ...uleb(local)],
  i32: (v: number) => [0x41, ...sleb(v | 0)],
  /** i32.load / i32.store with natural alignment and a constant offset */
  i32Load: (offset = 0) => [0x28, 2, ...uleb(offset)],
  i32Load8u: (offset = 0) => [0x2d, 0, ...uleb(offset)],
  i32Store8: (offset = 0) => [0x3a, 0, ...uleb(offset)],
  f32Load: (offset = 0) => [0x2a, 2, ...uleb(offset)],
  f64Load: (offset = 0) => [0x2b, 3, ...uleb(offset)],
  f64: (v: number) => {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    return [0x44, ...b];
  },
  and: () => [0x71],
  eq: () => [0x46],
  ne: () => [0x47],
  gtU: () => [0x4b],
  f64Add: () => [0xa0],
  f64Sub: () => [0xa1],
  f64Mul: () => [0xa2],
  f64Floor: () => [0x9c],
  f64Ge: () => [0x66],
  f64PromoteF32: () => [0xbb],
  f64ConvertI32S: () => [0xb7],
  i32TruncF64S: () => [0xaa],
  add: () => [0x6a],
  sub: () => [0x6b],
  mul: () => [0x6c],
  shl: () => [0x74],
  shrS: () => [0x75],
  eqz: () => [0x45],
  geU: () => [0x4f],
  ltU: () => [0x49],
  geS: () => [0x4e],
  select: () => [0x1b],
  // SIMD (prefix 0xfd)
  v128Load: (offset = 0) => [0xfd, ...uleb(0x00), 0, ...uleb(offset)],
  v128Store: (offset = 0) => [0xfd, ...uleb(0x0b), 0, ...uleb(offset)],
  v128Load32Zero: (offset = 0) => [0xfd, ...uleb(0x5c), 0, ...uleb(offset)],
  v128Store32Lane: (lane: number, offset = 0) => [0xfd, ...uleb(0x5a), 0, ...uleb(offset), lane],
  v128Store8Lane: (lane: number, offset = 0) => [0xfd, ...uleb(0x58), 0, ...uleb(offset), lane],
  i32x4Splat: () => [0xfd, ...uleb(0x11)],
  i16x8ExtendLowU8: () => [0xfd, ...uleb(0x89)],
  i16x8ExtendHighU8: () => [0xfd, ...uleb(0x8a)],
  i32x4ExtendLowU16: () => [0xfd, ...uleb(0xa9)],
  i32x4ExtendHighU16: () => [0xfd, ...uleb(0xaa)],
  i32x4Add: () => [0xfd, ...uleb(0xae)],
  i32x4Mul: () => [0xfd, ...uleb(0xb5)],
  i32x4ShrS: () => [0xfd, ...uleb(0xac)],
  /** signed saturating narrow of two i32x4 to i16x8 */
  i16x8NarrowI32x4S: () => [0xfd, ...uleb(0x85)],
  /** unsigned saturating narrow of two i16x8 to u8x16: the clamp to 0..255 */
  i8x16NarrowI16x8U: () => [0xfd, ...uleb(0x66)],
};

export interface WasmFunction {
  name: string;
  params: ValType[];
  /** extra locals after the params */
  locals: ValType[];
  body: number[][];
}

/** Encodes a module that exports `memory` (initial pages, growable) and the functions. */
export function assemble(functions: WasmFunction[], initialPages: number): Uint8Array {
  // one type per function (no results)
  const types = functions.map((f) => [0x60, ...uleb(f.params.length), ...f.params.map((p) => VALTYPE[p]), 0]);
  const typeSec = section(1, [...uleb(types.length), ...types.flat()]);
  const funcSec = section(3, [...uleb(functions.length), ...functions.flatMap((_, i) => uleb(i))]);
  const memSec = section(5, [1, 0, ...uleb(initialPages)]);
  const exports = [
    ...name("memory"), 0x02, 0,
    ...functions.flatMap((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
  ];
  const exportSec = section(7, [...uleb(functions.length + 1), ...exports]);
  const bodies = functions.map((f) => {
    const groups: number[] = [];
    let count = 0;
    for (let i = 0; i < f.locals.length; i++) {
      const t = f.locals[i];
      if (i > 0 && f.locals[i - 1] === t) continue;
      let n = 0;
      while (i + n < f.locals.length && f.locals[i + n] === t) n++;
      groups.push(...uleb(n), VALTYPE[t]);
      count++;
    }
    const code = [...uleb(count), ...groups, ...f.body.flat(), 0x0b];
    return [...uleb(code.length), ...code];
  });
  const codeSec = section(10, [...uleb(bodies.length), ...bodies.flat()]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...typeSec, ...funcSec, ...memSec, ...exportSec, ...codeSec]);
}
