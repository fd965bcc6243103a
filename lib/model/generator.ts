// The generator (model.py): a background net and a foreground net fed the same z; the
// foreground also gets the cluster code c (one-hot) and its noise cz, and outputs a mask.
import { BatchNorm1d, Conv2d, forwardChain, GLU, Layer, Linear, Module, Sequential } from "../nn";
import * as F from "../ops";
import { Tensor, tidy } from "../tensor";
import { BuildOptions, conv3x3, multiResBlock, sameBlock, Tanh, upBlock } from "./blocks";
import { generatorWidths, ModelSpec } from "./spec";

/** Linear(z, ngf*4*4*2, no bias) -> BatchNorm1d -> GLU: the 4x4 seed map of both nets */
function seedFc(spec: ModelSpec, o: BuildOptions): Sequential {
  const n = spec.ngf * 4 * 4 * 2;
  return new Sequential(
    new Linear(spec.zDim, n, { bias: false, generator: o.generator, device: o.device }),
    new BatchNorm1d(n, { device: o.device }),
    new GLU(),
  );
}

export class BackgroundGenerator extends Module {
  readonly fc: Sequential;
  readonly layers: Sequential;
  constructor(readonly spec: ModelSpec, o: BuildOptions) {
    super();
    this.fc = this.registerModule("fc", seedFc(spec, o));
    const widths = generatorWidths(spec);
    const layers = new Sequential();
    let c = spec.ngf;
    for (const w of widths) layers.append(upBlock(c, w, o)), (c = w);
    layers.append(multiResBlock(3, c, o));
    layers.append(conv3x3(c, spec.channels, o));
    layers.append(new Tanh());
    this.layers = this.registerModule("layers", layers);
  }
  forward(z: Tensor): Tensor {
    const seed = tidy(() => F.reshape(this.fc.forward(z), [z.shape[0], this.spec.ngf, 4, 4]));
    return forwardChain(seed, this.layers.items(), true);
  }
}

export class ForegroundGenerator extends Module {
  readonly fc: Sequential;
  readonly emb_c: Sequential;
  readonly base: Sequential;
  readonly to_mask: Sequential;
  readonly to_img: Sequential;
  constructor(readonly spec: ModelSpec, o: BuildOptions) {
    super();
    const K = spec.numClusters;
    this.fc = this.registerModule("fc", seedFc(spec, o));
    this.emb_c = this.registerModule(
      "emb_c",
      new Sequential(
        new Linear(K, spec.czDim * 4, { bias: true, generator: o.generator, device: o.device }),
        new BatchNorm1d(spec.czDim * 4, { device: o.device }),
        new GLU(),
      ),
    );
    const base = new Sequential();
    let c = spec.ngf + spec.czDim;
    for (const w of generatorWidths(spec)) base.append(upBlock(c, w, o)), (c = w);
    base.append(multiResBlock(3, c, o));
    this.base = this.registerModule("base", base);
    this.to_mask = this.registerModule("to_mask", new Sequential(sameBlock(c, c, o), conv3x3(c, 1, o)));
    this.to_img = this.registerModule(
      "to_img",
      new Sequential(sameBlock(K + c, c, o), multiResBlock(2, c, o), sameBlock(c, c, o), conv3x3(c, spec.channels, o), new Tanh()),
    );
  }

  /** returns the mask (B,1,S,S) and the foreground image (B,channels,S,S), unperturbed */
  forward(z: Tensor, c: Tensor, cz: Tensor): { mask: Tensor; image: Tensor } {
    // each intermediate is freed once used (the tape keeps its own handles on what it needs)
    return tidy(() => {
      const B = z.shape[0];
      const cd = this.spec.czDim;
      // c' = mu + exp(log std) * noise: the reparameterised code, tiled over the 4x4 seed map
      const input = tidy(() => {
        const emb = this.emb_c.forward(c);
        const code = F.add(F.slice(emb, 1, 0, cd), F.mul(F.exp(F.slice(emb, 1, cd, 2 * cd)), cz));
        const codeMap = F.expand(F.reshape(code, [B, cd, 1, 1]), [B, cd, 4, 4]);
        const seed = F.reshape(this.fc.forward(z), [B, this.spec.ngf, 4, 4]);
        return F.concat([seed, codeMap], 1);
      });
      const feat = forwardChain(input, this.base.items(), true);
      const mask = tidy(() => F.sigmoid(this.to_mask.forward(feat)));
      const head = tidy(() => this.imageHeadConv(feat, c));
      feat.dispose();
      const first = this.to_img.get(0) as Sequential;
      const rest: Layer[] = [...first.items().slice(1), ...this.to_img.items().slice(1)];
      return { mask, image: forwardChain(head, rest, true) };
    });
  }

  /**
   * to_img's first conv (to_img.0.0) over concat(feat, c tiled over the map), run as
   * conv2dConstChannels: the K one-hot code channels are constant over the map, so they are a
   * per-position bias instead of K of its K + c input channels (most of G's FLOPs at K = 400).
   */
  private imageHeadConv(feat: Tensor, c: Tensor): Tensor {
    const first = this.to_img.get(0) as Sequential;
    const conv = first.get(0) as Conv2d;
    const k = conv.weight.shape[2];
    if (conv.stride === 1 && conv.weight.shape[3] === k && k % 2 === 1 && conv.padding === (k - 1) / 2) {
      const y = F.conv2dConstChannels(feat, conv.weight, c);
      return conv.bias ? F.add(y, F.reshape(conv.bias, [1, conv.bias.shape[0], 1, 1])) : y;
    }
    const [B, K] = c.shape;
    return conv.forward(F.concat([feat, F.expand(F.reshape(c, [B, K, 1, 1]), [B, K, feat.shape[2], feat.shape[3]])], 1));
  }
}

export interface GeneratorOutput {
  background: Tensor;
  mask: Tensor;
  foreground: Tensor;
  final: Tensor;
}

export class C3Generator extends Module {
  readonly bg_gen: BackgroundGenerator;
  readonly fg_gen: ForegroundGenerator;
  constructor(readonly spec: ModelSpec, o: BuildOptions) {
    super();
    this.bg_gen = this.registerModule("bg_gen", new BackgroundGenerator(spec, o));
    this.fg_gen = this.registerModule("fg_gen", new ForegroundGenerator(spec, o));
  }

  /**
   * z (B, zDim), cz (B, czDim), c one-hot (B, K). With a grid (training), the mask and the
   * foreground are warped by it (bilinear, zero padding) before compositing.
   */
  forward(z: Tensor, cz: Tensor, c: Tensor, grid: Tensor | null = null): GeneratorOutput {
    return tidy(() => {
      const background = this.bg_gen.forward(z);
      let { mask, image: foreground } = this.fg_gen.forward(z, c, cz);
      if (grid) {
        mask = F.gridSample(mask, grid);
        foreground = F.gridSample(foreground, grid);
      }
      const final = F.add(F.mul(background, F.sub(1, mask)), F.mul(foreground, mask));
      return { background, mask, foreground, final };
    });
  }
}
