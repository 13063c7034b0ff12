/**
 * The Redis store on a single redis-server: both conformance suites for a store-built client
 * (`url`) and injected node-redis and ioredis clients, then what is Redis's own: round trips
 * and the commands each operation costs Redis, the Lua arithmetic held to core/record.ts,
 * rotation steps interleaved with other writes, a user's index at 10,000 sessions with
 * members that died behind its back, key layout, URLs, RESP3, reconnection.
 */
import { createHash } from "node:crypto";
import type { SessionStore, StoredSession } from "atomic-session";
import { addToStoredInteger, SessionConfigError, SessionValueError, touchMeta } from "atomic-session";
import { type NodeRedisClient, RedisStore } from "atomic-session/stores/redis";
import {
  at,
  describeSessionConformance,
  describeStoreConformance,
  metaFor,
  newKey,
  rotation,
  type StoreHarness,
} from "atomic-session/testing";
import { Redis } from "ioredis";
import { createClient, RESP_TYPES } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callsDuring, populateUser, redisBackendView } from "../../../../test-support/redis-harness.js";
import { CommandCounter } from "../../../../test-support/redis-monitor.js";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { TAKE } from "../../src/stores/redis/scripts.js";

type NodeRedis = ReturnType<typeof createClient>;
type Flavor = "store-built (url)" | "node-redis" | "ioredis";

const HOUR = 3_600_000;
const PREFIX = "as:";

async function nodeRedis(url: string): Promise<NodeRedis> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

function ioRedis(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  return client;
}

function record(fields: Record<string, string> = {}, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

/** The record `found` is; fails the test when the store answered "gone" or "rotated". */
function live(found: StoredSession | string): StoredSession {
  if (typeof found === "string") throw new Error(`expected a live record, the store answered ${JSON.stringify(found)}`);
  return found;
}

/** A store of `flavor` on `url`, and how to close what was opened for it. */
async function openStore(flavor: Flavor, url: string, prefix?: string): Promise<{ store: RedisStore; close(): Promise<void> }> {
  const options = prefix === undefined ? {} : { prefix };
  if (flavor === "store-built (url)") {
    const store = new RedisStore({ url, ...options });
    return { store, close: () => store.dispose() };
  }
  if (flavor === "node-redis") {
    const client = await nodeRedis(url);
    const store = new RedisStore({ client, ...options });
    return { store, close: () => client.close() };
  }
  const client = ioRedis(url);
  const store = new RedisStore({ client, ...options });
  return {
    store,
    async close() {
      await client.quit();
    },
  };
}

/** The conformance harness over a fresh server, with the store (and a second one) of one flavour. */
function openHarness(flavor: Flavor): () => Promise<StoreHarness> {
  return async () => {
    const server = await startRedisServer();
    const admin = await nodeRedis(server.url);
    const first = await openStore(flavor, server.url);
    const second = await openStore(flavor, server.url);
    return {
      store: first.store,
      second: second.store as SessionStore,
      ...redisBackendView(admin, PREFIX),
      async close() {
        await first.store.dispose();
        await second.store.dispose();
        await first.close();
        await second.close();
        await admin.close();
        await server.stop();
      },
    };
  };
}

for (const flavor of ["store-built (url)", "node-redis", "ioredis"] as const) {
  describeStoreConformance(`redis (${flavor})`, openHarness(flavor));
  describeSessionConformance(`redis (${flavor})`, openHarness(flavor));
}

describe("redis store: Redis specifics", () => {
  let server: RedisServer;
  let admin: NodeRedis;
  beforeAll(async () => {
    server = await startRedisServer();
    admin = await nodeRedis(server.url);
  });
  afterAll(async () => {
    await admin?.close();
    await server?.stop();
  });

  it("rejects bad options with SessionConfigError", async () => {
    const client = await nodeRedis(server.url);
    try {
      const bad: unknown[] = [
        undefined,
        {},
        { url: "http://127.0.0.1:6379" },
        { url: "not a url" },
        { url: "redis://127.0.0.1:6379/three" },
        { url: server.url, client },
        { client: {} },
        { client, prefix: "" },
        { client, prefix: 42 },
        { client: new Redis(server.url, { lazyConnect: true, keyPrefix: "app:" }) },
      ];
      bad.forEach((options, i) => {
        expect(() => new RedisStore(options as never), `bad options #${i}`).toThrow(SessionConfigError);
      });
      // The message never echoes the URL: it may hold a password.
      expect(() => new RedisStore({ url: "redis://:hunter2@[bad" })).toThrow(/^(?!.*hunter2)/);
    } finally {
      await client.close();
    }
  });

  for (const flavor of ["store-built (url)", "node-redis", "ioredis"] as const) {
    it(`${flavor}: round trips: create, read, increment, apply and compare-and-set one each; a touched read two; rotate three, four with a user`, async () => {
      const dedicated = await startRedisServer();
      const counter = await CommandCounter.open(dedicated.url);
      const { store, close } = await openStore(flavor, dedicated.url);
      try {
        // Warm the script cache: after a restart or SCRIPT FLUSH the first call of each script costs two.
        const warm = newKey();
        await store.create(warm, record({ n: "1" }));
        await store.load(warm, { now: Date.now() + 1, idleTimeoutMs: HOUR, touchIntervalMs: 0 });
        await store.increment(warm, "n", 1, at(Date.now()));
        await store.apply(warm, { set: new Map([["a", "1"]]), now: Date.now() });
        await store.compareAndSet(warm, "a", "1", "2", Date.now());
        await store.rotate(warm, newKey(), rotation(Date.now(), { userId: "warm" }));

        const key = newKey();
        const names = (commands: string[][]) => commands.map((args) => args[0]?.toLowerCase());
        expect(names(await counter.during(() => store.create(key, record({ n: "1" }))))).toEqual(["evalsha"]);
        expect(names(await counter.during(() => store.load(key, noTouch())))).toEqual(["hgetall"]);
        const touch = { now: Date.now() + 1000, idleTimeoutMs: HOUR, touchIntervalMs: 0 };
        expect(names(await counter.during(() => store.load(key, touch)))).toEqual(["hgetall", "evalsha"]);
        expect(names(await counter.during(() => store.increment(key, "n", 1, at(Date.now()))))).toEqual(["evalsha"]);
        const change = { set: new Map([["a", "1"]]), delete: ["n"], now: Date.now() };
        expect(names(await counter.during(() => store.apply(key, change)))).toEqual(["evalsha"]);
        expect(names(await counter.during(() => store.compareAndSet(key, "a", "1", "2", Date.now())))).toEqual(["evalsha"]);
        const anonymous = newKey();
        expect(names(await counter.during(() => store.rotate(key, anonymous, rotation(Date.now()))))).toEqual([
          "hgetall",
          "evalsha",
          "evalsha",
        ]);
        // Bound to a user: the new key is indexed once it exists, and the old one left its user's index.
        const bound = newKey();
        expect(names(await counter.during(() => store.rotate(anonymous, bound, rotation(Date.now(), { userId: "ann" }))))).toEqual([
          "hgetall",
          "evalsha",
          "evalsha",
          "evalsha",
        ]);
        expect(names(await counter.during(() => store.rotate(bound, newKey(), rotation(Date.now(), { userId: "ann" })))).sort()).toEqual([
          "evalsha",
          "evalsha",
          "evalsha",
          "hgetall",
          "zrem",
        ]);
      } finally {
        await counter.close();
        await store.dispose();
        await close();
        await dedicated.stop();
      }
    });
  }

  it("costs Redis few commands: a read is one HGETALL, a visit one script calling HMGET and HINCRBY", async () => {
    const dedicated = await startRedisServer();
    const probe = await nodeRedis(dedicated.url);
    const client = await nodeRedis(dedicated.url);
    const store = new RedisStore({ client });
    const info = () => probe.info("commandstats");
    try {
      const key = newKey();
      const now = Date.now();
      // Load every script first: a script's first run on a fresh Redis is an EVALSHA refused, then an EVAL.
      const warm = newKey();
      await store.create(warm, record({ n: "1" }));
      await store.increment(warm, "n", 1, at(now));
      await store.compareAndSet(warm, "n", "2", "3", now);
      await store.apply(warm, { set: new Map([["a", "1"]]), now });
      await store.destroy(warm);
      expect(await callsDuring(info, () => store.create(key, record({ n: "1" })))).toEqual({
        evalsha: 1,
        exists: 1,
        hset: 1,
        pexpireat: 1,
      });
      expect(await callsDuring(info, () => store.load(key, at(now)))).toEqual({ hgetall: 1 });
      expect(await callsDuring(info, () => store.increment(key, "n", 1, at(now)))).toEqual({ evalsha: 1, hmget: 1, hincrby: 1 });
      const touching = { now: Date.now() + 10, idleTimeoutMs: HOUR, touchIntervalMs: 0 };
      expect(await callsDuring(info, () => store.increment(key, "n", 1, touching))).toEqual({
        evalsha: 1,
        hmget: 1,
        hincrby: 1,
        hset: 1,
        pexpireat: 1,
      });
      expect(await callsDuring(info, () => store.compareAndSet(key, "n", "3", "4", now))).toEqual({ evalsha: 1, hmget: 1, hset: 1 });
      expect(await callsDuring(info, () => store.apply(key, { set: new Map([["a", "1"]]), now }))).toEqual({
        evalsha: 1,
        hmget: 1,
        hset: 1,
      });
      expect(await callsDuring(info, () => store.destroy(key))).toEqual({ evalsha: 1, hget: 1, del: 1 });
    } finally {
      await store.dispose();
      await client.close();
      await probe.close();
      await dedicated.stop();
    }
  });

  it("increments exactly as addToStoredInteger says, for every kind of stored text", async () => {
    const store = new RedisStore({ client: await nodeRedis(server.url), prefix: "mirror:" });
    const cases: [string | undefined, number][] = [
      [undefined, 1],
      [undefined, -7],
      ["0", 1],
      ["-0", 0],
      ["-0", 5],
      ["-1", 1],
      ["41", 1],
      ["007", 1],
      ["00", 1],
      ["-01", 1],
      ["1.5", 1],
      ["1e3", 1],
      ["", 1],
      [" 1", 1],
      ['"1"', 1],
      ["9007199254740990", 1],
      ["9007199254740991", 1],
      ["9007199254740991", -1],
      ["-9007199254740991", -1],
      ["9007199254740993", -2],
      ["9999999999999999", -1],
      ["10000000000000000", -1],
      ["123", Number.MAX_SAFE_INTEGER],
      ["-123", Number.MIN_SAFE_INTEGER],
      ["1", -9007199254740991],
      ["9223372036854775807", 1],
      ["-9223372036854775808", -1],
      ["99999999999999999999", 1],
    ];
    for (const [current, by] of cases) {
      const key = newKey();
      await store.create(key, record(current === undefined ? {} : { n: current }));
      let expected: number | "throws";
      try {
        expected = addToStoredInteger("n", current, by);
      } catch (error) {
        expect(error).toBeInstanceOf(SessionValueError);
        expected = "throws";
      }
      const actual = await store.increment(key, "n", by, at(Date.now())).then(
        (value) => value,
        (error: unknown) => {
          expect(error).toBeInstanceOf(SessionValueError);
          return "throws" as const;
        },
      );
      expect(actual, `${JSON.stringify(current)} + ${by}`).toBe(expected);
      const stored = live(await store.load(key, noTouch())).fields.get("n");
      expect(stored, `${JSON.stringify(current)} + ${by} stored`).toBe(expected === "throws" ? current : String(expected));
    }
    await store.dispose();
  });

  it("touches on load and increment exactly as touchMeta says", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "touch:" });
    try {
      const now = Date.now();
      const cases = [
        { lastSeen: now - 1_000, interval: 1_000, idle: 60_000, absolute: now + HOUR },
        { lastSeen: now - 999, interval: 1_000, idle: 60_000, absolute: now + HOUR },
        { lastSeen: now - 5_000, interval: 0, idle: 60_000, absolute: now + 30_000 },
        { lastSeen: now - 5_000, interval: 0, idle: Number.POSITIVE_INFINITY, absolute: now + 30_000 },
        { lastSeen: now - 5_000, interval: Number.POSITIVE_INFINITY, idle: 60_000, absolute: now + HOUR },
      ];
      for (const [i, { lastSeen, interval, idle, absolute }] of cases.entries()) {
        const meta = metaFor(lastSeen, { expiresAt: Math.min(lastSeen + 20_000, absolute), absoluteExpiresAt: absolute });
        const touch = { now, idleTimeoutMs: idle, touchIntervalMs: interval };
        const expected = touchMeta(meta, touch) ?? meta;
        for (const operation of ["load", "increment"] as const) {
          const key = newKey();
          await store.create(key, record({ n: "1" }, meta));
          if (operation === "load") expect(live(await store.load(key, touch)).meta, `case ${i} load`).toEqual(expected);
          else await store.increment(key, "n", 1, touch);
          expect(live(await store.load(key, noTouch())).meta, `case ${i} ${operation}`).toEqual(expected);
          const ttl = await admin.pTTL(`touch:${key}`);
          expect(Math.abs(now + ttl - expected.expiresAt), `case ${i} ${operation} PEXPIREAT`).toBeLessThan(5_000);
        }
      }
    } finally {
      await client.close();
    }
  });

  for (const flavor of ["node-redis", "ioredis"] as const) {
    it(`${flavor}: dispose() leaves an injected client open`, async () => {
      if (flavor === "node-redis") {
        const client = await nodeRedis(server.url);
        const store = new RedisStore({ client });
        await store.ping();
        await store.dispose();
        expect(client.isOpen).toBe(true);
        expect(await client.ping()).toBe("PONG");
        await client.close();
      } else {
        const client = ioRedis(server.url);
        const store = new RedisStore({ client });
        await store.ping();
        await store.dispose();
        expect(await client.ping()).toBe("PONG");
        await client.quit();
      }
    });
  }

  it("writes only keys under the prefix, each with a TTL, named by hashes only", async () => {
    const dedicated = await startRedisServer();
    const client = await nodeRedis(dedicated.url);
    const store = new RedisStore({ client, prefix: "app:s:" });
    const secrets = ["alice@example.com", "Mozilla/5.0 SecretAgent", "secret-field", "another-field", "value-text"];
    try {
      const now = Date.now();
      const anonymous = newKey();
      const bound = newKey();
      const rotated = newKey();
      await store.create(anonymous, record({ "secret-field": '"value-text"' }));
      await store.create(bound, record({}, metaFor(now, { userId: "alice@example.com", userAgent: "Mozilla/5.0 SecretAgent" })));
      await store.apply(anonymous, { set: new Map([["another-field", "1"]]), now });
      await store.increment(anonymous, "another-field", 2, at(now));
      await store.compareAndSet(bound, "secret-field", undefined, '"value-text"', now);
      await store.apply(bound, { meta: { expiresAt: now + HOUR + 5_000, absoluteExpiresAt: now + 3 * HOUR }, now });
      await store.rotate(anonymous, rotated, rotation(now, { userId: "alice@example.com" }));
      await store.load(rotated, { now: now + 1, idleTimeoutMs: HOUR, touchIntervalMs: 0 });
      const listed = await store.listUserSessions("alice@example.com", Date.now());
      expect(listed.map((entry) => entry.key).sort()).toEqual([bound, rotated].sort());

      const keys = await client.keys("*");
      // The two sessions, the marker the rotation left, the index.
      expect(keys.length).toBe(4);
      for (const key of keys) {
        expect(key.startsWith("app:s:")).toBe(true);
        const rest = key.slice("app:s:".length);
        expect(rest === bound || rest === rotated || rest === anonymous || /^user:[A-Za-z0-9_-]{43}$/.test(rest), key).toBe(true);
        for (const secret of secrets) expect(key).not.toContain(secret);
        expect(await client.pTTL(key), key).toBeGreaterThan(0);
      }
      // The marker holds nothing of the session, and expires within the minute.
      expect(await client.hGetAll(`app:s:${anonymous}`)).toEqual({ r: "1" });
      expect(await client.pTTL(`app:s:${anonymous}`)).toBeLessThanOrEqual(60_000);
      // The index expires with its last session: the one whose absolute deadline is 3 hours away.
      const indexKey = keys.find((key) => key.includes(":user:")) as string;
      expect(await client.pTTL(indexKey)).toBeGreaterThan(2 * HOUR + 59 * 60_000);
      // The record expires at its own expiresAt.
      const boundTtl = await client.pTTL(`app:s:${bound}`);
      expect(boundTtl).toBeGreaterThan(HOUR);
      expect(boundTtl).toBeLessThanOrEqual(HOUR + 5_000);
    } finally {
      await client.close();
      await dedicated.stop();
    }
  });

  it("honours the database number in the URL", async () => {
    const dedicated = await startRedisServer();
    const store = new RedisStore({ url: dedicated.urlFor(3) });
    const db0 = await nodeRedis(dedicated.url);
    const db3 = await nodeRedis(dedicated.urlFor(3));
    try {
      const key = newKey();
      expect(await store.create(key, record({ a: "1" }))).toBe(true);
      expect(await db3.exists(PREFIX + key)).toBe(1);
      expect(await db3.dbSize()).toBe(1);
      expect(await db0.dbSize()).toBe(0);
    } finally {
      await store.dispose();
      await db0.close();
      await db3.close();
      await dedicated.stop();
    }
  });

  it("works end to end with a client it built from a URL, and closes that client on dispose", async () => {
    const store = new RedisStore({ url: server.url, prefix: "url-e2e:" });
    const now = Date.now();
    const key = newKey();
    await store.ping();
    expect(await store.create(key, record({ a: '"x"' }, metaFor(now, { userId: "u1" })))).toBe(true);
    expect(live(await store.load(key, noTouch())).fields.get("a")).toBe('"x"');
    expect(await store.apply(key, { set: new Map([["b", "[1]"]]), now })).toBe("ok");
    expect(await store.increment(key, "n", 3, at(now))).toBe(3);
    expect(await store.compareAndSet(key, "a", '"x"', '"y"', now)).toBe("ok");
    const next = newKey();
    const moved = live(await store.rotate(key, next, rotation(now)));
    expect(Object.fromEntries(moved.fields)).toEqual({ a: '"y"', b: "[1]", n: "3" });
    expect((await store.listUserSessions("u1", Date.now())).map((entry) => entry.key)).toEqual([next]);
    // The session and the marker its rotation left.
    expect(await store.count(Date.now())).toBe(2);
    expect(await store.revokeUserSessions("u1", Date.now())).toEqual([next]);
    expect(await store.load(next, noTouch())).toBe("gone");
    await store.dispose();
    await expect(store.ping()).rejects.toThrow();
  });

  it("fails fast while Redis is unreachable, then reconnects on its own", async () => {
    const dedicated = await startRedisServer();
    await dedicated.kill();
    const store = new RedisStore({ url: dedicated.url });
    try {
      const started = Date.now();
      await expect(store.ping()).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2_000);
      await dedicated.restart();
      const answers = () =>
        store.ping().then(
          () => true,
          () => false,
        );
      await expect.poll(answers, { timeout: 10_000, interval: 100 }).toBe(true);
      // Once connected, a stall is the caller's deadline to enforce; a dead server fails commands at once.
      await dedicated.kill();
      const before = Date.now();
      await expect(store.load(newKey(), noTouch())).rejects.toThrow();
      expect(Date.now() - before).toBeLessThan(2_000);
    } finally {
      await store.dispose();
      await dedicated.stop();
    }
  });

  it("re-sends a script's source when the server lost its script cache", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "noscript:" });
    try {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      await admin.scriptFlush();
      expect(live(await store.load(key, { now: Date.now() + 5, idleTimeoutMs: HOUR, touchIntervalMs: 0 })).fields.get("a")).toBe("1");
      expect(await store.increment(key, "a", 1, at(Date.now()))).toBe(2);
    } finally {
      await client.close();
    }
  });

  it("treats a value of another type under a session key as corrupted, and removes it, whatever the operation", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "wrongtype:" });
    const foreign = async () => {
      const key = newKey();
      await admin.set(`wrongtype:${key}`, "not a hash");
      return key;
    };
    const removed = async (key: string) => (await admin.exists(`wrongtype:${key}`)) === 0;
    try {
      const now = Date.now();
      let key = await foreign();
      expect(await store.load(key, noTouch())).toBe("gone");
      expect(await removed(key)).toBe(true);
      key = await foreign();
      expect(await store.apply(key, { set: new Map([["a", "1"]]), now })).toBe("gone");
      expect(await removed(key)).toBe(true);
      key = await foreign();
      expect(await store.increment(key, "a", 1, at(now))).toBe("gone");
      expect(await removed(key)).toBe(true);
      key = await foreign();
      expect(await store.compareAndSet(key, "a", undefined, "1", now)).toBe("gone");
      expect(await removed(key)).toBe(true);
      key = await foreign();
      const target = newKey();
      expect(await store.rotate(key, target, rotation(now))).toBe("gone");
      expect(await removed(key)).toBe(true);
      expect(await removed(target)).toBe(true);
      key = await foreign();
      expect(await store.create(key, record({ a: "1" }))).toBe(true);
      key = await foreign();
      await store.destroy(key);
      expect(await removed(key)).toBe(true);
    } finally {
      await client.close();
    }
  });

  it("treats a record past expiresAt on the caller's clock as gone, before Redis expires it", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "clock:" });
    try {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({ a: "1" }, metaFor(now)));
      const later = now + HOUR + 1;
      expect(await store.load(key, at(later))).toBe("gone");
      expect(await store.rotate(key, newKey(), rotation(later))).toBe("gone");
      expect(await store.apply(key, { set: new Map([["a", "2"]]), now: later })).toBe("gone");
      expect(await admin.exists(`clock:${key}`)).toBe(0);
    } finally {
      await client.close();
    }
  });

  it("destroys a session whose user index cannot be updated: the logout resolves and the session is gone", async () => {
    const store = new RedisStore({ url: server.url, prefix: "wrongindex:" });
    try {
      const user = `wrong-${newKey().slice(0, 8)}`;
      const [key, kept] = [newKey(), newKey()];
      await store.create(key, record({}, metaFor(Date.now(), { userId: user })));
      await store.create(kept, record({}, metaFor(Date.now(), { userId: user })));
      const indexKey = `wrongindex:user:${createHash("sha256").update(user).digest("base64url")}`;
      expect(await admin.type(indexKey)).toBe("zset");
      // A value of another type under the index key: every ZREM on it fails with WRONGTYPE.
      await admin.set(indexKey, "not a sorted set");
      await expect(store.destroy(key)).resolves.toBeUndefined();
      expect(await admin.exists(`wrongindex:${key}`)).toBe(0);
      expect(await store.load(key, noTouch())).toBe("gone");
      expect(live(await store.load(kept, noTouch())).meta.userId).toBe(user);
    } finally {
      await store.dispose();
    }
  });

  it("keeps the user index in step when apply rebinds or unbinds a user", async () => {
    const client = ioRedis(server.url);
    const store = new RedisStore({ client, prefix: "rebind:" });
    try {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({}, metaFor(now, { userId: "ann" })));
      await store.apply(key, { meta: { userId: "bob" }, now });
      expect(await store.listUserSessions("ann", Date.now())).toEqual([]);
      expect((await store.listUserSessions("bob", Date.now())).map((entry) => entry.key)).toEqual([key]);
      await store.apply(key, { meta: { absoluteExpiresAt: now + 5 * HOUR }, now });
      const indexKey = (await client.keys("rebind:user:*"))[0] as string;
      expect(Number(await client.zscore(indexKey, key))).toBe(now + 5 * HOUR);
      await store.apply(key, { meta: { userId: undefined }, now });
      expect(await store.listUserSessions("bob", Date.now())).toEqual([]);
      expect(live(await store.load(key, noTouch())).meta.userId).toBeUndefined();
      expect(await client.keys("rebind:user:*")).toEqual([]);
    } finally {
      await client.quit();
    }
  });

  it("works with a node-redis client speaking RESP3 and returning Buffers", async () => {
    const client = createClient({ url: server.url, RESP: 3 }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    client.on("error", () => {});
    await client.connect();
    const store = new RedisStore({ client, prefix: "resp3:" });
    try {
      const key = newKey();
      const now = Date.now();
      expect(await store.create(key, record({ "ключ 🔑": '"значение"', n: "1" }, metaFor(now, { userId: "r3" })))).toBe(true);
      const loaded = live(await store.load(key, noTouch()));
      expect(loaded.fields.get("ключ 🔑")).toBe('"значение"');
      expect(loaded.meta.userId).toBe("r3");
      expect(await store.increment(key, "n", 2, at(now))).toBe(3);
      expect(await store.compareAndSet(key, "n", "3", "4", now)).toBe("ok");
      expect((await store.listUserSessions("r3", Date.now())).map((entry) => entry.key)).toEqual([key]);
      const next = newKey();
      expect(live(await store.rotate(key, next, rotation(now, { userId: "r3" }))).fields.get("ключ 🔑")).toBe('"значение"');
      expect(await store.load(key, noTouch())).toBe("rotated");
      expect(await store.count(Date.now())).toBe(2);
    } finally {
      await client.close();
    }
  });

  it("stores many fields in one record (scripts write them in slices)", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "many:" });
    try {
      const key = newKey();
      const fields = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`f${i}`, String(i)]));
      expect(await store.create(key, record(fields))).toBe(true);
      const set = new Map(Array.from({ length: 5_000 }, (_, i) => [`g${i}`, String(i)]));
      const deleted = Array.from({ length: 5_000 }, (_, i) => `f${i}`);
      expect(await store.apply(key, { set, delete: deleted, now: Date.now() })).toBe("ok");
      const loaded = live(await store.load(key, noTouch()));
      expect(loaded.fields.size).toBe(5_000);
      expect(loaded.fields.get("g4999")).toBe("4999");
      const moved = live(await store.rotate(key, newKey(), rotation(Date.now())));
      expect(moved.fields.size).toBe(5_000);
    } finally {
      await client.close();
    }
  });
});

/**
 * A node-redis client that can run `between` right after the next reply to a plain HGETALL
 * (that is, between `rotate`'s read of the old record and its writes), or after each of the
 * next `times` replies to another command (a ZSCAN: between a revocation's read of the index
 * and its REVOKEs), or refuse the next run of one script as a lost connection would.
 */
function interleaving(real: NodeRedis): {
  client: NodeRedisClient;
  afterRead(between: () => Promise<unknown>): void;
  after(command: string, between: () => Promise<unknown>, times?: number): void;
  failNext(script: { sha1: string }): void;
} {
  let hook: { command: string; between: () => Promise<unknown>; times: number } | undefined;
  let failing: string | undefined;
  const client: NodeRedisClient = {
    get isOpen() {
      return real.isOpen;
    },
    async sendCommand(args) {
      if (args[0] === "EVALSHA" && args[1] === failing) {
        failing = undefined;
        throw new Error("connection lost");
      }
      const reply = await real.sendCommand([...args]);
      const current = hook;
      if (current !== undefined && args[0] === current.command) {
        current.times--;
        if (current.times === 0) hook = undefined;
        await current.between();
      }
      return reply;
    },
  };
  return {
    client,
    afterRead(between) {
      hook = { command: "HGETALL", between, times: 1 };
    },
    after(command, between, times = 1) {
      hook = { command, between, times };
    },
    failNext(script) {
      failing = script.sha1;
    },
  };
}

describe("redis store: rotation steps interleaved with other requests", () => {
  let server: RedisServer;
  let real: NodeRedis;
  let admin: NodeRedis;
  let other: RedisStore;
  let store: RedisStore;
  let hook: ReturnType<typeof interleaving>;
  beforeAll(async () => {
    server = await startRedisServer();
    real = await nodeRedis(server.url);
    admin = await nodeRedis(server.url);
    hook = interleaving(real);
    store = new RedisStore({ client: hook.client });
    other = new RedisStore({ client: real });
  });
  afterAll(async () => {
    await real?.close();
    await admin?.close();
    await server?.stop();
  });

  const holds = async (key: string) => (await admin.exists(PREFIX + key)) === 1;

  it("an increment landing between the read and the take is carried to the new key", async () => {
    const [from, to] = [newKey(), newKey()];
    await store.create(from, record({ visits: "1", keep: '"k"' }));
    hook.afterRead(() => other.increment(from, "visits", 1, at(Date.now())));
    const moved = live(await store.rotate(from, to, rotation(Date.now(), { userId: "inc" })));
    expect(moved.fields.get("visits")).toBe("2");
    expect(live(await store.load(to, noTouch())).fields.get("visits")).toBe("2");
    expect(live(await store.load(to, noTouch())).meta.userId).toBe("inc");
    expect(await store.load(from, noTouch())).toBe("rotated");
    expect((await store.listUserSessions("inc", Date.now())).map((entry) => entry.key)).toEqual([to]);
  });

  it("a field deleted and a user bound between the read and the take are carried too, the index following", async () => {
    const [from, to] = [newKey(), newKey()];
    await store.create(from, record({ drop: "1", keep: "2" }));
    hook.afterRead(() => other.apply(from, { delete: ["drop"], meta: { userId: "late" }, now: Date.now() }));
    // A regeneration (no user in the rotation's meta) keeps whatever user the record has when taken.
    const moved = live(await store.rotate(from, to, rotation(Date.now())));
    expect(Object.fromEntries(moved.fields)).toEqual({ keep: "2" });
    expect(moved.meta.userId).toBe("late");
    expect((await store.listUserSessions("late", Date.now())).map((entry) => entry.key)).toEqual([to]);
  });

  it("a double-submitted login: the second rotation finds the old key rotated, destroys its new key and says so", async () => {
    const [from, mine, theirs] = [newKey(), newKey(), newKey()];
    await store.create(from, record({ visits: "1" }));
    hook.afterRead(() => other.rotate(from, theirs, rotation(Date.now(), { userId: "twice" })));
    expect(await store.rotate(from, mine, rotation(Date.now(), { userId: "twice" }))).toBe("rotated");
    expect(await holds(mine)).toBe(false);
    expect(live(await store.load(theirs, noTouch())).fields.get("visits")).toBe("1");
    expect((await store.listUserSessions("twice", Date.now())).map((entry) => entry.key)).toEqual([theirs]);
  });

  it("a logout between the read and the take: the rotation answers gone and leaves nothing", async () => {
    const [from, to] = [newKey(), newKey()];
    await store.create(from, record({ visits: "1" }, metaFor(Date.now(), { userId: "out" })));
    hook.afterRead(() => other.destroy(from));
    expect(await store.rotate(from, to, rotation(Date.now(), { userId: "out" }))).toBe("gone");
    expect(await holds(from)).toBe(false);
    expect(await holds(to)).toBe(false);
    expect(await store.listUserSessions("out", Date.now())).toEqual([]);
  });

  it("a login between a revocation's read of the index and its REVOKE: the revocation reads the index again and ends the new key", async () => {
    const user = `everywhere-${newKey().slice(0, 8)}`;
    const [from, to, second] = [newKey(), newKey(), newKey()];
    await store.create(from, record({ visits: "1" }, metaFor(Date.now(), { userId: user })));
    await store.create(second, record({}, metaFor(Date.now(), { userId: user })));
    // The index read lists `from`; the rotation then indexes `to` and leaves a marker under `from`.
    hook.after("ZSCAN", async () => live(await other.rotate(from, to, rotation(Date.now(), { userId: user }))));
    expect((await store.revokeUserSessions(user, Date.now())).sort()).toEqual([second, to].sort());
    expect(await holds(to)).toBe(false);
    expect(await store.load(from, noTouch())).toBe("rotated");
    expect(await store.listUserSessions(user, Date.now())).toEqual([]);
  });

  it("a session that rotates again before every read of the index: the revocation gives up after 10 passes, and the next one ends it", async () => {
    const user = `restless-${newKey().slice(0, 8)}`;
    let head = newKey();
    await store.create(head, record({}, metaFor(Date.now(), { userId: user })));
    const rotateHead = async () => {
      const next = newKey();
      live(await other.rotate(head, next, rotation(Date.now())));
      head = next;
    };
    hook.after("ZSCAN", rotateHead, 10);
    await expect(store.revokeUserSessions(user, Date.now())).rejects.toThrow(/kept rotating to new keys through 10 passes/);
    expect(await store.revokeUserSessions(user, Date.now())).toEqual([head]);
    expect(await holds(head)).toBe(false);
    expect(await store.listUserSessions(user, Date.now())).toEqual([]);
  });

  it("a failure after the new key was written destroys it again and leaves the old session as it was", async () => {
    const [from, to] = [newKey(), newKey()];
    await store.create(from, record({ visits: "1" }, metaFor(Date.now(), { userId: "ann" })));
    const before = await admin.hGetAll(PREFIX + from);
    hook.failNext(TAKE);
    await expect(store.rotate(from, to, rotation(Date.now(), { userId: "bob" }))).rejects.toThrow("connection lost");
    expect(await admin.hGetAll(PREFIX + from)).toEqual(before);
    expect(await holds(to)).toBe(false);
    expect(await store.listUserSessions("bob", Date.now())).toEqual([]);
    expect((await store.listUserSessions("ann", Date.now())).map((entry) => entry.key)).toEqual([from]);
  });
});

describe("redis store: a user's sessions at 10,000", () => {
  let server: RedisServer;
  let admin: NodeRedis;
  beforeAll(async () => {
    server = await startRedisServer();
    admin = await nodeRedis(server.url);
  });
  afterAll(async () => {
    await admin?.close();
    await server?.stop();
  });

  it("lists and revokes them in bounded batches, dropping members that died behind the index's back", async () => {
    const store = new RedisStore({ url: server.url });
    const monitor = await CommandCounter.open(server.url);
    try {
      const { live: alive, rebound } = await populateUser(store, "many", 10_000, {
        del: (key) => admin.del(PREFIX + key),
        hSet: (key, field, value) => admin.hSet(PREFIX + key, field, value),
        set: (key, value) => admin.set(PREFIX + key, value),
        pExpire: (key, ms) => admin.pExpire(PREFIX + key, ms),
      });
      const indexKey = (await admin.keys(`${PREFIX}user:*`))[0] as string;
      expect(await admin.zCard(indexKey)).toBe(10_000);

      const commands = await monitor.during(async () => {
        const listed = await store.listUserSessions("many", Date.now());
        expect(listed).toHaveLength(alive.length);
        expect(new Set(listed.map((entry) => entry.key))).toEqual(new Set(alive));
      });
      // Pruned as it read: only the live ones are left in the index.
      expect(await admin.zCard(indexKey)).toBe(alive.length);
      expect(longestRun(commands, "hmget")).toBeLessThanOrEqual(400);
      expect(commands.filter(([name]) => name?.toLowerCase() === "hmget")).toHaveLength(10_000);

      const revoking = await monitor.during(async () => {
        const revoked = await store.revokeUserSessions("many", Date.now());
        expect(revoked.sort()).toEqual([...alive].sort());
      });
      expect(longestRun(revoking, "evalsha")).toBeLessThanOrEqual(400);
      expect(await store.listUserSessions("many", Date.now())).toEqual([]);
      expect(await admin.exists(indexKey)).toBe(0);
      for (const key of alive.slice(0, 20)) expect(await admin.exists(PREFIX + key)).toBe(0);
      // The session rebound behind the index's back belongs to someone else now: revoking "many" left it.
      expect(live(await store.load(rebound, noTouch())).meta.userId).toBe("someone-else");
    } finally {
      await monitor.close();
      await store.dispose();
    }
  }, 120_000);
});

/**
 * The most commands named `name` sent one after another with nothing else between them: how
 * many a batch held, since each batch is separated from the next by an index command.
 */
function longestRun(commands: string[][], name: string): number {
  let longest = 0;
  let run = 0;
  for (const [command] of commands) {
    run = command?.toLowerCase() === name ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
}
