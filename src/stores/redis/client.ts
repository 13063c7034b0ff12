/**
 * The little the Redis store needs from a Redis client, and its implementations: node-redis v5
 * (standalone, `createCluster`, `createSentinel`) and ioredis v5 (`Redis`, with or without
 * sentinels, and `Cluster`). Internal: the store's options accept the clients themselves,
 * and this module hides their differences.
 *
 * Every command names the key it touches, so that a Cluster client routes it to the node that
 * owns the key's slot (and follows `MOVED`/`ASK` there); EVALSHA and its NOSCRIPT fallback go
 * to that same node. SCAN and PING run on every master.
 * @module
 */
import { createClient, createCluster, createSentinel, ErrorReply } from "redis";
import type { LuaScript } from "./scripts.js";

/** A Redis reply with Buffers decoded as UTF-8: what the store parses. */
export type RedisReply = string | number | null | RedisReply[];

/** A node-redis v5 client (`createClient()`), connected by its owner. */
export interface NodeRedisClient {
  sendCommand(args: ReadonlyArray<string>): Promise<unknown>;
  readonly isOpen: boolean;
}

/** An ioredis v5 client (`new Redis()`). */
export interface IoRedisClient {
  call(command: string, args: (string | Buffer | number)[]): Promise<unknown>;
  readonly status: string;
  readonly isCluster: boolean;
}

/** An ioredis v5 Cluster client (`new Cluster([...])`). */
export interface IoRedisClusterClient extends IoRedisClient {
  /** The masters as last discovered: SCAN and PING run on each. */
  nodes(role: "master"): { call(command: string, args: (string | Buffer | number)[]): Promise<unknown> }[];
}

/** A node-redis v5 cluster client (`createCluster()`), connected by its owner. */
export interface NodeRedisClusterClient {
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  readonly isOpen: boolean;
  /** The masters as last discovered: SCAN and PING run on each. */
  readonly masters: readonly object[];
  nodeClient(node: never): Promise<{ sendCommand(args: string[]): Promise<unknown> }>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  listenerCount(event: string): number;
}

/** A node-redis v5 sentinel client (`createSentinel()`), connected by its owner. */
export interface NodeRedisSentinelClient {
  sendCommand(isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  readonly isOpen: boolean;
  getMasterNode(): unknown;
}

/** Any client the store accepts as `client`. */
export type AnyRedisClient = NodeRedisClient | NodeRedisClusterClient | NodeRedisSentinelClient | IoRedisClient | IoRedisClusterClient;

export interface RedisConnection {
  readonly flavor: "node-redis" | "ioredis";
  /**
   * Runs `script` with EVALSHA on the node that owns `keys[0]` (all keys must share a slot),
   * falling back to EVAL (which also caches it) when the server answers NOSCRIPT.
   */
  runScript(script: LuaScript, keys: readonly [string, ...string[]], args: readonly string[]): Promise<RedisReply>;
  /** Runs one plain command (`args[0]` is its name) that touches only `key`. */
  command(key: string, args: readonly string[]): Promise<RedisReply>;
  /** Resolves on PONG. */
  ping(): Promise<void>;
  /** Every key matching the glob `pattern` (SCAN: may repeat a key, never blocks the server). */
  scan(pattern: string): AsyncGenerator<string[]>;
  /** Closes the client when the store created it; lets go of an injected one (which stays open). */
  close(): Promise<void>;
}

/** What the store was handed as `client`, once recognised. */
export type DetectedClient =
  | { flavor: "node-redis"; client: NodeRedisClient }
  | { flavor: "node-redis-cluster"; client: NodeRedisClusterClient }
  | { flavor: "node-redis-sentinel"; client: NodeRedisSentinelClient }
  | { flavor: "ioredis"; client: IoRedisClient }
  | { flavor: "ioredis-cluster"; client: IoRedisClusterClient };

/**
 * Recognises an injected client by its shape (importing ioredis just to run `instanceof`
 * would make it a runtime dependency). Returns a reason string when it is not usable.
 */
export function detectClient(client: unknown): DetectedClient | string {
  if (typeof client !== "object" || client === null) return "client must be a node-redis or ioredis client object";
  const candidate = client as Record<string, unknown>;
  if (typeof candidate.call === "function" && typeof candidate.status === "string" && typeof candidate.isCluster === "boolean") {
    const keyPrefix = (candidate.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
    // ioredis would prefix the keys of most commands but not SCAN's pattern: one prefix, the store's, keeps them in step.
    if (typeof keyPrefix === "string" && keyPrefix !== "")
      return "an ioredis client with keyPrefix is not supported: use the store's prefix option";
    if (candidate.isCluster) {
      if (typeof candidate.nodes !== "function") return "client looks like an ioredis Cluster without nodes(): use ioredis v5";
      return { flavor: "ioredis-cluster", client: client as IoRedisClusterClient };
    }
    return { flavor: "ioredis", client: client as IoRedisClient };
  }
  if (typeof candidate.sendCommand === "function" && typeof candidate.isOpen === "boolean") {
    if (typeof candidate.getMasterNode === "function" && typeof candidate.getReplicaNodes === "function") {
      return { flavor: "node-redis-sentinel", client: client as NodeRedisSentinelClient };
    }
    if ("masters" in candidate || typeof candidate.getSlotRandomNode === "function") {
      if (typeof candidate.nodeClient !== "function" || typeof candidate.on !== "function") {
        return "client looks like a node-redis cluster without nodeClient(): use node-redis v5 (createCluster)";
      }
      return { flavor: "node-redis-cluster", client: client as NodeRedisClusterClient };
    }
    return { flavor: "node-redis", client: client as NodeRedisClient };
  }
  return "client must be a node-redis v5 client (createClient, createCluster, createSentinel) or an ioredis v5 client (new Redis(), new Cluster())";
}

/** Replies with Buffers (a client configured with a Buffer type mapping) decoded as UTF-8 text. */
function normalize(reply: unknown): RedisReply {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "string" || typeof reply === "number") return reply;
  if (Buffer.isBuffer(reply)) return reply.toString("utf8");
  if (Array.isArray(reply)) return reply.map(normalize);
  if (typeof reply === "bigint") return Number(reply);
  return String(reply);
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

/** The EVALSHA/EVAL logic once, over any way of sending one raw command routed by a key. */
abstract class BaseConnection implements RedisConnection {
  abstract readonly flavor: "node-redis" | "ioredis";
  protected abstract send(key: string | undefined, args: string[]): Promise<unknown>;
  abstract close(): Promise<void>;

  async runScript(script: LuaScript, keys: readonly [string, ...string[]], args: readonly string[]): Promise<RedisReply> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return normalize(await this.send(keys[0], ["EVALSHA", script.sha1, ...tail]));
    } catch (error) {
      // The script cache is empty after a restart, a failover or SCRIPT FLUSH: send the source once.
      if (!isNoScript(error)) throw error;
      return normalize(await this.send(keys[0], ["EVAL", script.source, ...tail]));
    }
  }

  async command(key: string, args: readonly string[]): Promise<RedisReply> {
    return normalize(await this.send(key, [...args]));
  }

  async ping(): Promise<void> {
    const reply = normalize(await this.send(undefined, ["PING"]));
    if (reply !== "PONG") throw new Error(`Redis answered PING with ${JSON.stringify(reply)}`);
  }

  scan(pattern: string): AsyncGenerator<string[]> {
    return scanNode((args) => this.send(undefined, args), pattern);
  }
}

/** Every key matching `pattern` on one node, batch by batch. */
async function* scanNode(send: (args: string[]) => Promise<unknown>, pattern: string): AsyncGenerator<string[]> {
  let cursor = "0";
  do {
    const reply = normalize(await send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]));
    if (!Array.isArray(reply) || typeof reply[0] !== "string" || !Array.isArray(reply[1])) {
      throw new Error("Redis answered SCAN with an unexpected reply");
    }
    cursor = reply[0];
    yield reply[1].filter((key): key is string => typeof key === "string");
  } while (cursor !== "0");
}

function expectPong(reply: unknown): void {
  const normalized = normalize(reply);
  if (normalized !== "PONG") throw new Error(`Redis answered PING with ${JSON.stringify(normalized)}`);
}

class NodeRedisConnection extends BaseConnection {
  readonly flavor = "node-redis";
  constructor(
    readonly client: NodeRedisClient,
    /** Resolves (or rejects fast) until the store's own client first connects; absent for injected clients. */
    private readonly beforeCommand?: () => Promise<void>,
    private readonly closeClient?: () => Promise<void>,
  ) {
    super();
  }

  protected async send(_key: string | undefined, args: string[]): Promise<unknown> {
    if (this.beforeCommand !== undefined) await this.beforeCommand();
    return this.client.sendCommand(args);
  }

  async close(): Promise<void> {
    await this.closeClient?.();
  }
}

class IoRedisConnection extends BaseConnection {
  readonly flavor = "ioredis";
  constructor(readonly client: IoRedisClient) {
    super();
  }

  protected send(_key: string | undefined, args: string[]): Promise<unknown> {
    const [command, ...rest] = args;
    return this.client.call(command as string, rest);
  }

  async close(): Promise<void> {
    // The store never creates ioredis clients, so it never closes one.
  }
}

/**
 * Where a connection gets its client: at once for an injected client, or once the first
 * connection of a client the store builds is up (see {@link ownedClient}).
 */
interface ClientSource<C> {
  get(): Promise<C>;
  /** Closes the client, when the store built it. */
  close(): Promise<void>;
}

function injected<C>(client: C): ClientSource<C> {
  const ready = Promise.resolve(client);
  return { get: () => ready, close: async () => {} };
}

/** Least time between two topology refreshes the store asks a node-redis cluster client for. */
const TOPOLOGY_REFRESH_MS = 500;

/** Errors after which a cluster's slot map may be stale: no connection, or a reply saying the cluster changed. */
function topologyMayHaveChanged(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (!(error instanceof ErrorReply)) return !/^(NOSCRIPT|WRONGTYPE|ERR|OOM)\b/.test(error.message);
  return /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|LOADING)\b/.test(error.message);
}

/**
 * A node-redis cluster (`createCluster`). node-redis refreshes its slot map only on `MOVED`:
 * when a master dies, the slots it served keep pointing at it even after a replica took
 * over. So on a connection error, `CLUSTERDOWN` and the like, and on every `node-error`
 * event, this asks the client to rediscover the topology (at most every 500 ms, in the
 * background), and the next command goes to the new master.
 */
class NodeRedisClusterConnection extends BaseConnection {
  readonly flavor = "node-redis";
  #lastRefresh = 0;
  readonly #followed: { client: NodeRedisClusterClient; listener: () => void }[] = [];

  constructor(private readonly source: ClientSource<NodeRedisClusterClient>) {
    super();
  }

  /** Refreshes the slot map whenever one of `client`'s node connections fails. */
  follow(client: NodeRedisClusterClient): void {
    const listener = () => this.#refresh(client);
    client.on("node-error", listener);
    this.#followed.push({ client, listener });
  }

  protected async send(key: string | undefined, args: string[]): Promise<unknown> {
    const client = await this.source.get();
    try {
      return await client.sendCommand(key, false, args);
    } catch (error) {
      if (topologyMayHaveChanged(error)) this.#refresh(client);
      throw error;
    }
  }

  override async ping(): Promise<void> {
    await Promise.all((await this.#masters()).map(async (send) => expectPong(await send(["PING"]))));
  }

  override async *scan(pattern: string): AsyncGenerator<string[]> {
    for (const send of await this.#masters()) yield* scanNode(send, pattern);
  }

  async close(): Promise<void> {
    for (const { client, listener } of this.#followed.splice(0)) client.off("node-error", listener);
    await this.source.close();
  }

  /** A way to send to each master the client knows now. */
  async #masters(): Promise<((args: string[]) => Promise<unknown>)[]> {
    const client = await this.source.get();
    const masters = [...client.masters];
    if (masters.length === 0) {
      this.#refresh(client);
      throw new Error("the Redis Cluster client knows no master (is it connected?)");
    }
    return masters.map((master) => async (args: string[]) => {
      try {
        const node = await client.nodeClient(master as never);
        return await node.sendCommand(args);
      } catch (error) {
        if (topologyMayHaveChanged(error)) this.#refresh(client);
        throw error;
      }
    });
  }

  #refresh(client: NodeRedisClusterClient): void {
    const now = Date.now();
    if (now - this.#lastRefresh < TOPOLOGY_REFRESH_MS) return;
    // A failed discovery emits `error` on the cluster: with nobody listening, that would crash the process.
    if (client.listenerCount("error") === 0) return;
    const slots = (client as unknown as { _slots?: { rediscover?: (startWith: unknown) => Promise<void> } })._slots;
    if (typeof slots?.rediscover !== "function") return;
    // Discovery starts from a node client's address; a connected master's answers first.
    const nodes = client.masters as readonly { client?: { isReady?: boolean } }[];
    const startWith = nodes.find((node) => node.client?.isReady === true)?.client ?? nodes.find((node) => node.client)?.client;
    if (startWith === undefined) return;
    this.#lastRefresh = now;
    slots.rediscover(startWith).catch(() => {});
  }
}

/** A node-redis sentinel client (`createSentinel`): it finds the master, and follows a failover, itself. */
class NodeRedisSentinelConnection extends BaseConnection {
  readonly flavor = "node-redis";
  constructor(private readonly source: ClientSource<NodeRedisSentinelClient>) {
    super();
  }

  protected async send(_key: string | undefined, args: string[]): Promise<unknown> {
    return (await this.source.get()).sendCommand(false, args);
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

/** An ioredis Cluster: it routes by key, follows MOVED/ASK and refreshes its slot map on failures itself. */
class IoRedisClusterConnection extends BaseConnection {
  readonly flavor = "ioredis";
  constructor(readonly client: IoRedisClusterClient) {
    super();
  }

  protected send(_key: string | undefined, args: string[]): Promise<unknown> {
    const [command, ...rest] = args;
    return this.client.call(command as string, rest);
  }

  override async ping(): Promise<void> {
    await Promise.all((await this.#masters()).map(async (node) => expectPong(await node.call("PING", []))));
  }

  override async *scan(pattern: string): AsyncGenerator<string[]> {
    for (const node of await this.#masters()) {
      yield* scanNode(([command, ...rest]) => node.call(command as string, rest), pattern);
    }
  }

  async close(): Promise<void> {
    // The store never creates ioredis clients, so it never closes one.
  }

  async #masters(): Promise<ReturnType<IoRedisClusterClient["nodes"]>> {
    let masters = this.client.nodes("master");
    if (masters.length === 0) {
      // Not connected yet (lazyConnect, or still starting): a routed command connects it, or waits until it is.
      expectPong(await this.client.call("PING", []));
      masters = this.client.nodes("master");
    }
    if (masters.length === 0) throw new Error("the ioredis Cluster knows no master");
    return masters;
  }
}

/** Wraps a client the application created and owns (the store never closes it). */
export function wrapClient(detected: DetectedClient): RedisConnection {
  switch (detected.flavor) {
    case "ioredis":
      return new IoRedisConnection(detected.client);
    case "ioredis-cluster":
      return new IoRedisClusterConnection(detected.client);
    case "node-redis":
      return new NodeRedisConnection(detected.client);
    case "node-redis-sentinel":
      return new NodeRedisSentinelConnection(injected(detected.client));
    case "node-redis-cluster": {
      const connection = new NodeRedisClusterConnection(injected(detected.client));
      connection.follow(detected.client);
      return connection;
    }
  }
}

/** Most time between two reconnection attempts of a client the store created. */
const MAX_RECONNECT_DELAY_MS = 2_000;
/**
 * Most commands a client the store created holds for Redis (unsent or awaiting a reply). A
 * command whose caller's deadline has passed still waits for a stalled server's reply, so
 * without a cap a stall would pile commands up in memory for as long as it lasts.
 */
const MAX_PENDING_COMMANDS = 1_000;

/**
 * A node-redis client the store creates from `url` and owns:
 * - `disableOfflineQueue`: while disconnected, commands fail at once instead of queueing
 *   for a reconnection that may never come (the core then answers 503 quickly);
 * - `commandsQueueMaxLength`: while connected to a stalled server, past
 *   {@link MAX_PENDING_COMMANDS} waiting commands new ones fail at once ("The queue is full");
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
    commandsQueueMaxLength: MAX_PENDING_COMMANDS,
    socket: {
      connectTimeout: 5_000,
      reconnectStrategy: (retries: number) =>
        Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 50),
    },
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
    // close() waits for pending replies; a stalled server must not hang dispose() forever.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 2_000);
    });
    const outcome = await Promise.race([client.close().then(() => "closed" as const), timedOut]);
    clearTimeout(timer);
    if (outcome === "timeout" && client.isOpen) client.destroy();
  };

  return new NodeRedisConnection(client as unknown as NodeRedisClient, beforeCommand, closeClient);
}

/** A Redis node as `host` and `port`. */
export interface NodeAddress {
  host: string;
  port: number;
}

/** Capped exponential backoff with jitter, as `connectUrl` uses: at most every 2 s. */
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
      // close() waits for pending replies; a stalled server must not hang dispose() forever.
      let stop: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        stop = setTimeout(() => resolve("timeout"), 2_000);
      });
      const outcome = await Promise.race([
        lifecycle.close(open).then(
          () => "closed" as const,
          () => "failed" as const,
        ),
        timedOut,
      ]);
      clearTimeout(stop);
      if (outcome !== "closed") await Promise.resolve(lifecycle.destroy(open)).catch(() => {});
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
 * for a fresh slot map), {@link MAX_PENDING_COMMANDS} per node, reconnection with capped
 * backoff, and an `error` listener.
 */
export function connectCluster(nodes: readonly NodeAddress[]): RedisConnection {
  let connection: NodeRedisClusterConnection | undefined;
  const source = ownedClient<NodeRedisClusterClient>({
    create() {
      const cluster = createCluster({
        rootNodes: nodes.map(({ host, port }) => ({ socket: { host, port } })),
        defaults: { disableOfflineQueue: true, commandsQueueMaxLength: MAX_PENDING_COMMANDS, socket: nodeSocket() },
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
  connection = new NodeRedisClusterConnection(source);
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
 * while the master is unreachable (`disableOfflineQueue`).
 */
export function connectSentinel(name: string, sentinels: readonly NodeAddress[]): RedisConnection {
  const source = ownedClient<NodeRedisSentinelClient>({
    create() {
      const sentinel = createSentinel({
        name,
        sentinelRootNodes: sentinels.map(({ host, port }) => ({ host, port })),
        nodeClientOptions: { disableOfflineQueue: true, commandsQueueMaxLength: MAX_PENDING_COMMANDS, socket: nodeSocket() },
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
  return new NodeRedisSentinelConnection(source);
}
