// Counter-based randomness for the data pipeline. Every draw is keyed by (seed, epoch, image index,
// stream), never by a shared running generator, so a batch's pixels do not depend on prefetch
// depth, worker count, the order workers finish in, or whether the run was resumed mid-epoch.

/** murmur3's 32-bit finaliser: a bijective avalanche mix of one word */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Splits a non-negative integer key (up to 2^53) into two 32-bit words and folds them in. */
function absorb(h: number, key: number): number {
  if (!Number.isInteger(key)) throw new Error(`c3gan data rng: key ${key} is not an integer`);
  const lo = key >>> 0;
  const hi = Math.floor(key / 4294967296) >>> 0; // negative keys fold their sign in here
  h = fmix32((h ^ lo) + 0x9e3779b9);
  return fmix32((h ^ hi) + 0x7f4a7c15);
}

/** Named streams so that different uses of the same (seed, epoch, index) never share draws. */
export const Stream = {
  shuffle: 1,
  views: 2,
  heldOut: 3,
  synthetic: 4,
} as const;

/**
 * sfc32 (Chris Doty-Humphrey's small fast counter generator) seeded from a hash of the keys.
 * The methods mirror the torch calls torchvision makes so transforms read like their reference.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(...keys: number[]) {
    let h = 0x243f6a88;
    for (const k of keys) h = absorb(h, k);
    this.a = fmix32(h ^ 0xa4093822);
    this.b = fmix32(h ^ 0x299f31d0);
    this.c = fmix32(h ^ 0x082efa98);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextU32(); // sfc32's recommended warm-up
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** uniform in [0, 1) with 53 random bits */
  random(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** torch.empty(1).uniform_(lo, hi) */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.random();
  }

  /** torch.randint(lo, hi): an integer in [lo, hi) */
  randint(lo: number, hi: number): number {
    if (!(hi > lo)) throw new Error(`c3gan data rng: empty range [${lo}, ${hi})`);
    return lo + Math.floor(this.random() * (hi - lo));
  }

  /** torch.randperm(n) */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
