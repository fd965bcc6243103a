// The pure parts of `c3gan bench` (configs, option checks, per-op rows, the PyTorch protocol,
// tables and target sums) and the --compare plumbing against a fake python; no timing assertions.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { benchOptions, formatOps, runIterations, runOps } from "../lib/bench/command";
import { addonFilePath, native } from "../lib/native";
import { machineInfo } from "../lib/bench/machine";
import { BENCH_CONFIGS, DEFAULT_CONFIG_NAMES, resolveConfigs } from "../lib/bench/configs";
import { buildRows, combine, OpRow, parseFilters, parseTorchRow, passBytes, PassName, RowResult, torchRequest, wanted } from "../lib/bench/ops";
import {
  convTable, iterationTable, memTable, msSpread, ratioCell, renderMarkdown, renderText, targetResults, targetTable,
} from "../lib/bench/report";
import { resultsMarkdown, spreadCount } from "../lib/bench/results";
import { convActualFlops, convFlops, modelShapes } from "../lib/bench/shapes";
import { mergeTimings, Timing } from "../lib/bench/stats";
import { parseReply, torchEnv, TorchWorker } from "../lib/bench/torch";

const cfg = (tag: string) => BENCH_CONFIGS.find((c) => c.tag === tag)!;
const timing = (median: number): Timing => ({ runs: 3, median, min: median * 0.9, max: median * 1.2, total: 3 * median });

test("configs: names and tags resolve, the CUB b64 config is opt-in, unknown names list the known ones", () => {
  assert.deepEqual(resolveConfigs("32px,cub-128px-b8").map((c) => c.name), ["32px-ngf128-ndf32-K20-b64", "cub-128px-b8"]);
  assert.equal(resolveConfigs("all").length, BENCH_CONFIGS.length);
  assert.ok(!DEFAULT_CONFIG_NAMES.includes("cub-128px-b64"));
  assert.equal(cfg("128px-b64").batch, 64);
  assert.throws(() => resolveConfigs("32px,nope"), /unknown config 'nope' \(known: 32px-ngf128/);
  assert.throws(() => resolveConfigs(" , "), /--configs is empty/);
});

test("bench options: defaults per mode and every bad value named", () => {
  const it = benchOptions({ device: "cpu", python: "/usr/bin/python3" });
  assert.equal(it.ops, false);
  assert.equal(it.runs, 3);
  assert.deepEqual(it.configs.map((c) => c.tag), ["32px", "64px"]);
  const ops = benchOptions({ ops: true, filter: " 128PX Conv, bn ", compare: "torch" });
  assert.equal(ops.runs, 2);
  assert.deepEqual(ops.configs.map((c) => c.tag), ["32px", "64px", "128px"]);
  assert.deepEqual(ops.filters, ["128px conv", "bn"]);
  assert.equal(ops.compare, "torch");
  assert.equal(benchOptions({ ops: true, quick: true }).runs, 1);
  assert.equal(benchOptions({ ops: true, seconds: "0" }).seconds, 0);
  assert.throws(() => benchOptions({ filter: "bn" }), /--filter applies to the per-op bench: add --ops/);
  assert.throws(() => benchOptions({ seconds: "1" }), /--seconds applies to the per-op bench/);
  assert.equal(benchOptions({ ops: true }).rounds, 1);
  assert.equal(benchOptions({ ops: true, rounds: "3" }).rounds, 3);
  assert.throws(() => benchOptions({ rounds: "3" }), /--rounds applies to the per-op bench/);
  assert.throws(() => benchOptions({ ops: true, rounds: "0" }), /--rounds must be an integer >= 1/);
  assert.throws(() => benchOptions({ runs: "0" }), /--runs must be an integer >= 1, got '0'/);
  assert.throws(() => benchOptions({ runs: "2.5" }), /--runs must be an integer/);
  assert.throws(() => benchOptions({ batch: "1" }), /--batch must be an integer >= 2/);
  assert.throws(() => benchOptions({ threads: "" }), /--threads must be an integer >= 1/);
  assert.throws(() => benchOptions({ ops: true, seconds: "-1" }), /--seconds must be a number in \[0, 600\]/);
  assert.throws(() => benchOptions({ device: "tpu" }), /--device must be cpu, cuda or cuda:N, got 'tpu'/);
  assert.throws(() => benchOptions({ device: "auto" }), /--device must be cpu, cuda or cuda:N, got 'auto'/);
  assert.equal(benchOptions({ device: "cuda:2" }).cudaIndex, 2);
  assert.equal(benchOptions({ device: "cuda" }).cudaIndex, null);
  assert.throws(() => benchOptions({ compare: "jax" }), /--compare takes 'torch', got 'jax'/);
  assert.equal(benchOptions({ compare: "torch", device: "cuda" }).device, "cuda", "the iteration compares on CUDA too");
  assert.throws(() => benchOptions({ configs: "64px-b7" }), /unknown config '64px-b7'/);
});

test("per-op rows: every conv shape with all three passes; the image head as a const-channels conv", () => {
  const c = cfg("128px");
  const rows = buildRows(c, 8);
  const labels = rows.map((r) => r.label);
  assert.equal(new Set(labels).size, labels.length, "labels are unique");
  const convs = rows.filter((r) => r.kind === "conv");
  assert.equal(convs.length, modelShapes(c.spec, 8).convs.length);
  for (const r of convs) assert.deepEqual(r.passes, ["forward", "backward-data", "backward-weight"]);
  const head = convs.filter((r) => r.conv!.constChannels > 0);
  assert.equal(head.length, 1);
  const h = head[0];
  assert.deepEqual(h.where, ["fg_gen.to_img.0"]);
  assert.equal(h.conv!.constChannels, 400);
  assert.equal(h.conv!.c, 16 + 400, "c counts the plain conv's input channels");
  assert.match(h.label, /\(16\+400const\)->32 128x128/);
  assert.equal(h.work.forward, convFlops(h.conv!));
  assert.equal(h.actualFlops, convActualFlops(h.conv!));
  assert.equal(h.actualFlops! * 416, h.work.forward! * 16);
  assert.ok(convs.filter((r) => r !== h).every((r) => r.actualFlops === undefined));
  // bytes of the memory-bound rows
  const bn = rows.find((r) => r.kind === "bn" && r.shape!.length === 4)!;
  const n = bn.shape!.reduce((a, b) => a * b, 1);
  assert.equal(bn.work.forward, 12 * n);
  assert.equal(bn.work.backward, 20 * n);
  const bcast = rows.find((r) => r.kind === "mul")!;
  assert.deepEqual(bcast.passes, ["forward", "backward"]);
  assert.equal(passBytes(bcast, "backward"), 4 * (8 * 3 * 128 * 128 + 8 * 128 * 128));
  assert.equal(rows[rows.length - 1].kind, "copy");
  assert.equal(rows[rows.length - 1].uses, 0);
});

test("filters: case-insensitive substrings, comma-separated alternatives", () => {
  assert.deepEqual(parseFilters(undefined), []);
  const f = parseFilters("G 3x3, BN D");
  assert.ok(wanted("32px conv G 3x3 s1 p1 4->4 32x32", f));
  assert.ok(wanted("32px bn D 64x128x4x4", f));
  assert.ok(!wanted("32px conv D 4x4 s2 p1 3->32 32x32", f));
  assert.ok(wanted("anything", []));
});

test("the PyTorch protocol: requests in the script's names, replies checked against the row", () => {
  const row = buildRows(cfg("128px"), 2).find((r) => r.conv?.constChannels)!;
  const req = torchRequest(row, { warmup: 1, minRuns: 2, minSeconds: 0.3 }) as Record<string, any>;
  assert.equal(req.id, row.label);
  assert.equal(req.kind, "conv");
  assert.equal(req.conv.const_channels, 400);
  assert.equal(req.conv.c, 416);
  assert.deepEqual(req.timing, { warmup: 1, minRuns: 2, minSeconds: 0.3 });
  const pass = (name: string, median = 0.01) => ({ name, runs: 2, median, min: median, max: median, total: 2 * median });
  const ok = parseTorchRow({ id: row.label, passes: row.passes.map((p) => pass(p)) }, row);
  assert.deepEqual([...ok.keys()], row.passes);
  assert.equal(ok.get("backward-weight")!.median, 0.01);
  assert.throws(() => parseTorchRow({ id: "other", passes: [] }, row), /has id "other"/);
  assert.throws(() => parseTorchRow({ id: row.label, passes: [pass("forward")] }, row), /pass backward-data is missing/);
  assert.throws(() => parseTorchRow({ id: row.label, passes: [pass("sideways")] }, row), /unexpected pass "sideways"/);
  assert.throws(() => parseTorchRow({ id: row.label, passes: [{ ...pass("forward"), median: "fast" }] }, row), /needs finite runs/);
  assert.throws(() => parseTorchRow({ id: row.label }, row), /no "passes" list/);
  assert.deepEqual(parseReply('{"a": 1}', "w"), { a: 1 });
  assert.throws(() => parseReply("Traceback (most recent call last):", "w"), /w: expected one JSON object a line, got "Traceback/);
  assert.throws(() => parseReply("[1]", "w"), /expected a JSON object/);
  assert.throws(() => parseReply('{"id": "x", "error": "RuntimeError: boom"}', "w"), /w: RuntimeError: boom/);
  const env = torchEnv(3, { PATH: "/bin" });
  assert.equal(env.OMP_NUM_THREADS, "3");
  assert.equal(env.OPENBLAS_NUM_THREADS, "3");
  assert.equal(env.OMP_WAIT_POLICY, "PASSIVE");
  assert.equal(torchEnv(1, { OMP_WAIT_POLICY: "ACTIVE" }).OMP_WAIT_POLICY, "ACTIVE");
});

/** results for rows with given c3gan / torch medians per pass */
function fake(rows: OpRow[], ours: number, theirs: number | null): RowResult[] {
  return rows.map((r) => {
    const t = (m: number) => new Map<PassName, Timing>(r.passes.map((p) => [p, timing(m)]));
    return combine(r, t(ours), theirs === null ? null : t(theirs), 100);
  });
}

test("rounds merge as the median of the round medians, the overall min and max", () => {
  const m = mergeTimings([timing(1), timing(5), timing(2)]);
  assert.equal(m.median, 2);
  assert.equal(m.min, 0.9);
  assert.equal(m.max, 6);
  assert.equal(m.runs, 9);
  assert.throws(() => mergeTimings([]), /no rounds/);
});

test("tables: text aligns, Markdown escapes, ratio columns only with PyTorch", () => {
  const t = { headers: ["name", "x"], rows: [["a|b", "1.5"], ["long name", "10"]], align: "lr" };
  assert.equal(renderText(t), ["name         x", "---------  ---", "a|b        1.5", "long name   10"].join("\n"));
  assert.equal(renderMarkdown(t), ["| name | x |", "| :--- | ---: |", "| a\\|b | 1.5 |", "| long name | 10 |"].join("\n"));
  assert.equal(msSpread({ runs: 3, median: 0.0123, min: 0.0119, max: 0.013, total: 0 }), "12.3 (11.9-13.0)");
  assert.equal(msSpread({ runs: 3, median: 0.00123, min: 0.001, max: 0.002, total: 0 }), "1.23 (1.00-2.00)");
  assert.equal(ratioCell(null), "-");
  assert.equal(ratioCell(1.234), "1.23x");
  const rows = buildRows(cfg("32px"), 4);
  const alone = convTable(fake(rows, 0.01, null));
  assert.ok(!alone.headers.includes("c3gan/torch"));
  const both = convTable(fake(rows, 0.01, 0.02));
  assert.ok(both.headers.includes("c3gan/torch"));
  assert.equal(both.rows.length, 3 * rows.filter((r) => r.kind === "conv").length, "one line a pass");
  assert.equal(both.rows[0][both.headers.indexOf("c3gan/torch")], "2.00x");
  assert.equal(both.rows[1][0], "", "the name only on a row's first pass");
  const mem = memTable(fake(rows, 0.001, 0.001));
  assert.equal(mem.rows.length, rows.filter((r) => r.kind !== "conv").reduce((s, r) => s + r.passes.length, 0));
  const it = iterationTable([{ config: "x", c3gan: { median: 2, min: 1.5, max: 3, runs: [1.5, 2, 3] }, torch: { median: 3, min: 3, max: 3, runs: [3] }, speedVsTorch: 1.5 }]);
  assert.deepEqual(it.rows[0], ["x", "3", "2.000 (1.500-3.000)", "3.000 (3.000-3.000)", "1.50x"]);
});

test("targets: uses-weighted time sums per kind and config; the image head stays out of the 3x3 sum", () => {
  const rows = buildRows(cfg("32px"), 4);
  const res = fake(rows, 0.01, 0.02);
  // make the image head look slow: it must not move the 3x3 verdict
  const head = res.find((r) => r.conv?.constChannels)!;
  for (const p of head.results) p.ratio = 0.01;
  const bn = res.filter((r) => r.kind === "bn");
  for (const p of bn[0].results) {
    p.torch = timing(0.05);
    p.ratio = 5;
  }
  const targets = targetResults(res);
  const three = targets.find((t) => t.name === "3x3 convs")!;
  assert.equal(three.ratio!.toFixed(6), "2.000000");
  assert.equal(three.met, true);
  assert.equal(three.rows, rows.filter((r) => r.kind === "conv" && r.conv!.r === 3 && !r.conv!.constChannels && r.uses > 0).length);
  const four = targets.find((t) => t.name === "4x4 stride-2 convs")!;
  assert.equal(four.met, true);
  assert.equal(four.target, 0.9);
  const b = targets.find((t) => t.name === "batch norm")!;
  assert.equal(b.target, 3);
  // sum of uses * torch time over sum of uses * c3gan time
  const w = (r: RowResult, side: "c3gan" | "torch") => r.uses * r.results.reduce((s, p) => s + p[side]!.median, 0);
  const expect = bn.reduce((s, r) => s + w(r, "torch"), 0) / bn.reduce((s, r) => s + w(r, "c3gan"), 0);
  assert.ok(Math.abs(b.ratio! - expect) < 1e-12);
  assert.equal(b.met, expect >= 3);
  assert.ok(b.below.every((x) => x.ratio < 3));
  const table = renderText(targetTable(targets));
  assert.match(table, /3x3 convs\s+32px\s+>= 1.2x\s+2.00x/);
  assert.equal(targetResults(fake(rows, 0.01, null)).length, 0, "no verdicts without PyTorch");
});

/** A stand-in for python: answers torch_ops.py's and torch_iteration.py's protocols with fixed numbers. */
function fakePython(dir: string): string {
  const file = path.join(dir, "fake-python");
  fs.writeFileSync(file, `#!${process.execPath}
const script = require("node:path").basename(process.argv[2]);
const args = process.argv.slice(3);
if (!args.includes("--serve")) { console.error("fake: expected --serve"); process.exit(2); }
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
say({ ready: true, torch: "fake", threads: Number(process.env.OMP_NUM_THREADS), wait: process.env.OMP_WAIT_POLICY, script });
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const r = JSON.parse(line);
  if (script === "torch_iteration.py") return say({ seconds: Array(r.runs).fill(0.5) });
  if (r.kind === "glu") return say({ id: r.id, error: "RuntimeError: fake failure" });
  say({ id: r.id, passes: r.passes.map((name) => ({ name, runs: 2, median: 0.002, min: 0.001, max: 0.003, total: 0.004 })) });
});
`);
  fs.chmodSync(file, 0o755);
  return file;
}

test("TorchWorker: start, requests, the worker's own errors, and an exit before replying", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-bench-"));
  const py = fakePython(dir);
  const { worker, info } = await TorchWorker.start(py, "/x/torch_ops.py", ["--serve"], 2);
  assert.equal(info.threads, 2);
  assert.equal(info.wait, "PASSIVE");
  const r = await worker.request({ id: "a", kind: "bn", passes: ["forward"] });
  assert.equal((r.passes as any[])[0].median, 0.002);
  await assert.rejects(worker.request({ id: "g", kind: "glu", passes: ["forward"] }), /fake failure/);
  await worker.close();
  await assert.rejects(worker.request({}), /exited with status 0/);
  await assert.rejects(TorchWorker.start(py, "/x/torch_ops.py", [], 1), /exited with status 2:\nfake: expected --serve/);
  await assert.rejects(TorchWorker.start(path.join(dir, "no-such-python"), "/x/torch_ops.py", ["--serve"], 1), /could not start: spawn .*ENOENT/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--ops --compare torch end to end with a fake python: rows, ratios, report, no leaked handles", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-bench-"));
  const py = fakePython(dir);
  const o = benchOptions({ ops: true, quick: true, compare: "torch", python: py, configs: "32px", batch: "2", filter: "bn G 2x8x32x32,const,copy" });
  const r = await runOps(o, () => {});
  assert.equal(r.leakedHandles, 0);
  assert.deepEqual(r.rows.map((x) => x.kind).sort(), ["bn", "conv", "copy"]);
  for (const row of r.rows) {
    for (const p of row.results) {
      assert.equal(p.torch!.median, 0.002);
      assert.ok(p.ratio! > 0 && Number.isFinite(p.ratio!));
      assert.ok(p.rate > 0);
    }
  }
  assert.equal(r.torch!.torch, "fake");
  const two = await runOps({ ...o, rounds: 2, filters: ["copy"] }, () => {});
  assert.equal(two.rows[0].results[0].torch!.runs, 4, "two rounds of the fake's two runs");
  assert.ok(two.rows[0].results[0].c3gan.runs >= 4);
  const text = formatOps(r);
  assert.match(text, /conv2dConstChannels is [\d.]+x PyTorch's plain conv/);
  assert.match(text, /batch norm\s+32px\s+>= 3x/);
  // a row the worker cannot run stops the bench with the worker's message
  await assert.rejects(runOps({ ...o, filters: ["glu g 2x8x32x32"] }), /torch_ops.py .*RuntimeError: fake failure/);
  // iterations alternate with the worker's runs
  const it = await runIterations(benchOptions({ quick: true, compare: "torch", python: py, configs: "32px", batch: "2" }));
  assert.equal(it.results.length, 1);
  assert.deepEqual(it.results[0].torch!.runs, [0.5]);
  assert.ok(it.results[0].speedVsTorch! > 0);
  const md = resultsMarkdown({ command: "npm run bench:results", date: new Date(0), revision: "abc1234", iterations: it, ops: r, left: [], wallSeconds: 60 });
  assert.match(md, /^# c3gan vs PyTorch on this machine/);
  assert.match(md, /Generated by `npm run bench:results` on 1970-01-01T00:00:00Z \(1.0 min\) at revision abc1234;/);
  assert.match(md, /\| 3x3 convs|\| batch norm \| 32px \|/);
  assert.ok(spreadCount(r, 2).total > 0);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("info and the bench header name the addon file loaded, C3GAN_ADDON's when it is set", () => {
  const loaded = addonFilePath();
  assert.ok(fs.existsSync(loaded), loaded);
  assert.equal(machineInfo(native()).addonFile, loaded);
  // a copy of the addon elsewhere, named by C3GAN_ADDON: info reports that file, not build/Release
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "c3gan-addon-"));
  try {
    const copy = path.join(dir, "c3gan.node");
    fs.copyFileSync(loaded, copy);
    const r = spawnSync(process.execPath, [path.join(__dirname, "../bin/c3gan.js"), "info"],
      { encoding: "utf8", env: { ...process.env, C3GAN_ADDON: copy } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\\naddon ${copy.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
