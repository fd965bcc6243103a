// The nn namespace: Module, the layers and the initialisers.
export { Module } from "./module";
export type { Layer, LoadResult } from "./module";
export { Conv2d, Linear, BatchNorm1d, BatchNorm2d, GLU, LeakyReLU, Sequential, Upsample2x, forwardChain } from "./layers";
export type { Conv2dOptions, LinearOptions, BatchNormOptions } from "./layers";
export * as init from "./init";
