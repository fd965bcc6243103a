#!/usr/bin/env node
// Builds the addon with cmake-js (CUDA when nvcc is present, unless C3GAN_CUDA=OFF), incrementally.
// C3GAN_CUDA=EMULATE builds the test addon whose CUDA kernels run on the host (native/cuda/emu)
// into build-emu/; load it with C3GAN_ADDON=build-emu/Release/c3gan.node.
// node-gyp (the install fallback) and cmake-js share build/: a node-gyp tree there is cleared first.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const cuda = (process.env.C3GAN_CUDA || "AUTO").toUpperCase();
if (!["AUTO", "ON", "OFF", "EMULATE"].includes(cuda)) {
  console.error(`C3GAN_CUDA must be AUTO, ON, OFF or EMULATE, got ${process.env.C3GAN_CUDA}`);
  process.exit(2);
}
// the emulated-CUDA addon (a test build: every kernel on the host) never replaces the real one
const outDir = cuda === "EMULATE" ? "build-emu" : "build";
const build = path.join(root, outDir);
if (fs.existsSync(build) && !fs.existsSync(path.join(build, "CMakeCache.txt"))) {
  fs.rmSync(build, { recursive: true, force: true });
}
// cmake-js build only configures a fresh tree: a changed C3GAN_CUDA needs a new configure
const cache = path.join(build, "CMakeCache.txt");
if (fs.existsSync(cache)) {
  const m = /^C3GAN_CUDA:STRING=(\w+)$/m.exec(fs.readFileSync(cache, "utf8"));
  if (m && m[1] !== cuda) fs.rmSync(build, { recursive: true, force: true });
}
const jobs = String(Math.max(1, Math.min(os.cpus().length, 8)));
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const args = [cmakeJs, "build", "--out", outDir, `--CDC3GAN_CUDA=${cuda}`, "--parallel", jobs];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
if (r.status !== 0) {
  console.error("c3gan: native build failed (cmake-js exit " + r.status + ")");
  process.exit(r.status || 1);
}
