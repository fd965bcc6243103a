// `c3gan prepare`: writes the official list format (trainset.txt, testset.txt, images under
// images/) from a dataset's own layout, and summarises the counts per split and per class.
//   cub          from CUB_200_2011's images.txt, image_class_labels.txt, train_test_split.txt:
//                training list = every image, test list = is_training_image == 0, labels 0-based,
//                in images.txt order (as the official data/cub lists)
//   imagefolder  from a class-per-folder tree: a seeded, per-class held-out fraction for the test
//                list, the rest (or, with trainAll, everything) for the training list
//   idx          from IDX files: every image written as a PNG under images/{train,test}/<label>/
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { IdxFiles, classFolders, scanImages } from "./formats";
import { loadIdxImages } from "./idx";
import { formatList } from "./lists";
import { Rng, Stream } from "./rng";
import { ignoredFilesNote } from "./sniff";

export interface SplitSummary {
  name: "train" | "test";
  file: string;
  count: number;
  /** images per label */
  perClass: number[];
}

export interface PrepareSummary {
  outDir: string;
  splits: SplitSummary[];
  classNames: string[] | null;
  notes: string[];
}

interface Item {
  path: string;
  label: number;
}

function writeSplit(outDir: string, name: "train" | "test", items: Item[], numClasses: number): SplitSummary {
  const file = path.join(outDir, name === "train" ? "trainset.txt" : "testset.txt");
  fs.writeFileSync(file, formatList(items));
  const perClass = new Array<number>(numClasses).fill(0);
  for (const it of items) perClass[it.label]++;
  return { name, file, count: items.length, perClass };
}

/** Points outDir/images at imagesDir (a symlink) unless that is where the images already are. */
function linkImages(outDir: string, imagesDir: string, link: boolean, notes: string[]): void {
  const target = path.join(outDir, "images");
  if (path.resolve(target) === path.resolve(imagesDir)) return;
  if (fs.existsSync(target)) {
    const same = fs.realpathSync(target) === fs.realpathSync(imagesDir);
    if (!same) notes.push(`${target} exists and is not ${imagesDir}; left as it is (the lists name paths under ${imagesDir})`);
    return;
  }
  if (!link) {
    notes.push(`the lists name paths under ${imagesDir}: copy or link it to ${target} before training`);
    return;
  }
  fs.symlinkSync(path.resolve(imagesDir), target, "dir");
  notes.push(`linked ${target} -> ${path.resolve(imagesDir)}`);
}

/** `id rest-of-line` rows of a CUB metadata file, checked, as a map id -> rest */
function readIdTable(file: string): { rows: Map<number, { value: string; line: number }>; order: number[] } {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`c3gan prepare: cannot read ${file}: ${(e as Error).message}`);
  }
  const rows = new Map<number, { value: string; line: number }>();
  const order: number[] = [];
  const problems: string[] = [];
  text.split(/\r\n|\n|\r/).forEach((raw, i) => {
    const s = raw.trim();
    if (s === "") return;
    const m = /^(\d+)\s+(.*\S)$/.exec(s);
    if (!m) {
      problems.push(`line ${i + 1}: expected \`<id> <value>\`, got ${JSON.stringify(s)}`);
      return;
    }
    const id = Number(m[1]);
    if (rows.has(id)) {
      problems.push(`line ${i + 1}: id ${id} already on line ${rows.get(id)!.line}`);
      return;
    }
    rows.set(id, { value: m[2], line: i + 1 });
    order.push(id);
  });
  if (problems.length > 0) throw new Error(`c3gan prepare: ${problems.length} problem(s) in ${file}:\n  ${problems.slice(0, 20).join("\n  ")}`);
  if (order.length === 0) throw new Error(`c3gan prepare: ${file} is empty`);
  return { rows, order };
}

export function prepareCub(cubDir: string, outDir: string, opts: { link?: boolean } = {}): PrepareSummary {
  const dir = path.resolve(cubDir);
  const f = (n: string) => path.join(dir, n);
  const images = readIdTable(f("images.txt"));
  const labels = readIdTable(f("image_class_labels.txt"));
  const split = readIdTable(f("train_test_split.txt"));
  const classes = fs.existsSync(f("classes.txt")) ? readIdTable(f("classes.txt")) : null;
  const problems: string[] = [];
  const all: Item[] = [];
  const test: Item[] = [];
  let numClasses = 0;
  const parsed: { path: string; label: number; train: boolean }[] = [];
  for (const id of images.order) {
    const img = images.rows.get(id)!;
    const lab = labels.rows.get(id);
    const sp = split.rows.get(id);
    if (!lab) { problems.push(`image id ${id} (images.txt line ${img.line}) has no row in image_class_labels.txt`); continue; }
    if (!sp) { problems.push(`image id ${id} (images.txt line ${img.line}) has no row in train_test_split.txt`); continue; }
    if (!/^\d+$/.test(lab.value) || Number(lab.value) < 1) {
      problems.push(`image_class_labels.txt line ${lab.line}: class ${JSON.stringify(lab.value)} is not an integer >= 1`);
      continue;
    }
    if (sp.value !== "0" && sp.value !== "1") {
      problems.push(`train_test_split.txt line ${sp.line}: is_training_image must be 0 or 1, got ${JSON.stringify(sp.value)}`);
      continue;
    }
    const label = Number(lab.value) - 1;
    numClasses = Math.max(numClasses, label + 1);
    parsed.push({ path: img.value, label, train: sp.value === "1" });
  }
  for (const [name, t] of [["image_class_labels.txt", labels], ["train_test_split.txt", split]] as const) {
    for (const id of t.order) if (!images.rows.has(id)) problems.push(`${name} line ${t.rows.get(id)!.line}: id ${id} is not in images.txt`);
  }
  const imagesDir = f("images");
  const missing = parsed.filter((p) => !fs.existsSync(path.join(imagesDir, p.path)));
  for (const m of missing.slice(0, 20)) problems.push(`image not found: ${path.join(imagesDir, m.path)}`);
  if (missing.length > 20) problems.push(`... ${missing.length - 20} more images not found`);
  if (problems.length > 0) throw new Error(`c3gan prepare cub: ${problems.length} problem(s) in ${dir}:\n  ${problems.slice(0, 40).join("\n  ")}`);
  for (const p of parsed) {
    all.push({ path: p.path, label: p.label });
    if (!p.train) test.push({ path: p.path, label: p.label });
  }
  if (classes && classes.order.length !== numClasses) {
    throw new Error(`c3gan prepare cub: classes.txt names ${classes.order.length} classes, the labels use ${numClasses}`);
  }
  const classNames = classes ? Array.from({ length: numClasses }, (_, k) => classes.rows.get(k + 1)?.value ?? String(k)) : null;
  fs.mkdirSync(outDir, { recursive: true });
  const notes: string[] = [];
  linkImages(outDir, imagesDir, opts.link !== false, notes);
  const splits = [writeSplit(outDir, "train", all, numClasses), writeSplit(outDir, "test", test, numClasses)];
  return { outDir: path.resolve(outDir), splits, classNames, notes };
}

export interface ImageFolderPrepareOptions {
  /** fraction of each class for the test list (default 0.1) */
  heldOut?: number;
  seed?: number;
  /** training list holds every image (the CUB convention) instead of only the rest */
  trainAll?: boolean;
  link?: boolean;
}

export function prepareImageFolder(root: string, outDir: string, opts: ImageFolderPrepareOptions = {}): PrepareSummary {
  const dir = path.resolve(root);
  const heldOut = opts.heldOut ?? 0.1;
  if (!(heldOut >= 0 && heldOut < 1)) throw new Error(`c3gan prepare imagefolder: held-out fraction must be in [0, 1), got ${heldOut}`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`c3gan prepare imagefolder: ${dir} is not a directory`);
  const classNames = classFolders(dir);
  if (classNames.length === 0) throw new Error(`c3gan prepare imagefolder: ${dir} has no class subfolders`);
  const train: Item[] = [];
  const test: Item[] = [];
  const notes: string[] = [];
  const ignored: string[] = [];
  classNames.forEach((cls, label) => {
    const scan = scanImages(path.join(dir, cls));
    ignored.push(...scan.ignored.map((f) => `${cls}/${f}`));
    if (scan.files.length === 0) throw new Error(`c3gan prepare imagefolder: class folder ${path.join(dir, cls)} holds no images`);
    const n = scan.files.length;
    const nTest = Math.round(heldOut * n);
    const perm = new Rng(opts.seed ?? 0, Stream.heldOut, label).permutation(n);
    const isTest = new Uint8Array(n);
    for (let k = 0; k < nTest; k++) isTest[perm[k]] = 1;
    scan.files.forEach((f, i) => {
      const item = { path: `${cls}/${f}`, label };
      if (isTest[i]) test.push(item);
      if (!isTest[i] || opts.trainAll) train.push(item);
    });
  });
  if (ignored.length > 0) notes.push(ignoredFilesNote(ignored, dir, "not listed"));
  if (test.length === 0 && heldOut > 0) notes.push("the held-out fraction rounds to no test images: the test list is empty");
  fs.mkdirSync(outDir, { recursive: true });
  linkImages(outDir, dir, opts.link !== false, notes);
  const splits = [writeSplit(outDir, "train", train, classNames.length)];
  if (test.length > 0) splits.push(writeSplit(outDir, "test", test, classNames.length));
  return { outDir: path.resolve(outDir), splits, classNames, notes };
}

function idxPair(dir: string, split: "train" | "test", files: IdxFiles): [string, string] {
  const prefix = split === "train" ? "train" : "t10k";
  const pick = (explicit: string | undefined, kind: string) => {
    if (explicit) return path.resolve(dir, explicit);
    const dotted = kind.replace("-idx", ".idx");
    for (const c of [`${prefix}-${kind}-ubyte.gz`, `${prefix}-${kind}-ubyte`, `${prefix}-${dotted}-ubyte.gz`, `${prefix}-${dotted}-ubyte`]) {
      if (fs.existsSync(path.join(dir, c))) return path.join(dir, c);
    }
    throw new Error(`c3gan prepare idx: no ${prefix}-${kind}-ubyte[.gz] in ${dir}`);
  };
  return split === "train"
    ? [pick(files.trainImages, "images-idx3"), pick(files.trainLabels, "labels-idx1")]
    : [pick(files.testImages, "images-idx3"), pick(files.testLabels, "labels-idx1")];
}

export async function prepareIdx(dir: string, outDir: string, opts: { files?: IdxFiles; concurrency?: number } = {}): Promise<PrepareSummary> {
  const root = path.resolve(dir);
  const splits: SplitSummary[] = [];
  const loaded = (["train", "test"] as const).map((split) => {
    const [imagesFile, labelsFile] = idxPair(root, split, opts.files ?? {});
    return { split, im: loadIdxImages(imagesFile, labelsFile) };
  });
  let numClasses = 0;
  for (const { im } of loaded) for (const l of im.labels!) numClasses = Math.max(numClasses, l + 1);
  for (const { split, im } of loaded) {
    const items: Item[] = [];
    const n = im.width * im.height * im.channels;
    const digits = String(im.count - 1).length;
    for (let i = 0; i < im.count; i++) {
      items.push({ path: `${split}/${im.labels![i]}/${String(i).padStart(digits, "0")}.png`, label: im.labels![i] });
    }
    for (let k = 0; k < numClasses; k++) fs.mkdirSync(path.join(outDir, "images", split, String(k)), { recursive: true });
    let next = 0;
    const lane = async () => {
      while (next < im.count) {
        const i = next++;
        const px = Buffer.from(im.pixels.slice(i * n, (i + 1) * n));
        let p = sharp(px, { raw: { width: im.width, height: im.height, channels: im.channels } });
        if (im.channels === 1) p = p.toColourspace("b-w");
        await p.png().toFile(path.join(outDir, "images", items[i].path));
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, lane));
    splits.push(writeSplit(outDir, split, items, numClasses));
  }
  return { outDir: path.resolve(outDir), splits, classNames: null, notes: [] };
}

/** The summary as printed by `c3gan prepare`: counts per split, then per class. */
export function formatSummary(s: PrepareSummary): string {
  const lines: string[] = [];
  for (const sp of s.splits) lines.push(`${sp.name}: ${sp.count} images -> ${sp.file}`);
  const numClasses = Math.max(...s.splits.map((sp) => sp.perClass.length));
  const nameWidth = s.classNames ? Math.min(40, Math.max(5, ...s.classNames.map((c) => c.length))) : 5;
  lines.push(`${"label".padStart(5)}  ${s.classNames ? "class".padEnd(nameWidth) + "  " : ""}${s.splits.map((sp) => sp.name.padStart(7)).join("")}`);
  for (let k = 0; k < numClasses; k++) {
    const name = s.classNames ? (s.classNames[k] ?? "").slice(0, nameWidth).padEnd(nameWidth) + "  " : "";
    lines.push(`${String(k).padStart(5)}  ${name}${s.splits.map((sp) => String(sp.perClass[k] ?? 0).padStart(7)).join("")}`);
  }
  for (const n of s.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}
