/**
 * The Redis store on a real Redis Cluster (3 masters, 3 replicas): the conformance suites with
 * the store-built client (`cluster`), node-redis `createCluster` and ioredis `Cluster`, sessions
 * spread over every master, a user's 10,000 sessions, slot moves (MOVED/ASK), a master killed
 * under live sessions, and the reference server on `REDIS_CLUSTER`. One cluster serves the whole
 * file; the failover tests come last and restart the node they killed (it rejoins as a replica).
 */

import type { SessionManager, SessionStore, StoredSession } from "atomic-session";
import { SessionConfigError, StoreUnavailableError } from "atomic-session";
import { RedisStore } from "atomic-session/stores/redis";
import {
  at,
  cookiePair,
  cookieValue,
  describeSessionConformance,
  describeStoreConformance,
  managerFor,
  metaFor,
  newKey,
  openSession,
  type StoreHarness,
} from "atomic-session/testing";
import { Cluster } from "ioredis";
import { createCluster } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterNode, type RedisCluster, startRedisCluster } from "../../../../test-support/redis-cluster.js";
import { populateUser, redisBackendView } from "../../../../test-support/redis-harness.js";
import { CookieJar, ServerProcess } from "../../../../test-support/server-process.js";
import { storeKeyOf } from "../../src/core/ids.js";

type NodeRedisCluster = ReturnType<typeof createCluster>;
type Flavor = "store-built" | "node-redis" | "ioredis";

const PREFIX = "as:";
const HOUR = 3_600_000;
const STORE_TIMEOUT_MS = 1_000;

let shared: Promise<RedisCluster> | undefined;
/** The file's one cluster, started by the first suite that needs it. */
function sharedCluster(): Promise<RedisCluster> {
  shared ??= startRedisCluster();
  return shared;
}
afterAll(async () => {
  await (await shared?.catch(() => undefined))?.stop();
}, 60_000);

/**
 * A node-redis cluster client as an application would inject it: fail fast (unless `plain`:
 * node-redis's defaults, offline queue on), listen for errors.
 */
async function nodeRedisCluster(cluster: RedisCluster, plain = false): Promise<NodeRedisCluster> {
  const rootNodes = cluster.rootNodes.map((socket) => ({ socket }));
  const reconnectStrategy = (retries: number) => Math.min(50 * 2 ** retries, 500);
  const client = createCluster(
    plain ? { rootNodes } : { rootNodes, defaults: { disableOfflineQueue: true, socket: { reconnectStrategy } } },
  );
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** An ioredis Cluster, ready. */
async function ioRedisCluster(cluster: RedisCluster): Promise<Cluster> {
  const client = new Cluster(cluster.rootNodes, {
    redisOptions: { maxRetriesPerRequest: 1 },
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
  });
  client.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    client.once("ready", resolve);
    client.once("end", () => reject(new Error("ioredis Cluster did not connect")));
  });
  return client;
}

function record(fields: Record<string, string> = {}, meta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

/** A store (and a second one) of one flavour, and an admin client that routes by key. */
function openHarness(flavor: Flavor): () => Promise<StoreHarness> {
  return async () => {
    const cluster = await sharedCluster();
    const admin = await nodeRedisCluster(cluster);
    const closers: (() => Promise<unknown>)[] = [];
    const connect = async (): Promise<SessionStore> => {
      if (flavor === "store-built") return new RedisStore({ cluster: cluster.addresses });
      if (flavor === "node-redis") {
        const client = await nodeRedisCluster(cluster);
        closers.push(() => client.close());
        return new RedisStore({ client });
      }
      const client = await ioRedisCluster(cluster);
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
      },
    };
  };
}

const FLAVORS: [Flavor, string][] = [
  ["store-built", "store-built from cluster seed nodes"],
  ["node-redis", "node-redis createCluster"],
  ["ioredis", "ioredis Cluster"],
];
for (const [flavor, label] of FLAVORS) {
  describeStoreConformance(`redis cluster (${label})`, openHarness(flavor));
  describeSessionConformance(`redis cluster (${label})`, openHarness(flavor));
}

/** Keys of one store spread until every master holds at least `perMaster` of them. */
async function keysOnEveryMaster(cluster: RedisCluster, prefix: string, perMaster: number): Promise<string[]> {
  const masters = await cluster.masters();
  const counts = new Map(masters.map((node) => [node.port, 0]));
  const keys: string[] = [];
  while ([...counts.values()].some((n) => n < perMaster)) {
    const key = newKey();
    const owner = await cluster.masterFor(prefix + key);
    counts.set(owner.port, (counts.get(owner.port) ?? 0) + 1);
    keys.push(key);
  }
  return keys;
}

describe("redis store on a cluster: keys, users and counts across masters", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await sharedCluster();
  });

  for (const flavor of ["node-redis", "ioredis", "store-built"] as const) {
    it(`${flavor}: lists a user's sessions, counts and destroys them when they are spread over all masters`, async () => {
      const prefix = `spread-${flavor}:`;
      const node = flavor === "node-redis" ? await nodeRedisCluster(cluster) : undefined;
      const io = flavor === "ioredis" ? await ioRedisCluster(cluster) : undefined;
      const store =
        flavor === "store-built"
          ? new RedisStore({ cluster: cluster.addresses, prefix })
          : new RedisStore({ client: (node ?? io) as NonNullable<typeof node | typeof io>, prefix });
      try {
        const user = `user-${newKey().slice(0, 8)}`;
        const keys = await keysOnEveryMaster(cluster, prefix, 3);
        const now = Date.now();
        await Promise.all(keys.map((key) => store.create(key, record({ n: "1" }, metaFor(now, { userId: user })))));
        const anonymous = newKey();
        await store.create(anonymous, record());
        // The user's index lives in one slot, its sessions in many.
        const owners = new Set(await Promise.all(keys.map(async (key) => (await cluster.masterFor(prefix + key)).port)));
        expect(owners.size).toBe(3);

        const listed = await store.listUserSessions(user, Date.now());
        expect(listed.map((entry) => entry.key).sort()).toEqual([...keys].sort());
        expect(await store.count(Date.now())).toBe(keys.length + 1);
        await store.ping();

        expect((await store.revokeUserSessions(user, Date.now())).sort()).toEqual([...keys].sort());
        expect(await store.listUserSessions(user, Date.now())).toEqual([]);
        expect(await store.count(Date.now())).toBe(1);
        for (const key of keys.slice(0, 5)) expect(await store.load(key, noTouch())).toBe("gone");
        expect(typeof (await store.load(anonymous, noTouch()))).toBe("object");
      } finally {
        await store.dispose();
        await node?.close();
        await io?.quit();
      }
    });
  }

  it("lists and revokes a user's 10,000 sessions spread over every master, dropping members that died behind the index's back", async () => {
    const prefix = "many-users:";
    const store = new RedisStore({ cluster: cluster.addresses, prefix });
    const admin = await nodeRedisCluster(cluster);
    try {
      const { live, rebound } = await populateUser(store, "many", 10_000, {
        del: (key) => admin.del(prefix + key),
        hSet: (key, field, value) => admin.hSet(prefix + key, field, value),
        set: (key, value) => admin.set(prefix + key, value),
        pExpire: (key, ms) => admin.pExpire(prefix + key, ms),
      });
      const listed = await store.listUserSessions("many", Date.now());
      expect(listed).toHaveLength(live.length);
      expect(new Set(listed.map((entry) => entry.key))).toEqual(new Set(live));
      // Pruned as it read: a second listing finds only the live ones in the index.
      const again = await store.listUserSessions("many", Date.now());
      expect(again).toHaveLength(live.length);
      const revoked = await store.revokeUserSessions("many", Date.now());
      expect(revoked.sort()).toEqual([...live].sort());
      expect(await store.listUserSessions("many", Date.now())).toEqual([]);
      for (const key of live.slice(0, 20)) expect(await store.load(key, noTouch())).toBe("gone");
      const survivor = await store.load(rebound, noTouch());
      expect(typeof survivor === "object" && survivor.meta.userId).toBe("someone-else");
    } finally {
      await store.dispose();
      await admin.close();
    }
  }, 180_000);

  it("counts and pings through an ioredis Cluster that has not connected yet (lazyConnect)", async () => {
    const io = new Cluster(cluster.rootNodes, { lazyConnect: true });
    io.on("error", () => {});
    const store = new RedisStore({ client: io, prefix: "lazy:" });
    try {
      expect(await store.count(Date.now())).toBe(0);
      await store.ping();
      expect(io.nodes("master")).toHaveLength(3);
    } finally {
      await store.dispose();
      await io.quit();
    }
  });

  it("runs every script on the node that owns its key, re-sending the source to a node that lost its script cache", async () => {
    const store = new RedisStore({ cluster: cluster.addresses, prefix: "noscript:" });
    try {
      const keys = await keysOnEveryMaster(cluster, "noscript:", 1);
      for (const key of keys) await store.create(key, record({ a: "1" }));
      for (const master of await cluster.masters()) await cluster.command(master, ["SCRIPT", "FLUSH"]);
      for (const key of keys) expect(await store.increment(key, "a", 1, at(Date.now()))).toBe(2);
    } finally {
      await store.dispose();
    }
  });

  it("follows a slot moved to another master: ASK while it migrates, MOVED once it has moved", async () => {
    const io = await ioRedisCluster(cluster);
    const node = await nodeRedisCluster(cluster);
    const stores = [new RedisStore({ client: node }), new RedisStore({ client: io }), new RedisStore({ cluster: cluster.addresses })];
    try {
      const key = newKey();
      await stores[0]?.create(key, record({ n: "0" }));
      const slot = await cluster.slotOf(PREFIX + key);
      const source = await cluster.masterFor(PREFIX + key);
      const target = (await cluster.masters()).find((master) => master.port !== source.port) as ClusterNode;
      const idOf = async (node: ClusterNode) => String(await cluster.command(node, ["CLUSTER", "MYID"]));
      const [sourceId, targetId] = [await idOf(source), await idOf(target)];

      // Migrating: the key is still on the source, which answers; then it moves, and the source answers ASK.
      await cluster.command(target, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceId]);
      await cluster.command(source, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetId]);
      for (const store of stores) await store.increment(key, "n", 1, at(Date.now()));
      await cluster.command(source, ["MIGRATE", target.host, String(target.port), "", "0", "5000", "KEYS", PREFIX + key]);
      for (const store of stores) await store.increment(key, "n", 1, at(Date.now()));

      // Moved: every master learns the new owner; clients get MOVED and refresh their maps.
      for (const master of await cluster.masters()) {
        await cluster.command(master, ["CLUSTER", "SETSLOT", String(slot), "NODE", targetId]);
      }
      for (const store of stores) await store.increment(key, "n", 1, at(Date.now()));
      const loaded = await stores[2]?.load(key, noTouch());
      expect(typeof loaded === "object" && loaded.fields.get("n")).toBe("9");
      expect((await cluster.masterFor(PREFIX + key)).port).toBe(target.port);
    } finally {
      for (const store of stores) await store.dispose();
      await node.close();
      await io.quit();
    }
  });

  it("serves the reference server configured with REDIS_CLUSTER", async () => {
    const server = await ServerProcess.start({ REDIS_CLUSTER: cluster.addresses.join(",") });
    try {
      const jar = new CookieJar();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
      expect((await jar.fetch(`${server.url}/healthz`)).status).toBe(200);
      const key = PREFIX + storeKeyOf(jar.id as string);
      const owner = await cluster.masterFor(key);
      expect(await cluster.command(owner, ["HGET", key, "d:visitCount"])).toBe("3");
    } finally {
      await server.stop();
    }
  });
});

describe("redis store on a cluster: options", () => {
  it("rejects bad cluster options with SessionConfigError naming what is wrong", () => {
    const cases: [unknown, RegExp][] = [
      [{ cluster: [] }, /cluster must be a list/],
      [{ cluster: "127.0.0.1:7000" }, /cluster must be a list/],
      [{ cluster: ["127.0.0.1:7000", "127.0.0.1:70000"] }, /cluster\[1\] must be "host:port"/],
      [{ cluster: ["127.0.0.1:7000", 7001] }, /cluster\[1\]/],
      [{ cluster: ["redis://127.0.0.1:7000"] }, /cluster\[0\]/],
      [{ cluster: ["127.0.0.1:7000"], url: "redis://127.0.0.1:6379" }, /one of url, cluster, sentinel or client, not url and cluster/],
      [{ cluster: ["127.0.0.1:7000"], sentinel: { name: "m", nodes: ["127.0.0.1:26379"] } }, /not cluster and sentinel/],
      [{ cluster: ["127.0.0.1:7000"], prefix: "" }, /prefix/],
    ];
    for (const [options, message] of cases) {
      expect(() => new RedisStore(options as never), JSON.stringify(options)).toThrow(SessionConfigError);
      expect(() => new RedisStore(options as never), JSON.stringify(options)).toThrow(message);
    }
  });

  it("accepts node-redis createCluster and ioredis Cluster clients", async () => {
    const node = createCluster({ rootNodes: [{ socket: { host: "127.0.0.1", port: 1 } }] });
    const io = new Cluster([{ host: "127.0.0.1", port: 1 }], { lazyConnect: true });
    expect(new RedisStore({ client: node }).kind).toBe("redis");
    expect(new RedisStore({ client: io }).kind).toBe("redis");
    io.disconnect();
  });

  it("fails fast while no seed node answers, and stops trying once disposed", async () => {
    const store = new RedisStore({ cluster: ["127.0.0.1:1", "localhost:2"] });
    try {
      const started = Date.now();
      await expect(store.ping()).rejects.toThrow("Redis is not reachable");
      await expect(store.load(newKey(), noTouch())).rejects.toThrow("Redis is not reachable");
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT_MS);
    } finally {
      await store.dispose();
    }
    await expect(store.ping()).rejects.toThrow(/disposed/);
  });
});

describe("test support: redis-cluster harness", () => {
  it("says how to install redis-server and redis-cli when they are not on PATH", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(startRedisCluster()).rejects.toThrow("install it with `apt-get install -y redis-server`");
    } finally {
      process.env.PATH = path;
    }
  });
});

interface Attempt {
  ok: boolean;
  ms: number;
  error?: unknown;
}

/** Asks for the session once; what happened and how long it took. */
async function attempt(
  manager: SessionManager,
  cookie: string,
  run: (session: ReturnType<typeof openSession>["session"]) => Promise<unknown>,
): Promise<Attempt> {
  const started = Date.now();
  try {
    await run(openSession(manager, cookie).session);
    return { ok: true, ms: Date.now() - started };
  } catch (error) {
    return { ok: false, ms: Date.now() - started, error };
  }
}

describe("redis store on a cluster: a master dies", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.waitHealthy();
  });

  for (const flavor of [
    "store-built (node-redis)",
    "injected node-redis createCluster (default options)",
    "injected ioredis Cluster",
  ] as const) {
    it(`${flavor}: requests fail fast with StoreUnavailableError during the failover, then the same store serves the session again`, async () => {
      const node = flavor === "injected node-redis createCluster (default options)" ? await nodeRedisCluster(cluster, true) : undefined;
      const io = flavor === "injected ioredis Cluster" ? await ioRedisCluster(cluster) : undefined;
      const store =
        node !== undefined || io !== undefined
          ? new RedisStore({ client: (node ?? io) as NonNullable<typeof node | typeof io> })
          : new RedisStore({ cluster: cluster.addresses });
      const manager = managerFor(store, { storeTimeoutMs: STORE_TIMEOUT_MS });
      let killed: ClusterNode | undefined;
      try {
        const first = openSession(manager);
        expect(await first.session.increment("visits")).toBe(1);
        const cookie = cookiePair(first.response.cookie);
        const key = PREFIX + storeKeyOf(cookieValue(first.response.cookie));
        killed = await cluster.masterFor(key);
        await cluster.waitForReplication(key);

        await cluster.kill(killed);
        const attempts: Attempt[] = [];
        const deadline = Date.now() + 30_000;
        for (;;) {
          const outcome = await attempt(manager, cookie, (session) => session.get("visits"));
          attempts.push(outcome);
          if (outcome.ok || Date.now() > deadline) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const failures = attempts.filter((outcome) => !outcome.ok);
        expect(attempts.at(-1)?.ok, `no success within 30 s: ${String(failures.at(-1)?.error)}`).toBe(true);
        expect(failures.length).toBeGreaterThan(0);
        for (const failure of failures) {
          expect(failure.error).toBeInstanceOf(StoreUnavailableError);
          expect(failure.ms).toBeLessThan(STORE_TIMEOUT_MS + 500);
        }
        // The same session, with the write acknowledged before the kill, on the promoted replica.
        const after = openSession(manager, cookie);
        expect(await after.session.increment("visits")).toBe(2);
        expect(after.response.cookie).toBeUndefined();
        expect((await cluster.masterFor(key)).port).not.toBe(killed.port);
      } finally {
        await store.dispose();
        await node?.close();
        await io?.quit();
        if (killed !== undefined) {
          // Back as a replica of the new master, so that the next test has a healthy cluster.
          await killed.server.restart();
          await cluster.waitHealthy();
          await cluster.waitReplicasInSync();
        }
      }
    }, 90_000);
  }
});
