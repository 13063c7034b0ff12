/**
 * Sessions in Redis: one hash per session; a plain HGETALL to read, one Lua script per write.
 *
 * Layout, under `prefix` (default `as:`, not connect-redis's `sess:`, so that both can share a database while moving from express-session):
 * - `<prefix><storeKey>`: a hash. `d:<name>` → the field's JSON text; `c` createdAt,
 *   `s` lastSeenAt, `a` absoluteExpiresAt, `e` expiresAt (integers as decimal text),
 *   `u` userId, `ua` userAgent, `p` persistent (`1`/`0`). The key expires at `e` (PEXPIREAT,
 *   an absolute time). A rotation marker is the hash `{r = 1}`, expiring on its own.
 * - `<prefix>user:<sha256(userId)>`: the per-user index, a sorted set of store keys scored
 *   by max(expiresAt, absoluteExpiresAt), expiring with its last member. The user ID is
 *   hashed so that no key name holds application data (and no `{…}` in a user ID can
 *   change the key's Cluster slot). A member is added only once its record exists, and
 *   dropped when a listing finds its record gone, expired, rebound or rotated away.
 *
 * Round trips: `load` (no touch due), `create` (anonymous), `apply` (no user or deadline
 * change), `increment`, `compareAndSet` and `destroy` (anonymous) cost one; a `load` whose
 * touch is due two; `rotate` three or four (see there).
 *
 * Memory pressure (`maxmemory` with `noeviction`): reads, destroys and revocations work; a
 * write Redis refuses fails with its OOM error before changing anything, a login included.
 * @module
 */
import { createHash } from "node:crypto";
import { SessionConfigError, SessionValueError } from "../../core/errors.js";
import { mergeMeta, touchMeta } from "../../core/record.js";
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
  isOutOfMemory,
  isWrongType,
  type NodeAddress,
  type RedisConnection,
  type RedisReply,
  wrapClient,
} from "./client.js";
import { checkDurability, type DurabilityOptions, DurableWrites } from "./durability.js";
import type { LuaScript } from "./scripts.js";
import {
  APPLY,
  COMPARE_AND_SET,
  CREATE,
  DESTROY,
  INCREMENT,
  INDEX_ADD,
  LOAD,
  REPLACE,
  REVOKE,
  recordDigest,
  TAKE,
  UNDO_TAKE,
} from "./scripts.js";

export type {
  AnyRedisClient,
  IoRedisClient,
  IoRedisClusterClient,
  NodeRedisClient,
  NodeRedisClusterClient,
  NodeRedisSentinelClient,
} from "./client.js";
export { type DurabilityOptions, RedisDurabilityError } from "./durability.js";

export interface RedisStoreOptions {
  /**
   * `redis[s]://[[user]:password@]host[:port][/db]`: the store creates (and on `dispose()`
   * closes) a node-redis client. Give exactly one of `url`, `cluster`, `sentinel` or `client`.
   * A client the store builds sheds load by the manager's deadline (`storeTimeoutMs`), never by
   * a command count; what it holds for a Redis that stopped answering is bounded in memory
   * (64 MiB, see `MAX_PENDING_BYTES` in connect.ts), past which calls fail at once.
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
  /**
   * Durable security writes (off by default): a logout (`destroy`), a revocation
   * (`revokeUserSessions`) and a login's rotation (the step that ends the old key) resolve only
   * once `replicas` replicas acknowledged them (`WAIT replicas timeoutMs`, pipelined right after
   * the write on the same connection); when fewer do within `timeoutMs` they reject (the
   * manager answers 503; a login refused so puts the old session back, see `rotate`). Without
   * it a primary that dies before replicating such a write brings the ended cookie back after
   * the failover. Costs the replication wait on those writes (and on the commands queued
   * behind them on the same connection: `WAIT` holds it); keep `timeoutMs` small and under the
   * manager's `storeTimeoutMs`. See `durability.ts`.
   */
  durability?: DurabilityOptions;
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
 * Most commands `scan()` and a user's listing or revocation have in flight at once (and the
 * ZSCAN page size of a user's index): each call holds one batch, whatever the number of sessions.
 */
const READ_BATCH = 250;
/**
 * Most walks over a user's index one revocation makes: it walks again while it met sessions that
 * rotated to a new key during the walk, and gives up (rejects) past this, so that a steady
 * stream of rotations cannot keep it going forever.
 */
const REVOKE_PASSES = 10;
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
  readonly #durable: DurableWrites | undefined;

  constructor(options: RedisStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new SessionConfigError("RedisStore needs options: { url }, { cluster }, { sentinel } or { client }");
    }
    const { url, cluster, sentinel, client, prefix = DEFAULT_PREFIX } = options;
    if (typeof prefix !== "string" || prefix.length === 0 || prefix.length > MAX_PREFIX_LENGTH) {
      throw new SessionConfigError(`RedisStore prefix must be a string of 1 to ${MAX_PREFIX_LENGTH} characters`);
    }
    this.#prefix = prefix;
    const durability = options.durability === undefined ? undefined : checkDurability(options.durability);
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
    this.#durable = durability === undefined ? undefined : new DurableWrites(this.#redis, durability);
  }

  /**
   * A plain HGETALL judged here, on the caller's clock, as the scripts judge a record: the
   * common read costs Redis no script. The LOAD script runs instead (a second round trip) when
   * a touch is due (it writes) or the record looks damaged (it removes it atomically). A touch
   * Redis refuses for lack of memory is skipped: the read stands.
   */
  async load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    const at = Math.floor(touch.now);
    const read = await this.#read(key, at);
    if (read === "gone" || read === "rotated") return read;
    if (read !== "damaged" && touchMeta(read.record.meta, { ...touch, now: at }) === undefined) return read.record;
    let reply: RedisReply;
    try {
      reply = await this.#redis.runScript(LOAD, [this.#sessionKey(key)], touchArguments(touch));
    } catch (error) {
      if (read !== "damaged" && isOutOfMemory(error)) return read.record;
      throw error;
    }
    const loaded = judge(reply, at);
    if (loaded === "gone" || loaded === "rotated") return loaded;
    if (loaded !== "damaged") return loaded.record;
    // The script validated the meta, so this only happens to a reply nobody expects: treat it as corrupted.
    await this.destroy(key);
    return "gone";
  }

  /**
   * One script, plus one index write for a session bound to a user, made once the record
   * exists: a listing that meets an index member without a record drops it, so a member added
   * first could be dropped before its record lands and the session never be listed (or revoked).
   */
  async create(key: string, record: StoredSession): Promise<boolean> {
    const now = Date.now();
    const { meta } = record;
    const created = await this.#redis.runScript(CREATE, [this.#sessionKey(key)], writeArguments(now, record));
    if (created !== 1) return false;
    if (meta.userId !== undefined) {
      try {
        await this.#indexAdd(meta.userId, key, scoreOf(meta), now);
      } catch (error) {
        // create rejects, so the cookie is never issued: the record would only be an orphan.
        await this.#discard(key).catch(() => undefined);
        throw error;
      }
    }
    return true;
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
    if (Array.isArray(reply)) await this.#reindex(key, reply, change.meta ?? {}, now);
    return "ok";
  }

  async increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    if (!Number.isSafeInteger(by)) throw new SessionValueError(`increment(${JSON.stringify(field)}): the step must be a safe integer`);
    const [now, idleDeadline, interval] = touchArguments(touch);
    const reply = await this.#redis.runScript(
      INCREMENT,
      [this.#sessionKey(key)],
      [now, `d:${field}`, String(by), idleDeadline, interval, String(-by)],
    );
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
   * Steps that each touch one key (the two keys live in different Cluster slots), ordered so
   * that a refusal leaves the old session exactly as it was and no failure leaves the new
   * privileges under the old key:
   * 1. read the old record (HGETALL);
   * 2. create the new key with `meta` applied (CREATE): a Redis over `maxmemory` refuses this
   *    cleanly (OOM), before anything changed;
   * 3. index the new key under its user, now that it exists (see `create`);
   * 4. take the old key (TAKE: it becomes a marker). When a concurrent write changed the old
   *    record after step 1, TAKE sends the latest one back and it is copied to the new key
   *    (REPLACE); when the old key was gone or rotated meanwhile (a double-submitted login),
   *    the new key is destroyed again and that is the answer;
   * 5. drop the old key from its user's index (best effort: a listing drops a stale member anyway).
   * Any failure after step 2 destroys the new key again (best effort) before rejecting: the
   * cookie for it is never issued. Three round trips, four for a session bound to a user.
   *
   * With `durability`, step 4 is the durable write. When TAKE ran on the primary but fewer
   * replicas than asked confirmed it, the login is refused (it rejects with
   * `RedisDurabilityError`, a 503) and the old key gets back the record TAKE took (UNDO_TAKE,
   * only over the marker TAKE left): the refused login leaves the session as it was, and the
   * browser's next try with the same cookie can succeed, instead of meeting a marker (409) until
   * it expires. Should that restoring write fail too, the marker stays and the session is lost:
   * the browser starts a new anonymous session once the marker expires, and the user logs in again.
   */
  async rotate(fromKey: string, toKey: string, { meta, now, markerExpiresAt }: Rotation): Promise<StoredSession | Absent> {
    const at = Math.floor(now);
    const markerAt = time("markerExpiresAt", markerExpiresAt);
    const read = await this.#readLive(fromKey, at);
    if (isAbsent(read)) return read;
    let moved: StoredSession = { meta: mergeMeta(read.record.meta, meta), fields: read.record.fields };
    const toSessionKey = this.#sessionKey(toKey);
    const created = await this.#redis.runScript(CREATE, [toSessionKey], writeArguments(at, moved));
    if (created !== 1) throw new Error("Redis store rotate: the new key already holds a session");
    try {
      if (moved.meta.userId !== undefined) await this.#indexAdd(moved.meta.userId, toKey, scoreOf(moved.meta), at);
      const { reply: taken, unconfirmed } = await this.#take(fromKey, [String(at), markerAt, recordDigest(read.list)]);
      if (isAbsent(taken)) {
        await this.#discard(toKey);
        return taken;
      }
      if (unconfirmed !== undefined) {
        await this.#undoTake(fromKey, taken === 1 ? read.list : taken).catch(() => undefined);
        throw unconfirmed;
      }
      const previousUsers = new Set([read.record.meta.userId]);
      if (taken !== 1) {
        const latest = parseRecord(taken);
        if (latest === undefined || latest === "rotated") {
          await this.#discard(toKey);
          return "gone";
        }
        previousUsers.add(latest.meta.userId);
        if (!sameRecord(latest, read.record)) {
          const updated: StoredSession = { meta: mergeMeta(latest.meta, meta), fields: latest.fields };
          if ((await this.#redis.runScript(REPLACE, [toSessionKey], writeArguments(at, updated))) !== 1) {
            await this.#discard(toKey);
            return "gone";
          }
          await this.#moveIndexEntry(toKey, moved.meta, updated.meta, at);
          moved = updated;
        }
      }
      for (const user of previousUsers) {
        if (user !== undefined) await this.#indexRemove(user, [fromKey]).catch(() => undefined);
      }
      return moved;
    } catch (error) {
      await this.#discard(toKey).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Removes the record, then its key from the user's index. The index cleanup is best effort,
   * as in rotate: the session is gone already (the security write is the DESTROY), and a listing
   * drops a member whose record is gone.
   */
  async destroy(key: string): Promise<void> {
    const user = await this.#securityWrite("destroy", DESTROY, [this.#sessionKey(key)], []);
    await this.#unindex(user, key);
  }

  async ping(): Promise<void> {
    await this.#redis.ping();
  }

  /**
   * The index in pages of {@link READ_BATCH} (see `#walkIndex`), each page's records read with
   * one HMGET per member ({@link READ_BATCH} in flight, each routed by its own key). A member
   * whose record is gone, expired (idled out: its score is the absolute deadline), damaged,
   * rotated away or bound to another user is dropped from the index.
   */
  async listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    const at = Math.floor(now);
    const entries: UserSessionEntry[] = [];
    await this.#walkIndex(userId, at, async (keys) => {
      const metas = await Promise.all(
        keys.map((key) => {
          const sessionKey = this.#sessionKey(key);
          return this.#redis.command(sessionKey, ["HMGET", sessionKey, ...META_LIST]).catch(nullOnWrongType);
        }),
      );
      const stale: string[] = [];
      keys.forEach((key, i) => {
        const meta = parseMetaList(metas[i] ?? null);
        if (meta !== undefined && meta.userId === userId && meta.expiresAt > at) entries.push({ key, meta });
        else stale.push(key);
      });
      return stale;
    });
    return entries;
  }

  /**
   * The index in pages, as `listUserSessions` walks it; each member's record is destroyed by
   * the REVOKE script only when it is live and still bound to `userId`, and every member of
   * the page leaves the index. Resolves the keys this call destroyed: a session destroyed
   * meanwhile by someone else is not reported twice.
   *
   * A member that turned out to be a rotation marker may have moved to a new key after the walk
   * read the index (a login or `regenerate()` racing the revocation). Rotation indexes the new
   * key before it takes the old one, so walking the index again finds it: the walk is repeated
   * while a pass met a marker, at most {@link REVOKE_PASSES} times, then this rejects.
   */
  async revokeUserSessions(userId: string, now: number): Promise<string[]> {
    const at = Math.floor(now);
    const revoked: string[] = [];
    for (let pass = 1; ; pass++) {
      let rotated = false;
      await this.#walkIndex(userId, at, async (keys) => {
        const replies = await Promise.all(
          keys.map((key) => this.#securityWrite("revokeUserSessions", REVOKE, [this.#sessionKey(key)], [String(at), userId])),
        );
        keys.forEach((key, i) => {
          if (replies[i] === 1) revoked.push(key);
          else if (replies[i] === "rotated") rotated = true;
        });
        return keys;
      });
      if (!rotated) return revoked;
      if (pass >= REVOKE_PASSES) {
        throw new Error(
          `Redis store revokeUserSessions: the user's sessions kept rotating to new keys through ${REVOKE_PASSES} passes over the index; try again`,
        );
      }
    }
  }

  /**
   * Counts session keys under the prefix with SCAN (O(keys in the database); meant for
   * dashboards, not requests). A rotation marker counts as a key until it expires (15 s).
   */
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
   * pipelined HMGETs ({@link READ_BATCH} in flight, each routed by its key). Field values
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
      for (let i = 0; i < names.length; i += READ_BATCH) {
        const chunk = names.slice(i, i + READ_BATCH);
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

  /** A write that ends a session ID: with `durability`, it resolves only once enough replicas hold it. */
  #securityWrite(operation: string, script: LuaScript, keys: readonly [string], args: readonly string[]): Promise<RedisReply> {
    return this.#durable?.runScript(operation, script, keys, args) ?? this.#redis.runScript(script, keys, args);
  }

  /** rotate's TAKE; with `durability`, a shortfall of replicas comes back beside its reply (see `rotate`). */
  async #take(fromKey: string, args: readonly string[]): Promise<{ reply: RedisReply; unconfirmed: Error | undefined }> {
    const keys = [this.#sessionKey(fromKey)] as const;
    if (this.#durable === undefined) return { reply: await this.#redis.runScript(TAKE, keys, args), unconfirmed: undefined };
    return this.#durable.runScriptOutcome("rotate", TAKE, keys, args);
  }

  /** Puts `list`, the flat HGETALL list TAKE took, back under `fromKey` over the marker TAKE left (UNDO_TAKE). */
  async #undoTake(fromKey: string, list: RedisReply): Promise<void> {
    const record = parseRecord(list);
    if (record === undefined || record === "rotated") return;
    await this.#redis.runScript(UNDO_TAKE, [this.#sessionKey(fromKey)], [String(record.meta.expiresAt), ...(list as string[])]);
  }

  /**
   * Destroys a record whose cookie was never issued (the new key of a rotation or creation that
   * failed): no browser holds it, so no replica needs to confirm its end, even with `durability`.
   */
  async #discard(key: string): Promise<void> {
    await this.#unindex(await this.#redis.runScript(DESTROY, [this.#sessionKey(key)], []), key);
  }

  /** Drops `key` from the index of `user` (what DESTROY answered), best effort: see `destroy`. */
  async #unindex(user: RedisReply, key: string): Promise<void> {
    if (typeof user === "string" && user !== "") await this.#indexRemove(user, [key]).catch(() => undefined);
  }

  #indexKey(userId: string): string {
    return `${this.#prefix}user:${createHash("sha256").update(userId).digest("base64url")}`;
  }

  #indexAdd(userId: string, key: string, score: number, now: number): Promise<RedisReply> {
    return this.#redis.runScript(INDEX_ADD, [this.#indexKey(userId)], [String(now), String(score), key]);
  }

  async #indexRemove(userId: string, keys: readonly string[]): Promise<void> {
    const indexKey = this.#indexKey(userId);
    for (let i = 0; i < keys.length; i += ZREM_BATCH) {
      await this.#redis.command(indexKey, ["ZREM", indexKey, ...keys.slice(i, i + ZREM_BATCH)]);
    }
  }

  /**
   * Keeps the user index in step after an `apply` that changed the user or the deadlines:
   * `reply` is APPLY's {1, user, expiresAt, absoluteExpiresAt} from before the change, and
   * `change` says what became of them.
   */
  async #reindex(key: string, reply: RedisReply[], change: Partial<SessionMeta>, now: number): Promise<void> {
    const [, user, expiresAt, absoluteExpiresAt] = reply;
    const before = {
      userId: typeof user === "string" && user !== "" ? user : undefined,
      expiresAt: Number(expiresAt),
      absoluteExpiresAt: Number(absoluteExpiresAt),
    };
    const after = {
      userId: Object.hasOwn(change, "userId") ? change.userId : before.userId,
      expiresAt: change.expiresAt ?? before.expiresAt,
      absoluteExpiresAt: change.absoluteExpiresAt ?? before.absoluteExpiresAt,
    };
    await this.#moveIndexEntry(key, before, after, now);
  }

  /** Moves `key`'s index entry from the user (and score) of `before` to those of `after`. */
  async #moveIndexEntry(key: string, before: IndexedMeta, after: IndexedMeta, now: number): Promise<void> {
    const scoreBefore = scoreOf(before);
    const scoreAfter = scoreOf(after);
    const writes: Promise<unknown>[] = [];
    if (before.userId !== undefined && before.userId !== after.userId) writes.push(this.#indexRemove(before.userId, [key]));
    if (after.userId !== undefined && (after.userId !== before.userId || scoreAfter !== scoreBefore) && Number.isFinite(scoreAfter)) {
      writes.push(this.#indexAdd(after.userId, key, scoreAfter, now));
    }
    await Promise.all(writes);
  }

  /**
   * Visits the members of `userId`'s index in pages of at most {@link READ_BATCH}: first drops
   * those past their score (ZREMRANGEBYSCORE), then walks the rest with ZSCAN (every member
   * present from start to end is visited; one ZSCAN returns twice is visited once) and removes
   * the members `visit` returns (ZREM). Holds the keys visited so far, about 50 bytes each.
   */
  async #walkIndex(userId: string, now: number, visit: (keys: string[]) => Promise<readonly string[]>): Promise<void> {
    const indexKey = this.#indexKey(userId);
    await this.#redis.command(indexKey, ["ZREMRANGEBYSCORE", indexKey, "-inf", String(now)]);
    const seen = new Set<string>();
    let cursor = "0";
    do {
      const reply = await this.#redis.command(indexKey, ["ZSCAN", indexKey, cursor, "COUNT", String(READ_BATCH)]);
      if (!Array.isArray(reply) || typeof reply[0] !== "string" || !Array.isArray(reply[1])) throw unexpected("ZSCAN", reply);
      cursor = reply[0];
      const members: string[] = [];
      // [member, score, member, score, …]
      for (let i = 0; i < reply[1].length; i += 2) {
        const member = reply[1][i];
        if (typeof member === "string" && !seen.has(member)) {
          seen.add(member);
          members.push(member);
        }
      }
      for (let i = 0; i < members.length; i += READ_BATCH) {
        const dropped = await visit(members.slice(i, i + READ_BATCH));
        if (dropped.length > 0) await this.#indexRemove(userId, dropped);
      }
    } while (cursor !== "0");
  }

  /**
   * The live record under `key` and the list it was read from, with one HGETALL; a damaged one
   * is removed by the LOAD script (which answers "gone", or the record if it has just been fixed).
   */
  async #readLive(key: string, now: number): Promise<{ record: StoredSession; list: string[] } | Absent> {
    const read = await this.#read(key, now);
    if (read !== "damaged") return read;
    const again = judge(await this.#redis.runScript(LOAD, [this.#sessionKey(key)], [String(now), NEVER, NEVER]), now);
    if (again !== "damaged") return again;
    await this.destroy(key);
    return "gone";
  }

  /** One HGETALL, judged (see `judge`); a value of another type under the key is "damaged". */
  async #read(key: string, now: number): Promise<{ record: StoredSession; list: string[] } | Absent | "damaged"> {
    const sessionKey = this.#sessionKey(key);
    let reply: RedisReply;
    try {
      reply = await this.#redis.command(sessionKey, ["HGETALL", sessionKey]);
    } catch (error) {
      if (isWrongType(error)) return "damaged";
      throw error;
    }
    return judge(reply, now);
  }
}

/** What the index score is computed from. */
type IndexedMeta = Pick<SessionMeta, "userId" | "expiresAt" | "absoluteExpiresAt">;

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

/** A stored time: a safe integer, as decimal text (PEXPIREAT reads it, Lua compares it). */
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
function scoreOf(meta: IndexedMeta): number {
  return Math.max(meta.expiresAt, meta.absoluteExpiresAt);
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined || !INTEGER_TEXT.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** The meta of a record from its hash fields; `undefined` when a timestamp is missing or not an integer. */
function metaOf(
  createdText: string | undefined,
  lastSeenText: string | undefined,
  absoluteText: string | undefined,
  expiresText: string | undefined,
  userId: string | undefined,
  userAgent: string | undefined,
  persistent: string | undefined,
): SessionMeta | undefined {
  const createdAt = integer(createdText);
  const lastSeenAt = integer(lastSeenText);
  const absoluteExpiresAt = integer(absoluteText);
  const expiresAt = integer(expiresText);
  if (createdAt === undefined || lastSeenAt === undefined || absoluteExpiresAt === undefined || expiresAt === undefined) return undefined;
  const meta: SessionMeta = { createdAt, lastSeenAt, absoluteExpiresAt, expiresAt };
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

/** A flat HGETALL list as a record, "rotated" for a rotation marker, `undefined` when it is neither. */
function parseRecord(reply: RedisReply): StoredSession | "rotated" | undefined {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) return undefined;
  const fields = new Map<string, string>();
  let c: string | undefined;
  let s: string | undefined;
  let a: string | undefined;
  let e: string | undefined;
  let u: string | undefined;
  let ua: string | undefined;
  let p: string | undefined;
  for (let i = 0; i < reply.length; i += 2) {
    const name = reply[i];
    const value = reply[i + 1];
    if (typeof name !== "string" || typeof value !== "string") return undefined;
    if (name.startsWith("d:")) fields.set(name.slice(2), value);
    else if (name === M.createdAt) c = value;
    else if (name === M.lastSeenAt) s = value;
    else if (name === M.absoluteExpiresAt) a = value;
    else if (name === M.expiresAt) e = value;
    else if (name === M.userId) u = value;
    else if (name === M.userAgent) ua = value;
    else if (name === M.persistent) p = value;
    else if (name === "r") return "rotated";
  }
  const meta = metaOf(c, s, a, e, u, ua, p);
  return meta === undefined ? undefined : { meta, fields };
}

/**
 * A record as read (HGETALL, or the LOAD script's reply), judged as the scripts' `absent`
 * judges one: "rotated" for a marker, "gone" for nothing there or a record whose `expiresAt`
 * is not after `now`, "damaged" for anything else that is not a well-formed record.
 */
function judge(reply: RedisReply, now: number): { record: StoredSession; list: string[] } | Absent | "damaged" {
  if (isAbsent(reply)) return reply;
  if (Array.isArray(reply) && reply.length === 0) return "gone";
  const record = parseRecord(reply);
  if (record === undefined) return "damaged";
  if (record === "rotated") return "rotated";
  if (record.meta.expiresAt <= now) return "gone";
  // parseRecord checked that every entry is a string.
  return { record, list: reply as string[] };
}

/** now, expiresAt, then the record's meta and data as field/value pairs: what CREATE and REPLACE take. */
function writeArguments(now: number, { meta, fields }: StoredSession): string[] {
  const args = [String(now), time("expiresAt", meta.expiresAt)];
  metaPairs(meta, args, []);
  for (const [field, json] of fields) args.push(`d:${field}`, json);
  return args;
}

/** Whether two records hold the same meta and the same fields. */
function sameRecord(one: StoredSession, other: StoredSession): boolean {
  const [a, b] = [one.meta, other.meta];
  if (
    a.createdAt !== b.createdAt ||
    a.lastSeenAt !== b.lastSeenAt ||
    a.absoluteExpiresAt !== b.absoluteExpiresAt ||
    a.expiresAt !== b.expiresAt ||
    a.userId !== b.userId ||
    a.userAgent !== b.userAgent ||
    a.persistent !== b.persistent ||
    one.fields.size !== other.fields.size
  ) {
    return false;
  }
  for (const [field, json] of one.fields) if (other.fields.get(field) !== json) return false;
  return true;
}

/** An HMGET of {@link META_LIST} as meta. */
function parseMetaList(reply: RedisReply): SessionMeta | undefined {
  if (!Array.isArray(reply)) return undefined;
  const [c, s, a, e, u, ua, p] = reply.map((value) => (typeof value === "string" ? value : undefined));
  return metaOf(c, s, a, e, u, ua, p);
}

/** A key that is not a hash (a foreign or damaged value) answers HMGET with WRONGTYPE: it holds no session. */
function nullOnWrongType(error: unknown): null {
  if (isWrongType(error)) return null;
  throw error;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\^]/g, (character) => `\\${character}`);
}

function unexpected(operation: string, reply: RedisReply): Error {
  return new Error(`Redis store ${operation}: unexpected reply ${JSON.stringify(reply)?.slice(0, 100)}`);
}
