/**
 * The SQLite store: both conformance suites with a second store on the same file (another
 * worker, so another connection), then what is SQLite's own: the file and its schema, group
 * commit with a savepoint per write, corrupted rows, options, dispose, and two OS processes
 * incrementing one counter. The write lock held by another process, sweeping 200,000 rows and
 * the package's typings are in sqlite-lock, sqlite-sweep and sqlite-package.test.ts.
 */
import { spawn } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Absent, StoredSession } from "atomic-session";
import { SessionConfigError, SessionValueError } from "atomic-session";
import { EnvConfigError, openStore, storeEnv } from "atomic-session/env";
import { SqliteStore, SqliteStoreError } from "atomic-session/stores/sqlite";
import { at, describeSessionConformance, describeStoreConformance, metaFor, newKey, type StoreHarness } from "atomic-session/testing";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";

const HOUR = 3_600_000;
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

function tempFile(name = "sessions.db"): string {
  return path.join(tempDir("sqlite"), name);
}

function record(fields: Record<string, string>, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

/** The fields of what `load` answered, as an object, or why there was no record. */
function fieldsOf(loaded: StoredSession | Absent): Record<string, string> | Absent {
  return typeof loaded === "string" ? loaded : Object.fromEntries(loaded.fields);
}

function rowCounts(raw: Database.Database, key: string): { sessions: number; fields: number } {
  const count = (sql: string) => raw.prepare<[string], { n: number }>(sql).get(key)?.n ?? 0;
  return {
    sessions: count("SELECT count(*) AS n FROM atomic_session_sessions WHERE key = ?"),
    fields: count("SELECT count(*) AS n FROM atomic_session_fields WHERE session_key = ?"),
  };
}

const openSqliteHarness = async (): Promise<StoreHarness> => {
  const file = tempFile();
  const store = new SqliteStore({ path: file });
  // A second store on the same file: its own worker and connection, as a second process would have.
  const second = new SqliteStore({ path: file });
  const raw = new Database(file);
  return {
    store,
    second,
    async backendExpiryMs(key) {
      const row = raw.prepare<[string], { expires_at: number }>("SELECT expires_at FROM atomic_session_sessions WHERE key = ?").get(key);
      return row === undefined ? undefined : row.expires_at - Date.now();
    },
    async holdsAnything(key) {
      const { sessions, fields } = rowCounts(raw, key);
      const markers =
        raw.prepare<[string], { n: number }>("SELECT count(*) AS n FROM atomic_session_rotated WHERE key = ?").get(key)?.n ?? 0;
      return sessions + fields + markers > 0;
    },
    async corrupt(key) {
      // SQLite is loosely typed: text lands in an INTEGER column as a crash or a foreign writer could leave it.
      raw.prepare("UPDATE atomic_session_sessions SET last_seen_at = 'garbage' WHERE key = ?").run(key);
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
  it("creates its schema on first use, with its parent folder, in WAL mode", async () => {
    const file = path.join(tempDir("sqlite"), "nested", "deeper", "sessions.db");
    const store = new SqliteStore({ path: file });
    expect(existsSync(file)).toBe(true);
    const raw = new Database(file);
    const objects = raw
      .prepare<[], { type: string; name: string; sql: string }>(
        "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'atomic_session%'",
      )
      .all();
    expect(objects.map(({ type, name }) => `${type}:${name}`).sort()).toEqual([
      "index:atomic_session_sessions_expires_at",
      "index:atomic_session_sessions_user_id",
      "table:atomic_session_fields",
      "table:atomic_session_rotated",
      "table:atomic_session_sessions",
    ]);
    expect(objects.find(({ name }) => name === "atomic_session_fields")?.sql).toMatch(/ON DELETE CASCADE ON UPDATE CASCADE/);
    // Anonymous sessions stay out of the user index: a new one writes one b-tree page fewer.
    expect(objects.find(({ name }) => name === "atomic_session_sessions_user_id")?.sql).toMatch(/WHERE user_id IS NOT NULL$/);
    expect(raw.pragma("user_version", { simple: true })).toBe(2);
    expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
    raw.close();
    await store.dispose();
  });

  it("migrates a version 1 file: its sessions stay, the user index leaves anonymous ones out", async () => {
    const file = tempFile();
    const raw = new Database(file);
    raw.exec(`
      CREATE TABLE atomic_session_sessions (key TEXT PRIMARY KEY NOT NULL, created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, user_id TEXT, user_agent TEXT, persistent INTEGER) WITHOUT ROWID;
      CREATE INDEX atomic_session_sessions_user_id ON atomic_session_sessions (user_id);
      CREATE INDEX atomic_session_sessions_expires_at ON atomic_session_sessions (expires_at);
      CREATE TABLE atomic_session_fields (session_key TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (session_key, field),
        FOREIGN KEY (session_key) REFERENCES atomic_session_sessions (key) ON DELETE CASCADE ON UPDATE CASCADE) WITHOUT ROWID;
      CREATE TABLE atomic_session_rotated (key TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
      PRAGMA user_version = 1;
    `);
    const now = Date.now();
    const key = newKey();
    raw
      .prepare("INSERT INTO atomic_session_sessions VALUES (?, ?, ?, ?, ?, 'ada', NULL, NULL)")
      .run(key, now, now, now + 2 * HOUR, now + HOUR);
    raw.prepare("INSERT INTO atomic_session_fields VALUES (?, 'visits', '4')").run(key);
    raw.close();
    const store = new SqliteStore({ path: file });
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ visits: "4" });
    expect((await store.listUserSessions("ada", Date.now())).map((entry) => entry.key)).toEqual([key]);
    const reopened = new Database(file, { readonly: true });
    expect(reopened.pragma("user_version", { simple: true })).toBe(2);
    expect(reopened.prepare("SELECT sql FROM sqlite_master WHERE name = 'atomic_session_sessions_user_id'").get()).toEqual({
      sql: "CREATE INDEX atomic_session_sessions_user_id ON atomic_session_sessions (user_id) WHERE user_id IS NOT NULL",
    });
    reopened.close();
    await store.dispose();
  });

  it("keeps sessions across closing and reopening the file", async () => {
    const file = tempFile();
    const key = newKey();
    const meta = metaFor(Date.now(), { userId: "ada", persistent: false });
    const first = new SqliteStore({ path: file, synchronous: "full" });
    await first.create(key, record({ visits: "3", name: '"ada"' }, meta));
    await first.dispose();
    const reopened = new SqliteStore({ path: file });
    const loaded = await reopened.load(key, noTouch());
    expect(loaded).toEqual({
      meta,
      fields: new Map([
        ["visits", "3"],
        ["name", '"ada"'],
      ]),
    });
    await reopened.dispose();
  });

  it("runs the writes of one tick in one transaction (group commit): the WAL grows by a few pages, not one commit per write", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file });
    const key = newKey();
    await store.create(key, record({ visits: "0" }));
    const walBytes = () => statSync(`${file}-wal`).size;
    // A commit appends every page it changed to the WAL (4 KiB each): 200 separate commits would add 200+ pages.
    const before = walBytes();
    const results = await Promise.all(Array.from({ length: 200 }, () => store.increment(key, "visits", 1, at(Date.now()))));
    expect(results.sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(walBytes() - before).toBeLessThan(20 * 4096);
    // The measure has teeth: writes awaited one by one are one commit each.
    const sequentialBefore = walBytes();
    for (let i = 0; i < 20; i++) await store.increment(key, "visits", 1, at(Date.now()));
    expect(walBytes() - sequentialBefore).toBeGreaterThanOrEqual(20 * 4096);
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ visits: "220" });
    await store.dispose();
  });

  it("rolls back only the write that failed in a batch: SessionValueError and SQLite's errors arrive as real errors", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file });
    const raw = new Database(file);
    // A trigger refuses one field name, as a foreign constraint could: SQLite's own error, mid-write.
    raw.exec(`CREATE TRIGGER refuse_boom BEFORE INSERT ON atomic_session_fields WHEN NEW.field = 'boom'
              BEGIN SELECT RAISE(ABORT, 'boom is refused'); END`);
    const key = newKey();
    await store.create(key, record({ text: '"a"', visits: "1" }));
    const now = Date.now();
    const [notInteger, refused, counted, applied] = await Promise.allSettled([
      store.increment(key, "text", 1, at(now)),
      // `first` is written before `boom` fails: the savepoint takes it back with the rest of this write.
      store.apply(key, {
        set: new Map([
          ["first", "1"],
          ["boom", "2"],
        ]),
        now,
      }),
      store.increment(key, "visits", 1, at(now)),
      store.apply(key, { set: new Map([["other", "3"]]), now }),
    ]);
    expect(notInteger.status === "rejected" && notInteger.reason).toBeInstanceOf(SessionValueError);
    expect(refused.status === "rejected" && refused.reason).toBeInstanceOf(SqliteStoreError);
    expect(refused.status === "rejected" && refused.reason).toBeInstanceOf(Error);
    expect(refused.status === "rejected" && refused.reason).toMatchObject({
      message: "boom is refused",
      code: "SQLITE_CONSTRAINT_TRIGGER",
    });
    expect(counted).toEqual({ status: "fulfilled", value: 2 });
    expect(applied).toEqual({ status: "fulfilled", value: "ok" });
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ text: '"a"', visits: "2", other: "3" });
    raw.close();
    await store.dispose();
  });

  it("fails only the call whose arguments cannot reach the worker thread", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    await store.create(key, record({ a: "1" }));
    const now = Date.now();
    const [uncloneable, counted] = await Promise.allSettled([
      store.apply(key, { meta: { userId: (() => "ada") as unknown as string }, now }),
      store.increment(key, "a", 1, at(now)),
    ]);
    expect(uncloneable.status === "rejected" && uncloneable.reason).toBeInstanceOf(SqliteStoreError);
    expect(counted).toEqual({ status: "fulfilled", value: 2 });
    await store.dispose();
  });

  it("a worker that dies fails the calls it held, and the next call starts a new one", async () => {
    const file = tempFile();
    await new SqliteStore({ path: file }).dispose();
    const store = new SqliteStore({ path: file });
    // Its worker thread opens the file later than this tick: by then a table is gone, preparing
    // the statements fails and the worker dies.
    const raw = new Database(file);
    raw.exec("DROP TABLE atomic_session_fields");
    const key = newKey();
    await expect(store.create(key, record({ a: "1" }))).rejects.toThrow(/worker stopped \(no such table: .*atomic_session_fields/);
    // A schema version of 0 makes the next worker create the tables again.
    raw.pragma("user_version = 0");
    raw.close();
    expect(await store.create(key, record({ a: "1" }))).toBe(true);
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ a: "1" });
    await store.dispose();
  });

  it("sweeps expired rows and markers, their fields with them", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file, sweepIntervalMs: 50 });
    const raw = new Database(file);
    const now = Date.now();
    const [expiring, live, rotated] = [newKey(), newKey(), newKey()];
    await store.create(expiring, record({ a: "1", b: "2" }, metaFor(now, { expiresAt: now + 100 })));
    await store.create(live, record({ a: "1" }));
    await store.create(rotated, record({ a: "1" }));
    await store.rotate(rotated, newKey(), { meta: {}, now, markerExpiresAt: now + 100 });
    expect(rowCounts(raw, expiring)).toEqual({ sessions: 1, fields: 2 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(rowCounts(raw, expiring)).toEqual({ sessions: 0, fields: 0 });
    expect(rowCounts(raw, live)).toEqual({ sessions: 1, fields: 1 });
    expect(raw.prepare("SELECT count(*) AS n FROM atomic_session_rotated").get()).toEqual({ n: 0 });
    raw.close();
    await store.dispose();
  });

  it("purgeExpired resolves how many sessions it deleted", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const now = Date.now();
    for (let i = 0; i < 2_500; i++) await store.create(newKey(), record({ a: "1" }, metaFor(now - 2 * HOUR, { expiresAt: now - 1 })));
    await store.create(newKey(), record({ a: "1" }));
    expect(await store.purgeExpired(now)).toBe(2_500);
    expect(await store.purgeExpired(now)).toBe(0);
    expect(await store.count(now)).toBe(1);
    await store.dispose();
  });

  it("replaces an expired row that was not swept yet, without keeping its fields", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    const now = Date.now();
    await store.create(key, record({ old: "1" }, metaFor(now - 2 * HOUR, { expiresAt: now - 1 })));
    expect(await store.create(key, record({ fresh: "2" }))).toBe(true);
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ fresh: "2" });
    await store.dispose();
  });

  it("removes rows whose timestamps are not integers", async () => {
    const file = tempFile();
    const store = new SqliteStore({ path: file });
    const raw = new Database(file);
    for (const damage of ["created_at = 1.5", "expires_at = 'soon'", "absolute_expires_at = x'00'"]) {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      raw.prepare(`UPDATE atomic_session_sessions SET ${damage} WHERE key = ?`).run(key);
      expect(await store.load(key, noTouch())).toBe("gone");
      expect(rowCounts(raw, key)).toEqual({ sessions: 0, fields: 0 });
    }
    raw.close();
    await store.dispose();
  });

  it("rejects an increment that leaves the safe integer range, writing nothing", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    await store.create(key, record({ big: String(Number.MAX_SAFE_INTEGER) }));
    await expect(store.increment(key, "big", 1, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
    expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ big: String(Number.MAX_SAFE_INTEGER) });
    await store.dispose();
  });

  it("rejects bad options with SessionConfigError, naming the option", () => {
    const file = tempFile();
    const bad: [unknown, RegExp][] = [
      [{ path: "" }, /path/],
      [{ path: 42 }, /path/],
      [{ path: file, sweepIntervalMs: 0 }, /sweepIntervalMs/],
      [{ path: file, sweepIntervalMs: 2 ** 31 }, /sweepIntervalMs/],
      [{ path: file, busyTimeoutMs: -1 }, /busyTimeoutMs/],
      [{ path: file, busyTimeoutMs: 1.5 }, /busyTimeoutMs/],
      [{ path: file, synchronous: "off" }, /synchronous/],
      [null, /options/],
    ];
    for (const [options, message] of bad) {
      expect(() => new SqliteStore(options as never)).toThrow(SessionConfigError);
      expect(() => new SqliteStore(options as never)).toThrow(message);
    }
  });

  it("rejects a path that cannot be opened with SessionConfigError, in the constructor", () => {
    const folder = tempDir("sqlite");
    const notAFolder = path.join(folder, "plain-file");
    writeFileSync(notAFolder, "not a folder");
    expect(() => new SqliteStore({ path: path.join(notAFolder, "sessions.db") })).toThrow(SessionConfigError);
    expect(() => new SqliteStore({ path: folder })).toThrow(/cannot use/);
    // Not a database at all.
    expect(() => new SqliteStore({ path: notAFolder })).toThrow(SessionConfigError);
  });

  it("refuses a database whose schema is newer than it understands", () => {
    const file = tempFile();
    const raw = new Database(file);
    raw.pragma("user_version = 99");
    raw.close();
    expect(() => new SqliteStore({ path: file })).toThrow(SessionConfigError);
    expect(() => new SqliteStore({ path: file })).toThrow(/schema version 99.*upgrade atomic-session/);
  });

  it("serves a private :memory: database", async () => {
    const store = new SqliteStore({ path: ":memory:" });
    const key = newKey();
    expect(await store.create(key, record({ a: "1" }))).toBe(true);
    expect(await store.increment(key, "a", 2, at(Date.now()))).toBe(3);
    await store.dispose();
  });

  it("dispose lets the calls already made finish, then refuses new ones; disposing twice is fine", async () => {
    const store = new SqliteStore({ path: tempFile() });
    const key = newKey();
    const created = store.create(key, record({ a: "1" }));
    const incremented = store.increment(key, "a", 1, at(Date.now()));
    const disposed = store.dispose();
    expect(await created).toBe(true);
    expect(await incremented).toBe(2);
    await disposed;
    await store.dispose();
    await expect(store.load(key, noTouch())).rejects.toBeInstanceOf(SqliteStoreError);
    await expect(store.load(key, noTouch())).rejects.toThrow(/dispose/);
  });

  it("is configured by SQLITE_PATH, SQLITE_SYNCHRONOUS and SQLITE_BUSY_TIMEOUT_MS; bad values name the variable", async () => {
    const file = tempFile();
    const config = storeEnv({ SQLITE_PATH: file, SQLITE_SYNCHRONOUS: "FULL", SQLITE_BUSY_TIMEOUT_MS: "250" });
    expect(config).toEqual({ kind: "sqlite", where: file, path: file, synchronous: "full", busyTimeoutMs: 250 });
    expect(() => storeEnv({ SQLITE_SYNCHRONOUS: "off" })).toThrow(EnvConfigError);
    expect(() => storeEnv({ SQLITE_SYNCHRONOUS: "off" })).toThrow(/SQLITE_SYNCHRONOUS/);
    expect(() => storeEnv({ SQLITE_BUSY_TIMEOUT_MS: "soon" })).toThrow(/SQLITE_BUSY_TIMEOUT_MS/);
    const store = await openStore(config);
    // The busy timeout reaches the store: a write waits 250 ms for a lock held here, then gives up.
    const raw = new Database(file);
    raw.exec("BEGIN IMMEDIATE");
    const started = performance.now();
    const refused = await store.create(newKey(), record({})).catch((error: unknown) => error);
    const waitedMs = performance.now() - started;
    raw.exec("COMMIT");
    raw.close();
    expect(refused).toBeInstanceOf(SqliteStoreError);
    expect(refused).toMatchObject({ code: "SQLITE_BUSY", message: expect.stringContaining("busyTimeoutMs (250 ms)") });
    expect(waitedMs).toBeGreaterThanOrEqual(240);
    expect(await store.create(newKey(), record({}))).toBe(true);
    await store.dispose?.();
  });

  describe("across two OS processes", () => {
    const built = path.join(packageRoot, "dist/stores/sqlite/index.js");
    // The vitest global setup (test-support/build.ts) compiles dist/ before any test runs.
    beforeAll(() => {
      if (!existsSync(built)) throw new Error(`${built} is missing: run \`npx tsc -b\``);
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
    `;

    function run(file: string, key: string): { ready: Promise<void>; go(): void; results: Promise<number[]> } {
      const proc = spawn(process.execPath, ["--input-type=module", "-e", child, pathToFileURL(built).href, file, key, "100"], {
        cwd: packageRoot,
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

    it("applies 200 increments from two processes exactly, and each process exits by itself", async () => {
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
      expect(fieldsOf(await store.load(key, noTouch()))).toEqual({ visits: "200" });
      await store.dispose();
    });
  });
});
