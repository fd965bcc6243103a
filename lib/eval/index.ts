// Clustering evaluation: Hungarian matching, the official ACC (with OVER folding) and NMI.
export { linearSumAssignment } from "./hungarian";
export type { Assignment, CostMatrix } from "./hungarian";
export { contingency, accOfficial, nmiOfficial, nmiSklearn, ariSklearn, evaluateClustering } from "./metrics";
export type { Table, AccResult, EvalOptions, EvalResult } from "./metrics";
export { clusterUsage, describeUsage } from "./usage";
export type { ClusterUsage } from "./usage";
