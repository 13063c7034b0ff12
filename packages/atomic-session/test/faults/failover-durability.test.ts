/**
 * The Redis store's `durability` option on its own, against a real primary and replica: a
 * logout, a revocation and a login's rotation resolve only once the replica holds them, and
 * reject (503 through the manager) when it does not answer in time; ordinary writes never
 * wait. For node-redis (the store's own client and an injected one) and ioredis. The failover
 * benches (failover-sentinel, failover-cluster) measure what it changes when a primary dies.
 */
import { SessionConfigError, SessionManager, StoreUnavailableError } from "atomic-session";
import { EnvConfigError, storeEnv } from "atomic-session/env";
import { RedisDurabilityError, RedisStore } from "atomic-session/stores/redis";
import { cookiePair, openSession } from "atomic-session/testing";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { delay } from "../../../../test-support/processes.js";
import { commandOn, type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { keySlot } from "../../src/stores/redis/durability.js";

const DURABILITY = { replicas: 1, timeoutMs: 300 };
const STORE_TIMEOUT_MS = 2_000;

let primary: RedisServer;
let replica: RedisServer;

beforeAll(async () => {
  primary = await startRedisServer({ args: ["--repl-diskless-sync-delay", "0"] });
  replica = await startRedisServer({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
  for (let i = 0; i < 200; i++) {
    if (String(await commandOn(replica.port, ["INFO", "replication"])).includes("master_link_status:up")) return;
    await delay(50);
  }
  throw new Error("the replica did not sync");
});
afterAll(async () => {
  await replica?.stop();
  await primary?.stop();
});

type Flavor = "store-built node-redis" | "injected node-redis" | "injected ioredis";

async function openStore(flavor: Flavor, durability = DURABILITY): Promise<{ store: RedisStore; close(): Promise<void> }> {
  if (flavor === "store-built node-redis") {
    const store = new RedisStore({ url: primary.url, durability });
    return { store, close: () => store.dispose() };
  }
  if (flavor === "injected node-redis") {
    const client = createClient({ url: primary.url, disableOfflineQueue: true });
    client.on("error", () => {});
    await client.connect();
    const store = new RedisStore({ client, durability });
    return {
      store,
      async close() {
        await store.dispose();
        client.destroy();
      },
    };
  }
  const client = new Redis(primary.port, "127.0.0.1", { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  await new Promise((resolve) => client.once("ready", resolve));
  const store = new RedisStore({ client, durability });
  return {
    store,
    async close() {
      await store.dispose();
      client.disconnect();
    },
  };
}

/** Freezes the replica while `run` starts: it must still be pending when the replica thaws, and then resolve. */
async function whileReplicaFrozen<T>(run: () => Promise<T>): Promise<T> {
  const FROZEN_MS = 120;
  replica.pause();
  let settled = false;
  let pending: Promise<T>;
  try {
    pending = run();
    pending.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await delay(FROZEN_MS);
    expect(settled, "resolved before the replica acknowledged it").toBe(false);
  } finally {
    replica.resume();
  }
  return pending;
}

describe("durability: options", () => {
  it("rejects a durability option that cannot work with SessionConfigError naming what is wrong", () => {
    const cases: [unknown, RegExp][] = [
      ["yes", /durability must be \{ replicas, timeoutMs \}/],
      [{ replicas: 0, timeoutMs: 100 }, /durability\.replicas must be a whole number from 1/],
      [{ replicas: 1.5, timeoutMs: 100 }, /durability\.replicas/],
      [{ timeoutMs: 100 }, /durability\.replicas/],
      [{ replicas: 1 }, /durability\.timeoutMs must be a whole number of milliseconds from 1/],
      // WAIT with 0 waits forever.
      [{ replicas: 1, timeoutMs: 0 }, /durability\.timeoutMs/],
      [{ replicas: 1, timeoutMs: 120_000 }, /durability\.timeoutMs/],
    ];
    for (const [durability, message] of cases) {
      const build = () => new RedisStore({ url: "redis://127.0.0.1:1", durability } as never);
      expect(build, JSON.stringify(durability)).toThrow(SessionConfigError);
      expect(build, JSON.stringify(durability)).toThrow(message);
    }
  });

  it("reads REDIS_DURABLE_REPLICAS and REDIS_DURABLE_TIMEOUT_MS (default 500 ms), and refuses values that cannot work", () => {
    expect(storeEnv({ REDIS_URL: "redis://127.0.0.1:6379/0" })).toMatchObject({ kind: "redis", durability: undefined });
    expect(storeEnv({ REDIS_SENTINEL: "m@127.0.0.1:26379", REDIS_DURABLE_REPLICAS: "2" })).toMatchObject({
      durability: { replicas: 2, timeoutMs: 500 },
    });
    expect(storeEnv({ REDIS_CLUSTER: "127.0.0.1:7000", REDIS_DURABLE_REPLICAS: "1", REDIS_DURABLE_TIMEOUT_MS: "150" })).toMatchObject({
      durability: { replicas: 1, timeoutMs: 150 },
    });
    const cases: [Record<string, string>, RegExp][] = [
      [{ REDIS_DURABLE_REPLICAS: "0" }, /REDIS_DURABLE_REPLICAS must be a whole number from 1 to 100/],
      [{ REDIS_DURABLE_REPLICAS: "one" }, /REDIS_DURABLE_REPLICAS/],
      [{ REDIS_DURABLE_REPLICAS: "1", REDIS_DURABLE_TIMEOUT_MS: "0" }, /REDIS_DURABLE_TIMEOUT_MS must be a whole number from 1/],
      [{ REDIS_DURABLE_TIMEOUT_MS: "200" }, /REDIS_DURABLE_TIMEOUT_MS needs REDIS_DURABLE_REPLICAS/],
    ];
    for (const [env, message] of cases) {
      expect(() => storeEnv({ REDIS_URL: "redis://127.0.0.1:6379/0", ...env }), JSON.stringify(env)).toThrow(EnvConfigError);
      expect(() => storeEnv({ REDIS_URL: "redis://127.0.0.1:6379/0", ...env }), JSON.stringify(env)).toThrow(message);
    }
  });

  it("computes the Cluster hash slot as Redis does, hash tags included", async () => {
    const node = await startRedisServer({ args: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] });
    try {
      const keys = ["", "a", "as:session", "{user}:1", "x{user}y", "{}x", "{x}{y}", "a{", "a}b{c", "é€𝄞", "as:user:abc123_-"];
      for (let i = 0; i < 50; i++) keys.push(`as:${Math.random().toString(36).slice(2)}${"é".repeat(i % 3)}`);
      for (const key of keys) expect(keySlot(key), key).toBe(Number(await commandOn(node.port, ["CLUSTER", "KEYSLOT", key])));
    } finally {
      await node.stop();
    }
  });
});

for (const flavor of ["store-built node-redis", "injected node-redis", "injected ioredis"] as const) {
  describe(`durability: ${flavor}`, () => {
    it("resolves a login, a logout and a revocation only once the replica holds them", async () => {
      // The replica thaws 120 ms into the wait: a second leaves the thawed replica time to answer on a loaded machine.
      const { store, close } = await openStore(flavor, { replicas: 1, timeoutMs: 1_000 });
      const manager = new SessionManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS });
      try {
        const anonymous = openSession(manager);
        await anonymous.session.increment("n");
        const before = cookiePair(anonymous.response.cookie);
        const login = openSession(manager, before);
        await whileReplicaFrozen(() => login.session.login("ada"));
        const other = openSession(manager);
        await other.session.login("ada");
        await whileReplicaFrozen(() => openSession(manager, cookiePair(login.response.cookie)).session.destroy());
        expect(await whileReplicaFrozen(() => manager.revokeUserSessions("ada"))).toBe(1);
        // The replica serves none of the ended cookies (read on the replica itself).
        const onReplica = new RedisStore({ url: replica.url });
        try {
          const check = new SessionManager({ store: onReplica, storeTimeoutMs: STORE_TIMEOUT_MS });
          for (const cookie of [before, cookiePair(login.response.cookie), cookiePair(other.response.cookie)]) {
            expect(await openSession(check, cookie).session.exists()).toBe(false);
          }
        } finally {
          await onReplica.dispose();
        }
      } finally {
        await close();
      }
    });

    it("rejects a logout the replica did not acknowledge in time (503 through the manager), and serves again once it does", async () => {
      const { store, close } = await openStore(flavor);
      const manager = new SessionManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS });
      try {
        const first = openSession(manager);
        await first.session.increment("n");
        const cookie = cookiePair(first.response.cookie);
        replica.pause();
        try {
          // Ordinary writes never wait for the replica.
          const started = Date.now();
          expect(await openSession(manager, cookie).session.increment("n")).toBe(2);
          expect(Date.now() - started).toBeLessThan(DURABILITY.timeoutMs);

          const ended = Date.now();
          const outcome = await openSession(manager, cookie)
            .session.destroy()
            .then(
              () => undefined,
              (error: unknown) => error,
            );
          const tookMs = Date.now() - ended;
          expect(outcome).toBeInstanceOf(StoreUnavailableError);
          const cause = (outcome as StoreUnavailableError).cause;
          expect(cause).toBeInstanceOf(RedisDurabilityError);
          expect((cause as RedisDurabilityError).message).toMatch(/0 of 1 replica\(s\) acknowledged the write within 300 ms/);
          expect((outcome as StoreUnavailableError).detail).toMatch(/replica/);
          expect(tookMs).toBeGreaterThanOrEqual(DURABILITY.timeoutMs - 20);
          expect(tookMs).toBeLessThan(STORE_TIMEOUT_MS);
          // The store itself rejects too.
          await expect(store.destroy("no-such-session")).rejects.toBeInstanceOf(RedisDurabilityError);
        } finally {
          replica.resume();
        }
        // Back: the same store's logouts resolve again.
        const again = openSession(manager);
        await again.session.increment("n");
        await openSession(manager, cookiePair(again.response.cookie)).session.destroy();
        expect(await openSession(manager, cookiePair(again.response.cookie)).session.exists()).toBe(false);
      } finally {
        await close();
      }
    });

    it("refuses a login the replica did not acknowledge (503) and leaves the session as it was: the same cookie keeps its data, and logs in once the replica is back", async () => {
      const { store, close } = await openStore(flavor);
      const manager = new SessionManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS });
      const user = `refused-${Math.random().toString(36).slice(2)}`;
      try {
        const first = openSession(manager);
        await first.session.set({ cart: ["book"] });
        await first.session.increment("n");
        const cookie = cookiePair(first.response.cookie);
        replica.pause();
        try {
          const refused = openSession(manager, cookie);
          const outcome = await refused.session.login(user).then(
            () => undefined,
            (error: unknown) => error,
          );
          expect(outcome).toBeInstanceOf(StoreUnavailableError);
          expect((outcome as StoreUnavailableError).cause).toBeInstanceOf(RedisDurabilityError);
          expect(refused.response.cookie).toBeUndefined();
          // Not a rotation marker (a 409 until it expires): the session, with its data, under the same cookie.
          const retried = openSession(manager, cookie);
          expect(await retried.session.all()).toEqual({ cart: ["book"], n: 1 });
          expect(await retried.session.increment("n")).toBe(2);
          expect(retried.response.cookie).toBeUndefined();
          // The new key the refused login wrote is gone, from the user's index too.
          expect(await manager.listUserSessions(user)).toEqual([]);
        } finally {
          replica.resume();
        }
        const login = openSession(manager, cookie);
        await login.session.login(user);
        const after = openSession(manager, cookiePair(login.response.cookie));
        expect(await after.session.all()).toEqual({ cart: ["book"], n: 2 });
        expect((await after.session.info())?.userId).toBe(user);
        expect((await manager.listUserSessions(user)).map(({ handle }) => handle)).toEqual([after.session.handle]);
        expect(await openSession(manager, cookie).session.exists()).toBe(false);
      } finally {
        await close();
      }
    });

    it("re-sends the script source, still followed by WAIT, when the primary lost its script cache", async () => {
      const { store, close } = await openStore(flavor);
      const manager = new SessionManager({ store, storeTimeoutMs: STORE_TIMEOUT_MS });
      try {
        const opened = openSession(manager);
        await opened.session.increment("n");
        await commandOn(primary.port, ["SCRIPT", "FLUSH"]);
        replica.pause();
        try {
          // The fallback EVAL is waited for too: with the replica frozen, it cannot succeed.
          await expect(openSession(manager, cookiePair(opened.response.cookie)).session.destroy()).rejects.toBeInstanceOf(
            StoreUnavailableError,
          );
        } finally {
          replica.resume();
        }
        await commandOn(primary.port, ["SCRIPT", "FLUSH"]);
        await openSession(manager, cookiePair(opened.response.cookie)).session.destroy();
        expect(await openSession(manager, cookiePair(opened.response.cookie)).session.exists()).toBe(false);
      } finally {
        await close();
      }
    });

    it("asks more replicas than there are: every logout fails, never a silent success", async () => {
      const { store, close } = await openStore(flavor, { replicas: 2, timeoutMs: 50 });
      try {
        await expect(store.destroy("whatever")).rejects.toThrow(/1 of 2 replica\(s\) acknowledged/);
        await expect(store.revokeUserSessions("nobody", Date.now())).resolves.toEqual([]);
      } finally {
        await close();
      }
    });
  });
}
