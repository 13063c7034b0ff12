/**
 * Durable security writes: the `durability` option of `RedisStore`.
 *
 * Redis replicates asynchronously: a write the primary acknowledged is lost when the primary
 * dies before a replica has it, and after the failover the replica serves the record as it was.
 * For a logout (`destroy`), a revocation (`revokeUserSessions`) or a login's rotation (the old
 * key becoming a marker) that means the cookie it ended works again. With `durability`, those
 * writes are followed by `WAIT replicas timeoutMs` on the very connection that carried them,
 * in one pipeline, so they resolve only once `replicas` replicas hold them; when fewer confirm
 * within `timeoutMs` they reject with {@link RedisDurabilityError} (the manager answers 503),
 * never a silent success. Every other write stays asynchronous.
 *
 * Why a pipeline on the client itself, not two commands routed by the key: `WAIT` counts the
 * replicas that hold the writes of its own connection. A client that retries a command after a
 * failover, follows `MOVED`/`ASK`, or hands commands to a pool could send the write and the
 * `WAIT` over different connections, and `WAIT` would then confirm nothing. A pipeline
 * (node-redis `multi().execAsPipeline()`, ioredis `pipeline().exec()`) goes out as one batch on
 * one connection and is retried as a whole. On a cluster it is sent to the connection of the
 * node that owns the key's slot, and a redirection (`MOVED`, `ASK`) sends the whole pipeline to
 * the node named.
 *
 * Cost: no extra round trip, but the reply waits until the replicas have acknowledged (one
 * primary → replica round trip when they keep up). `WAIT` also holds its connection: commands
 * queued behind it on that connection (other requests' commands, on a shared client) wait with
 * it. While the primary has fewer than `replicas` replicas, every durable write waits the whole
 * `timeoutMs` and then fails: keep `timeoutMs` small and well under the manager's `storeTimeoutMs`.
 * @module
 */
import { SessionConfigError } from "../../core/errors.js";
import type { DetectedClient, RedisConnection, RedisReply } from "./client.js";
import { normalize } from "./client.js";
import { rediscoverSlots } from "./node-redis-internals.js";
import type { LuaScript } from "./scripts.js";

export interface DurabilityOptions {
  /** How many replicas must hold a security write before it resolves (`WAIT`'s first argument). */
  replicas: number;
  /** How long to wait for them, ms; past it the write rejects with {@link RedisDurabilityError}. */
  timeoutMs: number;
}

const MAX_REPLICAS = 100;
const MAX_TIMEOUT_MS = 60_000;
/** Redirections followed for one durable write (a slot moving while a failover happens takes two). */
const MAX_REDIRECTIONS = 3;

/**
 * A security write reached the primary but fewer than `replicas` replicas confirmed it within
 * `timeoutMs`: it may not survive a failover. Not a `SessionError`: the manager turns it into
 * `StoreUnavailableError` (503), with this as its `cause`.
 */
export class RedisDurabilityError extends Error {
  override name = "RedisDurabilityError";
  constructor(
    readonly operation: string,
    readonly acknowledged: number,
    readonly replicas: number,
    readonly timeoutMs: number,
  ) {
    super(
      `Redis ${operation}: ${acknowledged} of ${replicas} replica(s) acknowledged the write within ${timeoutMs} ms (durability option); it may not survive a failover`,
    );
  }
}

/** Checks the `durability` option; throws `SessionConfigError` naming what is wrong. */
export function checkDurability(value: unknown): DurabilityOptions {
  if (typeof value !== "object" || value === null) {
    throw new SessionConfigError("RedisStore durability must be { replicas, timeoutMs }, such as { replicas: 1, timeoutMs: 200 }");
  }
  const { replicas, timeoutMs } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(replicas) || (replicas as number) < 1 || (replicas as number) > MAX_REPLICAS) {
    throw new SessionConfigError(
      `RedisStore durability.replicas must be a whole number from 1 to ${MAX_REPLICAS} (replicas that must hold a logout before it resolves), got ${String(replicas)}`,
    );
  }
  // WAIT with 0 blocks forever: a timeout is required.
  if (!Number.isSafeInteger(timeoutMs) || (timeoutMs as number) < 1 || (timeoutMs as number) > MAX_TIMEOUT_MS) {
    throw new SessionConfigError(
      `RedisStore durability.timeoutMs must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS} (keep it under the manager's storeTimeoutMs), got ${String(timeoutMs)}`,
    );
  }
  return { replicas: replicas as number, timeoutMs: timeoutMs as number };
}

/** Runs scripts followed by `WAIT` on the connection that ran them (see the module comment). */
export class DurableWrites {
  readonly #connection: RedisConnection;
  readonly #wait: string[];
  readonly #options: DurabilityOptions;

  constructor(connection: RedisConnection, options: DurabilityOptions) {
    this.#connection = connection;
    this.#options = checkDurability(options);
    this.#wait = ["WAIT", String(this.#options.replicas), String(this.#options.timeoutMs)];
  }

  /**
   * `script` on the node that owns `keys[0]`, then `WAIT` in the same pipeline: resolves the
   * script's reply once enough replicas hold it, rejects with {@link RedisDurabilityError} otherwise.
   */
  async runScript(
    operation: string,
    script: LuaScript,
    keys: readonly [string, ...string[]],
    args: readonly string[],
  ): Promise<RedisReply> {
    const { reply, unconfirmed } = await this.runScriptOutcome(operation, script, keys, args);
    if (unconfirmed !== undefined) throw unconfirmed;
    return reply;
  }

  /**
   * As {@link runScript}, but a shortfall of replicas is returned beside the script's reply
   * instead of thrown: the script did run on the primary, and a caller that must undo what it
   * wrote (rotate) needs its reply. Rejects, as `runScript` does, when the pipeline itself fails.
   */
  async runScriptOutcome(
    operation: string,
    script: LuaScript,
    keys: readonly [string, ...string[]],
    args: readonly string[],
  ): Promise<{ reply: RedisReply; unconfirmed: RedisDurabilityError | undefined }> {
    const detected = await this.#connection.detected();
    const tail = [String(keys.length), ...keys, ...args];
    let replies: unknown[];
    try {
      replies = await pipeline(detected, keys[0], [["EVALSHA", script.sha1, ...tail], this.#wait]);
    } catch (error) {
      // The script cache is empty after a restart, a failover or SCRIPT FLUSH: send the source once.
      if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) throw error;
      replies = await pipeline(detected, keys[0], [["EVAL", script.source, ...tail], this.#wait]);
    }
    const acknowledged = Number(normalize(replies[1]));
    const { replicas, timeoutMs } = this.#options;
    const unconfirmed =
      acknowledged >= replicas
        ? undefined
        : new RedisDurabilityError(operation, Number.isFinite(acknowledged) ? acknowledged : 0, replicas, timeoutMs);
    return { reply: normalize(replies[0]), unconfirmed };
  }
}

/** node-redis: a client (`createClient`, or one node of a cluster) and its pipelines. */
interface NodeRedisPipelines {
  readonly isReady?: boolean;
  multi(): { addCommand(args: string[]): unknown; execAsPipeline(): Promise<unknown[]> };
}
interface NodeRedisSentinelPipelines {
  multi(): { addCommand(isReadonly: boolean, args: string[]): unknown; execAsPipeline(): Promise<unknown[]> };
}
interface NodeRedisClusterNodes {
  readonly slots: readonly ({ master?: object } | undefined)[];
  readonly nodeByAddress: ReadonlyMap<string, object>;
  nodeClient(node: object): Promise<NodeRedisPipelines>;
  listenerCount(event: string): number;
}
/** ioredis: `Redis` (with or without sentinels), a `Cluster`, or one node of a cluster. */
interface IoRedisPipelines {
  pipeline(commands: string[][]): { exec(): Promise<[Error | null, unknown][] | null> };
}
interface IoRedisClusterNodes extends IoRedisPipelines {
  nodes(role: "master"): (IoRedisPipelines & { options: { host?: string; port?: number } })[];
  refreshSlotsCache?(callback?: (error?: Error) => void): void;
}

/** Runs `commands` as one pipeline on the connection that serves `key`; rejects with the first error. */
function pipeline(detected: DetectedClient, key: string, commands: string[][]): Promise<unknown[]> {
  switch (detected.flavor) {
    case "node-redis":
      return nodeRedisPipeline(detected.client as unknown as NodeRedisPipelines, commands);
    case "node-redis-sentinel": {
      // The sentinel client runs the pipeline on one master connection, and after a failover re-runs it whole on the new one.
      const batch = (detected.client as unknown as NodeRedisSentinelPipelines).multi();
      for (const command of commands) batch.addCommand(false, command);
      return batch.execAsPipeline();
    }
    case "node-redis-cluster":
      return nodeRedisClusterPipeline(detected.client as unknown as NodeRedisClusterNodes, key, commands);
    case "ioredis":
      return ioRedisPipeline(detected.client as unknown as IoRedisPipelines, commands);
    case "ioredis-cluster":
      return ioRedisClusterPipeline(detected.client as unknown as IoRedisClusterNodes, commands);
  }
}

function nodeRedisPipeline(client: NodeRedisPipelines, commands: string[][]): Promise<unknown[]> {
  // node-redis queues a pipeline while disconnected even with disableOfflineQueue: fail fast instead.
  if (client.isReady === false) return Promise.reject(new Error("Redis is not connected (the client is reconnecting)"));
  const batch = client.multi();
  for (const command of commands) batch.addCommand(command);
  return batch.execAsPipeline();
}

/** An error the script itself caused: not the connection, nor the topology (a replica answering WAIT says it moved). */
function isCommandError(error: unknown): boolean {
  return error instanceof Error && /^(NOSCRIPT|WRONGTYPE|OOM)\b/.test(error.message);
}

/** Least time between two slot map refreshes asked for by durable writes. */
const REFRESH_MS = 500;
const lastRefresh = new WeakMap<object, number>();

function refreshSlots(cluster: NodeRedisClusterNodes): void {
  const now = Date.now();
  if (now - (lastRefresh.get(cluster) ?? 0) < REFRESH_MS) return;
  // A failed rediscovery emits `error` on the cluster: with nobody listening, that would crash the process.
  if (cluster.listenerCount("error") === 0) return;
  if (rediscoverSlots(cluster)) lastRefresh.set(cluster, now);
}

/** `MOVED <slot> <host:port>` or `ASK <slot> <host:port>`: where to send the pipeline instead. */
function redirection(error: unknown): { ask: boolean; address: string } | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /^(MOVED|ASK) \d+ (\S+)/.exec(error.message);
  return match === null ? undefined : { ask: match[1] === "ASK", address: match[2] as string };
}

/**
 * Straight to the node that owns the key's slot, as the client's map says, so the WAIT runs on
 * the connection the write ran on; `MOVED`/`ASK` send the whole pipeline to the node named
 * (`ASKING` first for `ASK`), and `MOVED` also asks the client to refresh its slot map.
 */
async function nodeRedisClusterPipeline(cluster: NodeRedisClusterNodes, key: string, commands: string[][]): Promise<unknown[]> {
  const owner = cluster.slots[keySlot(key)]?.master;
  if (owner === undefined) {
    refreshSlots(cluster);
    throw new Error("the Redis Cluster client knows no master for this key (is it connected?)");
  }
  let node = await cluster.nodeClient(owner);
  let batch = commands;
  for (let redirections = 0; ; redirections++) {
    try {
      const replies = await nodeRedisPipeline(node, batch);
      return batch === commands ? replies : replies.slice(1);
    } catch (error) {
      const target = redirection(error);
      // node-redis refreshes its slot map only on MOVED to its own commands: after a failover, or a
      // MOVED answered to this pipeline, ask for a fresh one (the store's connection does the same).
      if (target === undefined ? !isCommandError(error) : !target.ask) refreshSlots(cluster);
      if (target === undefined || redirections >= MAX_REDIRECTIONS) throw error;
      const shard = cluster.nodeByAddress.get(target.address);
      if (shard === undefined) throw error;
      node = await cluster.nodeClient(shard);
      batch = target.ask ? [["ASKING"], ...commands] : commands;
    }
  }
}

async function ioRedisPipeline(client: IoRedisPipelines, commands: string[][]): Promise<unknown[]> {
  // ioredis looks each command up as a method of the pipeline: by its lower-case name.
  const results = await client.pipeline(commands.map(([name, ...args]) => [(name as string).toLowerCase(), ...args])).exec();
  if (results === null) throw new Error("ioredis did not run the pipeline");
  return results.map(([error, reply]) => {
    if (error !== null) throw error;
    return reply;
  });
}

/**
 * ioredis routes a pipeline by the keys of its commands (only the script has one). It re-sends
 * it whole when every command failed alike, but not after a `MOVED`/`ASK` answered to the script
 * alone: then the pipeline goes to the node named (`ASKING` first for `ASK`).
 */
async function ioRedisClusterPipeline(cluster: IoRedisClusterNodes, commands: string[][]): Promise<unknown[]> {
  let client: IoRedisPipelines = cluster;
  let batch = commands;
  for (let redirections = 0; ; redirections++) {
    try {
      const replies = await ioRedisPipeline(client, batch);
      return batch === commands ? replies : replies.slice(1);
    } catch (error) {
      const target = redirection(error);
      if (target === undefined || redirections >= MAX_REDIRECTIONS) throw error;
      if (!target.ask) cluster.refreshSlotsCache?.(() => {});
      const node = cluster.nodes("master").find(({ options }) => `${options.host}:${options.port}` === target.address);
      if (node === undefined) throw error;
      client = node;
      batch = target.ask ? [["ASKING"], ...commands] : commands;
    }
  }
}

/** The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its `{hash tag}` or of the whole key, mod 16384. */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf(0x7b);
  let start = 0;
  let end = bytes.length;
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= (bytes[i] as number) << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16_384;
}
