/**
 * Builds the node-redis clients the Redis store creates from `url`, `cluster` or `sentinel`
 * options, and owns: fail-fast while disconnected, bounded memory while stalled, reconnection
 * with capped backoff, an `error` listener. The only module of the store that loads node-redis;
 * the store imports it on demand, so an application that injects an ioredis client never does.
 * @module
 */
import { createClient, createCluster, createSentinel } from "redis";
import {
  Backlog,
  type ClientSource,
  type NodeAddress,
  type NodeRedisClient,
  type NodeRedisClusterClient,
  NodeRedisClusterConnection,
  NodeRedisConnection,
  type NodeRedisSentinelClient,
  NodeRedisSentinelConnection,
  type RedisConnection,
} from "./client.js";

/** Most time between two reconnection attempts of a client the store created. */
const MAX_RECONNECT_DELAY_MS = 2_000;
/**
 * Most memory the commands of a client the store created may hold while Redis has not answered
 * them (see `Backlog`): 64 MiB. A command whose caller's deadline has passed still waits for a
 * stalled server's reply, so without a bound a stall would pile commands up for as long as it
 * lasts. Load is shed by the store deadline (storeTimeoutMs, a 503), never by a command count:
 * a visit costs about 400 bytes here, so a healthy Redis answering a burst of 100,000 concurrent
 * requests stays far below it; it is reached only when Redis stops answering for a while (at
 * 10,000 requests a second, after some 15 seconds), or by thousands of concurrent writes of
 * sessions near the 64 KiB size cap.
 */
export const MAX_PENDING_BYTES = 64 * 1_048_576;

/**
 * A node-redis client the store creates from `url` and owns:
 * - `disableOfflineQueue`: while disconnected, commands fail at once instead of queueing
 *   for a reconnection that may never come (the core then answers 503 quickly);
 * - a {@link MAX_PENDING_BYTES} bound on what waits for a stalled server (no cap on the number
 *   of commands: node-redis's `commandsQueueMaxLength` is left off);
 * - a capped exponential `reconnectStrategy` with jitter: reconnects forever, at most every 2 s;
 * - an `error` listener: node-redis emits `error` on every failed (re)connection, and an
 *   `error` event nobody listens to crashes the process;
 * - the database number comes from the URL path (`redis://host:6379/3`), which node-redis
 *   SELECTs on every (re)connection.
 * Until the first connection is up, commands wait for it; once an attempt has failed they
 * fail fast instead, with the cause.
 */
export function connectUrl(url: string): RedisConnection {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: 5_000, reconnectStrategy: reconnectDelay },
  });
  let lastError: unknown;
  let everReady = false;
  let closed = false;
  client.on("error", (error: unknown) => {
    lastError = error;
  });
  // Settles with the first connection or the first failed attempt, whichever comes first.
  const firstOutcome = new Promise<void>((resolve, reject) => {
    client.once("ready", () => {
      everReady = true;
      resolve();
    });
    client.once("error", (error: unknown) => reject(new Error("Redis is not reachable", { cause: error })));
  });
  firstOutcome.catch(() => {});
  // connect() keeps retrying (reconnectStrategy) and settles once connected or closed.
  client.connect().catch((error: unknown) => {
    lastError = error;
  });

  const beforeCommand = async (): Promise<void> => {
    if (everReady || closed) return;
    if (lastError !== undefined) throw new Error("Redis is not reachable", { cause: lastError });
    await firstOutcome;
  };

  const closeClient = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (!client.isReady) {
      // Not connected (or still trying): nothing to flush, stop the reconnection loop now.
      if (client.isOpen) client.destroy();
      return;
    }
    await closeGracefully(
      () => client.close(),
      () => {
        if (client.isOpen) client.destroy();
      },
    );
  };

  return new NodeRedisConnection(client as unknown as NodeRedisClient, {
    beforeCommand,
    close: closeClient,
    backlog: new Backlog(MAX_PENDING_BYTES),
  });
}

/**
 * Closes a client the store built, waiting for its pending replies, but at most 2 s: a stalled
 * server must not hang dispose() forever. Past that, or when closing fails, it is destroyed.
 */
async function closeGracefully(close: () => Promise<unknown>, destroy: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), 2_000);
  });
  const outcome = await Promise.race([
    close().then(
      () => "closed" as const,
      () => "failed" as const,
    ),
    timedOut,
  ]);
  clearTimeout(timer);
  if (outcome !== "closed") await Promise.resolve(destroy()).catch(() => {});
}

/** Capped exponential backoff with jitter for every client the store builds: at most every 2 s. */
function reconnectDelay(retries: number): number {
  return Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 50);
}

/** How the store brings up, and takes down, a client it builds. */
interface Lifecycle<C> {
  create(): C;
  connect(client: C): Promise<unknown>;
  /** Graceful: waits for pending replies. */
  close(client: C): Promise<unknown>;
  /** At once. */
  destroy(client: C): unknown;
}

/**
 * A client the store builds and owns. Its first connection is retried (a fresh client per
 * attempt, with backoff) until it succeeds or the store is disposed, so a store created while
 * Redis is down connects once Redis is up. Until the first connection, commands wait for the
 * first attempt; once an attempt has failed they fail fast, with its cause. After that, the
 * client's own reconnection and failover handling take over.
 */
function ownedClient<C>(lifecycle: Lifecycle<C>): ClientSource<C> {
  let client: C | undefined;
  let pending: C | undefined;
  let lastError: unknown;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let settle: ((error?: unknown) => void) | undefined;
  const first = new Promise<void>((resolve, reject) => {
    settle = (error) => {
      settle = undefined;
      if (error === undefined) resolve();
      else reject(error);
    };
  });
  first.catch(() => {});

  const attempt = async (retries: number): Promise<void> => {
    if (closed) return;
    const candidate = lifecycle.create();
    pending = candidate;
    try {
      await lifecycle.connect(candidate);
      pending = undefined;
      if (closed) {
        await lifecycle.destroy(candidate);
        return;
      }
      client = candidate;
      lastError = undefined;
      settle?.();
    } catch (error) {
      pending = undefined;
      await Promise.resolve(lifecycle.destroy(candidate)).catch(() => {});
      lastError = error;
      settle?.(new Error("Redis is not reachable", { cause: error }));
      if (closed) return;
      timer = setTimeout(() => void attempt(retries + 1), reconnectDelay(retries));
      timer.unref();
    }
  };
  void attempt(0);

  return {
    async get() {
      if (client !== undefined) return client;
      if (closed) throw new Error("the Redis store was disposed");
      if (lastError !== undefined) throw new Error("Redis is not reachable", { cause: lastError });
      await first;
      if (client === undefined) throw new Error("Redis is not reachable");
      return client;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      if (pending !== undefined) await Promise.resolve(lifecycle.destroy(pending)).catch(() => {});
      const open = client;
      client = undefined;
      if (open === undefined) return;
      await closeGracefully(
        () => lifecycle.close(open),
        () => lifecycle.destroy(open),
      );
    },
  };
}

/** Socket options for every node connection of a cluster or sentinel client the store builds. */
function nodeSocket() {
  return { connectTimeout: 5_000, reconnectStrategy: reconnectDelay };
}

/**
 * A node-redis cluster client the store builds from seed nodes and owns: `disableOfflineQueue`
 * on every node connection (a command for a dead master fails at once, and the store then asks
 * for a fresh slot map), {@link MAX_PENDING_BYTES} over all nodes, reconnection with capped
 * backoff, and an `error` listener.
 */
export function connectCluster(nodes: readonly NodeAddress[]): RedisConnection {
  let connection: NodeRedisClusterConnection | undefined;
  const source = ownedClient<NodeRedisClusterClient>({
    create() {
      const cluster = createCluster({
        rootNodes: nodes.map(({ host, port }) => ({ socket: { host, port } })),
        defaults: { disableOfflineQueue: true, socket: nodeSocket() },
      });
      cluster.on("error", () => {});
      const client = cluster as unknown as NodeRedisClusterClient;
      connection?.follow(client);
      return client;
    },
    connect: (client) => (client as unknown as ReturnType<typeof createCluster>).connect(),
    close: (client) => (client as unknown as ReturnType<typeof createCluster>).close(),
    destroy: (client) => (client as unknown as ReturnType<typeof createCluster>).destroy(),
  });
  connection = new NodeRedisClusterConnection(source, new Backlog(MAX_PENDING_BYTES));
  return connection;
}

/**
 * Asks the sentinels, one by one, for the address of master `name`; rejects with every reason
 * when none names it. node-redis's own first connection retries for many seconds (and prints
 * each failure to the console), so the store asks first and fails fast.
 */
async function askSentinels(name: string, sentinels: readonly NodeAddress[]): Promise<void> {
  const reasons: string[] = [];
  for (const { host, port } of sentinels) {
    const client = createClient({ socket: { host, port, connectTimeout: 2_000, reconnectStrategy: false } });
    client.on("error", () => {});
    try {
      await client.connect();
      const reply = await client.sendCommand(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
      if (Array.isArray(reply) && reply.length === 2) return;
      reasons.push(`${host}:${port} knows no master named ${name}`);
    } catch (error) {
      reasons.push(`${host}:${port}: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      if (client.isOpen) client.destroy();
    }
  }
  throw new Error(`no sentinel named the master ${name} (${reasons.join("; ")})`);
}

/**
 * A node-redis sentinel client the store builds and owns: it asks the sentinels for the
 * master `name`, and reconnects to the new master after a failover. Commands fail at once
 * while the master is unreachable (`disableOfflineQueue`); {@link MAX_PENDING_BYTES} bounds
 * what waits for a stalled one.
 */
export function connectSentinel(name: string, sentinels: readonly NodeAddress[]): RedisConnection {
  const source = ownedClient<NodeRedisSentinelClient>({
    create() {
      const sentinel = createSentinel({
        name,
        sentinelRootNodes: sentinels.map(({ host, port }) => ({ host, port })),
        nodeClientOptions: { disableOfflineQueue: true, socket: nodeSocket() },
        sentinelClientOptions: { socket: { connectTimeout: 5_000 } },
      });
      sentinel.on("error", () => {});
      return sentinel as unknown as NodeRedisSentinelClient;
    },
    async connect(client) {
      await askSentinels(name, sentinels);
      await (client as unknown as ReturnType<typeof createSentinel>).connect();
    },
    close: (client) => (client as unknown as ReturnType<typeof createSentinel>).close(),
    destroy: (client) => (client as unknown as ReturnType<typeof createSentinel>).destroy(),
  });
  return new NodeRedisSentinelConnection(source, new Backlog(MAX_PENDING_BYTES));
}
