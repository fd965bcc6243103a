// Scratch directories for tests: made under the OS temp dir and removed when the test file's
// process exits (node --test runs each file in its own process), whether its tests passed or not,
// so `npm test` leaves nothing behind in /tmp.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const made: string[] = [];
let hooked = false;

/** A new empty directory named c3gan-<name>-XXXXXX, removed at process exit. */
export function tempDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `c3gan-${name}-`));
  made.push(dir);
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const d of made) fs.rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}
