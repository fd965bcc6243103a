#!/usr/bin/env node
// Stands in for node-gyp when prebuildify builds the release binary (scripts/prebuilds.js):
// prebuildify calls `<this> rebuild --target=V --devdir=D --arch=A --release` in its working
// folder and then moves that folder's build/Release/*.node into prebuilds/. This builds the
// repository's addon and copies it there. The addon is N-API (ABI-stable), so the Node target and header dir do not
// matter; the CMake build (scripts/build-native.js) is what puts the CUDA backend in the prebuild,
// which binding.gyp's CPU-only build cannot.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const args = process.argv.slice(2);
const command = args.find((a) => !a.startsWith("-"));
if (command !== "rebuild" && command !== "build") {
  console.error(`prebuildify-cmake: expected 'rebuild' or 'build' (as prebuildify calls node-gyp), got ${args.join(" ")}`);
  process.exit(2);
}
const flag = (name) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : undefined;
};
const arch = flag("arch");
if (arch && arch !== os.arch()) {
  console.error(`prebuildify-cmake: cross-compiling is not supported (asked for ${arch}, this machine is ${os.arch()})`);
  process.exit(2);
}
if (args.includes("--debug")) {
  console.error("prebuildify-cmake: debug prebuilds are not supported (the CMake build is Release)");
  process.exit(2);
}

const script = path.join(__dirname, "build-native.js");
// A release binary must not depend on the build machine's CPU: the kernels pick AVX2/FMA at run
// time (native/cpu/gemm.cc), nothing is built with -march=native.
const root = path.resolve(__dirname, "..");
const r = spawnSync(process.execPath, [script], { cwd: root, stdio: "inherit", env: process.env });
if (r.status !== 0) process.exit(r.status === null ? 1 : r.status);
const built = path.join(root, "build", "Release", "c3gan.node");
const dest = path.join(process.cwd(), "build", "Release");
if (path.resolve(dest) !== path.dirname(built)) {
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(built, path.join(dest, "c3gan.node"));
}
