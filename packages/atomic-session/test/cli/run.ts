/**
 * Runs the compiled admin CLI (`packages/atomic-session/dist/cli/main.js`, built by the vitest global setup) as a child
 * process, with only the environment a test gives it (and PATH), and keeps every byte it printed
 * so that a test can check that no secret ever appeared.
 * @module
 */
import { spawn } from "node:child_process";
import type { CookieJar } from "../../../../test-support/server-process.js";
import { handleOf, storeKeyOf } from "../../src/core/ids.js";

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
}

/** Everything every CLI run of this test process printed, stdout and stderr. */
export const printed: string[] = [];

export function runCli(args: readonly string[], env: Record<string, string>, timeoutMs = 20_000): Promise<CliResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["packages/atomic-session/dist/cli/main.js", ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (status) => {
      clearTimeout(timer);
      printed.push(stdout, stderr);
      resolve({ status, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** `--json` output of `list`: one object per line. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The handle the CLI shows for the session in `jar`. */
export function handleOfJar(jar: CookieJar): string {
  const id = jar.id;
  if (id === undefined) throw new Error("the jar holds no session");
  return handleOf(storeKeyOf(id));
}

/** A handle no session has (well-formed, 16 characters). */
export const UNKNOWN_HANDLE = "AAAAAAAAAAAAAAAA";
