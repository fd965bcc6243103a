// CLI commands that use a trained model: cluster and generate.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { loadModel } from "../api/model";
import { ClusterReport } from "../api/cluster";
import { npyBytes } from "../io/npy";
import { gridPng, stackBatches, ImageBatch } from "../train/samples";
import { sampleGrid } from "../train/trainer";
import { Progress } from "./progress";

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function clusterCsv(r: ClusterReport): string {
  const lines = ["path,cluster,similarity,top1,top1_similarity,top2,top2_similarity,top3,top3_similarity,label"];
  for (const a of r.assignments) {
    const top = [0, 1, 2].flatMap((j) => (a.top[j] ? [String(a.top[j].cluster), a.top[j].similarity.toFixed(6)] : ["", ""]));
    lines.push([csvField(a.path), a.cluster, a.similarity.toFixed(6), ...top, a.label >= 0 ? a.label : ""].join(","));
  }
  return lines.join("\n") + "\n";
}

function parseClusters(s: string | undefined): number[] | undefined {
  if (!s) return undefined;
  return s.split(",").map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n)) throw new Error(`--clusters must be comma-separated integers, got '${x}'`);
    return n;
  });
}

/** A folder that does not exist yet or holds nothing (so a run's links never mix with an earlier run's). */
function checkEmptyFolder(dir: string, flag: string): void {
  if (!fs.existsSync(dir)) return;
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${flag} ${dir} is a file: give a new or empty folder`);
  if (fs.readdirSync(dir).length > 0) throw new Error(`${flag} ${dir} already holds files: give a new or empty folder`);
}

/**
 * Links (or copies) each clustered image file into dir/cluster_NNNN/ under its own name; a name
 * taken in that folder gets -2, -3, ... before its extension. Returns how many were placed.
 */
function sortIntoFolders(r: ClusterReport, dir: string, copy: boolean): number {
  const taken = new Map<number, Set<string>>();
  let placed = 0;
  for (const a of r.assignments) {
    if (a.file === null) continue;
    const folder = path.join(dir, `cluster_${String(a.cluster).padStart(4, "0")}`);
    let names = taken.get(a.cluster);
    if (!names) {
      fs.mkdirSync(folder, { recursive: true });
      taken.set(a.cluster, (names = new Set()));
    }
    const ext = path.extname(a.file);
    const stem = path.basename(a.file, ext);
    let name = stem + ext;
    for (let i = 2; names.has(name); i++) name = `${stem}-${i}${ext}`;
    names.add(name);
    if (copy) fs.copyFileSync(a.file, path.join(folder, name));
    else fs.symlinkSync(a.file, path.join(folder, name));
    placed++;
  }
  return placed;
}

// a generate grid's columns at most: a row of 1,000 images is no picture
const GRID_COLUMNS = 64;

/** The first n images of a batch (a view, no copy). */
function firstImages(b: ImageBatch, n: number): ImageBatch {
  const [N, C, H, W] = b.shape;
  const k = Math.min(n, N);
  return { data: b.data.subarray(0, k * C * H * W), shape: [k, C, H, W] };
}

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${v}`);
  return n;
}

/** Image paths on standard input, one a line (as `find ... |` gives them); blank lines skipped. */
async function pathsFromStdin(): Promise<string[]> {
  if (process.stdin.isTTY) throw new Error("cluster -: reads image paths from standard input, which is a terminal: pipe them in");
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const paths = Buffer.concat(chunks).toString("utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  if (!paths.length) throw new Error("cluster -: no image paths on standard input");
  return paths;
}

export function registerUseCommands(program: Command): void {
  program
    .command("cluster")
    .description("assign images to clusters with a trained model (CSV or JSON; ACC/NMI when labels are known)")
    .argument("<inputs...>", "a folder (class subfolders = labels), an official list file, image files, " +
      "or - (image paths on standard input, one a line)")
    .requiredOption("--checkpoint <file>", "model .safetensors")
    .option("-c, --config <file>", "config (default: the one stored in the checkpoint)")
    .option("--out <file>", "write assignments here (.csv or .json); default: CSV on stdout")
    .option("--gallery <dir>", "write one PNG grid per cluster with its closest images")
    .option("--per-cluster <n>", "images per gallery grid", "16")
    .option("--sort-into <dir>", "also link each image into <dir>/cluster_NNNN/ (a new or empty folder)")
    .option("--copy", "with --sort-into: copy the images instead of linking them")
    .option("--batch-size <n>", "images per batch", "64")
    .option("--skip-bad-images", "leave out missing or undecodable images (listed on stderr) instead of stopping")
    .option("--features <file.npy>", "also write each image's L2-normalised D feature, (images, dim) float32, in the rows' order")
    .option("--centroids <file.npy>", "also write the L2-normalised cluster centroids, (clusters, dim) float32")
    .option("-d, --device <device>", "cpu, cuda, cuda:N or auto")
    .action(async (inputs: string[], opts) => {
      const input = inputs.length === 1 && inputs[0] === "-" ? await pathsFromStdin() : inputs.length === 1 ? inputs[0] : inputs;
      for (const flag of ["features", "centroids"] as const) {
        if (opts[flag] !== undefined && !String(opts[flag]).toLowerCase().endsWith(".npy")) {
          throw new Error(`--${flag} writes a NumPy .npy file; name it *.npy (got '${opts[flag]}')`);
        }
      }
      if (opts.copy && !opts.sortInto) throw new Error("--copy goes with --sort-into");
      if (opts.sortInto) checkEmptyFolder(opts.sortInto, "--sort-into");
      const model = await loadModel(opts.checkpoint, { config: opts.config, device: opts.device });
      const bar = new Progress();
      try {
        const keep = opts.gallery ? positiveInt(opts.perCluster, "--per-cluster") : 0;
        const r = await model.cluster(input, {
          batchSize: positiveInt(opts.batchSize, "--batch-size"), keepClosest: keep, skipBadImages: opts.skipBadImages === true,
          features: opts.features !== undefined || opts.centroids !== undefined,
          onProgress: (done, total) => bar.update({ fraction: done / total, text: `${done}/${total} images` }, done === total),
        });
        bar.done();
        const text = opts.out?.endsWith(".json")
          ? JSON.stringify({ assignments: r.assignments, skipped: r.skipped, notes: r.notes, usage: r.usage, metrics: r.metrics && { acc: r.metrics.acc, nmiOfficial: r.metrics.nmiOfficial, nmiSklearn: r.metrics.nmiSklearn, ari: r.metrics.ari, clusterToClass: Array.from(r.metrics.clusterToClass) } }, null, 1)
          : clusterCsv(r);
        if (opts.out) fs.writeFileSync(opts.out, text);
        else process.stdout.write(text);
        const f = r.features;
        if (f && opts.features) fs.writeFileSync(opts.features, npyBytes(f.values, [r.assignments.length, f.dim]));
        if (f && opts.centroids) fs.writeFileSync(opts.centroids, npyBytes(f.centroids, [model.numClusters, f.dim]));
        if (opts.gallery) {
          fs.mkdirSync(opts.gallery, { recursive: true });
          const [C, S] = [r.imageShape[0], r.imageShape[1]];
          for (const [k, list] of [...r.closest.entries()].sort((a, b) => a[0] - b[0])) {
            const data = new Float32Array(list.length * C * S * S);
            list.forEach((e, i) => data.set(e.pixels, i * C * S * S));
            const png = await gridPng({ data, shape: [list.length, C, S, S] }, 8, 2);
            fs.writeFileSync(path.join(opts.gallery, `cluster_${String(k).padStart(4, "0")}.png`), png);
          }
        }
        const sorted = opts.sortInto ? sortIntoFolders(r, opts.sortInto, opts.copy === true) : 0;
        for (const note of r.notes) process.stderr.write(`note: ${note}\n`);
        if (r.skipped.length > 0) {
          const list = r.skipped.slice(0, 20).map((s) => `  ${s.path}: ${s.reason}`);
          if (r.skipped.length > 20) list.push(`  ... and ${r.skipped.length - 20} more${opts.out?.endsWith(".json") ? ` (all in ${opts.out})` : ""}`);
          process.stderr.write(`${r.skipped.length} image${r.skipped.length > 1 ? "s" : ""} skipped (--skip-bad-images):\n${list.join("\n")}\n`);
        }
        const used = new Set(r.assignments.map((a) => a.cluster)).size;
        const n = r.assignments.length;
        process.stderr.write(`${n} image${n === 1 ? "" : "s"} in ${used} of ${model.numClusters} cluster${model.numClusters === 1 ? "" : "s"}` +
          (opts.out ? `; written to ${opts.out}` : "") + (opts.gallery ? `; galleries in ${opts.gallery}` : "") +
          (opts.sortInto ? `; ${sorted} ${opts.copy ? "copied" : "linked"} into ${opts.sortInto}/cluster_NNNN/` : "") +
          (opts.features ? `; features (${r.assignments.length} x ${r.features!.dim}) in ${opts.features}` : "") +
          (opts.centroids ? `; centroids in ${opts.centroids}` : "") + "\n");
        if (r.metrics) {
          process.stderr.write(`ACC ${r.metrics.acc.toFixed(4)}  NMI ${r.metrics.nmiOfficial.toFixed(4)} (official formula)  ` +
            `${r.metrics.nmiSklearn.toFixed(4)} (sklearn)  ARI ${r.metrics.ari.toFixed(4)}\n`);
        }
      } finally {
        model.dispose();
      }
    });

  program
    .command("generate")
    .description("generate images per cluster (PNG grids and single files)")
    .requiredOption("--checkpoint <file>", "model .safetensors")
    .requiredOption("--out <dir>", "output folder")
    .option("-c, --config <file>", "config (default: the one stored in the checkpoint)")
    .option("--clusters <list>", "e.g. 0,5,9 (default: all)")
    .option("--per-cluster <n>", "images per cluster", "8")
    .option("--seed <n>", "noise seed", "0")
    .option("--parts", "also write background, mask and foreground")
    .option("--shared-noise", "the same z for every cluster (fixed z, varying c)")
    .option("--official-vis", "also write the official visualisation grid (fixed z varying c, fixed c varying z)")
    .option("--no-singles", "only grids, no single-image files")
    .option("--flat", "only single files, all in the output folder as cNNNN_III_final.png (one folder for an FID tool), no grids")
    .option("-d, --device <device>", "cpu, cuda, cuda:N or auto")
    .action(async (opts) => {
      const model = await loadModel(opts.checkpoint, { config: opts.config, device: opts.device });
      try {
        const seed = Number(opts.seed);
        if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${opts.seed}`);
        const perCluster = positiveInt(opts.perCluster, "--per-cluster");
        const clusters = parseClusters(opts.clusters);
        // one cluster's images in memory at a time, written before the next is made
        const each = model.generateEach({ clusters, perCluster, seed, parts: Boolean(opts.parts), sharedNoise: Boolean(opts.sharedNoise) });
        fs.mkdirSync(opts.out, { recursive: true });
        const inGrid = Math.min(perCluster, GRID_COLUMNS);
        const digits = Math.max(3, String(perCluster - 1).length);
        const bar = new Progress();
        const total = clusters?.length ?? model.numClusters;
        let files = 0, done = 0;
        if (opts.flat && !opts.singles) throw new Error("--flat writes only single files, and --no-singles none: give one of them");
        for (const g of each) {
          const name = `cluster_${String(g.cluster).padStart(4, "0")}`;
          const mask = g.mask && { data: g.mask.data.map((m) => 2 * m - 1), shape: g.mask.shape };
          const rows: ImageBatch[] = opts.parts ? [g.background!, mask!, g.foreground!, g.final] : [g.final];
          if (!opts.flat) {
            fs.writeFileSync(path.join(opts.out, `${name}.png`), await gridPng(stackBatches(rows.map((b) => firstImages(b, inGrid))), inGrid, 2));
            files++;
          }
          if (opts.singles) {
            const dir = opts.flat ? opts.out : path.join(opts.out, name);
            const prefix = opts.flat ? `c${String(g.cluster).padStart(4, "0")}_` : "";
            fs.mkdirSync(dir, { recursive: true });
            const [N, , S] = g.final.shape;
            const parts: [string, ImageBatch][] = [["final", g.final]];
            if (opts.parts) parts.push(["background", g.background!], ["mask", mask!], ["foreground", g.foreground!]);
            for (const [label, b] of parts) {
              for (let i = 0; i < N; i++) {
                const one = firstImages({ data: b.data.subarray(i * b.shape[1] * S * S), shape: b.shape }, 1);
                fs.writeFileSync(path.join(dir, `${prefix}${String(i).padStart(digits, "0")}_${label}.png`), await gridPng(one, 1, 0));
                files++;
              }
            }
          }
          done++;
          bar.update({ fraction: done / total, text: `${done}/${total} clusters` }, done === total);
        }
        bar.done();
        if (perCluster > GRID_COLUMNS && !opts.flat) {
          console.log(`the grids show each cluster's first ${GRID_COLUMNS} of ${perCluster} images${opts.singles ? "; the single files hold all" : ""}`);
        }
        if (opts.officialVis) {
          fs.writeFileSync(path.join(opts.out, "official_vis.png"), await sampleGrid(model.gan, seed));
          files++;
        }
        console.log(`wrote ${files} PNG file${files === 1 ? "" : "s"} for ${done} cluster${done === 1 ? "" : "s"} to ${opts.out}`);
      } finally {
        model.dispose();
      }
    });
}
