// Tables for `c3gan bench` and benchmarks/RESULTS.md: the same cells rendered as aligned text or
// as Markdown, the per-op tables, their uses-weighted totals and the speed targets of the issue.
import * as path from "node:path";
import { packageRoot } from "../native";
import type { OpTime } from "../profile";
import { Machine, Peak, PEAK_TRIALS } from "./machine";
import type { OpRow, PassName, RowResult } from "./ops";
import type { Timing } from "./stats";

export interface Table {
  headers: string[];
  rows: string[][];
  /** one letter a column: "l" left-aligned (names), "r" right-aligned (numbers) */
  align: string;
}

/** n left-aligned columns, then right-aligned ones, then `tail` left-aligned at the end */
export function alignment(columns: number, left: number, tail = 0): string {
  return "l".repeat(left) + "r".repeat(columns - left - tail) + "l".repeat(tail);
}

export function renderText(t: Table): string {
  const widths = t.headers.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) => r.map((c, i) => (t.align[i] === "l" ? (c ?? "").padEnd(widths[i]) : (c ?? "").padStart(widths[i]))).join("  ").trimEnd();
  return [fmt(t.headers), widths.map((w) => "-".repeat(w)).join("  "), ...t.rows.map(fmt)].join("\n");
}

export function renderMarkdown(t: Table): string {
  const esc = (c: string) => (c ?? "").replace(/\|/g, "\\|");
  const line = (r: string[]) => `| ${r.map(esc).join(" | ")} |`;
  const rule = `|${t.headers.map((_, i) => (t.align[i] === "l" ? " :--- |" : " ---: |")).join("")}`;
  return [line(t.headers), rule, ...t.rows.map(line)].join("\n");
}

export type Render = (t: Table) => string;

// ---------------------------------------------------------------- numbers

export const fixed = (x: number, digits = 1) => x.toFixed(digits);

/** "12.3 (11.9-13.0)": milliseconds, median (min-max); two decimals under 10 ms */
export function msSpread(t: Timing): string {
  const f = (s: number) => (s * 1e3).toFixed(s < 0.01 ? 2 : 1);
  return `${f(t.median)} (${f(t.min)}-${f(t.max)})`;
}

/** "1.234 s (1.200-1.300)" */
export function secondsSpread(t: { median: number; min: number; max: number }): string {
  return `${t.median.toFixed(3)} (${t.min.toFixed(3)}-${t.max.toFixed(3)})`;
}

export const ratioCell = (r: number | null) => (r === null ? "-" : `${r.toFixed(2)}x`);
export const pctCell = (p: number | null) => (p === null ? "-" : `${p.toFixed(0)}%`);
const whereCell = (w: string[]) => (w.length > 1 ? `${w[0]} (+${w.length - 1})` : w[0] ?? "");
const PASS_SHORT: Record<PassName, string> = { forward: "fwd", "backward-data": "bwd-data", "backward-weight": "bwd-weight", backward: "bwd" };

// ---------------------------------------------------------------- per-op tables

function compared(rows: RowResult[]): boolean {
  return rows.some((r) => r.results.some((p) => p.torch !== null));
}

export function convTable(rows: RowResult[]): Table {
  const convs = rows.filter((r) => r.kind === "conv");
  const torch = compared(convs);
  const body: string[][] = [];
  for (const r of convs) {
    r.results.forEach((p, i) => {
      const first = i === 0;
      const gflop = r.actualFlops !== undefined ? `${fixed(r.work[p.name]! / 1e9, 3)} (${fixed(r.actualFlops / 1e9, 3)})` : fixed(r.work[p.name]! / 1e9, 3);
      const cells = [first ? r.label.replace(/^(\S+) conv /, "$1 ") : "", PASS_SHORT[p.name], first ? String(r.uses) : "", first ? gflop : "",
        msSpread(p.c3gan), fixed(p.rate), pctCell(p.pctPeak)];
      if (torch) cells.push(p.torch ? msSpread(p.torch) : "-", p.torchRate === null ? "-" : fixed(p.torchRate), ratioCell(p.ratio));
      cells.push(first ? whereCell(r.where) : "");
      body.push(cells);
    });
  }
  const headers = ["conv (input NxCxHxW: N = batch)", "pass", "uses", "GFLOP", "c3gan ms (min-max)", "GFLOP/s", "%peak"];
  if (torch) headers.push("torch ms (min-max)", "GFLOP/s", "c3gan/torch");
  headers.push("first module");
  return { headers, rows: body, align: alignment(headers.length, 2, 1) };
}

export function memTable(rows: RowResult[]): Table {
  const mem = rows.filter((r) => r.kind !== "conv");
  const torch = compared(mem);
  const body: string[][] = [];
  for (const r of mem) {
    r.results.forEach((p, i) => {
      const first = i === 0;
      const cells = [first ? r.label : "", PASS_SHORT[p.name], first ? String(r.uses) : "", fixed(r.work[p.name]! / 1e6, 1), msSpread(p.c3gan), fixed(p.rate, 2)];
      if (torch) cells.push(p.torch ? msSpread(p.torch) : "-", p.torchRate === null ? "-" : fixed(p.torchRate, 2), ratioCell(p.ratio));
      cells.push(first ? whereCell(r.where) : "");
      body.push(cells);
    });
  }
  const headers = ["memory-bound op", "pass", "uses", "MB", "c3gan ms (min-max)", "GB/s"];
  if (torch) headers.push("torch ms (min-max)", "GB/s", "c3gan/torch");
  headers.push("first module");
  return { headers, rows: body, align: alignment(headers.length, 2, 1) };
}

interface Sum {
  work: number;
  c3gan: number;
  torch: number | null;
}

/** uses-weighted sums over rows (uses > 0) of one pass, or of all passes when pass is null */
function sumOf(rows: RowResult[], pass: PassName | null): Sum {
  let work = 0, c3gan = 0, torch: number | null = 0;
  for (const r of rows) {
    if (r.uses <= 0) continue;
    for (const p of r.results) {
      if (pass !== null && p.name !== pass) continue;
      work += r.uses * r.work[p.name]!;
      c3gan += r.uses * p.c3gan.median;
      torch = torch === null || p.torch === null ? null : torch + r.uses * p.torch.median;
    }
  }
  return { work, c3gan, torch };
}

/** Per config and net: all convs of one G forward (both nets) or one D call, each shape times its uses. */
export function convTotalsTable(rows: RowResult[], peak: Peak | null): Table {
  const convs = rows.filter((r) => r.kind === "conv" && r.uses > 0);
  const torch = compared(convs);
  const groups = new Map<string, RowResult[]>();
  for (const r of convs) groups.set(`${r.config} ${r.net}`, [...(groups.get(`${r.config} ${r.net}`) ?? []), r]);
  const body: string[][] = [];
  for (const [k, rs] of groups) {
    for (const pass of ["forward", "backward-data", "backward-weight", null] as (PassName | null)[]) {
      const s = sumOf(rs, pass);
      const rate = s.work / s.c3gan / 1e9;
      const cells = [pass === "forward" ? k : "", pass === null ? "all" : PASS_SHORT[pass], fixed(s.work / 1e9, 2), fixed(s.c3gan * 1e3, 0), fixed(rate),
        peak ? pctCell((100 * rate) / peak.allThreads) : "-"];
      if (torch) cells.push(s.torch === null ? "-" : fixed(s.torch * 1e3, 0), s.torch === null ? "-" : fixed(s.work / s.torch / 1e9), ratioCell(s.torch === null ? null : s.torch / s.c3gan));
      body.push(cells);
    }
  }
  const headers = ["all convs x uses", "pass", "GFLOP", "c3gan ms", "GFLOP/s", "%peak"];
  if (torch) headers.push("torch ms", "GFLOP/s", "c3gan/torch");
  return { headers, rows: body, align: alignment(headers.length, 2) };
}

// ---------------------------------------------------------------- targets

export interface TargetSpec {
  name: string;
  /** c3gan's rate / PyTorch's must be at least this */
  target: number;
  match: (r: OpRow) => boolean;
}

/** The issue's targets; the image head (const channels) is reported on its own, not in the 3x3 sum. */
export const TARGETS: TargetSpec[] = [
  { name: "3x3 convs", target: 1.2, match: (r) => r.kind === "conv" && r.conv!.r === 3 && r.conv!.constChannels === 0 },
  { name: "4x4 stride-2 convs", target: 0.9, match: (r) => r.kind === "conv" && r.conv!.r === 4 && r.conv!.stride === 2 },
  { name: "batch norm", target: 3, match: (r) => r.kind === "bn" },
];

export interface TargetResult {
  name: string;
  config: string;
  target: number;
  rows: number;
  /** PyTorch's uses-weighted time / c3gan's over all passes of the matching rows (= ratio of effective rates) */
  ratio: number | null;
  perPass: Partial<Record<PassName, number>>;
  /** matching (row, pass) pairs whose own ratio is under the target */
  below: { label: string; pass: PassName; ratio: number }[];
  met: boolean | null;
}

export function targetResults(rows: RowResult[]): TargetResult[] {
  const out: TargetResult[] = [];
  const configs = [...new Set(rows.map((r) => r.config))];
  for (const spec of TARGETS) {
    for (const config of configs) {
      const rs = rows.filter((r) => r.config === config && r.uses > 0 && spec.match(r));
      if (rs.length === 0 || !compared(rs)) continue;
      const all = sumOf(rs, null);
      const ratio = all.torch === null ? null : all.torch / all.c3gan;
      const perPass: Partial<Record<PassName, number>> = {};
      for (const pass of [...new Set(rs.flatMap((r) => r.passes))]) {
        const s = sumOf(rs, pass);
        if (s.torch !== null) perPass[pass] = s.torch / s.c3gan;
      }
      const below = rs.flatMap((r) => r.results.filter((p) => p.ratio !== null && p.ratio < spec.target)
        .map((p) => ({ label: r.label, pass: p.name, ratio: p.ratio! })));
      out.push({ name: spec.name, config, target: spec.target, rows: rs.length, ratio, perPass, below, met: ratio === null ? null : ratio >= spec.target });
    }
  }
  return out;
}

export function targetTable(results: TargetResult[]): Table {
  const body = results.map((t) => [
    t.name, t.config, `>= ${t.target}x`, ratioCell(t.ratio),
    Object.entries(t.perPass).map(([p, r]) => `${PASS_SHORT[p as PassName]} ${ratioCell(r)}`).join(", "),
    t.met === null ? "-" : t.met ? "met" : "not met",
    t.below.length === 0 ? "none" : `${t.below.length}: worst ${t.below.reduce((w, b) => (b.ratio < w.ratio ? b : w)).label.replace(/^\S+ \S+ /, "")} ` +
      `${PASS_SHORT[t.below.reduce((w, b) => (b.ratio < w.ratio ? b : w)).pass]} ${ratioCell(Math.min(...t.below.map((b) => b.ratio)))}`,
  ]);
  return { headers: ["target", "config", "wanted", "c3gan/torch", "per pass", "verdict", "row-passes under target"], rows: body, align: "llrrlll" };
}

/** The const-channel convs (the image head): effective rate vs PyTorch's plain conv on the concatenated input. */
export function constChannelLines(rows: RowResult[]): string[] {
  return rows.filter((r) => r.kind === "conv" && r.conv!.constChannels > 0 && compared([r])).map((r) => {
    const all = sumOf([{ ...r, uses: 1 }], null);
    return `${r.label} (${r.where[0]}): c3gan's conv2dConstChannels is ${ratioCell(all.torch! / all.c3gan)} PyTorch's plain conv over the ` +
      `concatenated input (all three passes; ${fixed(r.work.forward! / 1e9, 2)} effective GFLOP, ${fixed(r.actualFlops! / 1e9, 2)} actually multiplied)`;
  });
}

// ---------------------------------------------------------------- iterations

/** `bench --profile`: where one config's iterations spent their time */
export interface IterationProfile {
  config: string;
  iterations: number;
  /** ops: each op call waited for its kernels (CUDA); host: none did */
  mode: "ops" | "host";
  /** per iteration, from the profiled runs */
  seconds: number;
  opSeconds: number;
  /** of opSeconds, in the calls that read results back (toFloat32): on CUDA in host mode, the GPU's backlog */
  readbackSeconds: number;
  /** CUDA kernels launched per iteration (0 on the CPU) */
  kernelLaunches: number;
  /** per op, then per op and tensor shapes; the most time first; calls and seconds summed over the iterations */
  ops: OpTime[];
  shapes: OpTime[];
}

/** The top `limit` rows of a profile: per op, or per op and shapes (`detail`). */
export function profileTable(p: IterationProfile, detail: boolean, limit: number): Table {
  // on CUDA, the kernels each row launched (what a fusion would save)
  const kernels = p.kernelLaunches > 0;
  const perIteration = (n: number) => fixed(n / p.iterations, n % p.iterations ? 1 : 0);
  const rows = (detail ? p.shapes : p.ops).slice(0, limit).map((t) => [
    detail ? `${t.op} ${t.shapes}` : t.op,
    perIteration(t.calls),
    ...(kernels ? [perIteration(t.launches ?? 0)] : []),
    fixed((t.seconds / p.iterations) * 1e3, 2),
    `${fixed((100 * t.seconds) / (p.seconds * p.iterations))}%`,
  ]);
  const headers = [detail ? "op and tensor shapes" : "op", "calls/iteration", ...(kernels ? ["kernels/iteration"] : []),
    "ms/iteration", "of the iteration"];
  return { headers, rows, align: alignment(headers.length, 1) };
}

export interface IterationResult {
  config: string;
  c3gan: { median: number; min: number; max: number; runs: number[] };
  torch: { median: number; min: number; max: number; runs: number[] } | null;
  /** PyTorch's median seconds / c3gan's: > 1 means c3gan is faster */
  speedVsTorch: number | null;
}

export function iterationTable(results: IterationResult[]): Table {
  const torch = results.some((r) => r.torch !== null);
  const body = results.map((r) => {
    const cells = [r.config, String(r.c3gan.runs.length), secondsSpread(r.c3gan)];
    if (torch) cells.push(r.torch ? secondsSpread(r.torch) : "-", ratioCell(r.speedVsTorch));
    return cells;
  });
  const headers = ["config", "runs", "c3gan s/iteration (min-max)"];
  if (torch) headers.push("torch s/iteration (min-max)", "c3gan speed / torch");
  return { headers, rows: body, align: alignment(headers.length, 1) };
}

// ---------------------------------------------------------------- header

export function machineLines(m: Machine, peak: Peak | null, torch: Record<string, unknown> | null): string[] {
  const lines = [
    `machine   ${m.cpuModel}, ${m.cores} cores; ${m.threads} threads (c3gan${torch ? " and PyTorch" : ""}); load average ${m.loadAverage.join(" ")}`,
    `features  ${m.features || "(none reported)"}; node ${m.node}; addon ${m.addonVersion}` +
      `${m.addonBuilt ? ` (${m.addonFile ? path.relative(packageRoot(), m.addonFile) : "?"}, built ${m.addonBuilt.replace(/\.\d+Z$/, "Z")})` : ""}; cuda: ${m.cuda}`,
  ];
  if (peak) {
    lines.push(`fp32 peak ${fixed(peak.allThreads)} GFLOP/s on ${peak.threads} threads, ${fixed(peak.oneThread)} on 1 (FMA loop, best of ${peak.trials} trials of ${fixed(peak.seconds / PEAK_TRIALS, 2)} s)`);
  }
  if (torch) lines.push(`torch     ${String(torch.torch)} on ${String(torch.threads)} threads${torch.mkldnn === undefined ? "" : `, mkldnn ${torch.mkldnn ? "on" : "off"}`}`);
  if (m.loadAverage[0] > 0.5) lines.push(`          other processes are running: shared-machine timings (read the min next to the median, and the ratios, measured side by side)`);
  return lines;
}
