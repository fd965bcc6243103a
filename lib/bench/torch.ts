// The PyTorch side of `c3gan bench --compare torch`: a python process (benchmarks/torch_*.py, run
// with Debian's torch through /usr/bin/python3 by default) that stays up for a whole config and
// answers one JSON line per request, so c3gan and PyTorch can alternate row by row (or run by
// run) without paying torch's start-up each time. Only one side computes at a time: while the
// python process works, Node just awaits its reply.
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";
import { packageRoot } from "../native";

export function benchScript(name: string): string {
  return path.join(packageRoot(), "benchmarks", name);
}

/**
 * The environment that makes torch (OpenMP) and OpenBLAS use exactly `threads` threads. OpenMP
 * waits passively (unless the caller set OMP_WAIT_POLICY): libgomp's default spins before it
 * sleeps, and on a machine with more runnable threads than cores a spinning thread waits whole
 * scheduler slices for a descheduled team mate (measured here: a 2-thread batch norm on 8x4096
 * took 48 ms instead of 0.15 ms); c3gan's pool sleeps on a condition variable, the same way.
 */
export function torchEnv(threads: number, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const n = String(threads);
  return { ...base, OMP_NUM_THREADS: n, OPENBLAS_NUM_THREADS: n, MKL_NUM_THREADS: n, OMP_WAIT_POLICY: base.OMP_WAIT_POLICY ?? "PASSIVE" };
}

/**
 * One line of the worker's stdout as a JSON object. Anything else (not JSON, not an object, or an
 * object with an "error" field) is an error naming the script and what it said.
 */
export function parseReply(line: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`${what}: expected one JSON object a line, got ${JSON.stringify(line.slice(0, 200))}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`${what}: expected a JSON object, got ${JSON.stringify(line.slice(0, 200))}`);
  }
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string") throw new Error(`${what}: ${o.error}`);
  return o;
}

const STDERR_KEEP = 4000;

export class TorchWorker {
  private readonly lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private stderr = "";
  private exited: string | null = null;

  private constructor(private readonly child: ChildProcess, readonly what: string) {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on("line", (l) => this.push(l));
    child.stderr!.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString("utf8")).slice(-STDERR_KEEP);
    });
    child.on("error", (e) => this.end(`could not start: ${e.message}`));
    // "close" comes after the process exited and its stdout was read to the end (so every line came first)
    child.on("close", (code, signal) => this.end(signal ? `killed by ${signal}` : `exited with status ${code}`));
  }

  /**
   * Starts `python script args...` with torch's thread variables set and waits for its first
   * line (the "ready" object: torch version, threads, ...), which it returns with the worker.
   */
  static async start(python: string, script: string, args: string[], threads: number): Promise<{ worker: TorchWorker; info: Record<string, unknown> }> {
    const what = `${path.basename(script)} (${python})`;
    const child = spawn(python, [script, ...args], { env: torchEnv(threads), stdio: ["pipe", "pipe", "pipe"] });
    const worker = new TorchWorker(child, what);
    try {
      const info = await worker.next();
      if (info.ready !== true) throw new Error(`${what}: the first line is not {"ready": true, ...}: ${JSON.stringify(info)}`);
      return { worker, info };
    } catch (e) {
      worker.kill();
      throw e;
    }
  }

  /** Sends one request (a JSON line) and waits for its reply. */
  async request(msg: unknown): Promise<Record<string, unknown>> {
    if (this.exited !== null) throw this.deadError();
    this.child.stdin!.write(JSON.stringify(msg) + "\n");
    return this.next();
  }

  /** Closes stdin (the worker's loop ends) and waits for the process to exit. */
  async close(): Promise<void> {
    if (this.exited !== null) return;
    const done = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    this.child.stdin!.end();
    await done;
  }

  kill(): void {
    if (this.exited === null && this.child.exitCode === null) this.child.kill("SIGKILL");
  }

  private next(): Promise<Record<string, unknown>> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(parseReply(line, this.what));
    if (this.exited !== null) return Promise.reject(this.deadError());
    return new Promise((resolve, reject) => {
      this.waiter = (l) => {
        if (l === null) reject(this.deadError());
        else {
          try {
            resolve(parseReply(l, this.what));
          } catch (e) {
            reject(e);
          }
        }
      };
    });
  }

  private push(line: string): void {
    if (line.trim() === "") return;
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(line);
    } else {
      this.lines.push(line);
    }
  }

  private end(why: string): void {
    if (this.exited !== null) return;
    this.exited = why;
    const w = this.waiter;
    this.waiter = null;
    if (w) w(null);
  }

  private deadError(): Error {
    const tail = this.stderr.trim().split("\n").slice(-6).join("\n");
    return new Error(`${this.what} ${this.exited ?? "stopped"}${tail ? `:\n${tail}` : ""}`);
  }
}
