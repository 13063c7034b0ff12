/**
 * Generic helpers for test harnesses that spawn processes: finding a binary on PATH, a free port
 * (never 6379, so a developer's own Redis is never touched), a delay, waiting for a child's exit,
 * and tracking spawned children and temporary folders so that they are killed and removed when
 * the test process exits or gets SIGINT/SIGTERM/SIGHUP.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

const REDIS_DEFAULT_PORT = 6379;

/** The first executable `command` in a PATH folder, or undefined. */
export function findOnPath(command: string): string | undefined {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    if (folder === "") continue;
    const candidate = join(folder, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A free TCP port on 127.0.0.1 nobody listens on right now, as the OS hands it out (listen on 0,
 * read, close). Never 6379, so a developer's own Redis is never touched.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const chosen = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    if (port !== 0 && port !== REDIS_DEFAULT_PORT) return port;
  }
}

/** A new, empty folder `atomic-session-<prefix>-XXXXXX` in the OS temporary folder, removed when the test process exits. */
export function tempDir(prefix: string): string {
  return removeOnExit(mkdtempSync(join(tmpdir(), `atomic-session-${prefix}-`)));
}

/** Every process started with `spawnTracked` and not seen exiting, killed when the test process exits. */
const live = new Set<ChildProcess>();
/** Folders to remove when the test process exits. */
const folders = new Set<string>();
let exitHooksInstalled = false;

/** Cleans up on exit and on SIGINT/SIGTERM/SIGHUP. */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", cleanUpNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      cleanUpNow();
      process.off(signal, onSignal);
      // Only re-raise when nobody else handles the signal, so the default behaviour (exit) still applies.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function cleanUpNow(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
  folders.clear();
}

/** Removes `dir` when the test process exits (or earlier, with `removeFolder`). Returns `dir`. */
export function removeOnExit(dir: string): string {
  installExitHooks();
  folders.add(dir);
  return dir;
}

/** Removes `dir` now and forgets it. */
export function removeFolder(dir: string): void {
  folders.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

export interface TrackedChild {
  readonly child: ChildProcess;
  /** The last 8,000 characters of its stdout and stderr. */
  readonly output: string;
}

/** Spawns `binary` in `cwd` (with `env` added to this process's environment), collects its output, and SIGKILLs it when the test process exits. */
export function spawnTracked(binary: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): TrackedChild {
  installExitHooks();
  const child = spawn(binary, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  live.add(child);
  child.once("exit", () => live.delete(child));
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-8_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  // Keeps the test process from hanging on the child's pipes.
  child.unref();
  (child.stdout as { unref?: () => void } | null)?.unref?.();
  (child.stderr as { unref?: () => void } | null)?.unref?.();
  return {
    child,
    get output() {
      return output;
    },
  };
}

/** Resolves true once `child` has exited, false when it is still running after `timeoutMs`. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}
