import { execFile } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { StoredSession, TouchOptions } from "atomic-session";
import {
  addToStoredInteger,
  SessionConfigError,
  SessionManager,
  SessionValueError,
  StoreUnavailableError,
  touchMeta,
} from "atomic-session";
import { EnvConfigError, storeEnv, storeFromEnv } from "atomic-session/env";
import { type PostgresPool, PostgresStore, postgresSchemaSql } from "atomic-session/stores/postgres";
import {
  at,
  describeSessionConformance,
  describeStoreConformance,
  metaFor,
  newKey,
  openSession,
  rotation,
  type StoreHarness,
} from "atomic-session/testing";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../../../test-support/postgres.js";
import { tempDir } from "../../../../test-support/processes.js";
import { schemaNames } from "../../src/stores/postgres/schema.js";

const run = promisify(execFile);
const HOUR = 3_600_000;
const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

function record(fields: Record<string, string> = {}, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

function live(found: StoredSession | string): StoredSession {
  if (typeof found === "string") throw new Error(`expected a live record, the store answered ${JSON.stringify(found)}`);
  return found;
}

/** One database for this file, created before the first test and dropped after the last. */
let database: TestDatabase;
const databaseReady = createTestDatabase("store").then((created) => {
  database = created;
  return created;
});
afterAll(async () => {
  await (await databaseReady).drop();
});

/** A pg.Pool on the test database, with an error listener, closed by the caller. */
function newPool(max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: database.url, max });
  pool.on("error", () => {});
  return pool;
}

async function sql<R = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<R[]> {
  return (await database.pool.query(text, values)).rows as R[];
}

/**
 * The conformance harness: one store on an injected pg.Pool and one that builds its own pool from
 * the URL, on their own connections (so the concurrency cases cross connections), each suite in
 * its own table. `primary` says which one the suite drives.
 */
function openHarness(primary: "pool" | "url", table: string): () => Promise<StoreHarness> {
  return async () => {
    await databaseReady;
    const pool = newPool();
    // An hour between sweeps: the purge case must find the expired rows it made, not a sweeper's leftovers.
    // A 10 s statement deadline: 200 increments of one row queue for its lock, one commit after the other,
    // which on a loaded machine takes longer than the default 1 s (deadlines are tested on their own below).
    const viaPool = new PostgresStore({ pool, table, sweepIntervalMs: HOUR });
    const viaUrl = new PostgresStore({ url: database.url, table, sweepIntervalMs: HOUR, timeoutMs: 10_000 });
    const [store, second] = primary === "pool" ? [viaPool, viaUrl] : [viaUrl, viaPool];
    await Promise.all([store.ping(), second.ping()]);
    const qualified = `"public"."${table}"`;
    return {
      store,
      second,
      async backendExpiryMs(key) {
        const [row] = await sql<{ expires_at: string }>(`SELECT expires_at FROM ${qualified} WHERE key = $1`, [key]);
        return row === undefined ? undefined : Number(row.expires_at) - Date.now();
      },
      async holdsAnything(key) {
        const [row] = await sql<{ n: string }>(`SELECT count(*) AS n FROM ${qualified} WHERE key = $1`, [key]);
        return Number(row?.n) > 0;
      },
      async corrupt(key) {
        // A foreign writer's field value that is not JSON text in a string.
        await sql(`UPDATE ${qualified} SET fields = '{"a": 1}' WHERE key = $1`, [key]);
      },
      async close() {
        await store.dispose();
        await second.dispose();
        await pool.end();
      },
    };
  };
}

describeStoreConformance("postgres (injected pg.Pool, second store on its own pool)", openHarness("pool", "conformance_pool"));
describeStoreConformance("postgres (pool built from a url, second store on an injected pool)", openHarness("url", "conformance_url"));
describeSessionConformance("postgres (injected pg.Pool, second store on its own pool)", openHarness("pool", "sessions_pool"));
describeSessionConformance("postgres (pool built from a url, second store on an injected pool)", openHarness("url", "sessions_url"));

/** A pool that passes everything to a real pg.Pool and notes how many rows each statement returned, and its text. */
function recordingPool(pool: pg.Pool): { pool: PostgresPool; statements: { text: string; rows: unknown[] }[] } {
  const statements: { text: string; rows: unknown[] }[] = [];
  const note = async (result: Promise<pg.QueryResult>, text: string) => {
    const { rows } = await result;
    statements.push({ text, rows });
    return { rows };
  };
  return {
    statements,
    pool: {
      query: (query) => note(pool.query(query as pg.QueryConfig), query.text),
      async connect() {
        const client = await pool.connect();
        return {
          query: (query) => note(client.query(query as pg.QueryConfig), query.text),
          release: (destroy) => client.release(destroy),
        };
      },
    },
  };
}

describe("PostgresStore", () => {
  const stores: PostgresStore[] = [];
  const pools: pg.Pool[] = [];
  const track = (store: PostgresStore) => {
    stores.push(store);
    return store;
  };
  beforeAll(async () => {
    await databaseReady;
  });
  afterAll(async () => {
    for (const store of stores) await store.dispose();
    for (const pool of pools) await pool.end();
  });

  it("creates its schema on first use, in the configured schema and table, quoted, with its version", async () => {
    const store = track(new PostgresStore({ url: database.url, schema: "Tenant_A", table: "Web_Sessions" }));
    await store.ping();
    const tables = await sql<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'Tenant_A' ORDER BY table_name",
    );
    expect(tables.map(({ table_name }) => table_name)).toEqual(["Web_Sessions", "Web_Sessions_meta"]);
    const indexes = await sql<{ indexname: string; indexdef: string }>(
      "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'Tenant_A' AND tablename = 'Web_Sessions' ORDER BY indexname",
    );
    expect(indexes.map(({ indexname }) => indexname)).toEqual(["Web_Sessions_expires_at", "Web_Sessions_pkey", "Web_Sessions_user_id"]);
    expect(indexes.find(({ indexname }) => indexname === "Web_Sessions_user_id")?.indexdef).toMatch(
      /\(user_id, key\) WHERE \(user_id IS NOT NULL\)/,
    );
    const columns = await sql<{ column_name: string; data_type: string; collation_name: string | null }>(
      "SELECT column_name, data_type, collation_name FROM information_schema.columns WHERE table_schema = 'Tenant_A' AND table_name = 'Web_Sessions'",
    );
    const types = Object.fromEntries(columns.map(({ column_name, data_type }) => [column_name, data_type]));
    expect(types).toMatchObject({
      key: "text",
      fields: "jsonb",
      created_at: "bigint",
      expires_at: "bigint",
      user_id: "text",
      rotated: "boolean",
    });
    expect(columns.find(({ column_name }) => column_name === "key")?.collation_name).toBe("C");
    expect(await sql(`SELECT name, value FROM "Tenant_A"."Web_Sessions_meta"`)).toEqual([{ name: "schema_version", value: "1" }]);
    // Names are quoted: the unquoted, lower-cased spelling is another table that does not exist.
    expect(await sql("SELECT to_regclass('tenant_a.web_sessions') AS found")).toEqual([{ found: null }]);
    const key = newKey();
    expect(await store.create(key, record({ a: "1" }))).toBe(true);
    expect((await sql(`SELECT key FROM "Tenant_A"."Web_Sessions"`)).map((row) => row.key)).toEqual([key]);
  });

  it("ships schema.sql: the default schema, applied by hand and then used with createSchema: false", async () => {
    const file = createRequire(import.meta.url).resolve("atomic-session/stores/postgres/schema.sql");
    const text = readFileSync(file, "utf8");
    expect(text).toBe(postgresSchemaSql());
    expect(text).toContain('"public"."atomic_session"');
    // Applied twice, as a migration tool might: it is idempotent.
    await database.pool.query(text);
    await database.pool.query(text);
    const store = track(new PostgresStore({ url: database.url, createSchema: false }));
    const key = newKey();
    expect(await store.create(key, record({ visits: "1" }))).toBe(true);
    expect(await store.increment(key, "visits", 1, at(Date.now()))).toBe(2);
    // Other names: postgresSchemaSql renders the same DDL for them, creating the schema too.
    await database.pool.query(postgresSchemaSql({ schema: "managed", table: "app_sessions" }));
    const other = track(new PostgresStore({ url: database.url, schema: "managed", table: "app_sessions", createSchema: false }));
    expect(await other.create(newKey(), record())).toBe(true);
    expect(await sql("SELECT count(*)::int AS n FROM managed.app_sessions")).toEqual([{ n: 1 }]);
  });

  it("with createSchema: false and no schema, refuses with SessionConfigError naming schema.sql (through the manager, a 503 caused by it)", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "never_created", createSchema: false }));
    await expect(store.ping()).rejects.toThrow(SessionConfigError);
    await expect(store.ping()).rejects.toThrow(/never_created_meta" does not exist.*schema\.sql/);
    const manager = new SessionManager({ store });
    const failure = await manager.checkHealth().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as StoreUnavailableError).cause).toBeInstanceOf(SessionConfigError);
    expect((failure as StoreUnavailableError).detail).toMatch(/schema\.sql/);
    expect(await sql("SELECT to_regclass('public.never_created') AS found")).toEqual([{ found: null }]);
  });

  it("refuses a schema version newer than it understands, whether or not it may create the schema", async () => {
    const first = track(new PostgresStore({ url: database.url, table: "from_the_future" }));
    await first.ping();
    await sql(`UPDATE "public"."from_the_future_meta" SET value = '2' WHERE name = 'schema_version'`);
    for (const createSchema of [true, false]) {
      const later = track(new PostgresStore({ url: database.url, table: "from_the_future", createSchema }));
      await expect(later.ping()).rejects.toThrow(SessionConfigError);
      await expect(later.create(newKey(), record())).rejects.toThrow(
        /schema version 2, newer than this atomic-session understands \(1\); upgrade/,
      );
    }
    await sql(`UPDATE "public"."from_the_future_meta" SET value = 'two' WHERE name = 'schema_version'`);
    await expect(track(new PostgresStore({ url: database.url, table: "from_the_future" })).ping()).rejects.toThrow(
      /no readable schema_version/,
    );
  });

  it("runs as a role that may not create schemas, in a schema made for it beforehand", async () => {
    const role = `atomic_session_test_app_${process.pid}`;
    await sql(`CREATE ROLE "${role}" LOGIN`);
    try {
      await sql(`REVOKE CREATE ON DATABASE "${database.name}" FROM PUBLIC`);
      await sql(`CREATE SCHEMA app_owned AUTHORIZATION "${role}"`);
      const url = new URL(database.url);
      url.username = role;
      const store = new PostgresStore({ url: url.toString(), schema: "app_owned" });
      try {
        const key = newKey();
        expect(await store.create(key, record({ a: "1" }))).toBe(true);
        expect(live(await store.load(key, noTouch())).fields.get("a")).toBe("1");
      } finally {
        await store.dispose();
      }
      expect(await sql("SELECT tableowner FROM pg_tables WHERE schemaname = 'app_owned' ORDER BY tablename")).toEqual([
        { tableowner: role },
        { tableowner: role },
      ]);
    } finally {
      await sql(`DROP SCHEMA IF EXISTS app_owned CASCADE`);
      await sql(`DROP OWNED BY "${role}"`);
      await sql(`DROP ROLE "${role}"`);
    }
  });

  it("creates the schema once when several processes start on an empty database at the same time", async () => {
    const racers = Array.from({ length: 6 }, () => track(new PostgresStore({ url: database.url, table: "raced", maxConnections: 2 })));
    await Promise.all(racers.map((store) => store.ping()));
    expect(await sql(`SELECT value FROM "public"."raced_meta"`)).toEqual([{ value: "1" }]);
  });

  it("refuses a database that is not UTF8", async () => {
    const ascii = await createTestDatabase("ascii", { options: "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" });
    try {
      const store = new PostgresStore({ url: ascii.url });
      await expect(store.ping()).rejects.toThrow(/needs a database with UTF8 encoding \(this one is SQL_ASCII\)/);
      await store.dispose();
    } finally {
      await ascii.drop();
    }
  });

  it("refuses bad options with SessionConfigError, never echoing a URL", () => {
    const pool = newPool(1);
    pools.push(pool);
    const bad: unknown[] = [
      undefined,
      {},
      { url: database.url, pool },
      { url: "" },
      { url: "not a url" },
      { url: "mysql://127.0.0.1/db" },
      { pool: {} },
      { pool, schema: "" },
      { pool, schema: "bad-name" },
      { pool, schema: 'x"; DROP TABLE y; --' },
      { pool, table: "9lives" },
      { pool, table: "t".repeat(53) },
      { pool, schema: "s".repeat(64) },
      { pool, createSchema: "no" },
      { pool, timeoutMs: 0 },
      { pool, timeoutMs: 1.5 },
      { pool, maxConnections: 0 },
      { pool, sweepIntervalMs: 2 ** 31 },
    ];
    bad.forEach((options, i) => {
      expect(() => new PostgresStore(options as never), `bad options #${i}`).toThrow(SessionConfigError);
    });
    expect(() => new PostgresStore({ url: "postgres://app:hunter2@[bad" })).toThrow(/^(?!.*hunter2)/);
    // The longest names it accepts fit in PostgreSQL's 63 bytes with every suffix it adds.
    track(new PostgresStore({ pool, schema: "s".repeat(63), table: "t".repeat(52) }));
  });

  it("keeps JSON text byte for byte where a jsonb value would normalise it", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "exact_text" }));
    const text = '{ "b" : 1,  "a" : [1, 2.50, 1e2, -0] , "b": 2, "s": "\\u00e9\\n" }';
    const key = newKey();
    await store.create(key, record({ doc: text, big: "123456789012345678901234567890" }));
    await store.apply(key, { set: new Map([["late", " [ ] "]]), now: Date.now() });
    const loaded = live(await store.load(key, noTouch()));
    expect(loaded.fields.get("doc")).toBe(text);
    expect(loaded.fields.get("big")).toBe("123456789012345678901234567890");
    expect(loaded.fields.get("late")).toBe(" [ ] ");
    // What the column holds: jsonb strings, whose text is the value; as jsonb itself it would not be.
    const [row] = await sql<{ doc: string; normalised: string }>(
      `SELECT fields ->> 'doc' AS doc, (fields ->> 'doc')::jsonb::text AS normalised FROM "public"."exact_text" WHERE key = $1`,
      [key],
    );
    expect(row?.doc).toBe(text);
    expect(row?.normalised).not.toBe(text);
  });

  it("a rotation refused by the database leaves the old key exactly as it was: no marker, no new meta", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "refused_rotation" }));
    await store.ping();
    const refused = "refused".padEnd(43, "x");
    // A constraint stands for any refusal of the write under the new key (a full disk, a trigger).
    await sql(`ALTER TABLE "public"."refused_rotation" ADD CONSTRAINT no_refused CHECK (key <> '${refused}')`);
    const from = newKey();
    const meta = metaFor(Date.now(), { userAgent: "before" });
    await store.create(from, record({ visits: "3" }, meta));
    await expect(
      store.rotate(from, refused, { meta: { userId: "ada" }, now: Date.now(), markerExpiresAt: Date.now() + 60_000 }),
    ).rejects.toThrow(/no_refused/);
    const after = live(await store.load(from, noTouch()));
    expect(after.meta).toEqual(meta);
    expect(Object.fromEntries(after.fields)).toEqual({ visits: "3" });
    expect(await sql(`SELECT rotated FROM "public"."refused_rotation" WHERE key = $1`, [from])).toEqual([{ rotated: false }]);
    // And once the way is clear, the same rotation goes through.
    const to = newKey();
    expect(
      live(await store.rotate(from, to, { meta: { userId: "ada" }, now: Date.now(), markerExpiresAt: Date.now() + 60_000 })).meta.userId,
    ).toBe("ada");
    expect(await store.load(from, noTouch())).toBe("rotated");
  });

  it("logs a user out everywhere while a login holds the session's row: the revocation waits for it, then ends the key it moved to", async () => {
    const raw = newPool();
    pools.push(raw);
    // The rotation's transaction stops before its COMMIT until `release`, holding the moved row.
    let holding: { reached: () => void; release: Promise<void> } | undefined;
    const held: PostgresPool = {
      query: (query) => raw.query(query as pg.QueryConfig),
      async connect() {
        const client = await raw.connect();
        return {
          async query(query) {
            const hold = holding;
            if (query.text === "COMMIT" && hold !== undefined) {
              holding = undefined;
              hold.reached();
              await hold.release;
            }
            return client.query(query as pg.QueryConfig);
          },
          release: (destroy) => client.release(destroy),
        };
      },
    };
    const rotating = track(new PostgresStore({ pool: held, table: "revoked_while_rotating" }));
    const revoking = track(new PostgresStore({ url: database.url, table: "revoked_while_rotating" }));
    await Promise.all([rotating.ping(), revoking.ping()]);
    const user = `held-${newKey().slice(0, 8)}`;
    const [from, to] = [newKey(), newKey()];
    await revoking.create(from, record({ visits: "1" }, metaFor(Date.now(), { userId: user })));

    let release = () => {};
    const reached = new Promise<void>((resolve) => {
      holding = { reached: resolve, release: new Promise<void>((done) => (release = done)) };
    });
    const rotated = rotating.rotate(from, to, rotation(Date.now(), { userId: user }));
    await reached;
    const revoked = revoking.revokeUserSessions(user, Date.now());
    // Its DELETE waits on the row the rotation locked.
    for (let waited = 0; ; waited += 20) {
      const [row] = await sql<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      );
      if ((row?.n ?? 0) > 0) break;
      if (waited > 5_000) throw new Error("the revocation never waited on the rotation's lock");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    release();
    expect(live(await rotated).meta.userId).toBe(user);
    expect(await revoked).toEqual([to]);
    expect(await revoking.load(to, noTouch())).toBe("gone");
    expect(await revoking.load(from, noTouch())).toBe("rotated");
    expect(await revoking.listUserSessions(user, Date.now())).toEqual([]);
  });

  it("increments exactly as addToStoredInteger: the same values accepted, the same refused, nothing written on a refusal", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "integer_rule" }));
    const stored: (string | undefined)[] = [
      undefined,
      "0",
      "-0",
      "7",
      "-7",
      "9007199254740991",
      "-9007199254740991",
      "9007199254740990",
      "9999999999999999",
      "10000000000000000",
      "01",
      "1.0",
      "1e3",
      " 1",
      "+1",
      '"1"',
      "true",
      "null",
      "[]",
      "",
    ];
    const steps = [1, -1, 0, 5, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    for (const value of stored) {
      for (const by of steps) {
        let expected: number | "refused";
        try {
          expected = addToStoredInteger("n", value, by);
        } catch (error) {
          expect(error).toBeInstanceOf(SessionValueError);
          expected = "refused";
        }
        const key = newKey();
        await store.create(key, record(value === undefined ? {} : { n: value }));
        const outcome = await store.increment(key, "n", by, at(Date.now())).catch((error: unknown) => {
          expect(error).toBeInstanceOf(SessionValueError);
          return "refused" as const;
        });
        expect(outcome, `stored ${JSON.stringify(value)}, step ${by}`).toBe(expected);
        const after = live(await store.load(key, noTouch())).fields.get("n");
        expect(after).toBe(expected === "refused" ? value : String(expected));
      }
    }
    for (const by of [1.5, Number.NaN, 2 ** 53]) {
      await expect(store.increment(newKey(), "n", by, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
    }
  });

  it("touches on load and on increment exactly as touchMeta", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "touch_rule" }));
    const now = Date.now();
    const cases: { lastSeen: number; expires: number; absolute: number; touch: Omit<TouchOptions, "now"> }[] = [
      { lastSeen: now - 10_000, expires: now + 20_000, absolute: now + 60_000, touch: { idleTimeoutMs: 30_000, touchIntervalMs: 5_000 } },
      { lastSeen: now - 4_999, expires: now + 20_000, absolute: now + 60_000, touch: { idleTimeoutMs: 30_000, touchIntervalMs: 5_000 } },
      { lastSeen: now - 5_000, expires: now + 20_000, absolute: now + 60_000, touch: { idleTimeoutMs: 30_000, touchIntervalMs: 5_000 } },
      { lastSeen: now - 10_000, expires: now + 20_000, absolute: now + 25_000, touch: { idleTimeoutMs: 30_000, touchIntervalMs: 0 } },
      { lastSeen: now, expires: now + 1_000, absolute: now + 9_000, touch: { idleTimeoutMs: 5_000, touchIntervalMs: 0 } },
      { lastSeen: now - 1, expires: now + 1_000, absolute: now + 9_000, touch: { idleTimeoutMs: 5_000, touchIntervalMs: 0.5 } },
      { lastSeen: now - 10_000, expires: now + 1_000, absolute: now + 9_000, touch: { idleTimeoutMs: Infinity, touchIntervalMs: 0 } },
      {
        lastSeen: now - 10 * HOUR,
        expires: now + 1_000,
        absolute: now + 9_000,
        touch: { idleTimeoutMs: 5_000, touchIntervalMs: Infinity },
      },
    ];
    // Reads the meta back without touching it, however long ago the last touch was.
    const readBack = { now, idleTimeoutMs: HOUR, touchIntervalMs: Number.POSITIVE_INFINITY };
    for (const [i, { lastSeen, expires, absolute, touch }] of cases.entries()) {
      const meta = metaFor(lastSeen, { absoluteExpiresAt: absolute, expiresAt: expires });
      const options = { ...touch, now };
      const expected = touchMeta(meta, options) ?? meta;
      const loaded = newKey();
      await store.create(loaded, record({}, meta));
      expect(live(await store.load(loaded, options)).meta, `load, case ${i}`).toEqual(expected);
      expect(live(await store.load(loaded, readBack)).meta, `load then read, case ${i}`).toEqual(expected);
      const incremented = newKey();
      await store.create(incremented, record({}, meta));
      expect(await store.increment(incremented, "n", 1, options)).toBe(1);
      expect(live(await store.load(incremented, readBack)).meta, `increment, case ${i}`).toEqual(expected);
    }
  });

  it("lists, revokes one of and logs out everywhere a user's 10,000 sessions, in statements of at most 1,000 rows", async () => {
    const raw = newPool();
    pools.push(raw);
    const recording = recordingPool(raw);
    const store = track(new PostgresStore({ pool: recording.pool, table: "many_sessions" }));
    const manager = new SessionManager({ store, storeTimeoutMs: 10_000, maxSessionsPerUser: Number.POSITIVE_INFINITY });
    const user = `many-${newKey().slice(0, 8)}`;
    const now = Date.now();
    const keys = Array.from({ length: 10_000 }, () => newKey());
    for (let i = 0; i < keys.length; i += 500) {
      await Promise.all(keys.slice(i, i + 500).map((key, j) => store.create(key, record({}, metaFor(now + i + j, { userId: user })))));
    }
    const bystander = newKey();
    await store.create(bystander, record({}, metaFor(now, { userId: `${user}-other` })));
    // The per-user index is what a user's sessions are read through.
    const plan = await sql<{ "QUERY PLAN": string }>(
      `EXPLAIN SELECT key FROM "public"."many_sessions" WHERE user_id = $1 AND key > '' ORDER BY key LIMIT 1000`.replace("$1", `'${user}'`),
    );
    expect(plan.map((line) => line["QUERY PLAN"]).join("\n")).toContain("many_sessions_user_id");

    recording.statements.length = 0;
    const listed = await manager.listUserSessions(user);
    expect(listed).toHaveLength(10_000);
    expect(new Set(listed.map(({ handle }) => handle)).size).toBe(10_000);
    expect(listed[0]?.createdAt.getTime()).toBe(now + 9_999);
    expect(recording.statements.length).toBeGreaterThanOrEqual(10);
    expect(Math.max(...recording.statements.map(({ rows }) => rows.length))).toBeLessThanOrEqual(1_000);

    expect(await manager.revokeUserSession(user, listed[0]?.handle ?? "")).toBe(true);
    expect(await store.load(keys[9_999] as string, noTouch())).toBe("gone");

    recording.statements.length = 0;
    expect(await manager.revokeUserSessions(user)).toBe(9_999);
    expect(recording.statements.length).toBeGreaterThanOrEqual(10);
    expect(Math.max(...recording.statements.map(({ rows }) => rows.length))).toBeLessThanOrEqual(1_000);
    expect(await manager.listUserSessions(user)).toEqual([]);
    expect(await store.load(keys[0] as string, noTouch())).toBe("gone");
    expect(await sql(`SELECT count(*)::int AS n FROM "public"."many_sessions" WHERE user_id = $1`, [user])).toEqual([{ n: 0 }]);
    expect(live(await store.load(bystander, noTouch())).meta.userId).toBe(`${user}-other`);
  });

  it("purges expired sessions and markers in batches of at most 1,000 rows, one process at a time", async () => {
    const raw = newPool();
    pools.push(raw);
    const recording = recordingPool(raw);
    const table = "purged";
    const store = track(new PostgresStore({ pool: recording.pool, table, sweepIntervalMs: HOUR }));
    await store.ping();
    const now = Date.now();
    // 2,500 expired sessions and 300 expired markers, bulk-written as the store writes them; 10 live sessions.
    await sql(
      `INSERT INTO "public"."${table}" (key, rotated, created_at, last_seen_at, absolute_expires_at, expires_at, fields)
       SELECT 'expired-' || i, i > 2500, $1::bigint, $1::bigint, $1::bigint + 10, $1::bigint + 10, '{"a": "1"}' FROM generate_series(1, 2800) AS i`,
      [now - HOUR],
    );
    const kept = Array.from({ length: 10 }, () => newKey());
    for (const key of kept) await store.create(key, record({ a: "1" }));

    // Another process holds the purge lock: this one deletes nothing and says so.
    const other = await raw.connect();
    const [first, second] = schemaNames("public", table).lockKeys;
    await other.query("SELECT pg_advisory_lock($1, $2)", [first, second]);
    try {
      expect(await store.purgeExpired(Date.now())).toBe(0);
      expect(await sql(`SELECT count(*)::int AS n FROM "public"."${table}"`)).toEqual([{ n: 2810 }]);
    } finally {
      await other.query("SELECT pg_advisory_unlock($1, $2)", [first, second]);
      other.release();
    }

    recording.statements.length = 0;
    expect(await store.purgeExpired(Date.now())).toBe(2_500);
    const batches = recording.statements
      .filter(({ text }) => text.includes("purged AS"))
      .map(({ rows }) => Number((rows[0] as { n: string }).n));
    expect(batches).toEqual([1000, 1000, 800]);
    expect(await sql(`SELECT count(*)::int AS n FROM "public"."${table}"`)).toEqual([{ n: 10 }]);
    for (const key of kept) live(await store.load(key, noTouch()));
    expect(await store.purgeExpired(Date.now())).toBe(0);
    // The lock was released: another connection takes it at once.
    expect(await sql("SELECT pg_try_advisory_lock($1, $2) AS locked", [first, second])).toEqual([{ locked: true }]);
    await sql("SELECT pg_advisory_unlock($1, $2)", [first, second]);
  });

  it("sweeps expired rows on its timer", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "swept", sweepIntervalMs: 100 }));
    const now = Date.now();
    const [expiring, kept, from, to] = [newKey(), newKey(), newKey(), newKey()];
    await store.create(expiring, record({ a: "1" }, metaFor(now, { expiresAt: now + 1_000 })));
    await store.create(kept, record({ a: "1" }));
    await store.create(from, record());
    live(await store.rotate(from, to, { meta: {}, now, markerExpiresAt: now + 1_000 }));
    expect(await sql(`SELECT count(*)::int AS n FROM "public"."swept"`)).toEqual([{ n: 4 }]);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && (await sql<{ n: number }>(`SELECT count(*)::int AS n FROM "public"."swept"`))[0]?.n !== 2) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await sql(`SELECT key FROM "public"."swept" ORDER BY key`)).map((row) => row.key)).toEqual([kept, to].sort());
  });

  it("holds a waiting statement to its deadline (statement_timeout), answers 503 through the manager, and reuses the connection", async () => {
    const store = track(new PostgresStore({ url: database.url, table: "deadline", timeoutMs: 300, maxConnections: 1 }));
    const manager = new SessionManager({ store, storeTimeoutMs: 2_000 });
    const first = openSession(manager);
    expect(await first.session.increment("visits")).toBe(1);
    const cookie = first.response.cookie?.split(";", 1)[0];
    const locker = await database.pool.connect();
    await locker.query("BEGIN");
    await locker.query(`SELECT 1 FROM "public"."deadline" FOR UPDATE`);
    try {
      const started = Date.now();
      const failed = await openSession(manager, cookie)
        .session.increment("visits")
        .catch((error: unknown) => error);
      const elapsed = Date.now() - started;
      expect(failed).toBeInstanceOf(StoreUnavailableError);
      expect((failed as StoreUnavailableError).detail).toMatch(/statement timeout/);
      // PostgreSQL cancelled it at the store's 300 ms, well before the manager's own 2 s deadline.
      expect(elapsed).toBeLessThan(1_500);
    } finally {
      await locker.query("ROLLBACK");
      locker.release();
    }
    // The same (single) connection answers the next statement.
    expect(await openSession(manager, cookie).session.increment("visits")).toBe(2);
  });

  it("ends the pool it built on dispose, and leaves an injected pool open", async () => {
    const built = new PostgresStore({ url: database.url, table: "disposal" });
    await built.ping();
    const connections = async () =>
      Number(
        (
          await sql<{ n: string }>(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'atomic-session'",
            [database.name],
          )
        )[0]?.n,
      );
    const before = await connections();
    expect(before).toBeGreaterThan(0);
    await built.dispose();
    await expect(built.ping()).rejects.toThrow(/disposed/);
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await connections()) >= before) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await connections()).toBeLessThan(before);
    const pool = newPool(2);
    const injected = new PostgresStore({ pool, table: "disposal" });
    await injected.ping();
    await injected.dispose();
    expect((await pool.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await pool.end();
  });

  it("lets a process exit on its own: the sweeper is unref'd and idle connections do not hold it", async () => {
    const script = `
      import { PostgresStore } from "atomic-session/stores/postgres";
      const store = new PostgresStore({ url: process.argv[1], table: "exits" });
      await store.ping();
      console.log("pinged");
    `;
    const started = Date.now();
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script, database.url], {
      cwd: packageRoot,
      timeout: 20_000,
    });
    expect(stdout.trim()).toBe("pinged");
    // pg's idle timeout (10 s) is not waited for: allowExitOnIdle lets the process go.
    expect(Date.now() - started).toBeLessThan(8_000);
  });

  it("needs pg only to build a pool from a url, and says so with SessionConfigError when it is missing", async () => {
    // The built package alone, where no pg can be resolved.
    const root = tempDir("no-pg");
    const installed = join(root, "node_modules", "atomic-session");
    mkdirSync(installed, { recursive: true });
    cpSync(join(packageRoot, "dist"), join(installed, "dist"), { recursive: true });
    cpSync(join(packageRoot, "package.json"), join(installed, "package.json"));
    const script = `
      const { PostgresStore } = await import("atomic-session/stores/postgres");
      try {
        new PostgresStore({ url: "postgres://postgres@127.0.0.1:5432/postgres" });
        console.log("no error");
      } catch (error) {
        console.log(error.name + ": " + error.message);
      }
      const pool = { query: async () => ({ rows: [] }), connect: async () => { throw new Error("unused"); } };
      const store = new PostgresStore({ pool });
      await store.dispose();
      console.log("pool accepted");
    `;
    writeFileSync(join(root, "check.mjs"), script);
    const { stdout } = await run(process.execPath, ["check.mjs"], { cwd: root, timeout: 20_000 });
    expect(stdout.trim().split("\n")).toEqual([
      "SessionConfigError: PostgresStore needs the pg package (node-postgres) to connect from a url: npm install pg",
      "pool accepted",
    ]);
  });

  it("is built from the environment: DATABASE_URL, POSTGRES_SCHEMA, POSTGRES_TABLE, POSTGRES_CREATE_SCHEMA, STORE_TIMEOUT_MS", async () => {
    const env = { DATABASE_URL: database.url, POSTGRES_SCHEMA: "from_env", POSTGRES_TABLE: "env_sessions", STORE_TIMEOUT_MS: "750" };
    expect(storeEnv(env)).toMatchObject({
      kind: "postgres",
      schema: "from_env",
      table: "env_sessions",
      createSchema: undefined,
      timeoutMs: 750,
    });
    const store = track((await storeFromEnv(env)) as PostgresStore);
    expect(store).toBeInstanceOf(PostgresStore);
    expect(await store.create(newKey(), record())).toBe(true);
    expect(await sql("SELECT count(*)::int AS n FROM from_env.env_sessions")).toEqual([{ n: 1 }]);
    const unmanaged = track(
      (await storeFromEnv({ ...env, POSTGRES_TABLE: "env_missing", POSTGRES_CREATE_SCHEMA: "false" })) as PostgresStore,
    );
    await expect(unmanaged.ping()).rejects.toThrow(SessionConfigError);
    expect(() => storeEnv({ ...env, POSTGRES_TABLE: "no-dashes" })).toThrow(EnvConfigError);
    expect(() => storeEnv({ ...env, POSTGRES_TABLE: "no-dashes" })).toThrow(/^POSTGRES_TABLE must be/);
    expect(() => storeEnv({ ...env, POSTGRES_SCHEMA: "a b" })).toThrow(/^POSTGRES_SCHEMA must be/);
    expect(() => storeEnv({ ...env, POSTGRES_CREATE_SCHEMA: "maybe" })).toThrow(/POSTGRES_CREATE_SCHEMA/);
  });

  it("publishes types that do not need @types/pg", () => {
    const folder = join(packageRoot, "dist/stores/postgres");
    const declarations = readdirSync(folder).filter((file) => file.endsWith(".d.ts"));
    expect(declarations).toContain("index.d.ts");
    for (const file of declarations) {
      expect(readFileSync(join(folder, file), "utf8"), file).not.toMatch(/from ["']pg["']|import\(["']pg["']\)|types="pg"/);
    }
  });
});
