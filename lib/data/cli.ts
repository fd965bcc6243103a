// `c3gan prepare <cub|imagefolder|idx> <dir> --out DIR`, registered on the main CLI program.
import type { Command } from "commander";
import { formatSummary, prepareCub, prepareIdx, prepareImageFolder } from "./prepare";

function parseFraction(v: string): number {
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0 || x >= 1) throw new Error(`--held-out must be a number in [0, 1), got ${JSON.stringify(v)}`);
  return x;
}

function parseSeed(v: string): number {
  const x = Number(v);
  if (!Number.isSafeInteger(x) || x < 0) throw new Error(`--seed must be an integer >= 0, got ${JSON.stringify(v)}`);
  return x;
}

export function registerPrepareCommand(program: Command): void {
  const prepare = program
    .command("prepare")
    .description("write official-format lists (trainset.txt, testset.txt, images/) from a dataset's own layout");

  prepare
    .command("cub")
    .description("lists from CUB_200_2011: training = all 11,788 images, test = the 5,794 of the official test split")
    .argument("<dir>", "the CUB_200_2011 folder (images.txt, image_class_labels.txt, train_test_split.txt, images/)")
    .requiredOption("-o, --out <dir>", "where to write trainset.txt and testset.txt")
    .option("--no-link", "do not link <out>/images to the CUB images folder")
    .action((dir: string, opts: { out: string; link: boolean }) => {
      console.log(formatSummary(prepareCub(dir, opts.out, { link: opts.link })));
    });

  prepare
    .command("imagefolder")
    .description("lists from one folder per class, with a seeded held-out fraction of each class for the test list")
    .argument("<dir>", "folder with one subfolder per class (labels: sorted folder names)")
    .requiredOption("-o, --out <dir>", "where to write trainset.txt and testset.txt")
    .option("--held-out <fraction>", "fraction of each class for the test list", parseFraction, 0.1)
    .option("--seed <n>", "seed of the held-out draw", parseSeed, 0)
    .option("--train-all", "the training list holds every image (as the official CUB lists), not only the rest", false)
    .option("--no-link", "do not link <out>/images to <dir>")
    .action((dir: string, opts: { out: string; heldOut: number; seed: number; trainAll: boolean; link: boolean }) => {
      console.log(formatSummary(prepareImageFolder(dir, opts.out, {
        heldOut: opts.heldOut, seed: opts.seed, trainAll: opts.trainAll, link: opts.link,
      })));
    });

  prepare
    .command("idx")
    .description("PNG images and lists from IDX files (MNIST, Fashion-MNIST), gzip or not")
    .argument("<dir>", "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    .requiredOption("-o, --out <dir>", "where to write images/, trainset.txt and testset.txt")
    .option("--train-images <file>", "training images file (relative to <dir>)")
    .option("--train-labels <file>", "training labels file")
    .option("--test-images <file>", "test images file")
    .option("--test-labels <file>", "test labels file")
    .action(async (dir: string, opts: { out: string; trainImages?: string; trainLabels?: string; testImages?: string; testLabels?: string }) => {
      const s = await prepareIdx(dir, opts.out, {
        files: { trainImages: opts.trainImages, trainLabels: opts.trainLabels, testImages: opts.testImages, testLabels: opts.testLabels },
      });
      console.log(formatSummary(s));
    });
}
