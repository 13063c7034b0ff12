import { createServer, type Server, type Socket } from "node:net";
import { SessionManager, StoreUnavailableError } from "atomic-session";
import { PostgresStore } from "atomic-session/stores/postgres";
import { cookiePair, openSession } from "atomic-session/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresCluster, startPostgresCluster } from "../../../../test-support/postgres.js";
import { delay, freePort } from "../../../../test-support/processes.js";

/** The store's statement deadline and the manager's, as an application would set them: the same. */
const DEADLINE_MS = 500;
/** A loaded machine is slow: bounds are a few deadlines, not one. */
const MARGIN_MS = 3 * DEADLINE_MS;

/** Runs `attempt` until it resolves, for at most `withinMs`; resolves its value and how long it took. */
async function eventually<T>(attempt: () => Promise<T>, withinMs: number): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    try {
      return { value: await attempt(), ms: Date.now() - started };
    } catch (error) {
      if (Date.now() - started > withinMs) throw error;
      await delay(100);
    }
  }
}

/** How `promise` settles, and after how long. */
async function timed(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await promise;
    return { error: undefined, ms: Date.now() - started };
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
}

describe("PostgreSQL store faults (a private cluster)", () => {
  let cluster: PostgresCluster;
  let store: PostgresStore;
  let manager: SessionManager;
  let cookie: string;
  let visits = 0;

  /** One visit through the manager: the counter's next value, or the error. */
  const visit = () => openSession(manager, cookie).session.increment("visits");

  beforeAll(async () => {
    cluster = await startPostgresCluster();
    store = new PostgresStore({ url: cluster.url, timeoutMs: DEADLINE_MS, maxConnections: 4 });
    manager = new SessionManager({ store, storeTimeoutMs: DEADLINE_MS });
    const first = openSession(manager);
    visits = await first.session.increment("visits");
    cookie = cookiePair(first.response.cookie);
  });
  afterAll(async () => {
    cluster?.resume();
    await store?.dispose();
    await cluster?.destroy();
  });

  it("a stopped server: every call is refused at once (503), and the same store works once it is back", async () => {
    expect(await visit()).toBe(++visits);
    await cluster.stop();
    for (let i = 0; i < 5; i++) {
      const { error, ms } = await timed(visit());
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).timedOut).toBe(false);
      expect(ms).toBeLessThan(MARGIN_MS);
    }
    const direct = await timed(store.ping());
    expect(direct.error).toBeInstanceOf(Error);
    expect(direct.ms).toBeLessThan(MARGIN_MS);
    await cluster.start();
    // No restart of the application: the pool opens new connections, and the session is still there.
    const { value } = await eventually(visit, 10_000);
    expect(value).toBe(++visits);
  });

  it("a frozen server (SIGSTOP): each call fails within its deadline, the store itself gives up too, and all is well after SIGCONT", async () => {
    expect(await visit()).toBe(++visits);
    cluster.pause();
    try {
      // The store alone, without the manager's deadline, still rejects: query_timeout for a statement
      // sent on an open connection (at least one is idle in the pool), connectionTimeoutMillis for a
      // connection that no one answers or that never frees up. Nothing waits for ever.
      const direct = await Promise.all(Array.from({ length: 6 }, () => timed(store.ping())));
      for (const { error, ms } of direct) {
        expect((error as Error).message).toMatch(/^(Query read timeout|timeout exceeded when trying to connect)$/);
        expect(ms).toBeLessThan(4 * DEADLINE_MS + MARGIN_MS);
      }
      expect(direct.map(({ error }) => (error as Error).message)).toContain("Query read timeout");
      // More calls than the pool has connections: the ones waiting for a connection fail too.
      const outcomes = await Promise.all(Array.from({ length: 8 }, () => timed(visit())));
      for (const { error, ms } of outcomes) {
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(ms).toBeLessThan(MARGIN_MS);
      }
    } finally {
      cluster.resume();
    }
    const { value } = await eventually(visit, 10_000);
    // A statement already on its way when the server froze runs when it thaws, although its caller
    // gave up: a timed-out write's outcome is unknown (StoreUnavailableError.timedOut). Nothing is lost.
    expect(value).toBeGreaterThan(visits);
    expect(value).toBeLessThanOrEqual(visits + 1 + 8);
    visits = value;
    expect(await visit()).toBe(++visits);
  });

  it("a store created while the server is down connects once it is up (the schema is created then)", async () => {
    await cluster.stop();
    const late = new PostgresStore({ url: cluster.url, table: "created_later", timeoutMs: DEADLINE_MS });
    try {
      const refused = await timed(late.ping());
      expect(refused.error).toBeInstanceOf(Error);
      expect(refused.ms).toBeLessThan(MARGIN_MS);
      await cluster.start();
      await eventually(() => late.ping(), 10_000);
      const key = "k".repeat(43);
      const now = Date.now();
      const meta = { createdAt: now, lastSeenAt: now, absoluteExpiresAt: now + 60_000, expiresAt: now + 60_000 };
      expect(await late.create(key, { meta, fields: new Map([["a", "1"]]) })).toBe(true);
    } finally {
      await late.dispose();
    }
    expect(await visit()).toBe(++visits);
  });
});

describe("PostgreSQL store: an address that never answers", () => {
  let silent: Server;
  let port: number;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // Accepts TCP connections and never says a word, like a host behind a dead path.
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it("rejects within the deadline, directly and as a 503 through the manager", async () => {
    const store = new PostgresStore({ url: `postgres://postgres@127.0.0.1:${port}/postgres`, timeoutMs: DEADLINE_MS });
    const manager = new SessionManager({ store, storeTimeoutMs: DEADLINE_MS });
    try {
      const direct = await timed(store.ping());
      expect(direct.error).toBeInstanceOf(Error);
      expect(direct.ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
      const { error, ms } = await timed(manager.checkHealth());
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(ms).toBeLessThan(MARGIN_MS);
    } finally {
      await store.dispose();
    }
  });

  it("rejects at once when nothing listens", async () => {
    const closed = await freePort();
    const store = new PostgresStore({ url: `postgres://postgres@127.0.0.1:${closed}/postgres`, timeoutMs: DEADLINE_MS });
    try {
      const { error, ms } = await timed(store.ping());
      expect(String((error as Error).message)).toMatch(/ECONNREFUSED|connect/);
      expect(ms).toBeLessThan(MARGIN_MS);
    } finally {
      await store.dispose();
    }
  });
});
