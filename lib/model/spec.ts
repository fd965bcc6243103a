// The sizes that define a C3-GAN network, derived from a config and checked once.
export interface ModelSpec {
  imageSize: 32 | 64 | 128 | 256;
  channels: 1 | 3;
  ngf: number;
  ndf: number;
  zDim: number;
  czDim: number;
  /** K = numGtClasses * over */
  numClusters: number;
}

/** Official CUB model: 128 px, ngf 512, ndf 64, z 64, cz 8; K = 200 * over. */
export function officialSpec(numClusters: number): ModelSpec {
  return { imageSize: 128, channels: 3, ngf: 512, ndf: 64, zDim: 64, czDim: 8, numClusters };
}

/** Number of up (G) and stride-2 down (D) blocks: log2(size / 4). */
export function numBlocks(spec: ModelSpec): number {
  return Math.log2(spec.imageSize / 4);
}

/**
 * Output channels of G's up blocks: the first n-2 halve from ngf (ngf/2, ngf/4, ...), the last two
 * are ngf/32. At 128 px (n = 5) this is the official 256, 128, 64, 16, 16 for ngf 512.
 */
export function generatorWidths(spec: ModelSpec): number[] {
  const n = numBlocks(spec);
  const w: number[] = [];
  for (let i = 1; i <= n - 2; i++) w.push(spec.ngf / 2 ** i);
  w.push(spec.ngf / 32, spec.ngf / 32);
  return w;
}

/** Output channels of D's stride-2 convs: ndf * min(2^i, 8). */
export function discriminatorWidths(spec: ModelSpec): number[] {
  const n = numBlocks(spec);
  return Array.from({ length: n }, (_, i) => spec.ndf * Math.min(2 ** i, 8));
}

export function validateSpec(spec: ModelSpec): ModelSpec {
  const bad = (what: string): never => {
    throw new Error(`model: ${what}`);
  };
  if (![32, 64, 128, 256].includes(spec.imageSize)) bad(`imageSize must be 32, 64, 128 or 256, got ${spec.imageSize}`);
  if (spec.channels !== 1 && spec.channels !== 3) bad(`channels must be 1 or 3, got ${spec.channels}`);
  const n = numBlocks(spec);
  const div = Math.max(32, 2 ** (n - 2));
  if (!Number.isInteger(spec.ngf) || spec.ngf < div || spec.ngf % div !== 0)
    bad(`ngf must be a positive multiple of ${div} at ${spec.imageSize} px, got ${spec.ngf}`);
  if (!Number.isInteger(spec.ndf) || spec.ndf < 1) bad(`ndf must be a positive integer, got ${spec.ndf}`);
  if (!Number.isInteger(spec.zDim) || spec.zDim < 1) bad(`zDim must be a positive integer, got ${spec.zDim}`);
  if (!Number.isInteger(spec.czDim) || spec.czDim < 1) bad(`czDim must be a positive integer, got ${spec.czDim}`);
  if (!Number.isInteger(spec.numClusters) || spec.numClusters < 2)
    bad(`the number of clusters must be an integer >= 2, got ${spec.numClusters}`);
  return spec;
}
