// Dataset formats. The config names one; openDataset turns it into a Dataset: labels, names for
// messages, and an ImageSource the loader (and its workers: the object is structured-cloneable,
// pixel data lives on SharedArrayBuffers) reads images from.
//   lists        official: <root>/trainset.txt, <root>/testset.txt, images under <root>/images/
//   imagefolder  <root>/<class>/**/<image>, labels = index of the class folder in sorted order;
//                train and test are the same images (prepare imagefolder makes held-out lists)
//   folder       <root>/**/<image>, no labels (clustering only); train = test
//   idx          IDX files (gzip or not), default names {train,t10k}-{images-idx3,labels-idx1}-ubyte
//   synthetic    coloured shapes made in memory (synthetic.ts); train = test
import * as fs from "node:fs";
import * as path from "node:path";
import { ListFormatError, parseList } from "./lists";
import { loadIdxImages } from "./idx";
import { ignoredFilesNote } from "./sniff";
import { SyntheticOptions, syntheticDataset } from "./synthetic";
import type { RawPixels } from "./decode";

export type DataFormat = "lists" | "imagefolder" | "folder" | "idx" | "synthetic";
export type Split = "train" | "test";

export interface IdxFiles {
  trainImages?: string;
  trainLabels?: string;
  testImages?: string;
  testLabels?: string;
}

export interface DataSpec {
  format: DataFormat;
  /** the data folder (every format but synthetic) */
  root?: string;
  /** lists: list file names relative to root (defaults trainset.txt, testset.txt) */
  trainList?: string;
  testList?: string;
  /** lists: image folder relative to root (default images) */
  imagesDir?: string;
  /** bounds the labels (lists) and fixes the class count; default: the largest label + 1 */
  numClasses?: number;
  /** idx: explicit files (relative to root or absolute) instead of the default names */
  idx?: IdxFiles;
  synthetic?: SyntheticOptions;
  /** missing or undecodable images become warnings (listed at the end of each epoch), not errors */
  skipBadImages?: boolean;
}

export type ImageSource =
  | { kind: "files"; files: string[] }
  | { kind: "pixels"; pixels: Uint8Array; width: number; height: number; channels: 1 | 3 }
  /** encoded image files held in memory (a library caller's buffers) */
  | { kind: "encoded"; images: Uint8Array[] }
  /** decoded pixels of any size held in memory (a library caller's), each its own size */
  | { kind: "raw"; images: RawPixels[] };

export interface SkippedImage {
  /** index in the dataset, or -1 when it was dropped when the dataset was opened */
  index: number;
  path: string;
  where: string;
  reason: string;
}

export interface Dataset {
  format: DataFormat;
  split: Split;
  /** what was opened, for messages */
  description: string;
  size: number;
  /** -1 where unlabelled */
  labels: Int32Array;
  /** 0 when unlabelled */
  numClasses: number;
  classNames: string[] | null;
  /** per item, for batches' `paths` and messages; null: `${description}#${index}` */
  names: string[] | null;
  /** the list file items came from, and their 1-based lines in it */
  listFile: string | null;
  lines: Int32Array | null;
  source: ImageSource;
  /** channels of the source: 3 for image files (decoded as RGB), the file's for pixel data */
  channels: 1 | 3;
  /** images left out when opening (only with skipBadImages) */
  skipped: SkippedImage[];
  skipBadImages: boolean;
  /** things worth telling the user (ignored files, ...) */
  notes: string[];
}

/** the name of item i, as batches report it */
export function itemName(ds: Dataset, i: number): string {
  return ds.names ? ds.names[i] : `${ds.description}#${i}`;
}

/** where item i came from: "trainset.txt line 12" or the item's name */
export function itemWhere(ds: Dataset, i: number): string {
  if (ds.listFile && ds.lines) return `${ds.listFile} line ${ds.lines[i]}`;
  return `${ds.description} item ${i}`;
}

export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif", ".avif"];

export async function openDataset(spec: DataSpec, split: Split): Promise<Dataset> {
  switch (spec.format) {
    case "lists":
      return openLists(spec, split);
    case "imagefolder":
      return openImageFolder(spec, split, true);
    case "folder":
      return openImageFolder(spec, split, false);
    case "idx":
      return openIdx(spec, split);
    case "synthetic":
      return openSynthetic(spec, split);
    default:
      throw new Error(`c3gan data: unknown data format ${JSON.stringify((spec as { format: unknown }).format)} (lists, imagefolder, folder, idx, synthetic)`);
  }
}

function requireRoot(spec: DataSpec): string {
  if (!spec.root) throw new Error(`c3gan data: format ${spec.format} needs a data folder (root)`);
  const root = path.resolve(spec.root);
  let st: fs.Stats;
  try {
    st = fs.statSync(root);
  } catch {
    // the official lists are made by `c3gan prepare` from a dataset's own layout
    const hint = spec.format === "lists"
      ? ` (\`c3gan prepare cub <CUB_200_2011 folder> --out ${spec.root}\`, or \`prepare imagefolder\` / \`prepare idx\`, writes the official lists there)`
      : "";
    throw new Error(`c3gan data: data folder ${root} does not exist${hint}`);
  }
  if (!st.isDirectory()) throw new Error(`c3gan data: data folder ${root} is not a directory`);
  return root;
}

function checkNumClasses(spec: DataSpec): number | undefined {
  const n = spec.numClasses;
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < 1) throw new Error(`c3gan data: numClasses must be a positive integer, got ${n}`);
  return n;
}

/** `problem` for a file that cannot be read as an image file, or null */
function fileProblem(file: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "image not found" : `cannot stat image (${code ?? (e as Error).message})`;
  }
  if (!st.isFile()) return "not a regular file";
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch {
    return "image not readable (permission denied)";
  }
  if (st.size === 0) return "image file is empty";
  return null;
}

function openLists(spec: DataSpec, split: Split): Dataset {
  const root = requireRoot(spec);
  const listName = split === "train" ? spec.trainList ?? "trainset.txt" : spec.testList ?? "testset.txt";
  const listFile = path.resolve(root, listName);
  let text: string;
  try {
    text = fs.readFileSync(listFile, "utf8");
  } catch (e) {
    throw new Error(`c3gan data: cannot read the ${split} list ${listFile}: ${(e as Error).message}`);
  }
  const numClasses = checkNumClasses(spec);
  const entries = parseList(text, listFile, numClasses);
  const imagesDir = path.resolve(root, spec.imagesDir ?? "images");
  const skip = spec.skipBadImages === true;
  const kept: typeof entries = [];
  const files: string[] = [];
  const skipped: SkippedImage[] = [];
  const problems: string[] = [];
  for (const e of entries) {
    const file = path.resolve(imagesDir, e.path);
    const why = fileProblem(file);
    if (why === null) {
      kept.push(e);
      files.push(file);
    } else if (skip) {
      skipped.push({ index: -1, path: file, where: `${listFile} line ${e.line}`, reason: why });
    } else {
      problems.push(`line ${e.line}: ${why}: ${file}`);
    }
  }
  if (problems.length > 0) throw new ListFormatError(listFile, problems);
  if (kept.length === 0) throw new ListFormatError(listFile, ["no readable images are left after skipping the bad ones"]);
  let maxLabel = 0;
  const labels = new Int32Array(kept.length);
  const lines = new Int32Array(kept.length);
  kept.forEach((e, i) => {
    labels[i] = e.label;
    lines[i] = e.line;
    if (e.label > maxLabel) maxLabel = e.label;
  });
  return {
    format: "lists",
    split,
    description: listFile,
    size: kept.length,
    labels,
    numClasses: numClasses ?? maxLabel + 1,
    classNames: null,
    names: kept.map((e) => e.path),
    listFile,
    lines,
    source: { kind: "files", files },
    channels: 3,
    skipped,
    skipBadImages: skip,
    notes: [],
  };
}

export interface FolderScan {
  /** relative paths (with "/" separators), sorted */
  files: string[];
  ignored: string[];
}

/** Every image file under dir (recursive, symlinks followed), sorted by relative path. */
export function scanImages(dir: string): FolderScan {
  const files: string[] = [];
  const ignored: string[] = [];
  const walk = (rel: string) => {
    const abs = rel ? path.join(dir, rel) : dir;
    const names = fs.readdirSync(abs).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      let st: fs.Stats;
      try {
        st = fs.statSync(path.join(dir, r));
      } catch {
        ignored.push(r);
        continue;
      }
      if (st.isDirectory()) walk(r);
      else if (IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase())) files.push(r);
      else ignored.push(r);
    }
  };
  walk("");
  return { files, ignored };
}

/** class folders of an image-folder tree, sorted as torchvision's ImageFolder sorts them */
export function classFolders(root: string): string[] {
  return fs.readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() || (d.isSymbolicLink() && fs.statSync(path.join(root, d.name)).isDirectory()))
    .map((d) => d.name)
    .sort();
}

function openImageFolder(spec: DataSpec, split: Split, labelled: boolean): Dataset {
  const root = requireRoot(spec);
  const names: string[] = [];
  const labelList: number[] = [];
  const notes: string[] = [];
  let classNames: string[] | null = null;
  const ignored: string[] = [];
  if (labelled) {
    classNames = classFolders(root);
    if (classNames.length === 0) throw new Error(`c3gan data: image folder ${root} has no class subfolders`);
    const n = checkNumClasses(spec);
    if (n !== undefined && n !== classNames.length) {
      throw new Error(`c3gan data: numClasses is ${n} but ${root} has ${classNames.length} class folders`);
    }
    const empty: string[] = [];
    classNames.forEach((cls, label) => {
      const scan = scanImages(path.join(root, cls));
      if (scan.files.length === 0) empty.push(cls);
      for (const f of scan.files) {
        names.push(`${cls}/${f}`);
        labelList.push(label);
      }
      ignored.push(...scan.ignored.map((f) => `${cls}/${f}`));
    });
    if (empty.length > 0) {
      throw new Error(`c3gan data: class folder${empty.length > 1 ? "s" : ""} ${empty.map((e) => JSON.stringify(e)).join(", ")} in ${root} hold no images (${IMAGE_EXTENSIONS.join(" ")})`);
    }
  } else {
    const scan = scanImages(root);
    names.push(...scan.files);
    for (let i = 0; i < scan.files.length; i++) labelList.push(-1);
    ignored.push(...scan.ignored);
  }
  if (names.length === 0) throw new Error(`c3gan data: no images (${IMAGE_EXTENSIONS.join(" ")}) under ${root}`);
  if (ignored.length > 0) notes.push(ignoredFilesNote(ignored, root));
  const skip = spec.skipBadImages === true;
  const keptNames: string[] = [];
  const keptLabels: number[] = [];
  const files: string[] = [];
  const skipped: SkippedImage[] = [];
  const problems: string[] = [];
  names.forEach((n, i) => {
    const file = path.join(root, n);
    const why = fileProblem(file);
    if (why === null) {
      keptNames.push(n);
      keptLabels.push(labelList[i]);
      files.push(file);
    } else if (skip) {
      skipped.push({ index: -1, path: file, where: root, reason: why });
    } else {
      problems.push(`${why}: ${file}`);
    }
  });
  if (problems.length > 0) throw new Error(`c3gan data: ${problems.length} bad image file(s) under ${root}:\n  ${problems.slice(0, 20).join("\n  ")}`);
  return {
    format: labelled ? "imagefolder" : "folder",
    split,
    description: root,
    size: keptNames.length,
    labels: Int32Array.from(keptLabels),
    numClasses: labelled ? classNames!.length : 0,
    classNames,
    names: keptNames,
    listFile: null,
    lines: null,
    source: { kind: "files", files },
    channels: 3,
    skipped,
    skipBadImages: skip,
    notes,
  };
}

function findIdx(root: string, explicit: string | undefined, candidates: string[], what: string): string {
  if (explicit) {
    const f = path.resolve(root, explicit);
    if (!fs.existsSync(f)) throw new Error(`c3gan data: IDX ${what} file ${f} does not exist`);
    return f;
  }
  for (const c of candidates) {
    const f = path.join(root, c);
    if (fs.existsSync(f)) return f;
  }
  throw new Error(`c3gan data: no IDX ${what} file in ${root} (looked for ${candidates.join(", ")})`);
}

function idxNames(prefix: string, kind: "images-idx3" | "labels-idx1"): string[] {
  const dotted = kind.replace("-idx", ".idx");
  return [`${prefix}-${kind}-ubyte.gz`, `${prefix}-${kind}-ubyte`, `${prefix}-${dotted}-ubyte.gz`, `${prefix}-${dotted}-ubyte`];
}

function openIdx(spec: DataSpec, split: Split): Dataset {
  const root = requireRoot(spec);
  const prefix = split === "train" ? "train" : "t10k";
  const x = spec.idx ?? {};
  const imagesFile = findIdx(root, split === "train" ? x.trainImages : x.testImages, idxNames(prefix, "images-idx3"), `${split} images`);
  const labelsFile = findIdx(root, split === "train" ? x.trainLabels : x.testLabels, idxNames(prefix, "labels-idx1"), `${split} labels`);
  const im = loadIdxImages(imagesFile, labelsFile);
  const labels = im.labels!;
  const numClasses = checkNumClasses(spec);
  let maxLabel = 0;
  for (let i = 0; i < labels.length; i++) {
    if (numClasses !== undefined && labels[i] >= numClasses) {
      throw new Error(`c3gan data: ${labelsFile}: label ${labels[i]} of item ${i} is out of range for ${numClasses} classes`);
    }
    if (labels[i] > maxLabel) maxLabel = labels[i];
  }
  return {
    format: "idx",
    split,
    description: imagesFile,
    size: im.count,
    labels,
    numClasses: numClasses ?? maxLabel + 1,
    classNames: null,
    names: null,
    listFile: null,
    lines: null,
    source: { kind: "pixels", pixels: im.pixels, width: im.width, height: im.height, channels: im.channels },
    channels: im.channels,
    skipped: [],
    skipBadImages: spec.skipBadImages === true,
    notes: [],
  };
}

function openSynthetic(spec: DataSpec, split: Split): Dataset {
  return syntheticDataset(spec.synthetic ?? {}, split);
}
