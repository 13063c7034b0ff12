import type { SessionStore, StoredSession } from "atomic-session";
import { SessionConfigError } from "atomic-session";
import { RedisStore } from "atomic-session/stores/redis";
import { at, describeSessionConformance, describeStoreConformance, metaFor, newKey, type StoreHarness } from "atomic-session/testing";
import { Redis } from "ioredis";
import { createClient, RESP_TYPES } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { redisBackendView } from "../../../../test-support/redis-harness.js";
import { CommandCounter } from "../../../../test-support/redis-monitor.js";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";

type NodeRedis = ReturnType<typeof createClient>;

const HOUR = 3_600_000;
const PREFIX = "sess:";

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

/** The conformance harness over a fresh server, with the store (and a second one) on injected clients. */
function openHarness(flavor: "node-redis" | "ioredis"): () => Promise<StoreHarness> {
  return async () => {
    const server = await startRedisServer();
    const admin = await nodeRedis(server.url);
    const closers: (() => Promise<unknown>)[] = [];
    const connect = async (): Promise<SessionStore> => {
      if (flavor === "node-redis") {
        const client = await nodeRedis(server.url);
        closers.push(() => client.close());
        return new RedisStore({ client });
      }
      const client = ioRedis(server.url);
      closers.push(() => client.quit());
      return new RedisStore({ client });
    };
    const store = await connect();
    const second = await connect();
    return {
      store,
      second,
      ...redisBackendView(admin, PREFIX),
      async close() {
        await store.dispose?.();
        await second.dispose?.();
        for (const close of closers) await close();
        await admin.close();
        await server.stop();
      },
    };
  };
}

describeStoreConformance("redis (node-redis client)", openHarness("node-redis"));
describeStoreConformance("redis (ioredis client)", openHarness("ioredis"));
describeSessionConformance("redis (node-redis client)", openHarness("node-redis"));
describeSessionConformance("redis (ioredis client)", openHarness("ioredis"));

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

  for (const flavor of ["node-redis", "ioredis"] as const) {
    it(`${flavor}: create, read-only load and increment each cost one round trip; apply and compare-and-set too`, async () => {
      const dedicated = await startRedisServer();
      const counter = await CommandCounter.open(dedicated.url);
      const node = flavor === "node-redis" ? await nodeRedis(dedicated.url) : undefined;
      const io = flavor === "ioredis" ? ioRedis(dedicated.url) : undefined;
      const store = new RedisStore({ client: (node ?? io) as NonNullable<typeof node | typeof io> });
      try {
        // Warm the script cache: after a restart or SCRIPT FLUSH the first call of each script costs two.
        const warm = newKey();
        await store.create(warm, record({ n: "1" }));
        await store.load(warm, noTouch());
        await store.increment(warm, "n", 1, at(Date.now()));
        await store.apply(warm, { set: new Map([["a", "1"]]), now: Date.now() });
        await store.compareAndSet(warm, "a", "1", "2", Date.now());
        await store.rotate(warm, newKey(), {}, Date.now());

        const key = newKey();
        const create = await counter.during(() => store.create(key, record({ n: "1" })));
        const load = await counter.during(() => store.load(key, noTouch()));
        const touch = await counter.during(() => store.load(key, { now: Date.now() + 1000, idleTimeoutMs: HOUR, touchIntervalMs: 0 }));
        const increment = await counter.during(() => store.increment(key, "n", 1, at(Date.now())));
        const apply = await counter.during(() => store.apply(key, { set: new Map([["a", "1"]]), delete: ["n"], now: Date.now() }));
        const cas = await counter.during(() => store.compareAndSet(key, "a", "1", "2", Date.now()));
        for (const commands of [create, load, touch, increment, apply, cas]) {
          expect(commands).toHaveLength(1);
          expect(commands[0]?.[0]?.toLowerCase()).toBe("evalsha");
        }
        const rotate = await counter.during(() => store.rotate(key, newKey(), {}, Date.now()));
        expect(rotate).toHaveLength(2);
      } finally {
        await counter.close();
        await node?.close();
        await io?.quit();
        await dedicated.stop();
      }
    });

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
      await store.rotate(anonymous, rotated, { userId: "alice@example.com" }, now);
      await store.load(rotated, { now: now + 1, idleTimeoutMs: HOUR, touchIntervalMs: 0 });
      expect((await store.listByUser("alice@example.com", Date.now())).map((entry) => entry.key).sort()).toEqual([bound, rotated].sort());

      const keys = await client.keys("*");
      expect(keys.length).toBe(3);
      for (const key of keys) {
        expect(key.startsWith("app:s:")).toBe(true);
        const rest = key.slice("app:s:".length);
        expect(rest === bound || rest === rotated || /^user:[A-Za-z0-9_-]{43}$/.test(rest), key).toBe(true);
        for (const secret of secrets) expect(key).not.toContain(secret);
        expect(await client.pTTL(key), key).toBeGreaterThan(0);
      }
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
    expect((await store.load(key, noTouch()))?.fields.get("a")).toBe('"x"');
    expect(await store.apply(key, { set: new Map([["b", "[1]"]]), now })).toBe(true);
    expect(await store.increment(key, "n", 3, at(now))).toBe(3);
    expect(await store.compareAndSet(key, "a", '"x"', '"y"', now)).toBe("ok");
    const next = newKey();
    const moved = await store.rotate(key, next, {}, now);
    expect(Object.fromEntries(moved?.fields ?? [])).toEqual({ a: '"y"', b: "[1]", n: "3" });
    expect((await store.listByUser("u1", Date.now())).map((entry) => entry.key)).toEqual([next]);
    expect(await store.count(Date.now())).toBe(1);
    expect(await store.destroyByUser("u1", Date.now())).toHaveLength(1);
    expect(await store.load(next, noTouch())).toBeUndefined();
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
      expect((await store.load(key, noTouch()))?.fields.get("a")).toBe("1");
      expect(await store.increment(key, "a", 1, at(Date.now()))).toBe(2);
    } finally {
      await client.close();
    }
  });

  it("treats a value of another type under a session key as corrupted, and removes it", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "wrongtype:" });
    try {
      const key = newKey();
      await admin.set(`wrongtype:${key}`, "not a hash");
      expect(await store.load(key, noTouch())).toBeUndefined();
      expect(await admin.exists(`wrongtype:${key}`)).toBe(0);
      await admin.set(`wrongtype:${key}`, "not a hash");
      expect(await store.apply(key, { set: new Map([["a", "1"]]), now: Date.now() })).toBe(false);
      expect(await admin.exists(`wrongtype:${key}`)).toBe(0);
      await admin.set(`wrongtype:${key}`, "not a hash");
      expect(await store.create(key, record({ a: "1" }))).toBe(true);
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
      expect(await store.apply(key, { set: new Map([["a", "2"]]), now: later })).toBe(false);
      expect(await admin.exists(`clock:${key}`)).toBe(0);
    } finally {
      await client.close();
    }
  });

  it("refuses an increment that would leave the safe integer range, writing nothing", async () => {
    const client = await nodeRedis(server.url);
    const store = new RedisStore({ client, prefix: "range:" });
    try {
      const key = newKey();
      await store.create(key, record({ big: String(Number.MAX_SAFE_INTEGER - 1) }));
      expect(await store.increment(key, "big", 1, at(Date.now()))).toBe(Number.MAX_SAFE_INTEGER);
      await expect(store.increment(key, "big", 1, at(Date.now()))).rejects.toThrow(/safe integer/);
      expect((await store.load(key, noTouch()))?.fields.get("big")).toBe(String(Number.MAX_SAFE_INTEGER));
    } finally {
      await client.close();
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
      expect(await store.listByUser("ann", Date.now())).toEqual([]);
      expect((await store.listByUser("bob", Date.now())).map((entry) => entry.key)).toEqual([key]);
      await store.apply(key, { meta: { userId: undefined }, now });
      expect(await store.listByUser("bob", Date.now())).toEqual([]);
      expect((await store.load(key, noTouch()))?.meta.userId).toBeUndefined();
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
      const loaded = await store.load(key, noTouch());
      expect(loaded?.fields.get("ключ 🔑")).toBe('"значение"');
      expect(loaded?.meta.userId).toBe("r3");
      expect(await store.increment(key, "n", 2, at(now))).toBe(3);
      expect(await store.compareAndSet(key, "n", "3", "4", now)).toBe("ok");
      expect((await store.listByUser("r3", Date.now())).map((entry) => entry.key)).toEqual([key]);
      expect(await store.count(Date.now())).toBe(1);
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
      expect(await store.apply(key, { set, delete: deleted, now: Date.now() })).toBe(true);
      const loaded = await store.load(key, noTouch());
      expect(loaded?.fields.size).toBe(5_000);
      expect(loaded?.fields.get("g4999")).toBe("4999");
    } finally {
      await client.close();
    }
  });
});

describe("test support: redis-server harness", () => {
  it("restarts on the same port and folder, keeping data with AOF, and pauses/resumes", async () => {
    const server = await startRedisServer({ appendonly: true });
    try {
      const port = server.port;
      let client = await nodeRedis(server.url);
      await client.set("k", "v");
      await client.close();
      await server.kill("SIGKILL");
      expect(server.running).toBe(false);
      await server.restart();
      expect(server.port).toBe(port);
      client = await nodeRedis(server.url);
      expect(await client.get("k")).toBe("v");
      server.pause();
      const stalled = await Promise.race([client.ping(), new Promise((resolve) => setTimeout(() => resolve("stalled"), 300))]);
      expect(stalled).toBe("stalled");
      server.resume();
      expect(await client.ping()).toBe("PONG");
      await client.sendCommand(["DEBUG", "SLEEP", "0"]);
      await client.close();
    } finally {
      await server.stop();
    }
  });

  it("says how to install redis-server when it is not on PATH", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(startRedisServer()).rejects.toThrow("install it with `apt-get install -y redis-server`");
    } finally {
      process.env.PATH = path;
    }
  });
});
