/**
 * The SQLite store as a package user meets it: typings that a strict TypeScript app compiles
 * without @types/better-sqlite3 or @types/node, and a worker thread that never keeps a process
 * alive once nothing is pending (a script, the admin CLI).
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { SqliteStore } from "atomic-session/stores/sqlite";
import { metaFor, newKey } from "atomic-session/testing";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const repositoryRoot = path.resolve(packageRoot, "../..");
const builtStore = pathToFileURL(path.join(packageRoot, "dist/stores/sqlite/index.js")).href;
const run = promisify(execFile);

/** Runs `node args` in the repository, resolving its exit status, output and wall time; SIGKILL after 20 s. */
function node(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repositoryRoot, env: { PATH: process.env.PATH ?? "", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("error", reject);
    child.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: performance.now() - started });
    });
  });
}

describe("the SQLite store's package surface", () => {
  const declarations = readFileSync(path.join(packageRoot, "dist/stores/sqlite/index.d.ts"), "utf8");

  it("declares nothing from better-sqlite3 or Node in dist/stores/sqlite/index.d.ts", () => {
    expect(declarations).toContain("export declare class SqliteStore");
    for (const leak of ["better-sqlite3", "NodeJS", "Buffer", "reference types", 'from "node:']) {
      expect(declarations, leak).not.toContain(leak);
    }
  });

  it("compiles in a strict app that has neither @types/better-sqlite3 nor @types/node (and the check sees a Node type)", async () => {
    const app = tempDir("sqlite-typings");
    mkdirSync(path.join(app, "node_modules"));
    symlinkSync(packageRoot, path.join(app, "node_modules", "atomic-session"), "dir");
    writeFileSync(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          lib: ["es2022"],
          types: [],
          skipLibCheck: false,
          noEmit: true,
        },
        files: ["app.ts", "control.ts"],
      }),
    );
    writeFileSync(path.join(app, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(
      path.join(app, "app.ts"),
      `import { SqliteStore, SqliteStoreError, type SqliteStoreOptions } from "atomic-session/stores/sqlite";
       const options: SqliteStoreOptions = { path: "sessions.db", synchronous: "full", busyTimeoutMs: 250, sweepIntervalMs: 60_000 };
       const store = new SqliteStore(options);
       export const count: Promise<number> = store.count(Date.now());
       export const failure: Error = new SqliteStoreError("refused", "SQLITE_FULL");
       export const code: string | undefined = new SqliteStoreError("refused").code;
       export const closed: Promise<void> = store.dispose();`,
    );
    // A control: this one must fail, showing that Node's types really are out of reach here.
    writeFileSync(path.join(app, "control.ts"), "export declare const timer: NodeJS.Timeout;\n");
    const tsc = path.join(repositoryRoot, "node_modules/typescript/bin/tsc");
    const output = await run(process.execPath, [tsc, "-p", app], { cwd: app }).then(
      ({ stdout }) => stdout,
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    const errors = output.split("\n").filter((line) => /error TS\d+/.test(line));
    expect(errors.length, output).toBeGreaterThan(0);
    expect(
      errors.every((line) => line.startsWith("control.ts") && line.includes("NodeJS")),
      output,
    ).toBe(true);
  }, 60_000);
});

describe("the SQLite store's worker and the process's lifetime", () => {
  it("a script that never disposes the store exits by itself once its calls are answered", async () => {
    const file = path.join(tempDir("sqlite-lifetime"), "sessions.db");
    const script = `
      const { SqliteStore } = await import(${JSON.stringify(builtStore)});
      const store = new SqliteStore({ path: ${JSON.stringify(file)} });
      const now = Date.now();
      const meta = { createdAt: now, lastSeenAt: now, absoluteExpiresAt: now + 7200000, expiresAt: now + 3600000 };
      // Nothing else keeps this process alive: the pending calls must, until they are answered.
      store.create("k", { meta, fields: new Map([["visits", "1"]]) }).then((created) =>
        store.increment("k", "visits", 1, { now, idleTimeoutMs: 3600000, touchIntervalMs: 3600000 }).then((visits) => console.log(created, visits)),
      );
    `;
    const result = await node(["--input-type=module", "-e", script]);
    expect(result).toMatchObject({ status: 0, stdout: "true 2\n", stderr: "" });
    expect(result.ms).toBeLessThan(10_000);
  }, 30_000);

  it("the admin CLI's stats on a SQLite file exits promptly", async () => {
    const file = path.join(tempDir("sqlite-lifetime"), "sessions.db");
    const store = new SqliteStore({ path: file });
    await store.create(newKey(), { meta: metaFor(Date.now(), { userId: "ada" }), fields: new Map() });
    await store.dispose();
    const result = await node([path.join(packageRoot, "dist/cli/main.js"), "stats", "--json"], { SQLITE_PATH: file });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ store: "sqlite", sessions: 1, users: 1, signedIn: 1, anonymous: 0 });
    expect(result.ms).toBeLessThan(10_000);
  }, 30_000);
});
