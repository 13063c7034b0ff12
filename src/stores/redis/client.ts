/**
 * The little the Redis store needs from a Redis client, and two implementations of it:
 * node-redis v5 and ioredis v5. Internal: the store's options accept the clients
 * themselves, and this module hides their differences.
 *
 * Every command names the key it touches, so that the Cluster flavour of each client can
 * route it to the node that owns the key's slot (Cluster clients are not accepted yet).
 * @module
 */
import { createClient } from "redis";
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
  /** Closes the client: only for clients the store created. */
  close(): Promise<void>;
}

/** What the store was handed as `client`, once recognised. */
export type DetectedClient = { flavor: "node-redis"; client: NodeRedisClient } | { flavor: "ioredis"; client: IoRedisClient };

/**
 * Recognises an injected client by its shape (importing ioredis just to run `instanceof`
 * would make it a runtime dependency). Returns a reason string when it is not usable.
 */
export function detectClient(client: unknown): DetectedClient | string {
  if (typeof client !== "object" || client === null) return "client must be a node-redis or ioredis client object";
  const candidate = client as Record<string, unknown>;
  if (typeof candidate.call === "function" && typeof candidate.status === "string" && typeof candidate.isCluster === "boolean") {
    if (candidate.isCluster) return "ioredis Cluster clients are not supported yet: pass a Redis (standalone) client";
    const keyPrefix = (candidate.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
    // ioredis would prefix the keys of most commands but not SCAN's pattern: one prefix, the store's, keeps them in step.
    if (typeof keyPrefix === "string" && keyPrefix !== "")
      return "an ioredis client with keyPrefix is not supported: use the store's prefix option";
    return { flavor: "ioredis", client: client as IoRedisClient };
  }
  if (typeof candidate.sendCommand === "function" && typeof candidate.isOpen === "boolean") {
    if ("masters" in candidate || typeof candidate.getSlotRandomNode === "function") {
      return "node-redis cluster clients (createCluster) are not supported yet: pass a createClient() client";
    }
    return { flavor: "node-redis", client: client as NodeRedisClient };
  }
  return "client must be a node-redis v5 client (createClient) or an ioredis v5 client (new Redis())";
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

  async *scan(pattern: string): AsyncGenerator<string[]> {
    let cursor = "0";
    do {
      const reply = normalize(await this.send(undefined, ["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]));
      if (!Array.isArray(reply) || typeof reply[0] !== "string" || !Array.isArray(reply[1])) {
        throw new Error("Redis answered SCAN with an unexpected reply");
      }
      cursor = reply[0];
      yield reply[1].filter((key): key is string => typeof key === "string");
    } while (cursor !== "0");
  }
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

/** Wraps a client the application created and owns (the store never closes it). */
export function wrapClient(detected: DetectedClient): RedisConnection {
  return detected.flavor === "ioredis" ? new IoRedisConnection(detected.client) : new NodeRedisConnection(detected.client);
}

/** Most time between two reconnection attempts of a client the store created. */
const MAX_RECONNECT_DELAY_MS = 2_000;

/**
 * A node-redis client the store creates from `url` and owns:
 * - `disableOfflineQueue`: while disconnected, commands fail at once instead of queueing
 *   for a reconnection that may never come (the core then answers 503 quickly);
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
