// Child processes for the suites that need a fresh process: what the native layer reads once
// per process (C3GAN_CUDNN, the CUDA device), or the CLI as a user runs it.
import { spawnSync } from "node:child_process";
import path from "node:path";

const ROOT = path.join(__dirname, "..", "..");  // the package (dist/ is its parent's child)
export const CLI = path.join(ROOT, "bin", "c3gan.js");

export interface ChildResult {
  status: number | null;
  stdout: string;
  /** stdout then stderr */
  out: string;
}

function run(args: string[], env: Record<string, string>): ChildResult {
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, ...env }, encoding: "utf8", cwd: path.join(ROOT, ".."), timeout: 600_000,
  });
  return { status: r.status, stdout: r.stdout, out: `${r.stdout}${r.stderr}` };
}

/** node -e script, run from the repository root (require("./dist/lib/...")), with env added */
export function runNode(script: string, env: Record<string, string> = {}): ChildResult {
  return run(["-e", script], env);
}

/** the c3gan command with args, with env added */
export function runCli(args: string[], env: Record<string, string> = {}): ChildResult {
  return run([CLI, ...args], env);
}
