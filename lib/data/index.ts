// The data pipeline's public surface: formats, the loader, the transforms, prepare.
export {
  DataFormat, DataSpec, Dataset, IdxFiles, ImageSource, SkippedImage, Split, IMAGE_EXTENSIONS,
  openDataset, itemName, itemWhere, scanImages, classFolders,
} from "./formats";
export { ListEntry, ListFormatError, parseList, formatList } from "./lists";
export { IdxArray, IdxImages, readIdxFile, parseIdx, encodeIdxU8, loadIdxImages } from "./idx";
export { RawImage, configureSharp, decodeImageFile, toChannels } from "./decode";
export { resampleBilinear } from "./resample";
export { resampleBilinearFast, wasmResampleAvailable } from "./resample-wasm";
export {
  AugmentOptions, OFFICIAL_AUGMENT, Resampler, ViewConfig, NORMALIZE_LUT, resizeShorterDims,
  sampleTrainView, sampleAugView, testViewParams, randomResizedCropParams, writeNormalized,
} from "./transforms";
export { LoaderMode, PipelineConfig } from "./pipeline";
export {
  DataLoader, LoaderOptions, DecodeCacheOptions, ImageBatch, PairBatch, TestBatch, BatchOf, EpochReport,
} from "./loader";
export { SyntheticOptions, syntheticDataset, syntheticImages } from "./synthetic";
export { PrepareSummary, SplitSummary, prepareCub, prepareImageFolder, prepareIdx, formatSummary } from "./prepare";
export { openDatasetsForTraining, specForSplit } from "./training";
export { Rng } from "./rng";
