import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { StoredSession } from "atomic-session";
import { SessionConfigError, SessionValueError } from "atomic-session";
import { SqliteStore } from "atomic-session/stores/sqlite";
import { at, describeSessionConformance, describeStoreConformance, metaFor, newKey, type StoreHarness } from "atomic-session/testing";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const HOUR = 3_600_000;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });
const tempDirs: string[] = [];

function tempFile(name = "sessions.db"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sessionstore-sqlite-"));
  tempDirs.push(dir);
  return path.join(dir, name);
}

function record(fields: Record<string, string>, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

function rowCounts(raw: Database.Database, key: string): { sessions: number; fields: number } {
  const sessions = raw.prepare<[string], { n: number }>("SELECT count(*) AS n FROM sessionstore_sessions WHERE key = ?").get(key)?.n ?? 0;
  const fields =
    raw.prepare<[string], { n: number }>("SELECT count(*) AS n FROM sessionstore_fields WHERE session_key = ?").get(key)?.n ?? 0;
  return { sessions, fields };
}

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const openSqliteHarness = async (): Promise<StoreHarness> => {
  const file = tempFile();
  const store = new SqliteStore({ path: file });
  // A second connection on the same file, as a second process would open it.
  const second = new SqliteStore({ path: file });
  const raw = new Database(file);
  return {
    store,
    second,
    async backendExpiryMs(key) {
      const row = raw.prepare<[string], { expires_at: number }>("SELECT expires_at FROM sessionstore_sessions WHERE key = ?").get(key);
      return row === undefined ? undefined : row.expires_at - Date.now();
    },
    async holdsAnything(key) {
      const { sessions, fields } = rowCounts(raw, key);
      return sessions + fields > 0;
    },
    async corrupt(key) {
      // SQLite is loosely typed: text lands in an INTEGER column as a crash or a foreign writer could leave it.
      raw.prepare("UPDATE sessionstore_sessions SET last_seen_at = 'garbage' WHERE key = ?").run(key);
    },
    async close() {
      await store.dispose();
      await second.dispose();
      raw.close();
    },
  };
};

describeStoreConformance("sqlite", openSqliteHarness);
describeSessionConformance("sqlite", openSqliteHarness);

describe("SqliteStore", () => {
  it("creates its schema on first use, with its parent folder", async () => {
    const file = path.join(path.dirname(tempFile()), "nested", "deeper", "sessions.db");
    const store = new SqliteStore({ path: file });
    expect(existsSync(file)).toBe(true);
    const raw = new Database(file);
    const objects = raw
      .prepare<[], { type: string; name: string; sql: string }>("SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'sessionstore%'")
      .all();
    expect(objects.map(({ type, name }) => `${type}:${name}`).sort()).toEqual([
      "index:sessionstore_sessions_expires_at",
      "index:sessionstore_sessions_user_id",
      "table:sessionstore_fields",
      "table:sessionstore_sessions",
    ]);
    expect(objects.find(({ name }) => name === "sessionstore_fields")?.sql).toMatch(/ON DELETE CASCADE/);
    expect(raw.pragma("user_version", { simple: true })).toBe(1);
    raw.close();
    await store.dispose();
  });

  it("runs in WAL mode with synchronous NORMAL, foreign keys and a busy timeout", async () => {
    const file = tempFile();
    const database = new Database(file);
    const store = new SqliteStore({ database });
    expect(database.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(database.pragma("synchronous", { simple: true })).toBe(1);
    expect(database.pragma("foreign_keys", { simple: true })).toBe(1);
    expect(database.pragma("busy_timeout", { simple: true })).toBe(500);
    await store.dispose();
    // An injected connection belongs to the caller: dispose leaves it open.
    expect(database.open).toBe(true);
    database.close();
  });

  it("keeps sessions across closing and reopening the file", async () => {
    const file = tempFile();
    const key = newKey();
    const meta = metaFor(Date.now(), { userId: "ada" });
    const first = new SqliteStore({ path: file });
    await first.create(key, record({ visits: "3", name: '"ada"' }, meta));
    await first.dispose();
    const reopened = new SqliteStore({ path: file });
    const loaded = await reopened.load(key, noTouch());
    expect(loaded?.meta).toEqual(meta);
    expect(Object.fromEntries(loaded?.fields ?? [])).toEqual({ visits: "3", name: '"ada"' });
    await reopened.dispose();
  });

  it("sweeps expired rows, their fields with them", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file, sweepIntervalMs: 50 });
    const raw = new Database(file);
    const now = Date.now();
    const [expiring, live] = [newKey(), newKey()];
    await store.create(expiring, record({ a: "1", b: "2" }, metaFor(now, { expiresAt: now + 100 })));
    await store.create(live, record({ a: "1" }));
    expect(rowCounts(raw, expiring)).toEqual({ sessions: 1, fields: 2 });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(rowCounts(raw, expiring)).toEqual({ sessions: 0, fields: 0 });
    expect(rowCounts(raw, live)).toEqual({ sessions: 1, fields: 1 });
    raw.close();
    await store.dispose();
  });

  it("replaces an expired row that was not swept yet, without keeping its fields", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    const now = Date.now();
    await store.create(key, record({ old: "1" }, metaFor(now - 2 * HOUR, { expiresAt: now - 1 })));
    expect(await store.create(key, record({ fresh: "2" }))).toBe(true);
    expect(Object.fromEntries((await store.load(key, noTouch()))?.fields ?? [])).toEqual({ fresh: "2" });
    await store.dispose();
  });

  it("removes rows whose timestamps are not integers", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file });
    const raw = new Database(file);
    for (const damage of ["created_at = 1.5", "expires_at = 'soon'", "absolute_expires_at = x'00'"]) {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      raw.prepare(`UPDATE sessionstore_sessions SET ${damage} WHERE key = ?`).run(key);
      expect(await store.load(key, noTouch())).toBeUndefined();
      expect(rowCounts(raw, key)).toEqual({ sessions: 0, fields: 0 });
    }
    raw.close();
    await store.dispose();
  });

  it("rejects an increment that leaves the safe integer range", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    await store.create(key, record({ big: String(Number.MAX_SAFE_INTEGER) }));
    await expect(store.increment(key, "big", 1, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
    expect((await store.load(key, noTouch()))?.fields.get("big")).toBe(String(Number.MAX_SAFE_INTEGER));
    await store.dispose();
  });

  it("rejects bad options with SessionConfigError", async () => {
    const database = new Database(":memory:");
    expect(() => new SqliteStore({ path: tempFile(), database })).toThrow(SessionConfigError);
    expect(() => new SqliteStore({ path: "" })).toThrow(SessionConfigError);
    expect(() => new SqliteStore({ database, sweepIntervalMs: 0 })).toThrow(/sweepIntervalMs/);
    expect(() => new SqliteStore({ database, busyTimeoutMs: -1 })).toThrow(/busyTimeoutMs/);
    database.close();
    expect(() => new SqliteStore({ database })).toThrow(/closed/);
  });

  it("refuses a database whose schema is newer than it understands", async () => {
    const file = tempFile();
    const raw = new Database(file);
    raw.pragma("user_version = 99");
    raw.close();
    expect(() => new SqliteStore({ path: file })).toThrow(SessionConfigError);
  });

  describe("across two OS processes", () => {
    const built = path.join(root, "dist/src/stores/sqlite.js");
    // The vitest global setup (test/support/build.ts) compiles dist/ before any test runs.
    beforeAll(() => {
      if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\``);
    });

    // Opens the built store, says "ready", waits for "go" on stdin, then increments and prints the results.
    // The 1 ms pause between increments spreads them over ~100 ms, so the two children interleave
    // (in a tight loop one child would be done before the other's "go" arrives).
    const child = `
      const [moduleUrl, file, key, times] = process.argv.slice(1);
      const { SqliteStore } = await import(moduleUrl);
      const store = new SqliteStore({ path: file });
      process.stdout.write("ready\\n");
      await new Promise((resolve) => process.stdin.once("data", resolve));
      const results = [];
      for (let i = 0; i < Number(times); i++) {
        results.push(await store.increment(key, "visits", 1, { now: Date.now(), idleTimeoutMs: 3600000, touchIntervalMs: 3600000 }));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await store.dispose();
      process.stdout.write(JSON.stringify(results) + "\\n");
      process.exit(0);
    `;

    function run(file: string, key: string): { ready: Promise<void>; go(): void; results: Promise<number[]> } {
      const proc = spawn(process.execPath, ["--input-type=module", "-e", child, pathToFileURL(built).href, file, key, "100"], {
        cwd: root,
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      let onReady: () => void = () => {};
      const ready = new Promise<void>((resolve) => {
        onReady = resolve;
      });
      proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        stdout += chunk;
        if (stdout.startsWith("ready\n")) onReady();
      });
      proc.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
      });
      const results = new Promise<number[]>((resolve, reject) => {
        proc.on("error", reject);
        proc.on("exit", (code) => {
          if (code !== 0) return reject(new Error(`child exited with ${code}: ${stderr}`));
          resolve(JSON.parse(stdout.split("\n")[1] ?? "") as number[]);
        });
      });
      // A child that dies before "ready" must fail the test rather than hang it.
      results.catch(() => onReady());
      return { ready, go: () => proc.stdin.end("go\n"), results };
    }

    it("applies 200 increments from two processes exactly", async () => {
      const file = tempFile();
      const store = new SqliteStore({ path: file });
      const key = newKey();
      await store.create(key, record({ visits: "0" }));
      const children = [run(file, key), run(file, key)];
      await Promise.all(children.map((child) => child.ready));
      for (const child of children) child.go();
      const perChild = await Promise.all(children.map((child) => child.results));
      // The children really ran at the same time: the first one's values are not one unbroken run.
      const first = perChild[0] ?? [];
      expect(first.some((value, i) => i > 0 && value !== (first[i - 1] ?? 0) + 1)).toBe(true);
      const results = perChild.flat();
      expect(results).toHaveLength(200);
      expect(new Set(results).size).toBe(200);
      expect(Math.max(...results)).toBe(200);
      expect((await store.load(key, noTouch()))?.fields.get("visits")).toBe("200");
      await store.dispose();
    });
  });
});
