import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient, type RedisClientType } from "redis";
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
