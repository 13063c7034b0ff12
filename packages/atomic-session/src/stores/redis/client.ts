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
import { rediscoverSlots } from "./node-redis-internals.js";
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
  call(command: string, args: (string | number)[]): Promise<unknown>;
  readonly status: string;
  readonly isCluster: boolean;
}

/** An ioredis v5 Cluster client (`new Cluster([...])`). */
export interface IoRedisClusterClient extends IoRedisClient {
  /** The masters as last discovered: SCAN and PING run on each. */
  nodes(role: "master"): { call(command: string, args: (string | number)[]): Promise<unknown> }[];
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
  /** The client itself, once connected: durability.ts pipelines a write and its WAIT on it. */
  detected(): Promise<DetectedClient>;
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

const utf8 = new TextDecoder();

/**
 * Replies with bytes (a client configured with a Buffer type mapping) decoded as UTF-8 text,
 * and RESP3 maps (a plain `HGETALL` on a RESP3 connection: a `Map` or an object, by type
 * mapping) flattened to the RESP2 list `[name, value, …]`, as scripts return them.
 */
export function normalize(reply: unknown): RedisReply {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === "string" || typeof reply === "number") return reply;
  if (reply instanceof Uint8Array) return utf8.decode(reply);
  if (Array.isArray(reply)) return reply.map(normalize);
  if (typeof reply === "bigint") return Number(reply);
  if (reply instanceof Map) return [...reply].flatMap(([name, value]) => [normalize(name), normalize(value)]);
  const prototype = typeof reply === "object" ? Object.getPrototypeOf(reply) : undefined;
  if (prototype === null || prototype === Object.prototype) {
    return Object.entries(reply as object).flatMap(([name, value]) => [name, normalize(value)]);
  }
  return String(reply);
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

/** A value of another type under the key (a foreign or damaged value): Redis answers WRONGTYPE. */
export function isWrongType(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("WRONGTYPE");
}

/** Redis refused a write because it is over `maxmemory` (policy `noeviction`, or nothing left to evict). */
export function isOutOfMemory(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("OOM");
}

/** What one command is assumed to hold beside its arguments (the client's command object, its promise, the encoded buffer's header). */
const COMMAND_OVERHEAD_BYTES = 256;

/**
 * A memory bound on the commands a client the store built holds for Redis: unsent, or sent and
 * awaiting a reply. The store's deadline ends the caller's wait, not the command: a stalled
 * Redis (frozen, swapping, DEBUG SLEEP) would otherwise keep every command of every request in
 * memory for as long as it lasts. Past `maxBytes` (the arguments' UTF-16 length plus
 * {@link COMMAND_OVERHEAD_BYTES} per command, a close estimate of what they hold) new commands
 * fail at once, until replies free room.
 */
export class Backlog {
  #bytes = 0;
  constructor(readonly maxBytes: number) {}

  /** Bytes of the commands held now. */
  get bytes(): number {
    return this.#bytes;
  }

  async run<T>(args: readonly string[], send: () => Promise<T>): Promise<T> {
    let size = COMMAND_OVERHEAD_BYTES;
    for (const arg of args) size += arg.length;
    if (this.#bytes + size > this.maxBytes && this.#bytes > 0) {
      throw new Error(
        `Redis has not answered ${Math.round(this.#bytes / 1_048_576)} MiB of commands; refusing more until it does (the store's bound is ${Math.round(this.maxBytes / 1_048_576)} MiB)`,
      );
    }
    this.#bytes += size;
    try {
      return await send();
    } finally {
      this.#bytes -= size;
    }
  }
}

/** The EVALSHA/EVAL logic once, over any way of sending one raw command routed by a key. */
abstract class BaseConnection implements RedisConnection {
  abstract readonly flavor: "node-redis" | "ioredis";
  /** Bounds the memory of commands held for Redis: set for the clients the store builds. */
  protected backlog: Backlog | undefined;
  protected abstract send(key: string | undefined, args: string[]): Promise<unknown>;
  abstract close(): Promise<void>;
  abstract detected(): Promise<DetectedClient>;

  #sendBounded(key: string | undefined, args: string[]): Promise<unknown> {
    const backlog = this.backlog;
    return backlog === undefined ? this.send(key, args) : backlog.run(args, () => this.send(key, args));
  }

  async runScript(script: LuaScript, keys: readonly [string, ...string[]], args: readonly string[]): Promise<RedisReply> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return normalize(await this.#sendBounded(keys[0], ["EVALSHA", script.sha1, ...tail]));
    } catch (error) {
      // The script cache is empty after a restart, a failover or SCRIPT FLUSH: send the source once.
      if (!isNoScript(error)) throw error;
      return normalize(await this.#sendBounded(keys[0], ["EVAL", script.source, ...tail]));
    }
  }

  async command(key: string, args: readonly string[]): Promise<RedisReply> {
    return normalize(await this.#sendBounded(key, [...args]));
  }

  async ping(): Promise<void> {
    const reply = normalize(await this.#sendBounded(undefined, ["PING"]));
    if (reply !== "PONG") throw new Error(`Redis answered PING with ${JSON.stringify(reply)}`);
  }

  scan(pattern: string): AsyncGenerator<string[]> {
    return scanNode((args) => this.#sendBounded(undefined, args), pattern);
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

/** How the store runs a client it built: see `connect.ts`. */
export interface OwnedClientOptions {
  /** Resolves (or rejects fast) until the client first connects. */
  beforeCommand?: () => Promise<void>;
  close?: () => Promise<void>;
  backlog?: Backlog;
}

export class NodeRedisConnection extends BaseConnection {
  readonly flavor = "node-redis";
  private readonly beforeCommand: (() => Promise<void>) | undefined;
  private readonly closeClient: (() => Promise<void>) | undefined;

  /** `owned` is absent for an injected client. */
  constructor(
    readonly client: NodeRedisClient,
    owned: OwnedClientOptions = {},
  ) {
    super();
    this.beforeCommand = owned.beforeCommand;
    this.closeClient = owned.close;
    this.backlog = owned.backlog;
  }

  protected async send(_key: string | undefined, args: string[]): Promise<unknown> {
    if (this.beforeCommand !== undefined) await this.beforeCommand();
    return this.client.sendCommand(args);
  }

  async detected(): Promise<DetectedClient> {
    if (this.beforeCommand !== undefined) await this.beforeCommand();
    return { flavor: "node-redis", client: this.client };
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

  async detected(): Promise<DetectedClient> {
    return { flavor: "ioredis", client: this.client };
  }
}

/**
 * Where a connection gets its client: at once for an injected client, or once the first
 * connection of a client the store builds is up (see {@link ownedClient}).
 */
export interface ClientSource<C> {
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

/**
 * Errors after which a cluster's slot map may be stale: no connection, or a reply saying the
 * cluster changed. (A server's error replies are node-redis `ErrorReply`s; recognised by name,
 * so that this module never loads node-redis.)
 */
function topologyMayHaveChanged(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.constructor.name !== "ErrorReply") return !/^(NOSCRIPT|WRONGTYPE|ERR|OOM)\b/.test(error.message);
  return /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|LOADING)\b/.test(error.message);
}

/**
 * A node-redis cluster (`createCluster`). node-redis refreshes its slot map only on `MOVED`:
 * when a master dies, the slots it served keep pointing at it even after a replica took
 * over. So on a connection error, `CLUSTERDOWN` and the like, and on every `node-error`
 * event, this asks the client to rediscover the topology (at most every 500 ms, in the
 * background), and the next command goes to the new master.
 */
export class NodeRedisClusterConnection extends BaseConnection {
  readonly flavor = "node-redis";
  #lastRefresh = 0;
  readonly #followed: { client: NodeRedisClusterClient; listener: () => void }[] = [];

  constructor(
    private readonly source: ClientSource<NodeRedisClusterClient>,
    backlog?: Backlog,
  ) {
    super();
    this.backlog = backlog;
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

  async detected(): Promise<DetectedClient> {
    return { flavor: "node-redis-cluster", client: await this.source.get() };
  }

  /** A way to send to each master the client knows now. */
  async #masters(): Promise<((args: string[]) => Promise<unknown>)[]> {
    const client = await this.source.get();
    const masters = [...client.masters];
    if (masters.length === 0) {
      this.#refresh(client);
      throw new Error("the Redis Cluster client knows no master (is it connected?)");
    }
    const backlog = this.backlog;
    return masters.map((master) => async (args: string[]) => {
      try {
        const node = await client.nodeClient(master as never);
        return await (backlog === undefined ? node.sendCommand(args) : backlog.run(args, () => node.sendCommand(args)));
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
    if (rediscoverSlots(client)) this.#lastRefresh = now;
  }
}

/** A node-redis sentinel client (`createSentinel`): it finds the master, and follows a failover, itself. */
export class NodeRedisSentinelConnection extends BaseConnection {
  readonly flavor = "node-redis";
  constructor(
    private readonly source: ClientSource<NodeRedisSentinelClient>,
    backlog?: Backlog,
  ) {
    super();
    this.backlog = backlog;
  }

  protected async send(_key: string | undefined, args: string[]): Promise<unknown> {
    return (await this.source.get()).sendCommand(false, args);
  }

  close(): Promise<void> {
    return this.source.close();
  }

  async detected(): Promise<DetectedClient> {
    return { flavor: "node-redis-sentinel", client: await this.source.get() };
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

  async detected(): Promise<DetectedClient> {
    return { flavor: "ioredis-cluster", client: this.client };
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

/** A Redis node as `host` and `port`. */
export interface NodeAddress {
  host: string;
  port: number;
}

/**
 * A connection that becomes `connection` once it resolves (a client the store builds, whose
 * module loads node-redis): commands wait for it, and fail with its error if it fails.
 */
export function deferredConnection(connection: Promise<RedisConnection>): RedisConnection {
  let ready: RedisConnection | undefined;
  connection.then(
    (resolved) => {
      ready = resolved;
    },
    () => undefined,
  );
  const get = async () => ready ?? (await connection);
  return {
    flavor: "node-redis",
    runScript: async (script, keys, args) => (ready ?? (await get())).runScript(script, keys, args),
    command: async (key, args) => (ready ?? (await get())).command(key, args),
    ping: async () => (ready ?? (await get())).ping(),
    async *scan(pattern) {
      yield* (await get()).scan(pattern);
    },
    close: async () => {
      const resolved = await connection.catch(() => undefined);
      await resolved?.close();
    },
    detected: async () => (ready ?? (await get())).detected(),
  };
}
