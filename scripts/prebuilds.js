#!/usr/bin/env node
// `npm run prebuilds [-- --out DIR]`: the release binary, prebuilds/<platform>-<arch>/c3gan.node,
// made by prebuildify with the CMake build standing in for node-gyp (prebuildify-cmake.js), so
// the CUDA backend is in it where nvcc is present. prebuildify moves build/Release/*.node of its
// working folder into place; it runs in a staging folder, so the local build/ stays loadable.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");
const prebuildify = require("prebuildify");

const root = path.resolve(__dirname, "..");
const { values } = parseArgs({ options: { out: { type: "string" } }, strict: true });
const out = path.resolve(values.out || root);
const stage = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-prebuild-"));

prebuildify(
  {
    cwd: stage,
    out,
    name: "c3gan",
    napi: true,
    strip: true,
    targets: [],
    nodeGyp: path.join(__dirname, "prebuildify-cmake.js"),
  },
  (err) => {
    fs.rmSync(stage, { recursive: true, force: true });
    if (err) {
      console.error(`c3gan: prebuild failed: ${err.message || err}`);
      process.exit(1);
    }
    const dir = path.join(out, "prebuilds", `${process.platform}-${process.arch}`);
    for (const f of fs.readdirSync(dir)) console.log(`prebuild: ${path.join(dir, f)} (${(fs.statSync(path.join(dir, f)).size / 2 ** 20).toFixed(1)} MiB)`);
  },
);
