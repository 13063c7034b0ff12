/**
 * Sessions in Redis: one hash per session, one Lua script per operation.
 *
 * Layout, under `prefix` (default `as:`, not connect-redis's `sess:`, so that both can share a database while moving from express-session):
 * - `<prefix><storeKey>`: a hash. `d:<name>` → the field's JSON text; `c` createdAt,
 *   `s` lastSeenAt, `a` absoluteExpiresAt, `e` expiresAt (integers as decimal text),
 *   `u` userId, `ua` userAgent. The key expires at `e` (PEXPIREAT, an absolute time).
 * - `<prefix>user:<sha256(userId)>`: the per-user index, a sorted set of store keys scored
 *   by max(expiresAt, absoluteExpiresAt), expiring with its last member. The user ID is
 *   hashed so that no key name holds application data (and no `{…}` in a user ID can
 *   change the key's Cluster slot).
 *
 * Round trips: `load`, `create` (anonymous), `apply` (no meta), `increment`,
 * `compareAndSet` and `destroy` (anonymous) cost one; `rotate` two.
 * @module
 */
import { createHash } from "node:crypto";
import { SessionConfigError, SessionValueError } from "../../core/errors.js";
import { mergeMeta } from "../../core/record.js";
import type {
  Absent,
  CompareAndSetResult,
  Rotation,
  SessionChange,
  SessionMeta,
  SessionStore,
  StoredSession,
  TouchOptions,
  UserSessionEntry,
} from "../../core/store.js";
import {
  type AnyRedisClient,
  deferredConnection,
  detectClient,
  type NodeAddress,
  type RedisConnection,
  type RedisReply,
  wrapClient,
} from "./client.js";
import { APPLY, COMPARE_AND_SET, CREATE, DESTROY, INCREMENT, INDEX_ADD, INDEX_READ, LOAD, TAKE } from "./scripts.js";

export type {
  AnyRedisClient,
  IoRedisClient,
  IoRedisClusterClient,
  NodeRedisClient,
  NodeRedisClusterClient,
  NodeRedisSentinelClient,
} from "./client.js";

export interface RedisStoreOptions {
  /**
   * `redis[s]://[[user]:password@]host[:port][/db]`: the store creates (and on `dispose()`
   * closes) a node-redis client. Give exactly one of `url`, `cluster`, `sentinel` or `client`.
   */
  url?: string;
  /**
   * Redis Cluster seed nodes, `"host:port"` (one reachable node is enough; list several): the
   * store creates (and on `dispose()` closes) a node-redis cluster client (`createCluster`).
   */
  cluster?: readonly string[];
  /**
   * Redis Sentinel: the master's name and the sentinels, `"host:port"`. The store creates (and
   * on `dispose()` closes) a node-redis sentinel client (`createSentinel`), which follows a failover.
   */
  sentinel?: { name: string; nodes: readonly string[] };
  /**
   * A client the application created, connected and owns: node-redis v5 (`createClient()`,
   * `createCluster()` or `createSentinel()`, then `await client.connect()`) or ioredis v5
   * (`new Redis()`, with or without `sentinels`, or `new Cluster()`). `dispose()` leaves it open.
   * Give it an `error` listener: node-redis and ioredis crash the process on an unhandled one.
   * So that requests fail fast (503) while Redis is down instead of queueing, create it with
   * `disableOfflineQueue: true` (node-redis; for a cluster, in `defaults`) or
   * `enableOfflineQueue: false` (ioredis).
   */
  client?: AnyRedisClient;
  /** Prepended to every key the store writes. Default `"as:"`. */
  prefix?: string;
}

const DEFAULT_PREFIX = "as:";
const MAX_PREFIX_LENGTH = 256;

/** Meta fields as stored in the hash. */
const M = {
  createdAt: "c",
  lastSeenAt: "s",
  absoluteExpiresAt: "a",
  expiresAt: "e",
  userId: "u",
  userAgent: "ua",
  persistent: "p",
} as const;

const TIME_FIELDS = ["createdAt", "lastSeenAt", "absoluteExpiresAt", "expiresAt"] as const;
const TEXT_FIELDS = ["userId", "userAgent"] as const;
/** What the scripts answer for a key without a live record. */
const ABSENT = new Set<unknown>(["gone", "rotated"]);
function isAbsent(reply: unknown): reply is Absent {
  return ABSENT.has(reply);
}
const INTEGER_TEXT = /^-?\d{1,16}$/;
/** Stands for "never" where Redis needs a number (a touch interval or idle timeout of Infinity). */
const NEVER = String(Number.MAX_SAFE_INTEGER);
/** Most members sent in one ZREM. */
const ZREM_BATCH = 500;
/**
 * Most HMGETs `scan()` has in flight at once: well under the 1,000 commands a client the store
 * built holds, so that a scan never fills its queue.
 */
const SCAN_READ_BATCH = 250;
/** The meta fields `scan()` reads, in the order `parseMetaList` expects. */
const META_LIST = [M.createdAt, M.lastSeenAt, M.absoluteExpiresAt, M.expiresAt, M.userId, M.userAgent, M.persistent];

/**
 * Stores sessions in Redis: standalone (with or without replicas), Sentinel or Cluster. See the
 * module comment for the layout: every script touches one key, so every operation stays in one
 * Cluster slot; the per-user index lives in its own slot and is maintained beside the sessions.
 */
export class RedisStore implements SessionStore {
  readonly kind = "redis";
  readonly #redis: RedisConnection;
  readonly #prefix: string;

  constructor(options: RedisStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new SessionConfigError("RedisStore needs options: { url }, { cluster }, { sentinel } or { client }");
    }
    const { url, cluster, sentinel, client, prefix = DEFAULT_PREFIX } = options;
    if (typeof prefix !== "string" || prefix.length === 0 || prefix.length > MAX_PREFIX_LENGTH) {
      throw new SessionConfigError(`RedisStore prefix must be a string of 1 to ${MAX_PREFIX_LENGTH} characters`);
    }
    this.#prefix = prefix;
    const given = Object.entries({ url, cluster, sentinel, client })
      .filter(([, value]) => value !== undefined)
      .map(([name]) => name);
    if (given.length > 1) {
      throw new SessionConfigError(`RedisStore takes one of url, cluster, sentinel or client, not ${given.join(" and ")}`);
    }
    if (client !== undefined) {
      const detected = detectClient(client);
      if (typeof detected === "string") throw new SessionConfigError(`RedisStore: ${detected}`);
      this.#redis = wrapClient(detected);
    } else if (url !== undefined) {
      checkUrl(url);
      // node-redis is loaded only here: a store given an ioredis client never loads it.
      this.#redis = deferredConnection(import("./connect.js").then(({ connectUrl }) => connectUrl(url)));
    } else if (cluster !== undefined) {
      const nodes = nodeList("cluster", cluster);
      this.#redis = deferredConnection(import("./connect.js").then(({ connectCluster }) => connectCluster(nodes)));
    } else if (sentinel !== undefined) {
      if (typeof sentinel !== "object" || sentinel === null) {
        throw new SessionConfigError('RedisStore sentinel must be { name: "mymaster", nodes: ["host:26379", …] }');
      }
      const { name, nodes } = sentinel;
      if (typeof name !== "string" || !MASTER_NAME.test(name)) {
        throw new SessionConfigError("RedisStore sentinel.name must be the master's name: 1 to 128 of A-Z a-z 0-9 . _ -");
      }
      const sentinels = nodeList("sentinel.nodes", nodes);
      this.#redis = deferredConnection(import("./connect.js").then(({ connectSentinel }) => connectSentinel(name, sentinels)));
    } else {
      throw new SessionConfigError(
        'RedisStore needs a url (redis://host:6379/0), cluster (["host:7000", …]), sentinel ({ name, nodes }) or a connected client',
      );
    }
  }

  async load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    const reply = await this.#redis.runScript(LOAD, [this.#sessionKey(key)], touchArguments(touch));
    if (isAbsent(reply)) return reply;
    const record = parseRecord(reply);
    if (record !== undefined) return record;
    // The script validated the meta, so this only happens to a reply nobody expects: treat it as corrupted.
    await this.destroy(key);
    return "gone";
  }

  async create(key: string, record: StoredSession): Promise<boolean> {
    const now = Date.now();
    const { meta } = record;
    const pairs: string[] = [];
    const ignored: string[] = [];
    metaPairs(meta, pairs, ignored);
    for (const [field, json] of record.fields) pairs.push(`d:${field}`, json);
    const created = this.#redis.runScript(CREATE, [this.#sessionKey(key)], [String(now), time("expiresAt", meta.expiresAt), ...pairs]);
    // The index entry goes out beside the record, not after it: if either fails, create rejects and the
    // cookie is never issued, so a record that exists but is not indexed cannot be reached.
    const indexed = meta.userId === undefined ? undefined : this.#indexAdd(meta.userId, key, scoreOf(meta), now);
    const [reply] = await Promise.all([created, indexed]);
    return reply === 1;
  }

  async apply(key: string, change: SessionChange): Promise<"ok" | Absent> {
    const now = Math.floor(change.now);
    const pairs: string[] = [];
    const deletes: string[] = [];
    for (const [field, json] of change.set ?? []) pairs.push(`d:${field}`, json);
    let expires = "";
    let report = false;
    if (change.meta !== undefined) {
      metaPairs(change.meta, pairs, deletes);
      if (change.meta.expiresAt !== undefined) expires = time("expiresAt", change.meta.expiresAt);
      report = Object.hasOwn(change.meta, "userId") || change.meta.expiresAt !== undefined || change.meta.absoluteExpiresAt !== undefined;
    }
    for (const field of change.delete ?? []) deletes.push(`d:${field}`);
    const reply = await this.#redis.runScript(
      APPLY,
      [this.#sessionKey(key)],
      [String(now), expires, report ? "1" : "0", String(pairs.length), ...pairs, ...deletes],
    );
    if (isAbsent(reply)) return reply;
    if (Array.isArray(reply)) await this.#reindex(key, reply, now);
    return "ok";
  }

  async increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    if (!Number.isSafeInteger(by)) throw new SessionValueError(`increment(${JSON.stringify(field)}): the step must be a safe integer`);
    const [now, idleDeadline, interval] = touchArguments(touch);
    const reply = await this.#redis.runScript(INCREMENT, [this.#sessionKey(key)], [now, `d:${field}`, String(by), idleDeadline, interval]);
    if (isAbsent(reply)) return reply;
    if (typeof reply === "number") return reply;
    if (typeof reply === "string" && INTEGER_TEXT.test(reply)) return Number(reply);
    if (Array.isArray(reply) && reply[0] === "out-of-range") {
      throw new SessionValueError(`increment(${JSON.stringify(field)}): the result leaves the safe integer range`);
    }
    if (Array.isArray(reply) && reply[0] === "not-integer") {
      throw new SessionValueError(`increment(${JSON.stringify(field)}): the stored value is not an integer`);
    }
    throw unexpected("increment", reply);
  }

  async compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    const reply = await this.#redis.runScript(
      COMPARE_AND_SET,
      [this.#sessionKey(key)],
      [
        String(Math.floor(now)),
        `d:${field}`,
        expected === undefined ? "0" : "1",
        expected ?? "",
        next === undefined ? "0" : "1",
        next ?? "",
      ],
    );
    if (reply === "ok" || reply === "conflict" || isAbsent(reply)) return reply;
    throw unexpected("compareAndSet", reply);
  }

  /**
   * Two scripts, because the keys live in different Cluster slots: `take` reads and deletes
   * the old record atomically (the old ID is dead from that moment), then `create` writes it
   * under the new key. If the second step fails the session is lost, never left alive under
   * the old key; the rejection (or `undefined`) tells the caller so.
   */
  async rotate(fromKey: string, toKey: string, { meta, now, markerExpiresAt }: Rotation): Promise<StoredSession | Absent> {
    const at = Math.floor(now);
    const taken = await this.#redis.runScript(TAKE, [this.#sessionKey(fromKey)], [String(at), time("markerExpiresAt", markerExpiresAt)]);
    if (isAbsent(taken)) return taken;
    const record = parseRecord(taken);
    if (record === undefined) return "gone";
    const previousUser = record.meta.userId;
    const merged = mergeMeta(record.meta, meta);
    const pairs: string[] = [];
    metaPairs(merged, pairs, []);
    for (const [field, json] of record.fields) pairs.push(`d:${field}`, json);
    const writes: Promise<unknown>[] = [
      this.#redis.runScript(CREATE, [this.#sessionKey(toKey)], [String(at), time("expiresAt", merged.expiresAt), ...pairs]),
    ];
    if (merged.userId !== undefined) {
      const sameUser = previousUser === merged.userId;
      writes.push(this.#indexAdd(merged.userId, toKey, scoreOf(merged), at, sameUser ? fromKey : undefined));
      if (previousUser !== undefined && !sameUser) writes.push(this.#indexRemove(previousUser, [fromKey]));
    } else if (previousUser !== undefined) {
      writes.push(this.#indexRemove(previousUser, [fromKey]));
    }
    const [created] = await Promise.all(writes);
    // The new key held a live record (a 256-bit collision): the session is lost, as documented.
    if (created !== 1) return "gone";
    return { meta: merged, fields: record.fields };
  }

  async destroy(key: string): Promise<void> {
    const user = await this.#redis.runScript(DESTROY, [this.#sessionKey(key)], []);
    if (typeof user === "string" && user !== "") await this.#indexRemove(user, [key]);
  }

  async ping(): Promise<void> {
    await this.#redis.ping();
  }

  async listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    const at = Math.floor(now);
    const indexKey = this.#indexKey(userId);
    const members = await this.#redis.runScript(INDEX_READ, [indexKey], [String(at)]);
    if (!Array.isArray(members)) throw unexpected("listByUser", members);
    const keys = members.filter((member): member is string => typeof member === "string");
    // One HMGET per member, all in flight at once (each routed by its own key).
    const metas = await Promise.all(
      keys.map((key) => {
        const sessionKey = this.#sessionKey(key);
        return this.#redis.command(sessionKey, ["HMGET", sessionKey, ...META_LIST]);
      }),
    );
    const entries: UserSessionEntry[] = [];
    const stale: string[] = [];
    keys.forEach((key, i) => {
      const meta = parseMetaList(metas[i] ?? null);
      if (meta !== undefined && meta.userId === userId && meta.expiresAt > at) entries.push({ key, meta });
      else stale.push(key);
    });
    if (stale.length > 0) await this.#indexRemove(userId, stale);
    return entries;
  }

  async revokeUserSessions(userId: string, now: number): Promise<string[]> {
    const entries = await this.listUserSessions(userId, now);
    const removed = await Promise.all(entries.map(({ key }) => this.#redis.runScript(DESTROY, [this.#sessionKey(key)], [])));
    if (entries.length > 0) {
      await this.#indexRemove(
        userId,
        entries.map(({ key }) => key),
      );
    }
    // Report what this call removed: a session destroyed meanwhile by someone else is not reported twice.
    return entries.filter((_, i) => removed[i] === userId).map(({ key }) => key);
  }

  /** Counts session keys under the prefix with SCAN (O(keys in the database); meant for dashboards, not requests). */
  async count(_now: number): Promise<number> {
    const indexPrefix = `${this.#prefix}user:`;
    const seen = new Set<string>();
    for await (const batch of this.#redis.scan(`${escapeGlob(this.#prefix)}*`)) {
      for (const key of batch) if (!key.startsWith(indexPrefix)) seen.add(key);
    }
    return seen.size;
  }

  /**
   * Every live session: `SCAN … COUNT 1000` over the prefix on every master (each step is short,
   * so Redis is never blocked), skipping the `user:` index keys, then the meta of each batch with
   * pipelined HMGETs ({@link SCAN_READ_BATCH} in flight, each routed by its key). Field values
   * are never read. A key SCAN returns twice is yielded once: the names seen so far are kept,
   * about 100 bytes per session.
   */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    const at = Math.floor(now);
    const prefix = this.#prefix;
    const indexPrefix = `${prefix}user:`;
    const seen = new Set<string>();
    for await (const batch of this.#redis.scan(`${escapeGlob(prefix)}*`)) {
      const names = batch.filter((name) => !name.startsWith(indexPrefix) && !seen.has(name));
      for (const name of names) seen.add(name);
      for (let i = 0; i < names.length; i += SCAN_READ_BATCH) {
        const chunk = names.slice(i, i + SCAN_READ_BATCH);
        const metas = await Promise.all(
          chunk.map((name) => this.#redis.command(name, ["HMGET", name, ...META_LIST]).catch(nullOnWrongType)),
        );
        for (const [j, name] of chunk.entries()) {
          // An expired, destroyed or foreign key reads as nils or a bad meta, and is left out.
          const meta = parseMetaList(metas[j] ?? null);
          if (meta !== undefined && meta.expiresAt > at) yield { key: name.slice(prefix.length), meta };
        }
      }
    }
  }

  /** Closes the client the store built (`url`, `cluster`, `sentinel`); an injected client stays open. */
  async dispose(): Promise<void> {
    await this.#redis.close();
  }

  #sessionKey(key: string): string {
    return `${this.#prefix}${key}`;
  }

  #indexKey(userId: string): string {
    return `${this.#prefix}user:${createHash("sha256").update(userId).digest("base64url")}`;
  }

  #indexAdd(userId: string, key: string, score: number, now: number, replacing?: string): Promise<RedisReply> {
    const args = [String(now), String(score), key];
    if (replacing !== undefined) args.push(replacing);
    return this.#redis.runScript(INDEX_ADD, [this.#indexKey(userId)], args);
  }

  async #indexRemove(userId: string, keys: readonly string[]): Promise<void> {
    const indexKey = this.#indexKey(userId);
    for (let i = 0; i < keys.length; i += ZREM_BATCH) {
      await this.#redis.command(indexKey, ["ZREM", indexKey, ...keys.slice(i, i + ZREM_BATCH)]);
    }
  }

  /** Keeps the user index in step after an `apply` that changed the user or the deadlines. */
  async #reindex(key: string, reply: RedisReply[], now: number): Promise<void> {
    const [, userBefore, expiresBefore, absoluteBefore, userAfter, expiresAfter, absoluteAfter] = reply.map((value) =>
      typeof value === "string" || typeof value === "number" ? String(value) : "",
    );
    const before = userBefore === undefined || userBefore === "" ? undefined : userBefore;
    const after = userAfter === undefined || userAfter === "" ? undefined : userAfter;
    const scoreBefore = Math.max(Number(expiresBefore), Number(absoluteBefore));
    const scoreAfter = Math.max(Number(expiresAfter), Number(absoluteAfter));
    const writes: Promise<unknown>[] = [];
    if (before !== undefined && before !== after) writes.push(this.#indexRemove(before, [key]));
    if (after !== undefined && (after !== before || scoreAfter !== scoreBefore) && Number.isFinite(scoreAfter)) {
      writes.push(this.#indexAdd(after, key, scoreAfter, now));
    }
    await Promise.all(writes);
  }
}

/** A Sentinel master name, as Sentinel accepts it. */
const MASTER_NAME = /^[A-Za-z0-9._-]{1,128}$/;
/** `host:port` or `[IPv6]:port`. */
const NODE_ADDRESS = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)):(\d{1,5})$/;
const MAX_NODES = 1_000;

/** Parses a list of `"host:port"` seed nodes, or says which entry is wrong. */
function nodeList(what: string, nodes: unknown): NodeAddress[] {
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.length > MAX_NODES) {
    throw new SessionConfigError(`RedisStore ${what} must be a list of 1 to ${MAX_NODES} "host:port" addresses`);
  }
  return nodes.map((node: unknown, i) => {
    const match = typeof node === "string" ? NODE_ADDRESS.exec(node) : null;
    const port = Number(match?.[3]);
    const host = match?.[1] ?? match?.[2];
    if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
      const shown = typeof node === "string" ? JSON.stringify(node.slice(0, 300)) : typeof node;
      throw new SessionConfigError(`RedisStore ${what}[${i}] must be "host:port" with a port from 1 to 65535, not ${shown}`);
    }
    return { host, port };
  });
}

/** Rejects URLs node-redis would misread, without echoing them (they can hold a password). */
function checkUrl(url: unknown): void {
  if (typeof url !== "string" || url.length === 0) throw new SessionConfigError("RedisStore url must be a non-empty string");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SessionConfigError("RedisStore url is not a valid URL (expected redis://host:6379/0)");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new SessionConfigError(`RedisStore url must start with redis:// or rediss://, not ${parsed.protocol}//`);
  }
  if (parsed.hostname === "") throw new SessionConfigError("RedisStore url has no host");
  if (parsed.pathname !== "" && parsed.pathname !== "/" && !/^\/\d{1,5}$/.test(parsed.pathname)) {
    throw new SessionConfigError("RedisStore url path must be a database number, such as redis://host:6379/3");
  }
}

/** A stored time: a safe integer, as decimal text (HINCRBY and PEXPIREAT read it, Lua compares it). */
function time(name: string, value: unknown): string {
  if (!Number.isSafeInteger(value)) throw new SessionValueError(`session meta ${name} must be a whole number of milliseconds`);
  return String(value);
}

/**
 * Meta as hash fields: values to write go to `pairs`; `userId`/`userAgent` explicitly set to
 * `undefined` go to `deletes` (a partial meta with `userId: undefined` unbinds the user).
 */
function metaPairs(meta: Partial<SessionMeta>, pairs: string[], deletes: string[]): void {
  for (const name of TIME_FIELDS) {
    const value = meta[name];
    if (value !== undefined) pairs.push(M[name], time(name, value));
  }
  for (const name of TEXT_FIELDS) {
    if (!Object.hasOwn(meta, name)) continue;
    const value = meta[name];
    if (value === undefined) deletes.push(M[name]);
    else if (typeof value === "string") pairs.push(M[name], value);
    else throw new SessionValueError(`session meta ${name} must be a string`);
  }
  if (Object.hasOwn(meta, "persistent")) {
    if (meta.persistent === undefined) deletes.push(M.persistent);
    else pairs.push(M.persistent, meta.persistent ? "1" : "0");
  }
}

/** The index score: no session can be live past both of its deadlines. */
function scoreOf(meta: SessionMeta): number {
  return Math.max(meta.expiresAt, meta.absoluteExpiresAt);
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined || !INTEGER_TEXT.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

function buildMeta(get: (field: string) => string | undefined): SessionMeta | undefined {
  const createdAt = integer(get(M.createdAt));
  const lastSeenAt = integer(get(M.lastSeenAt));
  const absoluteExpiresAt = integer(get(M.absoluteExpiresAt));
  const expiresAt = integer(get(M.expiresAt));
  if (createdAt === undefined || lastSeenAt === undefined || absoluteExpiresAt === undefined || expiresAt === undefined) return undefined;
  const meta: SessionMeta = { createdAt, lastSeenAt, absoluteExpiresAt, expiresAt };
  const userId = get(M.userId);
  const userAgent = get(M.userAgent);
  const persistent = get(M.persistent);
  if (userId !== undefined) meta.userId = userId;
  if (userAgent !== undefined) meta.userAgent = userAgent;
  if (persistent === "1" || persistent === "0") meta.persistent = persistent === "1";
  return meta;
}

/** now, now + idle timeout, touch interval: as the load and increment scripts take them. */
function touchArguments({ now, idleTimeoutMs, touchIntervalMs }: TouchOptions): [string, string, string] {
  const at = Math.floor(now);
  const idleDeadline = Number.isFinite(idleTimeoutMs) ? String(at + Math.floor(idleTimeoutMs)) : NEVER;
  const interval = Number.isFinite(touchIntervalMs) ? String(Math.floor(touchIntervalMs)) : NEVER;
  return [String(at), idleDeadline, interval];
}

/** A flat HGETALL list as a record; `undefined` when it is not a well-formed one. */
function parseRecord(reply: RedisReply): StoredSession | undefined {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) return undefined;
  const metaFields = new Map<string, string>();
  const fields = new Map<string, string>();
  for (let i = 0; i < reply.length; i += 2) {
    const name = reply[i];
    const value = reply[i + 1];
    if (typeof name !== "string" || typeof value !== "string") return undefined;
    if (name.startsWith("d:")) fields.set(name.slice(2), value);
    else metaFields.set(name, value);
  }
  const meta = buildMeta((field) => metaFields.get(field));
  return meta === undefined ? undefined : { meta, fields };
}

/** An HMGET of [c, s, a, e, u, ua] as meta. */
function parseMetaList(reply: RedisReply): SessionMeta | undefined {
  if (!Array.isArray(reply)) return undefined;
  return buildMeta((field) => {
    const value = reply[META_LIST.indexOf(field as (typeof META_LIST)[number])];
    return typeof value === "string" ? value : undefined;
  });
}

/** A key that is not a hash (a foreign or damaged value) answers HMGET with WRONGTYPE: it holds no session. */
function nullOnWrongType(error: unknown): null {
  if (error instanceof Error && error.message.startsWith("WRONGTYPE")) return null;
  throw error;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\^]/g, (character) => `\\${character}`);
}

function unexpected(operation: string, reply: RedisReply): Error {
  return new Error(`Redis store ${operation}: unexpected reply ${JSON.stringify(reply)?.slice(0, 100)}`);
}
