// The library build the benchmark servers import.
import { execFileSync } from "node:child_process";
import { join } from "node:path";

/** The repository root (bench/lib/../..). */
export const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * Builds the library (tsc -b packages/atomic-session: incremental, a no-op when the build is
 * fresh). Type errors (work in progress) are reported but do not stop the benchmark as long as
 * what it needs was emitted.
 * @param {{ force?: boolean; log: (line: string) => void }} options
 */
export function ensureBuilt({ force = false, log }) {
  try {
    execFileSync(
      process.execPath,
      [join(ROOT, "node_modules/typescript/bin/tsc"), "-b", ...(force ? ["--force"] : []), "packages/atomic-session"],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" },
    );
  } catch (error) {
    const output = `${error.stdout ?? ""}${error.stderr ?? ""}`.trim();
    log(`warning: tsc reported errors (dist/ was still emitted; servers whose code does not load will fail to start):\n${output}`);
  }
}
