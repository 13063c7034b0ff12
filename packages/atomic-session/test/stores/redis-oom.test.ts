/**
 * The Redis store under memory pressure: a real redis-server with `--maxmemory` and
 * `--maxmemory-policy noeviction`, filled (from another database) until it refuses writes.
 * Reads, logouts and listings must keep working; a write Redis refuses must change nothing;
 * above all a login (a rotation) must be refused whole, leaving the session it would have
 * replaced exactly as it was, and work again once memory is freed. For the store-built client
 * and injected node-redis and ioredis clients.
 */
import type { SessionManager, StoredSession } from "atomic-session";
import { StoreUnavailableError } from "atomic-session";
import { RedisStore } from "atomic-session/stores/redis";
import { at, cookiePair, managerFor, metaFor, newKey, openSession, rotation } from "atomic-session/testing";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";

type NodeRedis = ReturnType<typeof createClient>;

const HOUR = 3_600_000;
const PREFIX = "as:";
const MAXMEMORY = ["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"];

async function nodeRedis(url: string): Promise<NodeRedis> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

function record(fields: Record<string, string>, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

function live(found: StoredSession | string): StoredSession {
  if (typeof found === "string") throw new Error(`expected a live record, the store answered ${JSON.stringify(found)}`);
  return found;
}

const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

/**
 * Writes 10 KB values into database 1 until Redis refuses one for lack of memory, then 1 MB
 * more past the limit (a script that has written may go on), so that the buffers of the
 * clients coming and going cannot bring it back under the limit; checks that a write is refused.
 */
async function fill(filler: NodeRedis): Promise<void> {
  const value = "x".repeat(10_000);
  for (let batch = 0; ; batch++) {
    if (batch === 1_000) throw new Error("Redis never refused a write: is maxmemory set?");
    const writes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => filler.set(`fill:${batch}:${i}`, value)));
    if (writes.some((write) => write.status === "rejected")) break;
  }
  const over = "redis.call('DEL', KEYS[1]) for i = 1, 100 do redis.call('SET', KEYS[1] .. i, string.rep('x', 10000)) end return 1";
  await filler.eval(over, { keys: ["fill:over:"] });
  await expect(filler.set("fill:probe", "x")).rejects.toThrow(/OOM/);
}

for (const flavor of ["store-built (url)", "node-redis", "ioredis"] as const) {
  describe(`redis store over maxmemory (noeviction), ${flavor}`, () => {
    let server: RedisServer;
    let admin: NodeRedis;
    let filler: NodeRedis;
    let store: RedisStore;
    let close: () => Promise<unknown>;
    let manager: SessionManager;
    beforeAll(async () => {
      server = await startRedisServer({ args: MAXMEMORY });
      admin = await nodeRedis(server.url);
      filler = await nodeRedis(server.urlFor(1));
      if (flavor === "store-built (url)") {
        store = new RedisStore({ url: server.url });
        close = async () => {};
      } else if (flavor === "node-redis") {
        const client = await nodeRedis(server.url);
        store = new RedisStore({ client });
        close = () => client.close();
      } else {
        const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
        client.on("error", () => {});
        store = new RedisStore({ client });
        close = () => client.quit();
      }
      manager = managerFor(store);
    });
    afterAll(async () => {
      await store?.dispose();
      await close?.();
      await filler?.close();
      await admin?.close();
      await server?.stop();
    });

    it("the store: a rotation is refused whole and the old record stays as it was; reads, touches, listings and destroys work", async () => {
      const now = Date.now();
      const [from, to, doomed] = [newKey(), newKey(), newKey()];
      await store.create(from, record({ visits: "3", name: '"ada"' }, metaFor(now, { userId: "ada", userAgent: "phone" })));
      await store.create(doomed, record({}, metaFor(now, { userId: "ada" })));
      await fill(filler);
      try {
        const before = await admin.hGetAll(PREFIX + from);
        const ttlBefore = await admin.pTTL(PREFIX + from);

        await expect(store.rotate(from, to, rotation(Date.now(), { userId: "bob" }))).rejects.toThrow(/OOM/);
        await expect(store.rotate(from, to, rotation(Date.now()))).rejects.toThrow(/OOM/);
        expect(await admin.hGetAll(PREFIX + from)).toEqual(before);
        expect(Math.abs((await admin.pTTL(PREFIX + from)) - ttlBefore)).toBeLessThan(5_000);
        expect(await admin.exists(PREFIX + to)).toBe(0);

        // Reads work, a due touch is skipped rather than failing the read, and no write sneaks through.
        expect(live(await store.load(from, noTouch())).fields.get("visits")).toBe("3");
        const touched = live(await store.load(from, { now: Date.now() + 10, idleTimeoutMs: HOUR, touchIntervalMs: 0 }));
        expect(touched.meta.lastSeenAt).toBe(now);
        await expect(store.increment(from, "visits", 1, at(Date.now()))).rejects.toThrow(/OOM/);
        await expect(store.apply(from, { set: new Map([["late", "1"]]), now: Date.now() })).rejects.toThrow(/OOM/);
        await expect(store.create(newKey(), record({ a: "1" }))).rejects.toThrow(/OOM/);
        expect(await admin.hGetAll(PREFIX + from)).toEqual(before);

        expect((await store.listUserSessions("ada", Date.now())).map((entry) => entry.key).sort()).toEqual([from, doomed].sort());
        expect(await store.listUserSessions("bob", Date.now())).toEqual([]);
        await store.destroy(doomed);
        expect(await admin.exists(PREFIX + doomed)).toBe(0);
        expect((await store.listUserSessions("ada", Date.now())).map((entry) => entry.key)).toEqual([from]);
      } finally {
        await filler.flushDb();
      }

      // Memory freed: the same rotation works.
      const moved = live(await store.rotate(from, to, rotation(Date.now(), { userId: "bob" })));
      expect(moved.meta.userId).toBe("bob");
      expect(moved.fields.get("visits")).toBe("3");
      expect(await store.load(from, noTouch())).toBe("rotated");
      expect((await store.listUserSessions("bob", Date.now())).map((entry) => entry.key)).toEqual([to]);
      expect(await store.listUserSessions("ada", Date.now())).toEqual([]);
    });

    it("through the manager: a second login is a 503 that logs nobody out; logouts work; after freeing memory the login works", async () => {
      const first = openSession(manager);
      await first.session.increment("visits");
      const anonymous = cookiePair(first.response.cookie);
      const login = openSession(manager, anonymous, "laptop");
      await login.session.login("grace");
      const ada = cookiePair(login.response.cookie);
      const other = openSession(manager, undefined, "phone");
      await other.session.login("grace");
      const phone = cookiePair(other.response.cookie);
      const guest = openSession(manager);
      await guest.session.set("cart", ["book"]);
      const guestCookie = cookiePair(guest.response.cookie);

      await fill(filler);
      try {
        const again = openSession(manager, ada);
        await expect(again.session.login("alan")).rejects.toBeInstanceOf(StoreUnavailableError);
        expect(again.response.cookie).toBeUndefined();
        const first = openSession(manager, guestCookie);
        await expect(first.session.login("carol")).rejects.toBeInstanceOf(StoreUnavailableError);

        // The old cookies still work, with their data and user.
        const still = openSession(manager, ada).session;
        expect((await still.info())?.userId).toBe("grace");
        expect(await still.get("visits")).toBe(1);
        const guestStill = openSession(manager, guestCookie).session;
        expect((await guestStill.info())?.userId).toBeUndefined();
        expect(await guestStill.get("cart")).toEqual(["book"]);
        expect((await manager.listUserSessions("grace")).map((entry) => entry.userAgent).sort()).toEqual(["laptop", "phone"]);
        expect(await manager.listUserSessions("alan")).toEqual([]);
        expect(await manager.listUserSessions("carol")).toEqual([]);

        // A logout works under pressure.
        await openSession(manager, phone).session.destroy();
        expect(await openSession(manager, phone).session.exists()).toBe(false);
      } finally {
        await filler.flushDb();
      }

      const retry = openSession(manager, ada);
      await retry.session.login("alan");
      const bob = cookiePair(retry.response.cookie);
      expect((await openSession(manager, bob).session.info())?.userId).toBe("alan");
      expect(await openSession(manager, bob).session.get("visits")).toBe(1);
      expect(await openSession(manager, ada).session.exists()).toBe(false);
    });
  });
}
