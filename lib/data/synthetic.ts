// A small labelled dataset made in memory, for the trainer's demo and for tests: class k is a
// shape (10 kinds) in a colour of its own, on a varied background (random gradient, stripes or
// checks, noise), at a random position, size and rotation. Deterministic for a seed. The pixels
// go on a SharedArrayBuffer and through the same loader as files (formats -> transforms -> batches).
import type { Dataset, Split } from "./formats";
import { Rng, Stream } from "./rng";

export interface SyntheticOptions {
  numClasses?: number;
  perClass?: number;
  /** square image side in pixels */
  size?: number;
  channels?: 1 | 3;
  seed?: number;
  /** generator index of the first image (so a test set can be other images of the same classes) */
  firstIndex?: number;
}

export interface SyntheticImages {
  numClasses: number;
  perClass: number;
  size: number;
  channels: 1 | 3;
  seed: number;
  count: number;
  /** count * size * size * channels, HWC per image, item i has label (firstIndex + i) % numClasses */
  pixels: Uint8Array;
  labels: Int32Array;
  classNames: string[];
}

const SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon", "crescent", "bar"];

/** is (u, v), in units of the shape's radius, inside shape k? */
function inside(kind: number, u: number, v: number): boolean {
  const au = Math.abs(u);
  const av = Math.abs(v);
  switch (kind) {
    case 0: return u * u + v * v <= 1;
    case 1: return au <= 0.8 && av <= 0.8;
    case 2: return v <= 0.6 && v >= -1 && au <= (v + 1) * 0.62;
    case 3: return au + av <= 1;
    case 4: return (au <= 0.3 && av <= 0.95) || (av <= 0.3 && au <= 0.95);
    case 5: {
      const r2 = u * u + v * v;
      return r2 <= 1 && r2 >= 0.36;
    }
    case 6: {
      const r = Math.sqrt(u * u + v * v);
      const t = 0.5 + 0.5 * Math.cos(5 * Math.atan2(v, u));
      return r <= 0.42 + 0.58 * t * t;
    }
    case 7: return Math.max(au * 0.866 + av * 0.5, av) <= 0.88;
    case 8: return u * u + v * v <= 1 && (u - 0.45) * (u - 0.45) + v * v >= 0.5;
    default: return au <= 1 && av <= 0.35;
  }
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const m = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][((i % 6) + 6) % 6];
  return [m[0] * 255, m[1] * 255, m[2] * 255];
}

function checkOpt(name: string, v: number, lo: number): number {
  if (!Number.isInteger(v) || v < lo) throw new Error(`c3gan data: synthetic ${name} must be an integer >= ${lo}, got ${v}`);
  return v;
}

export function syntheticImages(opts: SyntheticOptions = {}): SyntheticImages {
  const numClasses = checkOpt("numClasses", opts.numClasses ?? 10, 1);
  const perClass = checkOpt("perClass", opts.perClass ?? 100, 1);
  const size = checkOpt("size", opts.size ?? 32, 8);
  const channels = opts.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw new Error(`c3gan data: synthetic channels must be 1 or 3, got ${channels}`);
  const seed = opts.seed ?? 0;
  const firstIndex = checkOpt("firstIndex", opts.firstIndex ?? 0, 0);
  const count = numClasses * perClass;
  const plane = size * size;
  const pixels = new Uint8Array(new SharedArrayBuffer(count * plane * channels));
  const labels = new Int32Array(count);
  const rgb = new Float32Array(plane * 3);
  for (let i = 0; i < count; i++) {
    const k = (firstIndex + i) % numClasses;
    labels[i] = k;
    const rng = new Rng(seed, Stream.synthetic, firstIndex + i);
    renderOne(rng, k, size, rgb);
    const out = pixels.subarray(i * plane * channels, (i + 1) * plane * channels);
    for (let p = 0; p < plane; p++) {
      const r = clamp(rgb[3 * p]), g = clamp(rgb[3 * p + 1]), b = clamp(rgb[3 * p + 2]);
      if (channels === 3) {
        out[3 * p] = r;
        out[3 * p + 1] = g;
        out[3 * p + 2] = b;
      } else {
        out[p] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      }
    }
  }
  const classNames = Array.from({ length: numClasses }, (_, k) => `${SHAPES[k % SHAPES.length]}-${k}`);
  return { numClasses, perClass, size, channels, seed, count, pixels, labels, classNames };
}

function clamp(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

function renderOne(rng: Rng, k: number, size: number, rgb: Float32Array): void {
  // background: a gradient between two muted colours, a pattern, noise
  const c1 = hsvToRgb(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.2, 0.85));
  const c2 = hsvToRgb(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.2, 0.85));
  const angle = rng.uniform(0, 2 * Math.PI);
  const gx = Math.cos(angle), gy = Math.sin(angle);
  const pattern = rng.randint(0, 3); // 0 none, 1 stripes, 2 checks
  const period = rng.uniform(0.08, 0.3) * size;
  const patternAmp = rng.uniform(8, 30);
  const patAngle = rng.uniform(0, Math.PI);
  const px = Math.cos(patAngle), py = Math.sin(patAngle);
  const noise = rng.uniform(2, 10);
  // foreground: the class's shape and colour, placed at random
  const kind = k % SHAPES.length;
  const hue = (k * 0.6180339887 + Math.floor(k / SHAPES.length) * 0.37) % 1;
  const fg = hsvToRgb((hue + rng.uniform(-0.02, 0.02) + 1) % 1, rng.uniform(0.7, 0.95), rng.uniform(0.75, 1));
  const radius = rng.uniform(0.24, 0.36) * size;
  const cx = (0.5 + rng.uniform(-0.14, 0.14)) * size;
  const cy = (0.5 + rng.uniform(-0.14, 0.14)) * size;
  const rot = kind === 0 ? 0 : rng.uniform(-0.5, 0.5);
  const cr = Math.cos(rot), sr = Math.sin(rot);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const t = 0.5 + 0.5 * (((x / size - 0.5) * gx + (y / size - 0.5) * gy) * 1.4);
      let pat = 0;
      if (pattern === 1) pat = Math.sin((2 * Math.PI * (x * px + y * py)) / period);
      else if (pattern === 2) pat = (Math.floor(x / period) + Math.floor(y / period)) % 2 === 0 ? 1 : -1;
      const n = (rng.random() - 0.5) * 2 * noise;
      // 2 x 2 supersampled coverage of the shape
      let cover = 0;
      for (let sy = 0; sy < 2; sy++) {
        for (let sx = 0; sx < 2; sx++) {
          const dx = (x + 0.25 + 0.5 * sx - cx) / radius;
          const dy = (y + 0.25 + 0.5 * sy - cy) / radius;
          if (inside(kind, dx * cr + dy * sr, -dx * sr + dy * cr)) cover += 0.25;
        }
      }
      const o = 3 * (y * size + x);
      for (let c = 0; c < 3; c++) {
        const bg = c1[c] * (1 - t) + c2[c] * t + pat * patternAmp + n;
        rgb[o + c] = bg * (1 - cover) + (fg[c] + n * 0.5) * cover;
      }
    }
  }
}

/** The synthetic images as a Dataset (train and test are the same images). */
export function syntheticDataset(opts: SyntheticOptions = {}, split: Split = "train"): Dataset {
  const s = syntheticImages(opts);
  return {
    format: "synthetic",
    split,
    description: `synthetic(${s.numClasses} classes x ${s.perClass}, ${s.size}px, seed ${s.seed})`,
    size: s.count,
    labels: s.labels,
    numClasses: s.numClasses,
    classNames: s.classNames,
    names: null,
    listFile: null,
    lines: null,
    source: { kind: "pixels", pixels: s.pixels, width: s.size, height: s.size, channels: s.channels },
    channels: s.channels,
    skipped: [],
    skipBadImages: false,
    notes: [],
  };
}
