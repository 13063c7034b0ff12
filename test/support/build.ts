import { execFileSync } from "node:child_process";

/** Vitest global setup: compile once, so tests that spawn the reference server run the current code. */
export default function build(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
}
