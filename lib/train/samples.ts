// Sample grids as PNG (through sharp): images in [-1, 1] laid out in rows, as torchvision's
// make_grid(nrow, padding, pad_value = 1) after the official postprocess ((x + 1) / 2, clamped).
import sharp from "sharp";

export interface ImageBatch {
  data: Float32Array; // (N, C, H, W)
  shape: [number, number, number, number];
}

/** Lays out N images in rows of `perRow`, `padding` white pixels around each; returns RGB bytes. */
export function gridPixels(b: ImageBatch, perRow: number, padding = 2): { pixels: Buffer; width: number; height: number } {
  const [N, C, H, W] = b.shape;
  if (C !== 1 && C !== 3) throw new Error(`sample grid: images must have 1 or 3 channels, got ${C}`);
  const cols = Math.min(perRow, N);
  const rows = Math.ceil(N / cols);
  const width = cols * (W + padding) + padding;
  const height = rows * (H + padding) + padding;
  const pixels = Buffer.alloc(width * height * 3, 255);
  for (let n = 0; n < N; n++) {
    const x0 = padding + (n % cols) * (W + padding);
    const y0 = padding + Math.floor(n / cols) * (H + padding);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = ((y0 + y) * width + x0 + x) * 3;
        for (let ch = 0; ch < 3; ch++) {
          const v = b.data[((n * C + (C === 1 ? 0 : ch)) * H + y) * W + x];
          pixels[o + ch] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
        }
      }
    }
  }
  return { pixels, width, height };
}

export async function gridPng(b: ImageBatch, perRow: number, padding = 2): Promise<Buffer> {
  const { pixels, width, height } = gridPixels(b, perRow, padding);
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** Concatenates image batches of the same (C, H, W) along N; 1-channel batches are kept as is. */
export function stackBatches(batches: ImageBatch[]): ImageBatch {
  const [, , H, W] = batches[0].shape;
  const C = Math.max(...batches.map((b) => b.shape[1]));
  const N = batches.reduce((a, b) => a + b.shape[0], 0);
  const data = new Float32Array(N * C * H * W);
  let n0 = 0;
  for (const b of batches) {
    const [bn, bc] = b.shape;
    for (let n = 0; n < bn; n++)
      for (let ch = 0; ch < C; ch++)
        data.set(b.data.subarray(((n * bc) + (bc === 1 ? 0 : ch)) * H * W, ((n * bc) + (bc === 1 ? 0 : ch) + 1) * H * W),
          ((n0 + n) * C + ch) * H * W);
    n0 += bn;
  }
  return { data, shape: [N, C, H, W] };
}
