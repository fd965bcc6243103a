// lib/eval against scipy / sklearn / the official C3-GAN formulas (fixtures from
// test/fixtures/make_eval_fixtures.py) and against brute force on tiny matrices.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../lib/native";
import {
  accOfficial,
  clusterUsage,
  contingency,
  describeUsage,
  evaluateClustering,
  linearSumAssignment,
  ariSklearn,
  nmiOfficial,
  nmiSklearn,
} from "../lib/eval";

function fixture<T>(name: string): T {
  const file = path.join(packageRoot(), "test", "fixtures", name);
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}

interface HungarianCase {
  kind: string;
  shape: [number, number];
  cost: number[];
  optimal: number;
}
interface MetricCase {
  numGtClasses: number;
  over: number;
  quality: number;
  labels: number[];
  clusters: number[];
  acc: number;
  nmiOfficial: number;
  nmiSklearn: number;
  ari: number;
}
interface SklearnCase {
  labels: number[];
  clusters: number[];
  nmi: number;
  ari: number;
}

function close(actual: number, expected: number, rel: number, abs: number, what: string): void {
  const ok = Math.abs(actual - expected) <= Math.max(abs, rel * Math.abs(expected));
  assert.ok(ok, `${what}: got ${actual}, expected ${expected} (diff ${actual - expected})`);
}

/** Checks that the assignment is injective, covers min(rows, cols) and that totalCost matches it. */
function checkValid(rows: number, cols: number, cost: ArrayLike<number>, rowToCol: Int32Array, colToRow: Int32Array,
  totalCost: number, what: string): void {
  assert.equal(rowToCol.length, rows, `${what}: rowToCol length`);
  assert.equal(colToRow.length, cols, `${what}: colToRow length`);
  let assigned = 0;
  let sum = 0;
  for (let i = 0; i < rows; i++) {
    const j = rowToCol[i];
    if (j < 0) continue;
    assigned++;
    assert.equal(colToRow[j], i, `${what}: colToRow[${j}] != ${i}`);
    sum += cost[i * cols + j];
  }
  assert.equal(assigned, Math.min(rows, cols), `${what}: number of assigned rows`);
  close(totalCost, sum, 1e-12, 1e-12, `${what}: totalCost vs the assigned entries`);
}

// Deterministic small PRNG for test data (mulberry32).
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Minimum over all injective maps from the smaller side into the larger one. */
function bruteForce(rows: number, cols: number, cost: number[]): number {
  const small = Math.min(rows, cols);
  const big = Math.max(rows, cols);
  const get = rows <= cols ? (s: number, b: number) => cost[s * cols + b] : (s: number, b: number) => cost[b * cols + s];
  const used = new Array<boolean>(big).fill(false);
  let best = Infinity;
  const rec = (s: number, acc: number) => {
    if (s === small) {
      best = Math.min(best, acc);
      return;
    }
    for (let b = 0; b < big; b++) {
      if (used[b]) continue;
      used[b] = true;
      rec(s + 1, acc + get(s, b));
      used[b] = false;
    }
  };
  rec(0, 0);
  return best;
}

test("hungarian: optimal cost equals scipy's on every fixture matrix", () => {
  const { cases } = fixture<{ cases: HungarianCase[] }>("eval_hungarian.json");
  assert.ok(cases.length >= 40, `expected many fixture matrices, found ${cases.length}`);
  for (const c of cases) {
    const [rows, cols] = c.shape;
    const what = `${c.kind} ${rows}x${cols}`;
    const r = linearSumAssignment({ rows, cols, data: c.cost });
    checkValid(rows, cols, c.cost, r.rowToCol, r.colToRow, r.totalCost, what);
    close(r.totalCost, c.optimal, 1e-10, 1e-9, `${what}: total cost vs scipy`);
  }
});

test("hungarian: nested rows and the flat form give the same answer", () => {
  const { cases } = fixture<{ cases: HungarianCase[] }>("eval_hungarian.json");
  for (const c of cases.slice(0, 12)) {
    const [rows, cols] = c.shape;
    const nested = Array.from({ length: rows }, (_, i) => c.cost.slice(i * cols, (i + 1) * cols));
    const a = linearSumAssignment(nested);
    const b = linearSumAssignment({ rows, cols, data: Float64Array.from(c.cost) });
    assert.deepEqual(Array.from(a.rowToCol), Array.from(b.rowToCol), `${c.kind} ${rows}x${cols}`);
    assert.equal(a.totalCost, b.totalCost);
  }
});

test("hungarian: matches brute force on tiny matrices (floats, ties, negatives)", () => {
  const rnd = prng(7);
  let checked = 0;
  for (let rows = 1; rows <= 6; rows++) {
    for (let cols = 1; cols <= 6; cols++) {
      for (let rep = 0; rep < 4; rep++) {
        const cost: number[] = [];
        for (let k = 0; k < rows * cols; k++) {
          // rep 0: floats; 1: small ints (ties); 2: negatives; 3: all equal but one row
          const u = rnd();
          cost.push(rep === 0 ? u : rep === 1 ? Math.floor(u * 3) : rep === 2 ? (u - 0.5) * 100 : k < cols ? u : 1);
        }
        const r = linearSumAssignment({ rows, cols, data: cost });
        const what = `${rows}x${cols} rep ${rep}`;
        checkValid(rows, cols, cost, r.rowToCol, r.colToRow, r.totalCost, what);
        close(r.totalCost, bruteForce(rows, cols, cost), 1e-12, 1e-12, `${what}: vs brute force`);
        checked++;
      }
    }
  }
  assert.equal(checked, 144);
});

test("hungarian: rejects empty, ragged and non-finite input with clear errors", () => {
  assert.throws(() => linearSumAssignment([]), /empty \(0 rows\)/);
  assert.throws(() => linearSumAssignment([[]]), /empty \(0 columns\)/);
  assert.throws(() => linearSumAssignment([[1, 2], [3]]), /ragged cost matrix: row 1 has 1 entries, row 0 has 2/);
  assert.throws(() => linearSumAssignment([[1, NaN]]), /cost\[0\]\[1\] = NaN is not a finite number/);
  assert.throws(() => linearSumAssignment([[1], [Infinity]]), /cost\[1\]\[0\] = Infinity/);
  assert.throws(() => linearSumAssignment([[1], [-Infinity]]), /cost\[1\]\[0\] = -Infinity/);
  assert.throws(() => linearSumAssignment([[1, "2" as unknown as number]]), /cost\[0\]\[1\] = 2 is not a finite number/);
  assert.throws(() => linearSumAssignment({ rows: 2, cols: 2, data: [1, 2, 3] }), /data has 3 entries, expected rows\*cols = 4/);
  assert.throws(() => linearSumAssignment({ rows: 0, cols: 3, data: [] }), /empty \(0 x 3\)/);
  assert.throws(() => linearSumAssignment({ rows: 1.5, cols: 2, data: [1, 2] }), /non-negative integers/);
});

test("metrics: official ACC / NMI and sklearn NMI and ARI equal the python reference", () => {
  const { cases } = fixture<{ cases: MetricCase[] }>("eval_metrics.json");
  const overs = new Set(cases.map((c) => c.over));
  for (const o of [1, 2, 3]) assert.ok(overs.has(o), `fixtures cover over = ${o}`);
  for (const c of cases) {
    const what = `numGtClasses ${c.numGtClasses} over ${c.over} quality ${c.quality}`;
    const r = evaluateClustering(c.labels, c.clusters, { numGtClasses: c.numGtClasses, over: c.over });
    close(r.acc, c.acc, 1e-12, 1e-12, `${what}: acc`);
    close(r.nmiOfficial, c.nmiOfficial, 1e-9, 1e-12, `${what}: nmiOfficial`);
    close(r.nmiSklearn, c.nmiSklearn, 1e-9, 1e-12, `${what}: nmiSklearn`);
    close(r.ari, c.ari, 1e-12, 1e-12, `${what}: ari`);
    assert.equal(r.table.rows, c.numGtClasses);
    assert.equal(r.table.cols, c.numGtClasses * c.over);
    assert.equal(r.table.data.reduce((s, x) => s + x, 0), c.labels.length, `${what}: table total`);
    // The matching gives every class exactly `over` clusters.
    const perClass = new Array<number>(c.numGtClasses).fill(0);
    for (const k of r.clusterToClass) perClass[k]++;
    assert.deepEqual(perClass, new Array<number>(c.numGtClasses).fill(c.over), `${what}: clusters per class`);
  }
});

test("metrics: sklearn NMI conventions (degenerate labelings, arbitrary label values)", () => {
  const { sklearn } = fixture<{ sklearn: SklearnCase[] }>("eval_metrics.json");
  for (const c of sklearn) {
    close(nmiSklearn(c.labels, c.clusters), c.nmi, 1e-9, 1e-12, `nmiSklearn(${c.labels.slice(0, 6)}..., ${c.clusters.slice(0, 6)}...)`);
  }
  assert.equal(nmiSklearn([1, 1, 1], [2, 2, 2]), 1);
  assert.equal(nmiSklearn([0, 0, 0, 0], [0, 1, 2, 3]), 0);
});

test("metrics: sklearn ARI (degenerate labelings, arbitrary label values, chance, errors)", () => {
  const { sklearn } = fixture<{ sklearn: SklearnCase[] }>("eval_metrics.json");
  for (const c of sklearn) {
    close(ariSklearn(c.labels, c.clusters), c.ari, 1e-12, 1e-12, `ariSklearn(${c.labels.slice(0, 6)}..., ${c.clusters.slice(0, 6)}...)`);
  }
  assert.ok(sklearn.some((c) => c.ari < 0), "a case below chance");
  assert.equal(ariSklearn([], []), 1);
  assert.equal(ariSklearn([4, 4], [0, 0]), 1);
  assert.throws(() => ariSklearn([0, 1], [0]), /ariSklearn: 2 labels but 1 cluster ids/);
  assert.throws(() => ariSklearn([0, 0.5], [0, 1]), /labels\[1\] = 0.5 is not an integer/);
});

test("metrics: scores do not depend on how clusters are numbered", () => {
  const { cases } = fixture<{ cases: MetricCase[] }>("eval_metrics.json");
  const c = cases.find((x) => x.over === 2 && x.quality > 0 && x.quality < 1)!;
  const K = c.numGtClasses * c.over;
  const rnd = prng(3);
  const perm = Array.from({ length: K }, (_, i) => i);
  for (let i = K - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const a = evaluateClustering(c.labels, c.clusters, c);
  const b = evaluateClustering(c.labels, c.clusters.map((k) => perm[k]), c);
  close(b.acc, a.acc, 1e-12, 1e-12, "acc");
  close(b.nmiOfficial, a.nmiOfficial, 1e-12, 1e-12, "nmiOfficial");
  close(b.nmiSklearn, a.nmiSklearn, 1e-12, 1e-12, "nmiSklearn");
});

test("metrics: a perfect clustering scores ACC 1 and NMI 1", () => {
  const g = 6;
  const labels: number[] = [];
  const clusters: number[] = [];
  for (let i = 0; i < 120; i++) {
    labels.push(i % g);
    clusters.push((i % g) * 5 % g); // a relabelling of the classes (5 is coprime to 6)
  }
  const r = evaluateClustering(labels, clusters, { numGtClasses: g, over: 1 });
  assert.equal(r.acc, 1);
  close(r.nmiSklearn, 1, 1e-12, 1e-12, "nmiSklearn");
  close(r.nmiOfficial, 1, 1e-4, 0, "nmiOfficial (its eps terms keep it a hair off 1)");
  // over = 2: each class spread over its own two clusters is still 100% accurate.
  const split = labels.map((y, i) => 2 * y + (i % 2));
  const r2 = evaluateClustering(labels, split, { numGtClasses: g, over: 2 });
  assert.equal(r2.acc, 1);
});

test("metrics: contingency counts and the folded ACC on a hand-made table", () => {
  const t = contingency([0, 0, 1, 1, 1, 0], [2, 2, 0, 1, 1, 3], 2, 4);
  assert.deepEqual(Array.from(t.data), [0, 0, 2, 1, 1, 2, 0, 0]);
  // over 2: class 0 takes clusters 2 and 3 (3 samples), class 1 takes 1 and 0 (3 samples).
  const r = accOfficial(t, 2);
  assert.equal(r.acc, 1);
  assert.deepEqual(Array.from(r.clusterToClass), [1, 1, 0, 0]);
  // over 1 on the 2 x 2 part: best is 2 + 2 of 4.
  const t1 = contingency([0, 0, 1, 1], [1, 1, 0, 1], 2, 2);
  close(accOfficial(t1, 1).acc, 3 / 4, 0, 1e-15, "acc 2x2");
  assert.ok(Number.isFinite(nmiOfficial(t1)));
});

test("metrics: bad inputs give clear errors", () => {
  const opts = { numGtClasses: 2, over: 2 };
  assert.throws(() => evaluateClustering([0, 1], [0], opts), /2 labels but 1 cluster ids/);
  assert.throws(() => evaluateClustering([0, 2], [0, 1], opts), /labels\[1\] = 2 is not an integer in \[0, 2\)/);
  assert.throws(() => evaluateClustering([0, 1], [0, 4], opts), /clusters\[1\] = 4 is not an integer in \[0, 4\)/);
  assert.throws(() => evaluateClustering([0, 1.5], [0, 1], opts), /labels\[1\] = 1.5/);
  assert.throws(() => evaluateClustering([], [], opts), /no samples/);
  assert.throws(() => evaluateClustering([0], [0], { numGtClasses: 0, over: 1 }), /numGtClasses must be a positive integer/);
  assert.throws(() => evaluateClustering([0], [0], { numGtClasses: 1, over: 0 }), /over must be a positive integer/);
  assert.throws(() => accOfficial(contingency([0], [0], 2, 3), 2), /table is 2 x 3, expected 2 x 4/);
  assert.throws(() => nmiOfficial({ rows: 1, cols: 2, data: new Float64Array(2) }), /all zeros/);
  assert.throws(() => nmiSklearn([0, 1], [0]), /2 labels but 1 cluster ids/);
});

test("cluster usage: clusters used, the largest share, balance (entropy / ln K) and the mean cosine", () => {
  // sizes 3, 1, 0, 0 over K = 4
  const u = clusterUsage([0, 1, 0, 0], 4, [0.5, 0.25, 1, 0.25]);
  const h = -(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25));
  assert.deepEqual({ ...u, balance: Number(u.balance.toFixed(12)) },
    { images: 4, clusters: 4, used: 2, largest: 0.75, balance: Number((h / Math.log(4)).toFixed(12)), meanSimilarity: 0.5 });
  assert.equal(clusterUsage([0, 1, 2, 3, 3, 2, 1, 0], 4).balance, 1, "equal sizes");
  assert.equal(clusterUsage([2, 2, 2], 4).balance, 0, "one cluster");
  assert.ok(Number.isNaN(clusterUsage([0], 2).meanSimilarity), "no similarities given");
  assert.equal(describeUsage(u), "2 of 4 clusters used, largest 75.0% of 4 images, balance 0.406, mean cosine 0.500");
  assert.throws(() => clusterUsage([0, 4], 4), /assignment 1 is 4, outside \[0, 4\)/);
  assert.throws(() => clusterUsage([0], 0), /clusters must be a positive integer/);
  assert.throws(() => clusterUsage([0, 1], 2, [1]), /1 similarities for 2 assignments/);
});
