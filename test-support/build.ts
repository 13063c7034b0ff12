import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, statSync } from "node:fs";

const LOCK = "node_modules/.cache/atomic-session-build.lock";

/** Waits for (then takes) the build lock, so that test runs started at the same time do not write dist/ at once. */
function lock(): () => void {
  mkdirSync("node_modules/.cache", { recursive: true });
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(LOCK);
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch {
      // A lock older than two minutes was left by a run that died.
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 120_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      if (Date.now() - started > 180_000) throw new Error(`the build lock ${LOCK} was held for 3 minutes`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
}

/**
 * Vitest global setup: build every workspace once (tsc -b: incremental, a no-op when fresh), so
 * that tests importing `atomic-session` and tests spawning the reference server run the current
 * code. Type errors are printed but do not stop the run (`npm run check` is where they fail):
 * tsc still emits what it can.
 */
export default function build(): void {
  const unlock = lock();
  try {
    execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-b"], { stdio: "inherit" });
  } catch {
    console.error("test-support/build.ts: tsc -b reported errors (above); running the tests on what it emitted");
  } finally {
    unlock();
  }
}
