import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient, type RedisClientType } from "redis";
import { createTestDatabase } from "./postgres.js";
import { type RedisServer, startRedisServer } from "./redis-server.js";
import { tempDir } from "./server-process.js";

/** A store as the reference server is configured for it, and a view into it for assertions. */
export interface ServerStoreSetup {
  name: string;
  /** Whether sessions survive a restart of the server process. */
  persistent: boolean;
  /** Whether two server processes can share it. */
  shared: boolean;
  /** The environment that points a server at this store. */
  env: Record<string, string>;
  /** Every byte the store holds, as text, to look for raw IDs in. */
  dump(): Promise<string>;
  /** How many live sessions the store holds. */
  count(): Promise<number>;
  /** Whether anything is stored for this store key. */
  holds(storeKey: string): Promise<boolean>;
  /** Ways to damage a stored session as a crash, a bug or a foreign writer could (none for memory). */
  corruptions: Record<string, (storeKey: string) => Promise<void>>;
  close(): Promise<void>;
}

export async function memorySetup(): Promise<ServerStoreSetup> {
  return {
    name: "memory",
    persistent: false,
    shared: false,
    env: { SESSION_STORE: "memory" },
    dump: async () => "",
    count: async () => Number.NaN,
    holds: async () => false,
    corruptions: {},
    close: async () => {},
  };
}

export async function sqliteSetup(): Promise<ServerStoreSetup> {
  const dir = tempDir("server-sqlite");
  const path = join(dir, "sessions.db");
  const query = <T>(run: (db: Database.Database) => T, readonly = true): T => {
    const db = new Database(path, { readonly, fileMustExist: true });
    try {
      return run(db);
    } finally {
      db.close();
    }
  };
  return {
    name: "sqlite",
    persistent: true,
    shared: true,
    env: { SQLITE_PATH: path },
    dump: async () =>
      readdirSync(dir)
        .map((file) => readFileSync(join(dir, file)).toString("latin1"))
        .join("\n"),
    count: async () =>
      query(
        (db) => (db.prepare("SELECT count(*) AS n FROM atomic_session_sessions WHERE expires_at > ?").get(Date.now()) as { n: number }).n,
      ),
    holds: async (storeKey) =>
      query((db) => db.prepare("SELECT 1 FROM atomic_session_sessions WHERE key = ?").get(storeKey) !== undefined) ||
      query((db) => db.prepare("SELECT 1 FROM atomic_session_fields WHERE session_key = ?").get(storeKey) !== undefined),
    corruptions: {
      "a field that is not JSON": async (storeKey) =>
        void query((db) => db.prepare("UPDATE atomic_session_fields SET value = '{not json' WHERE session_key = ?").run(storeKey), false),
      "a timestamp that is not a number": async (storeKey) =>
        void query(
          (db) => db.prepare("UPDATE atomic_session_sessions SET absolute_expires_at = 'soon' WHERE key = ?").run(storeKey),
          false,
        ),
    },
    close: async () => {},
  };
}

/** A Redis setup: a spawned redis-server, the server pointed at database `db` of it, and a client for assertions. */
export async function redisSetup(db = 3): Promise<ServerStoreSetup & { redis: RedisServer; client: RedisClientType }> {
  const redis = await startRedisServer({ appendonly: true });
  const client: RedisClientType = createClient({ url: redis.urlFor(db) });
  client.on("error", () => {});
  await client.connect();
  return {
    name: `redis (db ${db})`,
    persistent: true,
    shared: true,
    redis,
    client,
    env: { REDIS_URL: redis.urlFor(db) },
    async dump() {
      const parts: string[] = [];
      for await (const keys of client.scanIterator({ COUNT: 1000 })) {
        for (const key of keys) {
          parts.push(key);
          const type = await client.type(key);
          if (type === "hash") parts.push(JSON.stringify(await client.hGetAll(key)));
          else if (type === "zset") parts.push(JSON.stringify(await client.zRange(key, 0, -1)));
          else if (type === "string") parts.push((await client.get(key)) ?? "");
        }
      }
      return parts.join("\n");
    },
    async count() {
      let n = 0;
      for await (const keys of client.scanIterator({ MATCH: "as:*", COUNT: 1000 })) {
        n += keys.filter((key) => !key.startsWith("as:user:")).length;
      }
      return n;
    },
    holds: async (storeKey) => (await client.exists(`as:${storeKey}`)) === 1,
    corruptions: {
      "a field that is not JSON": async (storeKey) => void (await client.hSet(`as:${storeKey}`, "d:visitCount", "{not json")),
      "a half-written hash": async (storeKey) => void (await client.hDel(`as:${storeKey}`, ["a", "c"])),
      "a value of the wrong type": async (storeKey) => {
        const ttl = await client.pTTL(`as:${storeKey}`);
        await client.set(`as:${storeKey}`, "garbage", { PX: ttl });
      },
    },
    async close() {
      await client.quit().catch(() => undefined);
      await redis.stop();
    },
  };
}

/** A PostgreSQL setup: a database of its own on the shared server, dropped by `close()`. */
export async function postgresSetup(): Promise<ServerStoreSetup> {
  const database = await createTestDatabase("server");
  const table = '"public"."atomic_session"';
  const rows = async <T>(sql: string, values: unknown[] = []): Promise<T[]> => {
    // The server creates the table on its first request: before that, there is nothing.
    const exists = await database.pool.query("SELECT to_regclass('public.atomic_session') IS NOT NULL AS present");
    if (exists.rows[0]?.present !== true) return [];
    return (await database.pool.query(sql, values)).rows as T[];
  };
  return {
    name: "postgres",
    persistent: true,
    shared: true,
    env: { DATABASE_URL: database.url },
    dump: async () => JSON.stringify(await rows(`SELECT * FROM ${table}`)),
    count: async () =>
      Number((await rows<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE expires_at > $1`, [Date.now()]))[0]?.n ?? 0),
    holds: async (storeKey) => (await rows(`SELECT 1 FROM ${table} WHERE key = $1`, [storeKey])).length > 0,
    corruptions: {
      "a field that is not JSON": async (storeKey) =>
        void (await rows(`UPDATE ${table} SET fields = jsonb_set(fields, '{visitCount}', '"{not json"') WHERE key = $1`, [storeKey])),
    },
    close: () => database.drop(),
  };
}

/** Every store the reference server can run on, for tests that hold for all of them. */
export const everyStore: [string, () => Promise<ServerStoreSetup>][] = [
  ["memory", memorySetup],
  ["sqlite", sqliteSetup],
  ["redis", () => redisSetup(0)],
  ["postgres", postgresSetup],
];

/** The stores that keep sessions outside the server process and index them by user. */
export const sharedStores = everyStore.filter(([name]) => name !== "memory");
