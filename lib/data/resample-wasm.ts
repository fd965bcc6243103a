// The two passes of PIL's bilinear resampling (resample.ts) as WebAssembly SIMD kernels: the same
// fixed-point integer arithmetic, so the same bytes, 3-5x faster than the JavaScript loops. The
// horizontal pass handles 3-channel images (one pixel per i32x4, one tap at a time); the vertical
// pass any channel count (16 bytes of a row per step). 1-channel horizontal passes, and engines
// without WebAssembly SIMD, use the JavaScript passes.
import { I, WasmFunction, assemble } from "./wasm";
import { Box, Coeffs, coefficients, horizontalJs, resampleBilinear, rowsNeeded } from "./resample";

const HALF = 1 << 21;
const SHIFT = 22;

// hpass3(src, stride, rows, colStart, colEnd, bounds, kk, ksizeBytes, dst)
// For each of `rows` rows (src + y * stride) and output columns colStart..colEnd-1, the weighted
// sum of bounds[2x+1] pixels from pixel bounds[2x], written as 3 bytes (the store writes a 4th
// byte, overwritten by the next pixel: dst needs one byte of slack).
const hpass3: WasmFunction = (() => {
  const [src, stride, rows, colStart, colEnd, bounds, kk, ksizeBytes, dst] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [y, srow, xx, p, n, k, acc, half] = [9, 10, 11, 12, 13, 14, 15, 16];
  return {
    name: "hpass3",
    params: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"],
    locals: ["i32", "i32", "i32", "i32", "i32", "i32", "v128", "v128"],
    body: [
      I.i32(HALF), I.i32x4Splat(), I.set(half),
      I.i32(0), I.set(y),
      I.block(), I.loop(),
      /**/ I.get(y), I.get(rows), I.geU(), I.brIf(1),
      /**/ I.get(src), I.get(y), I.get(stride), I.mul(), I.add(), I.set(srow),
      /**/ I.get(colStart), I.set(xx),
      /**/ I.block(), I.loop(),
      /*    */ I.get(xx), I.get(colEnd), I.geU(), I.brIf(1),
      /*    p = srow + 3 * bounds[2xx]; n = bounds[2xx + 1]; k = kk + xx * ksizeBytes */
      /*    */ I.get(srow), I.get(bounds), I.get(xx), I.i32(3), I.shl(), I.add(), I.i32Load(0), I.i32(3), I.mul(), I.add(), I.set(p),
      /*    */ I.get(bounds), I.get(xx), I.i32(3), I.shl(), I.add(), I.i32Load(4), I.set(n),
      /*    */ I.get(kk), I.get(xx), I.get(ksizeBytes), I.mul(), I.add(), I.set(k),
      /*    */ I.get(half), I.set(acc),
      /*    */ I.block(), I.loop(),
      /*       */ I.get(n), I.eqz(), I.brIf(1),
      /*       acc += u32x4(load 4 bytes at p) * splat(k[0]) */
      /*       */ I.get(acc), I.get(p), I.v128Load32Zero(0), I.i16x8ExtendLowU8(), I.i32x4ExtendLowU16(),
      /*       */ I.get(k), I.i32Load(0), I.i32x4Splat(), I.i32x4Mul(), I.i32x4Add(), I.set(acc),
      /*       */ I.get(p), I.i32(3), I.add(), I.set(p),
      /*       */ I.get(k), I.i32(4), I.add(), I.set(k),
      /*       */ I.get(n), I.i32(1), I.sub(), I.set(n),
      /*       */ I.br(0),
      /*    */ I.end(), I.end(),
      /*    clip8 = clamp(acc >> 22, 0, 255) by saturating narrows */
      /*    */ I.get(dst),
      /*    */ I.get(acc), I.i32(SHIFT), I.i32x4ShrS(), I.get(acc), I.i32(SHIFT), I.i32x4ShrS(), I.i16x8NarrowI32x4S(),
      /*    */ I.get(acc), I.i32(SHIFT), I.i32x4ShrS(), I.get(acc), I.i32(SHIFT), I.i32x4ShrS(), I.i16x8NarrowI32x4S(),
      /*    */ I.i8x16NarrowI16x8U(), I.v128Store32Lane(0, 0),
      /*    */ I.get(dst), I.i32(3), I.add(), I.set(dst),
      /*    */ I.get(xx), I.i32(1), I.add(), I.set(xx),
      /*    */ I.br(0),
      /**/ I.end(), I.end(),
      /**/ I.get(y), I.i32(1), I.add(), I.set(y),
      /**/ I.br(0),
      I.end(), I.end(),
    ],
  };
})();

// vpass(tmp, rowLen, outRows, bounds, kk, ksizeBytes, dst, rowFirst)
// Output row r (bounds and kk already offset to the window's first row) is the weighted sum of
// bounds[2r+1] rows of tmp from row bounds[2r] - rowFirst; 16 bytes at a time, so tmp and dst
// need 16 bytes of slack (a row's last step spills into the next row, which is written after).
const vpass: WasmFunction = (() => {
  const [tmp, rowLen, outRows, bounds, kk, ksizeBytes, dst, rowFirst] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, i, p, n, k, rowBase, nTaps, krow, out] = [8, 9, 10, 11, 12, 13, 14, 15, 16];
  const [kv, a0, a1, a2, a3, v, lo, hi, half] = [17, 18, 19, 20, 21, 22, 23, 24, 25];
  const accumulate = (a: number, widen: number[], from: number) =>
    [I.get(a), I.get(from), widen, I.get(kv), I.i32x4Mul(), I.i32x4Add(), I.set(a)].flat();
  const shifted = (a: number) => [I.get(a), I.i32(SHIFT), I.i32x4ShrS()].flat();
  return {
    name: "vpass",
    params: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"],
    locals: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "v128", "v128", "v128", "v128", "v128", "v128", "v128", "v128", "v128"],
    body: [
      I.i32(HALF), I.i32x4Splat(), I.set(half),
      I.i32(0), I.set(r),
      I.block(), I.loop(),
      /**/ I.get(r), I.get(outRows), I.geU(), I.brIf(1),
      /**/ I.get(tmp), I.get(bounds), I.get(r), I.i32(3), I.shl(), I.add(), I.i32Load(0), I.get(rowFirst), I.sub(), I.get(rowLen), I.mul(), I.add(), I.set(rowBase),
      /**/ I.get(bounds), I.get(r), I.i32(3), I.shl(), I.add(), I.i32Load(4), I.set(nTaps),
      /**/ I.get(kk), I.get(r), I.get(ksizeBytes), I.mul(), I.add(), I.set(krow),
      /**/ I.get(dst), I.get(r), I.get(rowLen), I.mul(), I.add(), I.set(out),
      /**/ I.i32(0), I.set(i),
      /**/ I.block(), I.loop(),
      /*    */ I.get(i), I.get(rowLen), I.geU(), I.brIf(1),
      /*    */ I.get(half), I.set(a0), I.get(half), I.set(a1), I.get(half), I.set(a2), I.get(half), I.set(a3),
      /*    */ I.get(rowBase), I.get(i), I.add(), I.set(p),
      /*    */ I.get(krow), I.set(k),
      /*    */ I.get(nTaps), I.set(n),
      /*    */ I.block(), I.loop(),
      /*       */ I.get(n), I.eqz(), I.brIf(1),
      /*       */ I.get(k), I.i32Load(0), I.i32x4Splat(), I.set(kv),
      /*       */ I.get(p), I.v128Load(0), I.set(v),
      /*       */ I.get(v), I.i16x8ExtendLowU8(), I.set(lo),
      /*       */ I.get(v), I.i16x8ExtendHighU8(), I.set(hi),
      /*       */ accumulate(a0, I.i32x4ExtendLowU16(), lo),
      /*       */ accumulate(a1, I.i32x4ExtendHighU16(), lo),
      /*       */ accumulate(a2, I.i32x4ExtendLowU16(), hi),
      /*       */ accumulate(a3, I.i32x4ExtendHighU16(), hi),
      /*       */ I.get(p), I.get(rowLen), I.add(), I.set(p),
      /*       */ I.get(k), I.i32(4), I.add(), I.set(k),
      /*       */ I.get(n), I.i32(1), I.sub(), I.set(n),
      /*       */ I.br(0),
      /*    */ I.end(), I.end(),
      /*    */ I.get(out), I.get(i), I.add(),
      /*    */ shifted(a0), shifted(a1), I.i16x8NarrowI32x4S(), shifted(a2), shifted(a3), I.i16x8NarrowI32x4S(),
      /*    */ I.i8x16NarrowI16x8U(), I.v128Store(0),
      /*    */ I.get(i), I.i32(16), I.add(), I.set(i),
      /*    */ I.br(0),
      /**/ I.end(), I.end(),
      /**/ I.get(r), I.i32(1), I.add(), I.set(r),
      /**/ I.br(0),
      I.end(), I.end(),
    ],
  };
})();

// tsconfig's lib has no WebAssembly declarations: the little this file uses
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

interface Kernels {
  memory: WasmMemory;
  hpass3: (...args: number[]) => void;
  vpass: (...args: number[]) => void;
}

let kernels: Kernels | null | undefined;

/** the instantiated kernels (one instance per thread), or null without WebAssembly SIMD */
function getKernels(): Kernels | null {
  if (kernels !== undefined) return kernels;
  try {
    const bytes = assemble([hpass3, vpass], 16);
    const wa = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (!wa) return (kernels = null);
    const instance = new wa.Instance(new wa.Module(bytes), {});
    const e = instance.exports as unknown as Kernels;
    kernels = { memory: e.memory, hpass3: e.hpass3, vpass: e.vpass };
  } catch {
    kernels = null;
  }
  return kernels;
}

export function wasmResampleAvailable(): boolean {
  return getKernels() !== null;
}

/** a bump allocation in the kernels' memory, 16-byte aligned, with `slack` spare bytes */
class Arena {
  top = 0;
  constructor(private readonly k: Kernels) {}
  alloc(bytes: number, slack = 16): number {
    const at = this.top;
    this.top = (at + bytes + slack + 15) & ~15;
    const need = this.top - this.k.memory.buffer.byteLength;
    if (need > 0) this.k.memory.grow(Math.ceil(need / 65536));
    return at;
  }
}

function putCoeffs(k: Kernels, arena: Arena, c: Coeffs): { bounds: number; kk: number } {
  const bounds = arena.alloc(c.bounds.byteLength, 0);
  const kk = arena.alloc(c.kk.byteLength, 0);
  new Int32Array(k.memory.buffer, bounds, c.bounds.length).set(c.bounds);
  new Int32Array(k.memory.buffer, kk, c.kk.length).set(c.kk);
  return { bounds, kk };
}

/**
 * resampleBilinear (same arguments, same bytes) through the WebAssembly kernels; falls back to
 * the JavaScript implementation where the kernels do not apply.
 */
export function resampleBilinearFast(
  src: Uint8Array, srcWidth: number, channels: number, box: Box, outWidth: number, outHeight: number,
  window: Box = { left: 0, top: 0, width: outWidth, height: outHeight },
): Uint8Array {
  const k = getKernels();
  const C = channels;
  const needH = outWidth !== box.width;
  const needV = outHeight !== box.height;
  if (!k || !needV || (needH && C !== 3)) return resampleBilinear(src, srcWidth, C, box, outWidth, outHeight, window);
  if (window.left < 0 || window.top < 0 || window.left + window.width > outWidth || window.top + window.height > outHeight) {
    throw new Error(`c3gan data: resample window out of the ${outWidth}x${outHeight} output`);
  }
  const V = coefficients(box.height, outHeight);
  const { rowFirst, rowCount } = rowsNeeded(V, window);
  const rowLen = window.width * C;
  const arena = new Arena(k);
  const tmp = arena.alloc(rowCount * rowLen);
  if (needH) {
    // the box rows the vertical pass reads, copied tightly into the kernels' memory
    const boxRow = box.width * C;
    const srcAt = arena.alloc(rowCount * boxRow);
    const mem = new Uint8Array(k.memory.buffer);
    for (let y = 0; y < rowCount; y++) {
      const s = ((box.top + rowFirst + y) * srcWidth + box.left) * C;
      mem.set(src.subarray(s, s + boxRow), srcAt + y * boxRow);
    }
    const Hc = coefficients(box.width, outWidth);
    const H = putCoeffs(k, arena, Hc);
    k.hpass3(srcAt, boxRow, rowCount, window.left, window.left + window.width, H.bounds, H.kk, Hc.ksize * 4, tmp);
  } else {
    const scratch = new Uint8Array(rowCount * rowLen);
    horizontalJs(src, srcWidth, C, box, rowFirst, rowCount, window, null, scratch);
    new Uint8Array(k.memory.buffer).set(scratch, tmp);
  }
  const Vm = putCoeffs(k, arena, V);
  const out = arena.alloc(window.height * rowLen);
  k.vpass(tmp, rowLen, window.height, Vm.bounds + window.top * 8, Vm.kk + window.top * V.ksize * 4, V.ksize * 4, out, rowFirst);
  return new Uint8Array(k.memory.buffer, out, window.height * rowLen).slice();
}
