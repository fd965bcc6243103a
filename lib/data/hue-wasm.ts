// The hue step of ColorJitter (Pillow's RGB -> HSV, H + shift, HSV -> RGB) as a WebAssembly
// kernel over the tables of hsv-tables.ts: the same lookups and the same double arithmetic as
// adjustHueJs (color.ts), so the same bytes, a few times faster.
import { hsvTables } from "./hsv-tables";
import { I, WasmFunction, assemble } from "./wasm";

// hue(img, end, shift, tHue, tSat, tSector, tP, tQ, tT, tRoles): pixels img .. end (3 bytes each)
const hueKernel: WasmFunction = (() => {
  const [img, end, shift, tHue, tSat, tSector, tP, tQ, tT, tRoles] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [r, g, b, v, mid, mn, order, cr, s, h, k, pp, x, sec] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
  const [xf, fl] = [24, 25];
  const choose = (o: number, m: number, n: number) => [I.i32(o), I.set(order), I.get(m), I.set(mid), I.get(n), I.set(mn)].flat();
  // channel c gets v, x or pp as the sector's roles table says (0, 1, 2)
  const store = (c: number) => [
    I.get(img),
    I.get(v), I.get(x), I.get(pp),
    I.get(tRoles), I.get(sec), I.i32(3), I.mul(), I.add(), I.i32Load8u(c), I.i32(1), I.eq(), I.select(),
    I.get(tRoles), I.get(sec), I.i32(3), I.mul(), I.add(), I.i32Load8u(c), I.eqz(), I.select(),
    I.i32Store8(c),
  ].flat();
  return {
    name: "hue",
    params: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"],
    locals: ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "f64", "f64"],
    body: [
      I.block(), I.loop(),
      /**/ I.get(img), I.get(end), I.geU(), I.brIf(1),
      /**/ I.block(), // continue
      /*    */ I.get(img), I.i32Load8u(0), I.set(r), I.get(img), I.i32Load8u(1), I.set(g), I.get(img), I.i32Load8u(2), I.set(b),
      /*    which channel is the maximum, the middle and the minimum (ties as Pillow's if-chain) */
      /*    */ I.get(r), I.get(g), I.geU(), I.get(r), I.get(b), I.geU(), I.and(), I.if(),
      /*       */ I.get(r), I.set(v),
      /*       */ I.get(g), I.get(b), I.geU(), I.if(), choose(0, g, b), I.else(), choose(1, b, g), I.end(),
      /*    */ I.else(),
      /*       */ I.get(g), I.get(b), I.geU(), I.if(),
      /*          */ I.get(g), I.set(v),
      /*          */ I.get(r), I.get(b), I.geU(), I.if(), choose(3, r, b), I.else(), choose(2, b, r), I.end(),
      /*       */ I.else(),
      /*          */ I.get(b), I.set(v),
      /*          */ I.get(g), I.get(r), I.geU(), I.if(), choose(5, g, r), I.else(), choose(4, r, g), I.end(),
      /*       */ I.end(),
      /*    */ I.end(),
      /*    gray: unchanged */
      /*    */ I.get(v), I.get(mn), I.sub(), I.tee(cr), I.eqz(), I.brIf(0),
      /*    */ I.get(tSat), I.get(cr), I.i32(8), I.shl(), I.add(), I.get(v), I.add(), I.i32Load8u(0), I.tee(s), I.eqz(),
      /*    */ I.if(),
      /*       */ I.get(img), I.get(v), I.i32Store8(0), I.get(img), I.get(v), I.i32Store8(1), I.get(img), I.get(v), I.i32Store8(2),
      /*       */ I.br(1),
      /*    */ I.end(),
      /*    h = (hue[order, cr, v - mid] + shift) & 255; k = s * 256 + h */
      /*    */ I.get(tHue), I.get(order), I.i32(16), I.shl(), I.add(), I.get(cr), I.i32(8), I.shl(), I.add(), I.get(v), I.add(), I.get(mid), I.sub(),
      /*    */ I.i32Load8u(0), I.get(shift), I.add(), I.i32(255), I.and(), I.set(h),
      /*    */ I.get(s), I.i32(8), I.shl(), I.get(h), I.add(), I.set(k),
      /*    */ I.get(tP), I.get(v), I.i32(8), I.shl(), I.add(), I.get(s), I.add(), I.i32Load8u(0), I.set(pp),
      /*    */ I.get(tSector), I.get(h), I.add(), I.i32Load8u(0), I.set(sec),
      /*    odd sectors use q = v (1 - f32(fs f)), even ones t = v (1 - fs (1 - f)) */
      /*    */ I.get(sec), I.i32(1), I.and(), I.if(),
      /*       */ I.f64(1), I.get(tQ), I.get(k), I.i32(2), I.shl(), I.add(), I.f32Load(0), I.f64PromoteF32(), I.f64Sub(), I.set(xf),
      /*    */ I.else(),
      /*       */ I.f64(1), I.get(tT), I.get(k), I.i32(3), I.shl(), I.add(), I.f64Load(0), I.f64Sub(), I.set(xf),
      /*    */ I.end(),
      /*    x = round(v * xf), halves up (the product is >= 0) */
      /*    */ I.get(v), I.f64ConvertI32S(), I.get(xf), I.f64Mul(), I.tee(xf), I.f64Floor(), I.tee(fl),
      /*    */ I.i32TruncF64S(), I.get(xf), I.get(fl), I.f64Sub(), I.f64(0.5), I.f64Ge(), I.add(), I.set(x),
      /*    */ store(0), store(1), store(2),
      /**/ I.end(),
      /**/ I.get(img), I.i32(3), I.add(), I.set(img),
      /**/ I.br(0),
      I.end(), I.end(),
    ],
  };
})();

// tsconfig's lib has no WebAssembly declarations: the little this file uses
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

interface HueKernel {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  hue: (...args: number[]) => void;
  /** table offsets, then the first free byte */
  at: { hue: number; sat: number; sector: number; p: number; q: number; t: number; roles: number; free: number };
}

let kernel: HueKernel | null | undefined;

// per hsv2rgb sector, where (v, x, p) go: 0 v, 1 x (q or t), 2 p
const ROLES = [0, 1, 2, 1, 0, 2, 2, 0, 1, 2, 1, 0, 1, 2, 0, 0, 2, 1];

function getKernel(): HueKernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const wa = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (!wa) return (kernel = null);
    const t = hsvTables();
    const parts = [t.hue, t.sat, t.sector, t.p, new Uint8Array(t.q.buffer), new Uint8Array(t.t.buffer), Uint8Array.from(ROLES)];
    const at: number[] = [];
    let top = 0;
    for (const p of parts) {
      at.push(top);
      top = (top + p.byteLength + 15) & ~15;
    }
    const e = new wa.Instance(new wa.Module(assemble([hueKernel], Math.ceil((top + 65536) / 65536))), {}).exports as HueKernel;
    const mem = new Uint8Array(e.memory.buffer);
    parts.forEach((p, i) => mem.set(p, at[i]));
    kernel = {
      memory: e.memory, hue: e.hue,
      at: { hue: at[0], sat: at[1], sector: at[2], p: at[3], q: at[4], t: at[5], roles: at[6], free: top },
    };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** Shifts the hue of an RGB HWC image in place; false when WebAssembly is not available. */
export function adjustHueWasm(img: Uint8Array, shift: number): boolean {
  const k = getKernel();
  if (!k) return false;
  const need = k.at.free + img.length - k.memory.buffer.byteLength;
  if (need > 0) k.memory.grow(Math.ceil(need / 65536));
  const mem = new Uint8Array(k.memory.buffer);
  const at = k.at.free;
  mem.set(img, at);
  const a = k.at;
  k.hue(at, at + img.length, shift, a.hue, a.sat, a.sector, a.p, a.q, a.t, a.roles);
  img.set(mem.subarray(at, at + img.length));
  return true;
}
