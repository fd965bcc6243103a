// Crash-safe file replacement: write a temp file in the same directory (so rename is atomic on
// one filesystem), fsync it, rename over the target, fsync the directory (so the rename itself
// is durable). A failure at any step removes the temp file and leaves the old target intact.
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

export interface AtomicWriteHooks {
  /** Called after the temp file is written and synced, before the rename (tests inject failures here). */
  beforeRename?: (tempPath: string) => void | Promise<void>;
}

/** `.<name>.tmp-<pid>-<random>`: hidden, unique per writer, recognisable as ours. */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** True for names tempPathFor makes for `target`'s basename (for cleanup checks). */
export function isTempNameFor(targetBase: string, name: string): boolean {
  return name.startsWith(`.${targetBase}.tmp-`);
}

// Directory fsync is not supported everywhere (Windows: EPERM/EISDIR); the rename is still atomic.
function ignorableDirSyncError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "EISDIR" || code === "EINVAL" || code === "EPERM" || code === "ENOTSUP" || code === "EBADF";
}

function fail(target: string, step: string, e: unknown): Error {
  const why = e instanceof Error ? e.message : String(e);
  const err = new Error(`c3gan: writing ${target} failed while ${step}: ${why}`);
  (err as Error & { cause?: unknown }).cause = e;
  return err;
}

export function writeFileAtomicSync(target: string, data: Uint8Array, hooks: AtomicWriteHooks = {}): void {
  const tmp = tempPathFor(target);
  let fd: number | null = null;
  let step = "creating the temp file";
  try {
    fd = fs.openSync(tmp, "wx", 0o644);
    step = "writing the temp file";
    let off = 0;
    while (off < data.byteLength) off += fs.writeSync(fd, data, off, data.byteLength - off);
    step = "syncing the temp file";
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    step = "preparing to rename";
    if (hooks.beforeRename) {
      const r = hooks.beforeRename(tmp);
      if (r && typeof (r as Promise<void>).then === "function") {
        throw new Error("beforeRename returned a promise; use writeFileAtomic for async hooks");
      }
    }
    step = "renaming the temp file over the target";
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) try { fs.closeSync(fd); } catch { /* already failing */ }
    try { fs.unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    throw fail(target, step, e);
  }
  syncDirSync(path.dirname(target));
}

function syncDirSync(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch (e) {
    if (!ignorableDirSyncError(e)) throw fail(dir, "syncing the directory", e);
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

export async function writeFileAtomic(target: string, data: Uint8Array, hooks: AtomicWriteHooks = {}): Promise<void> {
  const tmp = tempPathFor(target);
  let fh: fs.promises.FileHandle | null = null;
  let step = "creating the temp file";
  try {
    fh = await fs.promises.open(tmp, "wx", 0o644);
    step = "writing the temp file";
    await fh.writeFile(data);
    step = "syncing the temp file";
    await fh.sync();
    await fh.close();
    fh = null;
    step = "preparing to rename";
    if (hooks.beforeRename) await hooks.beforeRename(tmp);
    step = "renaming the temp file over the target";
    await fs.promises.rename(tmp, target);
  } catch (e) {
    if (fh !== null) await fh.close().catch(() => undefined);
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw fail(target, step, e);
  }
  let dh: fs.promises.FileHandle | null = null;
  try {
    dh = await fs.promises.open(path.dirname(target), "r");
    await dh.sync();
  } catch (e) {
    if (!ignorableDirSyncError(e)) throw fail(path.dirname(target), "syncing the directory", e);
  } finally {
    if (dh !== null) await dh.close();
  }
}
