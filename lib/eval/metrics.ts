// Clustering scores: ACC and NMI exactly as the official C3-GAN evaluation (evals.py / train.py)
// computes them, plus sklearn's normalized_mutual_info_score for comparison.
import { linearSumAssignment } from "./hungarian";

/** A dense count table: rows x cols, row-major, float64 counts. */
export interface Table {
  rows: number;
  cols: number;
  data: Float64Array;
}

function at(t: Table, i: number, j: number): number {
  return t.data[i * t.cols + j];
}

function checkCount(name: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer (got ${n})`);
}

function checkLabels(what: string, name: string, xs: ArrayLike<number>, limit: number): void {
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    if (!Number.isInteger(x) || x < 0 || x >= limit) {
      throw new Error(`${what}: ${name}[${i}] = ${x} is not an integer in [0, ${limit})`);
    }
  }
}

/** T[class][cluster] = number of samples with that label and that cluster. */
export function contingency(
  labels: ArrayLike<number>,
  clusters: ArrayLike<number>,
  numClasses: number,
  numClusters: number,
): Table {
  const what = "contingency";
  checkCount(`${what}: numClasses`, numClasses);
  checkCount(`${what}: numClusters`, numClusters);
  if (labels.length !== clusters.length) {
    throw new Error(`${what}: ${labels.length} labels but ${clusters.length} cluster ids`);
  }
  checkLabels(what, "labels", labels, numClasses);
  checkLabels(what, "clusters", clusters, numClusters);
  const data = new Float64Array(numClasses * numClusters);
  for (let i = 0; i < labels.length; i++) data[labels[i] * numClusters + clusters[i]] += 1;
  return { rows: numClasses, cols: numClusters, data };
}

export interface AccResult {
  acc: number;
  /** rowToCluster[r] for each of the K rows of the folded K x K table (class = r % numGtClasses) */
  rowToCluster: Int32Array;
  /** clusterToClass[c] = the class cluster c was matched to */
  clusterToClass: Int32Array;
}

/**
 * The official ACC. `table` is numGtClasses x K with K = numGtClasses * over (classes x clusters).
 * The official builds a K x K table whose first numGtClasses rows are the counts and, for over > 1,
 * copies those rows into the other over-1 row blocks, so each class can claim up to `over`
 * clusters. Hungarian on max(T) - T (maximises the matched counts). Then
 *   ACC = sum_r T[r][match(r)] / (sum(T) / over)
 * where sum(T) / over is the number of samples, since T holds `over` copies of every count.
 */
export function accOfficial(table: Table, over: number): AccResult {
  const what = "accOfficial";
  checkCount(`${what}: over`, over);
  const g = table.rows;
  const K = g * over;
  if (table.cols !== K) {
    throw new Error(`${what}: table is ${g} x ${table.cols}, expected ${g} x ${K} (numGtClasses x numGtClasses*over)`);
  }
  const folded = new Float64Array(K * K);
  for (let b = 0; b < over; b++) folded.set(table.data.subarray(0, g * K), b * g * K);
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < folded.length; i++) {
    if (folded[i] > max) max = folded[i];
    sum += folded[i];
  }
  if (sum === 0) throw new Error(`${what}: the table is all zeros (no samples)`);
  const cost = new Float64Array(K * K);
  for (let i = 0; i < cost.length; i++) cost[i] = max - folded[i];
  const { rowToCol } = linearSumAssignment({ rows: K, cols: K, data: cost });
  let matched = 0;
  const clusterToClass = new Int32Array(K);
  for (let r = 0; r < K; r++) {
    matched += folded[r * K + rowToCol[r]];
    clusterToClass[rowToCol[r]] = r % g;
  }
  return { acc: matched / (sum / over), rowToCluster: rowToCol, clusterToClass };
}

/**
 * The official NMI over a classes x clusters count table, p = T / sum(T), log base 2, with the
 * official's eps placements:
 *   H(x) = -sum_i p_i log2(p_i + 1e-6)
 *   MI   = sum_ij p_ij log2(p_ij / (p_i p_j + 1e-6) + 1e-6)
 *   NMI  = MI / max(H(class), H(cluster))
 */
export function nmiOfficial(table: Table): number {
  const what = "nmiOfficial";
  const { rows: n, cols: m } = table;
  let total = 0;
  for (let i = 0; i < table.data.length; i++) total += table.data[i];
  if (!(total > 0)) throw new Error(`${what}: the table is all zeros (no samples)`);
  const pi = new Float64Array(n);
  const pj = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      const p = at(table, i, j) / total;
      pi[i] += p;
      pj[j] += p;
    }
  }
  let hi = 0;
  for (let i = 0; i < n; i++) hi += -pi[i] * Math.log2(pi[i] + 1e-6);
  let hj = 0;
  for (let j = 0; j < m; j++) hj += -pj[j] * Math.log2(pj[j] + 1e-6);
  let mi = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      const p = at(table, i, j) / total;
      mi += p * Math.log2(p / (pi[i] * pj[j] + 1e-6) + 1e-6);
    }
  }
  // No special cases: the eps terms keep every log finite (a perfect match scores 1 - O(1e-6)).
  return mi / Math.max(hi, hj);
}

/**
 * Two labelings of the same samples as sklearn's metrics read them: only values that occur count,
 * whatever they are. Returns the non-zero cells of their contingency table (key i * C + j), the
 * R class sizes and the C cluster sizes.
 */
function sparseContingency(labels: ArrayLike<number>, clusters: ArrayLike<number>, what: string):
  { counts: Map<number, number>; ai: Float64Array; bj: Float64Array } {
  if (labels.length !== clusters.length) {
    throw new Error(`${what}: ${labels.length} labels but ${clusters.length} cluster ids`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (!Number.isInteger(labels[i])) throw new Error(`${what}: labels[${i}] = ${labels[i]} is not an integer`);
    if (!Number.isInteger(clusters[i])) throw new Error(`${what}: clusters[${i}] = ${clusters[i]} is not an integer`);
  }
  // Compact ids in order of first sighting (sklearn uses np.unique; the order does not matter).
  const classIds = new Map<number, number>();
  const clusterIds = new Map<number, number>();
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    let x = classIds.get(labels[i]);
    if (x === undefined) classIds.set(labels[i], (x = classIds.size));
    let y = clusterIds.get(clusters[i]);
    if (y === undefined) clusterIds.set(clusters[i], (y = clusterIds.size));
    a.push(x);
    b.push(y);
  }
  const C = clusterIds.size;
  const counts = new Map<number, number>();
  const ai = new Float64Array(classIds.size);
  const bj = new Float64Array(C);
  for (let k = 0; k < a.length; k++) {
    const key = a[k] * C + b[k];
    counts.set(key, (counts.get(key) ?? 0) + 1);
    ai[a[k]] += 1;
    bj[b[k]] += 1;
  }
  return { counts, ai, bj };
}

/**
 * sklearn.metrics.normalized_mutual_info_score(labels, clusters) with average_method="arithmetic"
 * (sklearn 1.2 conventions): natural log; only labels that occur count; both labelings with one
 * value (or none) -> 1; MI = 0 -> 0; per-cell MI terms below float64 eps are zeroed, MI clipped at 0.
 */
export function nmiSklearn(labels: ArrayLike<number>, clusters: ArrayLike<number>): number {
  const { counts, ai, bj } = sparseContingency(labels, clusters, "nmiSklearn");
  const R = ai.length;
  const C = bj.length;
  if ((R === 1 && C === 1) || (R === 0 && C === 0)) return 1.0;
  if (R === 1 || C === 1) return 0.0; // MI of a one-valued labeling is 0
  const N = labels.length;
  const logN = Math.log(N);
  const eps = 2.220446049250313e-16; // np.finfo(float64).eps
  let mi = 0;
  for (const [key, nij] of counts) {
    const i = Math.floor(key / C);
    const j = key - i * C;
    const c = nij / N;
    // sklearn's arrangement: c (log n_ij - log N) + c (-log(a_i b_j) + log N + log N)
    let term = c * (Math.log(nij) - logN) + c * (-Math.log(ai[i] * bj[j]) + logN + logN);
    if (Math.abs(term) < eps) term = 0;
    mi += term;
  }
  mi = Math.max(mi, 0);
  if (mi === 0) return 0.0;
  const entropy = (cnt: Float64Array) => {
    let h = 0;
    for (let i = 0; i < cnt.length; i++) h -= (cnt[i] / N) * (Math.log(cnt[i]) - logN);
    return h;
  };
  return mi / ((entropy(ai) + entropy(bj)) / 2);
}

/**
 * sklearn.metrics.adjusted_rand_score(labels, clusters) (sklearn 1.2): the Rand index over pairs
 * of samples, adjusted for chance, from the pair confusion matrix; 1 when no pair is split one way
 * and joined the other (identical partitions, one value or none on both sides), ~0 for chance,
 * down to -0.5. Counts stay exact in float64 up to ~9e7 samples.
 */
export function ariSklearn(labels: ArrayLike<number>, clusters: ArrayLike<number>): number {
  const { counts, ai, bj } = sparseContingency(labels, clusters, "ariSklearn");
  const n = labels.length;
  const C = bj.length;
  let squares = 0;  // sum of n_ij^2
  // contingency . n_k summed: sum over cells of n_ij * (size of its cluster); likewise for classes
  let byCluster = 0, byClass = 0;
  for (const [key, v] of counts) {
    const i = Math.floor(key / C);
    squares += v * v;
    byCluster += v * bj[key - i * C];
    byClass += v * ai[i];
  }
  const tp = squares - n;
  const fp = byCluster - squares;
  const fn = byClass - squares;
  const tn = n * n - fp - fn - squares;
  if (fn === 0 && fp === 0) return 1.0;
  return (2.0 * (tp * tn - fn * fp)) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn));
}

export interface EvalOptions {
  numGtClasses: number;
  /** clusters per class: the model has numGtClasses * over clusters */
  over: number;
}

export interface EvalResult {
  acc: number;
  nmiOfficial: number;
  nmiSklearn: number;
  /** adjusted Rand index (sklearn's adjusted_rand_score): not in the official evaluation */
  ari: number;
  /** numGtClasses x (numGtClasses * over) counts, rows = ground-truth classes */
  table: Table;
  /** the class each cluster was matched to by the ACC matching */
  clusterToClass: Int32Array;
}

/** Score cluster ids against ground-truth labels the way the official C3-GAN evaluation does. */
export function evaluateClustering(
  labels: ArrayLike<number>,
  clusters: ArrayLike<number>,
  opts: EvalOptions,
): EvalResult {
  const what = "evaluateClustering";
  checkCount(`${what}: numGtClasses`, opts.numGtClasses);
  checkCount(`${what}: over`, opts.over);
  if (labels.length === 0) throw new Error(`${what}: no samples to evaluate`);
  const K = opts.numGtClasses * opts.over;
  const table = contingency(labels, clusters, opts.numGtClasses, K);
  const { acc, clusterToClass } = accOfficial(table, opts.over);
  return {
    acc,
    nmiOfficial: nmiOfficial(table),
    nmiSklearn: nmiSklearn(labels, clusters),
    ari: ariSklearn(labels, clusters),
    table,
    clusterToClass,
  };
}
