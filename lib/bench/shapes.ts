// The op shapes that occur in a C3-GAN training iteration, derived from the model's own width
// rules (lib/model/spec.ts) and walked in the order of lib/model/generator.ts and discriminator.ts,
// so the benchmark tracks the model if its plan changes.
import { discriminatorWidths, generatorWidths, ModelSpec } from "../model/spec";

export interface ConvShape {
  net: "G" | "D";
  /** input N, C, H, W */
  n: number;
  c: number;
  h: number;
  w: number;
  /** output channels and kernel size (square) */
  k: number;
  r: number;
  stride: number;
  pad: number;
  bias: boolean;
  /**
   * > 0: the last constChannels of the c input channels are constant over the map (the one-hot
   * code tiled over H x W), and the model runs conv2dConstChannels (lib/ops.ts): a conv over the
   * c - constChannels others plus the code as an exact per-position bias. c, and so convFlops, still
   * count the plain conv over all c channels: the "effective" FLOPs PyTorch spends on it.
   */
  constChannels: number;
  /**
   * true: the input is a 2x nearest upsample of a (h/2, w/2) map, and the model runs the pair as
   * conv2dUp (lib/ops.ts) on that half-size map; FLOPs still count the conv of the upsampled input.
   */
  upsampled: boolean;
  oh: number;
  ow: number;
  /** times this shape runs per G forward (both nets) or per D call */
  uses: number;
  /** module paths that have this shape */
  where: string[];
}

export interface MemShape {
  net: "G" | "D";
  shape: number[];
  uses: number;
  where: string[];
}

export interface BinaryShape {
  net: "G" | "D";
  op: "add" | "mul";
  a: number[];
  b: number[];
  uses: number;
  where: string[];
}

export interface ModelShapes {
  convs: ConvShape[];
  /** BatchNorm inputs: (N, C, H, W) for BatchNorm2d, (N, C) for BatchNorm1d */
  batchNorms: MemShape[];
  /** GLU inputs (split over dim 1) */
  glus: MemShape[];
  /** LeakyReLU(0.2) inputs */
  leakyRelus: MemShape[];
  binaries: BinaryShape[];
}

/** Direct-convolution FLOP count: 2 * N * K * C * R * S * OH * OW (same for all three passes). */
export function convFlops(s: ConvShape): number {
  return 2 * s.n * s.k * s.c * s.r * s.r * s.oh * s.ow;
}

/** FLOPs of the conv over the non-constant channels: what a const-channels conv actually multiplies. */
export function convActualFlops(s: ConvShape): number {
  return 2 * s.n * s.k * (s.c - s.constChannels) * s.r * s.r * s.oh * s.ow;
}

export function convLabel(s: ConvShape): string {
  const c = s.constChannels > 0 ? `(${s.c - s.constChannels}+${s.constChannels}const)` : String(s.c);
  return `${s.net} ${s.r}x${s.r} s${s.stride} p${s.pad} ${c}->${s.k} ${s.h}x${s.w}${s.upsampled ? " up" : ""}`;
}

export function shapeLabel(shape: number[]): string {
  return shape.join("x");
}

/** Merges entries with the same key, adding their uses and module paths. */
class Collector<T extends { uses: number; where: string[] }> {
  private readonly byKey = new Map<string, T>();
  add(key: string, item: T): void {
    const prev = this.byKey.get(key);
    if (prev) {
      prev.uses += item.uses;
      prev.where.push(...item.where);
    } else {
      this.byKey.set(key, item);
    }
  }
  values(): T[] {
    return [...this.byKey.values()];
  }
}

export function modelShapes(spec: ModelSpec, batch: number): ModelShapes {
  if (!Number.isInteger(batch) || batch < 2) throw new Error(`shapes: batch must be an integer >= 2 (BatchNorm needs it), got ${batch}`);
  const B = batch;
  const convs = new Collector<ConvShape>();
  const bns = new Collector<MemShape>();
  const glus = new Collector<MemShape>();
  const lrelus = new Collector<MemShape>();
  const bins = new Collector<BinaryShape>();

  const conv = (net: "G" | "D", where: string, c: number, k: number, size: number, r: number, stride: number, pad: number,
    bias: boolean, constChannels = 0, upsampled = false) => {
    const o = Math.floor((size + 2 * pad - r) / stride) + 1;
    convs.add(`${net} ${c} ${k} ${size} ${r} ${stride} ${pad} ${bias} ${constChannels} ${upsampled}`, {
      net, n: B, c, h: size, w: size, k, r, stride, pad, bias, constChannels, upsampled, oh: o, ow: o, uses: 1, where: [where],
    });
    return o;
  };
  const mem = (col: Collector<MemShape>, net: "G" | "D", where: string, shape: number[]) =>
    col.add(`${net} ${shape.join(",")}`, { net, shape, uses: 1, where: [where] });
  const bin = (net: "G" | "D", where: string, op: "add" | "mul", a: number[], b: number[], uses = 1) =>
    bins.add(`${net} ${op} ${a.join(",")} ${b.join(",")}`, { net, op, a, b, uses, where: [where] });

  // ---- generator: conv3x3 (pad 1, no bias) -> BN -> GLU blocks ----
  const g3 = (where: string, c: number, k: number, size: number, constChannels = 0, upsampled = false) =>
    conv("G", where, c, k, size, 3, 1, 1, false, constChannels, upsampled);
  const glued = (where: string, c: number, out: number, size: number, constChannels = 0, upsampled = false) => {
    g3(where, c, 2 * out, size, constChannels, upsampled);
    mem(bns, "G", where, [B, 2 * out, size, size]);
    mem(glus, "G", where, [B, 2 * out, size, size]);
  };
  const resBlocks = (prefix: string, count: number, c: number, size: number) => {
    for (let i = 0; i < count; i++) {
      glued(`${prefix}.${i}.block.0`, c, c, size);
      g3(`${prefix}.${i}.block.3`, c, c, size);
      mem(bns, "G", `${prefix}.${i}.block.4`, [B, c, size, size]);
      bin("G", `${prefix}.${i} (x + block)`, "add", [B, c, size, size], [B, c, size, size]);
    }
  };
  const widths = generatorWidths(spec);
  const seedFc = (net: string) => {
    mem(bns, "G", `${net}.fc.1`, [B, spec.ngf * 4 * 4 * 2]);
    mem(glus, "G", `${net}.fc.2`, [B, spec.ngf * 4 * 4 * 2]);
  };

  seedFc("bg_gen");
  let c = spec.ngf;
  let size = 4;
  widths.forEach((w, i) => {
    size *= 2;
    glued(`bg_gen.layers.${i}`, c, w, size, 0, true);  // upBlock: Upsample2x -> conv (conv2dUp)
    c = w;
  });
  resBlocks(`bg_gen.layers.${widths.length}`, 3, c, size);
  g3(`bg_gen.layers.${widths.length + 1}`, c, spec.channels, size);

  seedFc("fg_gen");
  c = spec.ngf + spec.czDim;
  size = 4;
  widths.forEach((w, i) => {
    size *= 2;
    glued(`fg_gen.base.${i}`, c, w, size, 0, true);
    c = w;
  });
  resBlocks(`fg_gen.base.${widths.length}`, 3, c, size);
  glued("fg_gen.to_mask.0", c, c, size);
  g3("fg_gen.to_mask.1", c, 1, size);
  // the image head's first conv sees concat(feat, one-hot code tiled): lib/model/generator.ts runs
  // it as conv2dConstChannels, the code channels as a per-position bias
  glued("fg_gen.to_img.0", c + spec.numClusters, c, size, spec.numClusters);
  resBlocks("fg_gen.to_img.1", 2, c, size);
  glued("fg_gen.to_img.2", c, c, size);
  g3("fg_gen.to_img.3", c, spec.channels, size);
  // composite bg * (1 - mask) + fg * mask: the mask broadcasts over the image channels
  const img = [B, spec.channels, size, size];
  const mask = [B, 1, size, size];
  bin("G", "final: bg * (1 - mask)", "mul", img, mask);
  bin("G", "final: fg * mask", "mul", img, mask);
  bin("G", "final: sum of the two", "add", img, img);
  // the mask's broadcast pattern as an add (not itself in the model, so 0 uses)
  if (spec.channels > 1) bin("G", "mask broadcast pattern as add", "add", img, mask, 0);

  // ---- discriminator (one D call; a training step makes four, each its own BN batch) ----
  const dw = discriminatorWidths(spec);
  size = spec.imageSize;
  size = conv("D", "base.0", spec.channels, dw[0], size, 4, 2, 1, false);
  mem(lrelus, "D", "base.1", [B, dw[0], size, size]);
  c = dw[0];
  let idx = 2;
  for (const w of dw.slice(1)) {
    size = conv("D", `base.${idx}`, c, w, size, 4, 2, 1, false);
    mem(bns, "D", `base.${idx + 1}`, [B, w, size, size]);
    mem(lrelus, "D", `base.${idx + 2}`, [B, w, size, size]);
    c = w;
    idx += 3;
  }
  const top = spec.ndf * 8;
  conv("D", `base.${idx}`, c, top, size, 3, 1, 1, false);
  mem(bns, "D", `base.${idx + 1}`, [B, top, size, size]);
  mem(lrelus, "D", `base.${idx + 2}`, [B, top, size, size]);
  conv("D", "info_head.0", top, top, size, 3, 1, 1, false);
  mem(bns, "D", "info_head.1", [B, top, size, size]);
  mem(lrelus, "D", "info_head.2", [B, top, size, size]);
  conv("D", "info_head.3", top, top, size, 4, 4, 0, true);
  conv("D", "rf_head.0", top, 1, size, 4, 4, 0, true);

  return { convs: convs.values(), batchNorms: bns.values(), glus: glus.values(), leakyRelus: lrelus.values(), binaries: bins.values() };
}
