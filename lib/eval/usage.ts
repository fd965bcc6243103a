// How a model spreads images over its clusters, for images without labels (where ACC and NMI
// cannot be computed) and beside them: clusters used, the largest cluster's share, how even the
// spread is, and how close images sit to their centroids.

export interface ClusterUsage {
  images: number;
  /** the model's cluster count */
  clusters: number;
  /** clusters holding at least one image */
  used: number;
  /** the largest cluster's share of the images, in [1 / clusters, 1] */
  largest: number;
  /** entropy of the cluster sizes over ln(clusters): 1 for equal sizes, 0 for one cluster */
  balance: number;
  /** mean cosine similarity of an image's feature to its cluster's centroid (NaN without similarities) */
  meanSimilarity: number;
}

export function clusterUsage(assigned: ArrayLike<number>, clusters: number, similarity?: ArrayLike<number>): ClusterUsage {
  if (!Number.isInteger(clusters) || clusters < 1) throw new Error(`clusterUsage: clusters must be a positive integer, got ${clusters}`);
  const n = assigned.length;
  if (similarity && similarity.length !== n) {
    throw new Error(`clusterUsage: ${similarity.length} similarities for ${n} assignments`);
  }
  const sizes = new Float64Array(clusters);
  for (let i = 0; i < n; i++) {
    const k = assigned[i];
    if (!Number.isInteger(k) || k < 0 || k >= clusters) throw new Error(`clusterUsage: assignment ${i} is ${k}, outside [0, ${clusters})`);
    sizes[k]++;
  }
  let used = 0, largest = 0, entropy = 0;
  for (const s of sizes) {
    if (s === 0) continue;
    used++;
    largest = Math.max(largest, s);
    const p = s / n;
    entropy -= p * Math.log(p);
  }
  let sim = 0;
  if (similarity) for (let i = 0; i < n; i++) sim += similarity[i];
  return {
    images: n,
    clusters,
    used,
    largest: n > 0 ? largest / n : 0,
    balance: clusters > 1 && n > 0 ? entropy / Math.log(clusters) : 0,
    meanSimilarity: similarity && n > 0 ? sim / n : Number.NaN,
  };
}

/** "37 of 40 clusters used, largest 6.1% of 300 images, balance 0.97, mean cosine 0.812" */
export function describeUsage(u: ClusterUsage): string {
  return `${u.used} of ${u.clusters} clusters used, largest ${(100 * u.largest).toFixed(1)}% of ${u.images} images, ` +
    `balance ${u.balance.toFixed(3)}` + (Number.isNaN(u.meanSimilarity) ? "" : `, mean cosine ${u.meanSimilarity.toFixed(3)}`);
}
