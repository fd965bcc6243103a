// The release path: `npm run prebuilds` (scripts/prebuilds.js: prebuildify driving the CMake build) makes the prebuilt
// addon, `npm pack` carries it, and the tarball installs into a fresh project whose PATH holds
// nothing but node and sh — no compiler, no cmake, no make — then runs `c3gan --version`, `c3gan info`
// and a CPU `c3gan cluster`.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync, SpawnSyncOptions } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { syntheticImages } from "../lib/data/synthetic";
import { C3GAN } from "../lib/model/c3gan";
import { packageRoot } from "../lib/native";
import { Generator } from "../lib/tensor";
import { parseConfig } from "../lib/train/config";
import { saveModel } from "../lib/train/checkpoint";
import { specFromConfig } from "../lib/train/trainer";
import { tempDir } from "./helpers/tmp";

const root = packageRoot();
const version: string = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version;
const work = tempDir("pack");

/** npm's own entry point: the one running `npm test`, else the one installed beside node. */
function npmCli(): string {
  const candidates = [process.env.npm_execpath, path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "bin", "npm-cli.js")];
  for (const c of candidates) if (c && c.endsWith(".js") && fs.existsSync(c)) return c;
  throw new Error(`npm-cli.js not found (looked at ${candidates.filter(Boolean).join(", ")})`);
}

/** The environment of a machine without a toolchain: PATH holds only links to node and sh (npm runs scripts through sh). */
function bareEnv(): NodeJS.ProcessEnv {
  const bin = path.join(work, "bin");
  fs.mkdirSync(bin, { recursive: true });
  if (!fs.existsSync(path.join(bin, "node"))) fs.symlinkSync(process.execPath, path.join(bin, "node"));
  if (!fs.existsSync(path.join(bin, "sh"))) fs.symlinkSync("/bin/sh", path.join(bin, "sh"));
  const env: NodeJS.ProcessEnv = {};
  // drop the npm_* variables of the `npm test` running us, so the inner npm sees a plain shell
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== "INIT_CWD") env[k] = v;
  env.PATH = bin;
  return env;
}

function sh(cmd: string, args: string[], opts: SpawnSyncOptions): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  assert.equal(r.status, 0, `${path.basename(cmd)} ${args.join(" ")} failed (${r.status ?? r.signal}):\n${out.slice(-4000)}`);
  return String(r.stdout);
}

test("the packed tarball with its prebuild installs and runs where no compiler is in PATH", { timeout: 15 * 60_000 }, async () => {
  const npm = npmCli();
  const node = process.execPath;

  // 1. the prebuild, into a staging folder (the repository's prebuilds/ is left alone)
  const stage = path.join(work, "stage");
  sh(node, [path.join(root, "scripts", "prebuilds.js"), "--out", stage], { cwd: root });
  assert.ok(fs.existsSync(path.join(root, "build", "Release", "c3gan.node")), "the local build stays in place");
  const prebuildDir = path.join(stage, "prebuilds", `${process.platform}-${process.arch}`);
  const built = fs.readdirSync(prebuildDir).filter((f) => f.endsWith(".node"));
  assert.equal(built.length, 1, `one prebuilt addon in ${prebuildDir}: ${built.join(", ")}`);

  // 2. npm pack, with that prebuild in the package (unpack, add, pack again as a release would)
  const packs = path.join(work, "packs");
  fs.mkdirSync(packs);
  const first = JSON.parse(sh(node, [npm, "pack", "--json", "--pack-destination", packs, root], { cwd: root }))[0].filename;
  const unpacked = path.join(work, "unpacked");
  fs.mkdirSync(unpacked);
  sh("tar", ["-xzf", path.join(packs, first), "-C", unpacked], {});
  const pkgDir = path.join(unpacked, "package");
  fs.rmSync(path.join(pkgDir, "prebuilds"), { recursive: true, force: true });
  fs.cpSync(path.join(stage, "prebuilds"), path.join(pkgDir, "prebuilds"), { recursive: true });
  fs.rmSync(path.join(packs, first));
  const tarball = path.join(packs, JSON.parse(sh(node, [npm, "pack", "--json", "--pack-destination", packs, pkgDir], { cwd: work }))[0].filename);
  const listed = sh("tar", ["-tzf", tarball], {}).split("\n");
  assert.ok(listed.includes(`package/prebuilds/${process.platform}-${process.arch}/${built[0]}`), "the prebuild is in the tarball");
  assert.ok(listed.includes("package/dist/bin/c3gan.js") && listed.includes("package/dist/lib/index.js"));
  assert.ok(!listed.some((f) => f.startsWith("package/dist/test/")), "tests are not shipped");

  // 3. a fresh project installs it without any toolchain (dependencies from npm's cache or registry)
  const env = bareEnv();
  for (const tool of ["cc", "gcc", "g++", "c++", "make", "cmake", "python3", "nvcc"]) {
    assert.notEqual(spawnSync("/bin/sh", ["-c", `command -v ${tool}`], { env }).status, 0, `${tool} must not be in PATH`);
  }
  const app = path.join(work, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "fresh-app", version: "1.0.0", private: true }));
  sh(node, [npm, "install", "--prefer-offline", "--no-audit", "--no-fund", tarball], { cwd: app, env });
  const installed = path.join(app, "node_modules", "c3gan");
  assert.ok(!fs.existsSync(path.join(installed, "build")), "nothing was compiled at install");
  const c3gan = path.join(app, "node_modules", ".bin", "c3gan");

  // 4. the installed command: version, the loaded addon, a CPU cluster run
  assert.equal(sh(c3gan, ["--version"], { cwd: app, env }).trim(), version);
  const info = sh(c3gan, ["info"], { cwd: app, env });
  assert.match(info, new RegExp(`addon ${path.join(installed, "prebuilds").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  assert.match(info, /cuda: (available|unavailable)/);
  assert.match(info, /gemm kernel (portable 6x8|avx2-fma 6x16|avx512f 6x32)/);

  const cfg = parseConfig({
    name: "pack-test", dataset: { format: "synthetic", numClasses: 2, perClass: 4, testPerClass: 2, seed: 1 },
    numGtClasses: 2, over: 2, batchSize: 4, imageSize: 32, channels: 3, ngf: 32, ndf: 8, zDim: 8, czDim: 4,
    device: "cpu", workers: 0, saveDir: path.join(work, "run"),
  }, "pack test config");
  const ckpt = path.join(work, "model.safetensors");
  const model = new C3GAN(specFromConfig(cfg), "cpu", new Generator(3n));
  saveModel(ckpt, model, cfg, 1, 1);
  model.dispose();
  const images = path.join(work, "images");
  fs.mkdirSync(images);
  const imgs = syntheticImages({ numClasses: 2, perClass: 3, size: 32, channels: 3, seed: 4 });
  const per = 32 * 32 * 3;
  for (let i = 0; i < imgs.count; i++) {
    await sharp(Buffer.from(imgs.pixels.slice(i * per, (i + 1) * per)), { raw: { width: 32, height: 32, channels: 3 } })
      .png().toFile(path.join(images, `${i}.png`));
  }
  const csv = path.join(work, "clusters.csv");
  sh(c3gan, ["cluster", images, "--checkpoint", ckpt, "--out", csv], { cwd: app, env });
  const rows = fs.readFileSync(csv, "utf8").trim().split("\n").slice(1);
  assert.equal(rows.length, imgs.count);
  for (const row of rows) {
    const k = Number(row.split(",")[1]);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 4, `cluster in [0, 4): ${row}`);
  }
});

