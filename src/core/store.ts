/**
 * The contract between the session core and a storage backend.
 *
 * A store only stores: it never sees a raw session ID (only `key`, a hash of it),
 * never decides policy (timeouts, rotation, cookies) and never encodes values
 * (field values arrive as JSON text and leave as JSON text).
 *
 * Every operation is atomic in the store: the in-process store runs each one
 * synchronously, SQLite in one transaction, Redis in one command or Lua script.
 * Every mutating operation on an existing record refuses to act when the record
 * is gone (destroyed, rotated away or expired), so no request can bring a
 * destroyed session back.
 *
 * Errors: a store throws only for system failures (unreachable, refused write,
 * timeout). A missing, expired or corrupted record is not an error: it is
 * `undefined`, and a corrupted one is also removed by the store.
 * @module
 */

/** Timestamps are milliseconds since the Unix epoch. */
export interface SessionMeta {
  createdAt: number;
  /** Last time the session was used, at the precision of the touch interval. */
  lastSeenAt: number;
  /** Absolute deadline: no touch ever moves `expiresAt` past it. */
  absoluteExpiresAt: number;
  /** When the record stops being live: min(lastSeenAt + idle timeout, absoluteExpiresAt). */
  expiresAt: number;
  /** The user this session is bound to, if any. */
  userId?: string | undefined;
  /** The User-Agent of the request that logged the user in (truncated); none for anonymous sessions. */
  userAgent?: string | undefined;
}

/** A live record. `fields` maps a session key to its JSON-encoded value. */
export interface StoredSession {
  meta: SessionMeta;
  fields: Map<string, string>;
}

/** What `load` needs to refresh the idle deadline in the same atomic step. */
export interface LoadOptions {
  now: number;
  idleTimeoutMs: number;
  /**
   * Refresh `lastSeenAt` and `expiresAt` only when `now - lastSeenAt >= touchIntervalMs`:
   * an unchanged session costs no write most of the time.
   */
  touchIntervalMs: number;
}

/** A change to an existing record. Fields not named are left as they are. */
export interface SessionChange {
  /** Fields to write (JSON text). */
  set?: ReadonlyMap<string, string>;
  /** Fields to remove. */
  delete?: readonly string[];
  /** Meta fields to overwrite; `expiresAt` moves the record's expiry. */
  meta?: Partial<SessionMeta>;
  /** The time of the change: a record whose `expiresAt <= now` counts as gone. */
  now: number;
}

/** The outcome of a compare-and-set. */
export type CompareAndSetResult = "ok" | "conflict" | "gone";

/** A live session as listed in a user's index. */
export interface UserSessionEntry {
  key: string;
  meta: SessionMeta;
}

export interface SessionStore {
  /** A short name for logs and metrics, such as `"redis"`. */
  readonly kind: string;

  /**
   * The live record under `key`, or `undefined` when there is none, it has expired,
   * or it is corrupted (then it is also removed). When a touch is due (see
   * {@link LoadOptions.touchIntervalMs}) the store refreshes the idle deadline in the
   * same atomic step and returns the refreshed meta.
   */
  load(key: string, options: LoadOptions): Promise<StoredSession | undefined>;

  /**
   * Writes a new record. Resolves `false`, writing nothing, when a live record
   * already holds `key`.
   */
  create(key: string, record: StoredSession): Promise<boolean>;

  /** Applies `change` to a live record. Resolves `false`, writing nothing, when it is gone. */
  apply(key: string, change: SessionChange): Promise<boolean>;

  /**
   * Adds `by` to the integer field `field` (absent counts as 0) and resolves the new
   * value, or `undefined` when the record is gone. Refreshes the idle deadline in the same
   * atomic step when a touch is due, exactly as `load` does: a request whose only store
   * call is an increment keeps its session alive. Rejects with `SessionValueError` when
   * the field holds something other than an integer.
   */
  increment(key: string, field: string, by: number, options: LoadOptions): Promise<number | undefined>;

  /**
   * Sets `field` to `next` (or removes it when `next` is `undefined`) only if it
   * currently holds exactly `expected` (`undefined`: absent).
   */
  compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult>;

  /**
   * Moves a live record from `fromKey` to `toKey`, applying `meta` to it, in a way that
   * leaves `fromKey` dead whatever happens: if the move fails midway the session is
   * lost, never left alive under the old key. Resolves the moved record, or
   * `undefined` when `fromKey` was already gone.
   */
  rotate(fromKey: string, toKey: string, meta: Partial<SessionMeta>, now: number): Promise<StoredSession | undefined>;

  /** Removes the record. Removing a missing record is not an error. */
  destroy(key: string): Promise<void>;

  /** Resolves when the store answers; rejects when it does not. */
  ping(): Promise<void>;

  /** The live sessions bound to `userId` (optional ability). */
  listByUser?(userId: string, now: number): Promise<UserSessionEntry[]>;

  /**
   * Destroys every session bound to `userId` and resolves the keys of those that were live
   * (optional ability). The keys let the core report each one as destroyed.
   */
  destroyByUser?(userId: string, now: number): Promise<string[]>;

  /** How many live sessions the store holds (optional ability). */
  count?(now: number): Promise<number>;

  /**
   * Every live session (`expiresAt > now`, meta intact) with its key and meta, for admin
   * tools (optional ability). The store reads in batches and never loads field values, so
   * memory stays bounded by a batch, and no single step holds the backend for long (Redis:
   * `SCAN` on every master, then pipelined `HMGET`s; SQLite: one short read per page of keys).
   * It costs O(sessions in the store): never call it on a request path.
   *
   * Each key is yielded at most once, in no particular order. A session created, destroyed or
   * rotated while the scan runs may or may not be listed (a rotated one may appear under its
   * old key, its new key or both). Breaking out of the loop stops the scan.
   */
  scan?(now: number): AsyncIterable<UserSessionEntry>;

  /**
   * Deletes the records that expired (`expiresAt <= now`) and resolves how many it deleted
   * (optional ability). Only stores whose records outlive their expiry until a sweep have it
   * (SQLite); Redis expires keys by itself. Runs in short batches, so that other writers wait
   * at most one batch for the lock.
   */
  purgeExpired?(now: number): Promise<number>;

  /** Releases timers and connections the store opened itself. */
  dispose?(): Promise<void>;
}
