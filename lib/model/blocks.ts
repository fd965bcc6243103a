// The building blocks of the official C3-GAN (base_layer.py), with the same child indices so
// parameter names match the official state dict (e.g. an upBlock's conv is ".1", its BN ".2").
import { Conv2d, BatchNorm2d, forwardChain, GLU, Layer, Module, Sequential, Upsample2x } from "../nn";
import * as F from "../ops";
import { Generator, Tensor, tidy } from "../tensor";
import type { DeviceName } from "../native";

export interface BuildOptions {
  generator: Generator;
  device: DeviceName;
}

// nn.Upsample(scale_factor=2): the library's layer (forwardChain runs it and the conv after it as one op)
export { Upsample2x } from "../nn";

// nn.LeakyReLU: the library's layer (forwardChain runs a batch norm and the LeakyReLU after it as one op)
export { LeakyReLU } from "../nn";

export class Tanh extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return F.tanh(x);
  }
}

export function conv3x3(inC: number, outC: number, o: BuildOptions): Conv2d {
  return new Conv2d(inC, outC, 3, { padding: 1, bias: false, generator: o.generator, device: o.device });
}

/** upsample 2x, 3x3 conv to 2*out, BatchNorm2d, GLU */
export function upBlock(inC: number, outC: number, o: BuildOptions): Sequential {
  return new Sequential(new Upsample2x(), conv3x3(inC, outC * 2, o), new BatchNorm2d(outC * 2, { device: o.device }), new GLU());
}

/** 3x3 conv to 2*out, BatchNorm2d, GLU */
export function sameBlock(inC: number, outC: number, o: BuildOptions): Sequential {
  return new Sequential(conv3x3(inC, outC * 2, o), new BatchNorm2d(outC * 2, { device: o.device }), new GLU());
}

/** x + BN(conv3x3(GLU(BN(conv3x3(x) to 2c)))) */
export class ResBlock extends Module implements Layer {
  readonly block: Sequential;
  constructor(channels: number, o: BuildOptions) {
    super();
    this.block = this.registerModule(
      "block",
      new Sequential(
        conv3x3(channels, channels * 2, o),
        new BatchNorm2d(channels * 2, { device: o.device }),
        new GLU(),
        conv3x3(channels, channels, o),
        new BatchNorm2d(channels, { device: o.device }),
      ),
    );
  }
  forward(x: Tensor): Tensor {
    // the sum is taken by the last batch norm's pass (forwardChain's residual)
    return tidy(() => forwardChain(x, this.block.items(), false, x));
  }
}

export function multiResBlock(count: number, channels: number, o: BuildOptions): Sequential {
  const s = new Sequential();
  for (let i = 0; i < count; i++) s.append(new ResBlock(channels, o));
  return s;
}
