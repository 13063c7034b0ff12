/**
 * Issue 5, part 1, at the library level: `SessionManager` + `RedisStore` over a node-redis or
 * an ioredis client, against a spawned Redis that stalls (DEBUG SLEEP, SIGSTOP) or dies. The
 * core's deadline must end every call, whatever the client does with its commands.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { SessionStore } from "atomic-session";
import { SessionManager, StoreUnavailableError } from "atomic-session";
import { sessionMiddleware } from "atomic-session/express";
import { withSessions } from "atomic-session/node";
import { MemoryStore } from "atomic-session/stores/memory";
import { type IoRedisClient, type NodeRedisClient, RedisStore } from "atomic-session/stores/redis";
import { cookiePair, metaFor, newKey, openSession } from "atomic-session/testing";
import express from "express";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { MAX_PENDING_BYTES } from "../../src/stores/redis/connect.js";

const DEADLINE_MS = 500;
/** Slack for a loaded 2-core machine. */
const MARGIN_MS = 1_500;
const RECOVERY_MS = 15_000;

async function elapsed(run: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await run().then(
    () => undefined,
    (failure: unknown) => failure,
  );
  return { error, ms: performance.now() - started };
}

/** Rejects with StoreUnavailableError (a 503) before the deadline plus a margin; resolves how long it took. */
async function expectUnavailable(run: () => Promise<unknown>): Promise<number> {
  const { error, ms } = await elapsed(run);
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect((error as StoreUnavailableError).status).toBe(503);
  expect((error as StoreUnavailableError).headers["Retry-After"]).toMatch(/^[1-9]\d*$/);
  expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  return ms;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Flavor {
  name: string;
  /** Whether the client holds commands while disconnected and sends them on reconnection. */
  queuesWhileDisconnected: boolean;
  connect(url: string): Promise<{ client: NodeRedisClient | IoRedisClient; close(): Promise<void> }>;
}

const flavors: Flavor[] = [
  {
    name: "node-redis (disableOfflineQueue)",
    queuesWhileDisconnected: false,
    async connect(url) {
      const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 200 } });
      client.on("error", () => {});
      await client.connect();
      return { client, close: async () => client.destroy() };
    },
  },
  {
    name: "ioredis (default options: offline queue on)",
    queuesWhileDisconnected: true,
    async connect(url) {
      const client = new Redis(url, { retryStrategy: () => 200 });
      client.on("error", () => {});
      await client.ping();
      return { client, close: async () => client.disconnect() };
    },
  },
  {
    name: "ioredis (enableOfflineQueue: false)",
    queuesWhileDisconnected: false,
    async connect(url) {
      const client = new Redis(url, { enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => 200 });
      client.on("error", () => {});
      await client.connect();
      return { client, close: async () => client.disconnect() };
    },
  },
];

for (const flavor of flavors) {
  describe(`SessionManager + RedisStore on ${flavor.name}: every store call ends within the deadline`, () => {
    let redis: RedisServer;
    let close: () => Promise<void>;
    let manager: SessionManager;

    beforeAll(async () => {
      redis = await startRedisServer({ appendonly: true });
      const connected = await flavor.connect(redis.url);
      close = connected.close;
      manager = new SessionManager({ store: new RedisStore({ client: connected.client }), storeTimeoutMs: DEADLINE_MS });
    });
    afterAll(async () => {
      await close?.();
      await redis?.stop();
    });

    /** A session with n = 1, and its cookie. */
    async function newSession(): Promise<string> {
      const { session, response } = openSession(manager);
      expect(await session.increment("n")).toBe(1);
      return cookiePair(response.cookie);
    }

    const answers = () =>
      manager.checkHealth().then(
        () => true,
        () => false,
      );

    it("DEBUG SLEEP from another connection: reads, writes and the health check fail at the deadline; then the cookie works again", async () => {
      const cookie = await newSession();
      const sleeper = createClient({ url: redis.url });
      sleeper.on("error", () => {});
      await sleeper.connect();
      try {
        const sleeping = sleeper.sendCommand(["DEBUG", "SLEEP", "2"]);
        await delay(100);
        const durations = await Promise.all([
          expectUnavailable(() => openSession(manager, cookie).session.increment("n")),
          expectUnavailable(() => openSession(manager, cookie).session.exists()),
          expectUnavailable(() => openSession(manager).session.login("ada")),
          expectUnavailable(() => manager.checkHealth()),
        ]);
        // The deadline ended them: Redis was still asleep.
        for (const ms of durations) expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
        await sleeping;
      } finally {
        sleeper.destroy();
      }
      await expect.poll(answers, { timeout: RECOVERY_MS, interval: 100 }).toBe(true);
      // The stalled increment failed at the deadline, but it had reached Redis, which ran it
      // on waking: a 503 from the deadline is an unknown outcome (see the README).
      expect(await openSession(manager, cookie).session.increment("n")).toBe(3);
    });

    it("SIGSTOP: calls fail at the deadline; SIGCONT: the cookie works again", async () => {
      const cookie = await newSession();
      redis.pause();
      try {
        await expectUnavailable(() => openSession(manager, cookie).session.increment("n"));
        await expectUnavailable(() => openSession(manager, cookie).session.get("n"));
        await expectUnavailable(() => manager.checkHealth());
      } finally {
        redis.resume();
      }
      await expect.poll(answers, { timeout: RECOVERY_MS, interval: 100 }).toBe(true);
      // As with DEBUG SLEEP: the frozen Redis ran the timed-out increment once thawed.
      expect(await openSession(manager, cookie).session.increment("n")).toBe(3);
    });

    it("SIGKILL: calls fail within the deadline; restarted with AOF, the cookie works again and the count goes on", async () => {
      const cookie = await newSession();
      await redis.kill("SIGKILL");
      await expectUnavailable(() => openSession(manager, cookie).session.increment("n"));
      await expectUnavailable(() => openSession(manager).session.increment("n"));
      await expectUnavailable(() => manager.checkHealth());
      await redis.restart();
      await expect.poll(answers, { timeout: RECOVERY_MS, interval: 100 }).toBe(true);
      // A client with an offline queue sends the timed-out increment once reconnected.
      expect(await openSession(manager, cookie).session.increment("n")).toBe(flavor.queuesWhileDisconnected ? 3 : 2);
    });
  });
}

describe("RedisStore built from a URL, against a frozen Redis", () => {
  let redis: RedisServer;
  let store: RedisStore;
  beforeAll(async () => {
    redis = await startRedisServer();
    store = new RedisStore({ url: redis.url });
  });
  afterAll(async () => {
    redis?.resume();
    await store?.dispose();
    await redis?.stop();
  });

  const healthy = (manager: SessionManager) =>
    expect
      .poll(
        () =>
          manager.checkHealth().then(
            () => true,
            () => false,
          ),
        { timeout: RECOVERY_MS, interval: 100 },
      )
      .toBe(true);

  it("sheds load by the deadline, not by a command count: 3,000 calls all end at the deadline, none refused", async () => {
    const manager = new SessionManager({ store, storeTimeoutMs: DEADLINE_MS });
    await manager.checkHealth();
    redis.pause();
    const calls = 3_000;
    let outcomes: { error: unknown; ms: number }[];
    try {
      outcomes = await Promise.all(Array.from({ length: calls }, () => elapsed(() => manager.checkHealth())));
    } finally {
      redis.resume();
    }
    expect(outcomes.every(({ error }) => error instanceof StoreUnavailableError)).toBe(true);
    expect(outcomes.filter(({ error }) => (error as StoreUnavailableError).timedOut)).toHaveLength(calls);
    for (const { ms } of outcomes) expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    await healthy(manager);
  });

  it("bounds the memory of commands held for a frozen Redis: past the bound, calls fail at once; once it answers, they work", async () => {
    const manager = new SessionManager({ store, storeTimeoutMs: DEADLINE_MS });
    await manager.checkHealth();
    const megabyte = JSON.stringify("x".repeat(1_048_576 - 2));
    const creates = Math.ceil(MAX_PENDING_BYTES / 1_048_576) + 16;
    redis.pause();
    let outcomes: { error: unknown; ms: number }[];
    try {
      // Straight to the store (the manager would refuse sessions over its 64 KiB cap): 1 MiB each.
      const held = Array.from({ length: creates }, () =>
        elapsed(() => store.create(newKey(), { meta: metaFor(Date.now()), fields: new Map([["big", megabyte]]) })),
      );
      await delay(DEADLINE_MS);
      redis.resume();
      outcomes = await Promise.all(held);
    } finally {
      redis.resume();
    }
    const refused = outcomes.filter(({ error }) => error !== undefined);
    const written = outcomes.filter(({ error }) => error === undefined);
    expect(written.length).toBeLessThanOrEqual(MAX_PENDING_BYTES / 1_048_576);
    expect(written.length).toBeGreaterThan(MAX_PENDING_BYTES / 1_048_576 / 2);
    expect(refused.length).toBeGreaterThanOrEqual(16);
    for (const { error, ms } of refused) {
      expect(String(error)).toMatch(/refusing more until it does/);
      // At once, while Redis was still frozen: not at a deadline.
      expect(ms).toBeLessThan(DEADLINE_MS);
    }
    // The ones it held were written once Redis answered.
    for (const { ms } of written) expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    await healthy(manager);
  }, 60_000);
});

/** `store`, except that every write but `rotate` and `destroy` fails, as if Redis died mid-request. */
function failingWrites(store: SessionStore): SessionStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === "increment" || property === "apply" || property === "create") {
        return async () => {
          throw new Error("connection lost");
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("adapters: a 503 never carries a Set-Cookie that replaces the client's cookie", () => {
  let servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    servers = [];
  });

  async function listen(server: Server): Promise<string> {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const cases: [string, (manager: SessionManager) => Server][] = [
    [
      "node:http",
      (manager) =>
        createServer(
          withSessions(
            manager,
            async (_req, res, session) => {
              await session.regenerate();
              await session.increment("n");
              res.end("ok");
            },
            { onError: () => {} },
          ),
        ),
    ],
    [
      "Express 5",
      (manager) => {
        const app = express();
        app.use(sessionMiddleware(manager));
        app.get("/", async (req, res) => {
          await req.session.regenerate();
          await req.session.increment("n");
          res.send("ok");
        });
        // Express's own error handling answers; "test" keeps it from logging the error.
        app.set("env", "test");
        return createServer(app);
      },
    ],
  ];

  for (const [name, serve] of cases) {
    it(`${name}: a store failure after a rotation in the same request is a 503 with Retry-After and no Set-Cookie`, async () => {
      const memory = new MemoryStore();
      const setup = new SessionManager({ store: memory });
      const { session, response } = openSession(setup);
      await session.set("n", 1);
      const cookie = cookiePair(response.cookie);

      const manager = new SessionManager({ store: failingWrites(memory), storeTimeoutMs: DEADLINE_MS });
      const url = await listen(serve(manager));
      const answer = await fetch(`${url}/`, { headers: { cookie } });
      await answer.arrayBuffer();
      expect(answer.status).toBe(503);
      expect(answer.headers.get("retry-after")).toBe("1");
      expect(answer.headers.getSetCookie()).toEqual([]);
    });
  }
});
