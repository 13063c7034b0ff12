import { execFileSync } from "node:child_process";

/**
 * Vitest global setup: build every workspace once (tsc -b: incremental, a no-op when fresh), so
 * that tests importing `atomic-session` and tests spawning the reference server run the current code.
 */
export default function build(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-b"], { stdio: "inherit" });
}
