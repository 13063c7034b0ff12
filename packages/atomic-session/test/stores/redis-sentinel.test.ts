/**
 * The Redis store behind Redis Sentinel (one master, one replica, one sentinel): both
 * conformance suites through the store-built client (`sentinel`), node-redis `createSentinel`
 * and ioredis `sentinels`, and a master killed under live sessions, for each of them.
 */

import type { SessionManager, SessionStore } from "atomic-session";
import { SessionConfigError, StoreUnavailableError } from "atomic-session";
import { RedisStore } from "atomic-session/stores/redis";
import {
  cookiePair,
  describeSessionConformance,
  describeStoreConformance,
  managerFor,
  openSession,
  type StoreHarness,
} from "atomic-session/testing";
import { Redis } from "ioredis";
import { createClient, createSentinel } from "redis";
import { afterAll, describe, expect, it } from "vitest";
import { redisBackendView } from "../../../../test-support/redis-harness.js";
import { type RedisSentinelSetup, startRedisSentinel } from "../../../../test-support/redis-sentinel.js";
import { CookieJar, ServerProcess } from "../../../../test-support/server-process.js";

type NodeRedisSentinel = ReturnType<typeof createSentinel>;
type Flavor = "store-built (node-redis)" | "injected node-redis createSentinel" | "injected ioredis sentinels";

const PREFIX = "as:";
const STORE_TIMEOUT_MS = 1_000;

async function nodeRedisSentinel(setup: RedisSentinelSetup): Promise<NodeRedisSentinel> {
  const client = createSentinel({
    name: setup.name,
    sentinelRootNodes: setup.sentinels,
    nodeClientOptions: { disableOfflineQueue: true },
  });
  client.on("error", () => {});
  await client.connect();
  return client;
}

async function ioRedisSentinel(setup: RedisSentinelSetup): Promise<Redis> {
  const client = new Redis({ sentinels: setup.sentinels, name: setup.name, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  client.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    client.once("ready", resolve);
    client.once("end", () => reject(new Error("ioredis did not connect through the sentinel")));
  });
  return client;
}

/** A store of the given flavour, and how to close what the test opened for it. */
async function openStore(setup: RedisSentinelSetup, flavor: Flavor): Promise<{ store: SessionStore; close(): Promise<void> }> {
  if (flavor === "store-built (node-redis)") {
    const store = new RedisStore({ sentinel: { name: setup.name, nodes: setup.sentinelAddresses } });
    return { store, close: () => store.dispose() };
  }
  if (flavor === "injected node-redis createSentinel") {
    const client = await nodeRedisSentinel(setup);
    const store = new RedisStore({ client });
    return {
      store,
      async close() {
        await store.dispose();
        await client.close();
      },
    };
  }
  const client = await ioRedisSentinel(setup);
  const store = new RedisStore({ client });
  return {
    store,
    async close() {
      await store.dispose();
      client.disconnect();
    },
  };
}

let shared: Promise<RedisSentinelSetup> | undefined;
function sharedSetup(): Promise<RedisSentinelSetup> {
  shared ??= startRedisSentinel();
  return shared;
}
afterAll(async () => {
  await (await shared?.catch(() => undefined))?.stop();
});

function openHarness(flavor: Flavor): () => Promise<StoreHarness> {
  return async () => {
    const setup = await sharedSetup();
    const admin = createClient({ socket: { host: "127.0.0.1", port: await setup.currentMasterPort() } });
    admin.on("error", () => {});
    await admin.connect();
    const first = await openStore(setup, flavor);
    const second = await openStore(setup, flavor);
    return {
      store: first.store,
      second: second.store,
      ...redisBackendView(admin, PREFIX),
      async close() {
        await first.close();
        await second.close();
        await admin.close();
      },
    };
  };
}

for (const flavor of ["store-built (node-redis)", "injected node-redis createSentinel", "injected ioredis sentinels"] as const) {
  describeStoreConformance(`redis sentinel (${flavor})`, openHarness(flavor));
  describeSessionConformance(`redis sentinel (${flavor})`, openHarness(flavor));
}

describe("redis store behind Sentinel: options", () => {
  it("rejects bad sentinel options with SessionConfigError naming what is wrong", () => {
    const cases: [unknown, RegExp][] = [
      [{ sentinel: { name: "mymaster", nodes: [] } }, /sentinel\.nodes must be a list/],
      [{ sentinel: { name: "mymaster", nodes: ["127.0.0.1"] } }, /sentinel\.nodes\[0\] must be "host:port"/],
      [{ sentinel: { name: "mymaster", nodes: ["127.0.0.1:26379", "h:0"] } }, /sentinel\.nodes\[1\]/],
      [{ sentinel: { name: "", nodes: ["127.0.0.1:26379"] } }, /sentinel\.name/],
      [{ sentinel: { name: "my master", nodes: ["127.0.0.1:26379"] } }, /sentinel\.name/],
      [{ sentinel: "mymaster@127.0.0.1:26379" }, /sentinel must be \{ name/],
      [{ sentinel: { name: "m", nodes: ["127.0.0.1:26379"] }, url: "redis://127.0.0.1:6379" }, /not url and sentinel/],
    ];
    for (const [options, message] of cases) {
      expect(() => new RedisStore(options as never), JSON.stringify(options)).toThrow(SessionConfigError);
      expect(() => new RedisStore(options as never), JSON.stringify(options)).toThrow(message);
    }
  });

  it("fails fast while no sentinel answers, and stops trying once disposed", async () => {
    const store = new RedisStore({ sentinel: { name: "mymaster", nodes: ["127.0.0.1:1"] } });
    try {
      const started = Date.now();
      await expect(store.ping()).rejects.toThrow("Redis is not reachable");
      expect(Date.now() - started).toBeLessThan(STORE_TIMEOUT_MS);
    } finally {
      await store.dispose();
    }
    await expect(store.ping()).rejects.toThrow(/disposed/);
  });

  it("fails fast when the sentinel knows no master of that name", async () => {
    const setup = await sharedSetup();
    const store = new RedisStore({ sentinel: { name: "no-such-master", nodes: setup.sentinelAddresses } });
    try {
      await expect(store.ping()).rejects.toThrow("Redis is not reachable");
    } finally {
      await store.dispose();
    }
  });
});

describe("test support: redis-sentinel harness", () => {
  it("says how to install redis-server when it is not on PATH", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(startRedisSentinel()).rejects.toThrow("install it with `apt-get install -y redis-server`");
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("reference server on Sentinel: REDIS_SENTINEL", () => {
  it("serves the reference server configured with REDIS_SENTINEL", async () => {
    const setup = await sharedSetup();
    const server = await ServerProcess.start({ REDIS_SENTINEL: `${setup.name}@${setup.sentinelAddresses.join(",")}` });
    try {
      const jar = new CookieJar();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
    } finally {
      await server.stop();
    }
  });
});

interface Attempt {
  ok: boolean;
  ms: number;
  error?: unknown;
}

async function attempt(manager: SessionManager, cookie: string): Promise<Attempt> {
  const started = Date.now();
  try {
    await openSession(manager, cookie).session.get("visits");
    return { ok: true, ms: Date.now() - started };
  } catch (error) {
    return { ok: false, ms: Date.now() - started, error };
  }
}

describe("redis store behind Sentinel: the master dies", () => {
  for (const flavor of ["store-built (node-redis)", "injected node-redis createSentinel", "injected ioredis sentinels"] as const) {
    it(`${flavor}: sessions created before the failover keep working after it, with the same store`, async () => {
      const setup = await startRedisSentinel();
      const opened = await openStore(setup, flavor);
      const manager = managerFor(opened.store, { storeTimeoutMs: STORE_TIMEOUT_MS });
      try {
        const cookies: string[] = [];
        for (let i = 0; i < 5; i++) {
          const { session, response } = openSession(manager);
          for (let n = 0; n <= i; n++) await session.increment("visits");
          cookies.push(cookiePair(response.cookie));
        }
        const login = openSession(manager, cookies[0]);
        await login.session.login("ada");
        cookies[0] = cookiePair(login.response.cookie);
        const oldMaster = await setup.currentMasterPort();
        await setup.waitForReplication();

        await setup.killMaster();
        const attempts: Attempt[] = [];
        const deadline = Date.now() + 30_000;
        for (;;) {
          const outcome = await attempt(manager, cookies[1] as string);
          attempts.push(outcome);
          if (outcome.ok || Date.now() > deadline) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const failures = attempts.filter((outcome) => !outcome.ok);
        expect(attempts.at(-1)?.ok, `no success within 30 s: ${String(failures.at(-1)?.error)}`).toBe(true);
        for (const failure of failures) {
          expect(failure.error).toBeInstanceOf(StoreUnavailableError);
          expect(failure.ms).toBeLessThan(STORE_TIMEOUT_MS + 500);
        }
        expect(await setup.waitForFailover()).not.toBe(oldMaster);

        // Every session is still there, with the writes acknowledged before the kill, and takes new ones.
        for (const [i, cookie] of cookies.entries()) {
          const after = openSession(manager, cookie);
          expect(await after.session.increment("visits")).toBe(i + 2);
          expect(after.response.cookie).toBeUndefined();
        }
        const current = openSession(manager, cookies[0]);
        expect((await current.session.info())?.userId).toBe("ada");
        expect(await manager.listUserSessions("ada", current.session)).toHaveLength(1);
      } finally {
        await opened.close();
        await setup.stop();
      }
    }, 60_000);
  }
});
