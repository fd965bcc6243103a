// Minimum-cost assignment on a rectangular cost matrix: the Hungarian method in its O(n^2 m)
// shortest-augmenting-path form (row/column potentials, Jonker-Volgenant style Dijkstra over
// reduced costs). Same problem as scipy.optimize.linear_sum_assignment(cost) (minimise).

/** Rows of a matrix, or a row-major flat buffer with its dimensions. */
export type CostMatrix =
  | ReadonlyArray<ArrayLike<number>>
  | { rows: number; cols: number; data: ArrayLike<number> };

export interface Assignment {
  /** rowToCol[i] = the column assigned to row i; -1 for rows left over when rows > cols */
  rowToCol: Int32Array;
  /** colToRow[j] = the row assigned to column j; -1 for columns left over when cols > rows */
  colToRow: Int32Array;
  /** sum of cost[i][rowToCol[i]] over the assigned rows */
  totalCost: number;
}

interface Dense {
  rows: number;
  cols: number;
  data: Float64Array;
}

function toDense(cost: CostMatrix, what: string): Dense {
  let rows: number;
  let cols: number;
  let out: Float64Array;
  if (Array.isArray(cost)) {
    const m = cost as ReadonlyArray<ArrayLike<number>>;
    rows = m.length;
    if (rows === 0) throw new Error(`${what}: the cost matrix is empty (0 rows)`);
    const first = m[0];
    if (first == null || typeof first.length !== "number") {
      throw new Error(`${what}: row 0 is not an array of numbers`);
    }
    cols = first.length;
    if (cols === 0) throw new Error(`${what}: the cost matrix is empty (0 columns)`);
    out = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      const row = m[i];
      if (row == null || typeof row.length !== "number") {
        throw new Error(`${what}: row ${i} is not an array of numbers`);
      }
      if (row.length !== cols) {
        throw new Error(`${what}: ragged cost matrix: row ${i} has ${row.length} entries, row 0 has ${cols}`);
      }
      for (let j = 0; j < cols; j++) out[i * cols + j] = checkEntry(row[j], i, j, what);
    }
  } else {
    const flat = cost as { rows: number; cols: number; data: ArrayLike<number> };
    rows = flat.rows;
    cols = flat.cols;
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
      throw new Error(`${what}: rows and cols must be non-negative integers (got ${rows} x ${cols})`);
    }
    if (rows === 0 || cols === 0) throw new Error(`${what}: the cost matrix is empty (${rows} x ${cols})`);
    if (flat.data == null || flat.data.length !== rows * cols) {
      throw new Error(`${what}: data has ${flat.data?.length} entries, expected rows*cols = ${rows * cols}`);
    }
    out = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) out[i * cols + j] = checkEntry(flat.data[i * cols + j], i, j, what);
    }
  }
  return { rows, cols, data: out };
}

function checkEntry(x: unknown, i: number, j: number, what: string): number {
  if (typeof x !== "number" || !Number.isFinite(x)) {
    throw new Error(`${what}: cost[${i}][${j}] = ${String(x)} is not a finite number`);
  }
  return x;
}

/**
 * Solve min sum_i cost[i][a(i)] over injective a (rows -> cols when rows <= cols; otherwise every
 * column gets a distinct row). Throws on empty, ragged or non-finite input.
 */
export function linearSumAssignment(cost: CostMatrix): Assignment {
  const what = "linearSumAssignment";
  const d = toDense(cost, what);
  const transposed = d.rows > d.cols;
  // The solver needs n <= m: solve the transpose when there are more rows than columns.
  const n = transposed ? d.cols : d.rows;
  const m = transposed ? d.rows : d.cols;
  const at = transposed
    ? (i: number, j: number) => d.data[j * d.cols + i]
    : (i: number, j: number) => d.data[i * d.cols + j];

  // 1-based arrays; column 0 is the virtual start column of each augmentation.
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1); // p[j] = row matched to column j (0 = none)
  const way = new Int32Array(m + 1);
  const minv = new Float64Array(m + 1);
  const used = new Uint8Array(m + 1);

  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    minv.fill(Infinity);
    used.fill(0);
    do {
      used[j0] = 1;
      const i0 = p[j0];
      let delta = Infinity;
      let j1 = -1;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = at(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      if (j1 < 0 || !Number.isFinite(delta)) {
        // Only reachable when reduced costs overflow (entries near +-1e308).
        throw new Error(`${what}: reduced costs overflowed; the cost range is too large for float64`);
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] !== 0);
    // Flip the augmenting path back to the start column.
    do {
      const j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 !== 0);
  }

  const rowToCol = new Int32Array(d.rows).fill(-1);
  const colToRow = new Int32Array(d.cols).fill(-1);
  for (let j = 1; j <= m; j++) {
    if (p[j] === 0) continue;
    const r = transposed ? j - 1 : p[j] - 1;
    const c = transposed ? p[j] - 1 : j - 1;
    rowToCol[r] = c;
    colToRow[c] = r;
  }
  // Sum the original entries (more accurate than reading the dual objective).
  let totalCost = 0;
  for (let r = 0; r < d.rows; r++) if (rowToCol[r] >= 0) totalCost += d.data[r * d.cols + rowToCol[r]];
  return { rowToCol, colToRow, totalCost };
}
