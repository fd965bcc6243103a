// Assertions on thrown errors shared by the suites.
import assert from "node:assert/strict";

/** fn throws an Error whose message matches re. */
export function throwsError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}
