/**
 * The contract between the session core and a storage backend.
 *
 * A store only stores: it never sees a raw session ID (only `key`, a hash of it), never
 * decides policy (timeouts, rotation, cookies, caps) and never encodes values (field values
 * arrive as JSON text and leave as JSON text, byte for byte). What every store would
 * otherwise repeat — the touch arithmetic, merging a partial meta, integer checks — is in
 * `atomic-session`'s `record` helpers (`touchMeta`, `mergeMeta`, `addToStoredInteger`),
 * exported for store authors.
 *
 * Every operation is atomic in the store: the in-process store runs each one synchronously,
 * SQLite and PostgreSQL in one transaction, Redis in one command or Lua script. Every
 * mutating operation on an existing record refuses to act when the record is not live, so no
 * request can bring a destroyed session back. A key the session left by rotation (login)
 * answers `"rotated"` for a short while instead of `"gone"`, so that a request racing the
 * login can be refused instead of starting a new anonymous session.
 *
 * Errors: a store throws only for system failures (unreachable, refused write, timeout) and
 * `SessionValueError` (an increment of a value that is not an integer). A missing, expired
 * or corrupted record is not an error: it is `"gone"`, and a corrupted one is also removed.
 *
 * `describeStoreConformance` (`atomic-session/testing`) checks all of this against a store.
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
  /**
   * The cookie lifetime chosen at login ("remember me"): `true` the cookie carries `Expires`,
   * `false` it is a browser-session cookie; absent, the manager's `cookie.persistent` decides.
   */
  persistent?: boolean | undefined;
}

/** A live record. `fields` maps a session key to its JSON-encoded value. */
export interface StoredSession {
  meta: SessionMeta;
  fields: Map<string, string>;
}

/**
 * Why there is no live record under a key:
 * - `"gone"`: never written, destroyed, expired or corrupted;
 * - `"rotated"`: the session moved to a new key (login, `regenerate()`) a short while ago.
 */
export type Absent = "gone" | "rotated";

/** What `load` and `increment` need to refresh the idle deadline in the same atomic step. */
export interface TouchOptions {
  now: number;
  idleTimeoutMs: number;
  /**
   * Refresh `lastSeenAt` and `expiresAt` only when `now - lastSeenAt >= touchIntervalMs`:
   * an unchanged session costs no write most of the time. See `touchMeta`.
   */
  touchIntervalMs: number;
}

/** A change to an existing record. Fields not named are left as they are. */
export interface SessionChange {
  /** Fields to write (JSON text). */
  set?: ReadonlyMap<string, string>;
  /** Fields to remove. */
  delete?: readonly string[];
  /** Meta fields to overwrite (see `mergeMeta`); `expiresAt` moves the record's expiry. */
  meta?: Partial<SessionMeta>;
  /** The time of the change: a record whose `expiresAt <= now` counts as gone. */
  now: number;
}

/** How `rotate` moves a record. */
export interface Rotation {
  /** Meta fields to overwrite on the moved record (see `mergeMeta`). */
  meta: Partial<SessionMeta>;
  now: number;
  /**
   * Until when the old key answers `"rotated"` (a marker that holds no data and does not
   * name the new key); after that it is simply gone.
   */
  markerExpiresAt: number;
}

/** The outcome of a compare-and-set. */
export type CompareAndSetResult = "ok" | "conflict" | Absent;

/** A live session as listed in a user's index. */
export interface UserSessionEntry {
  key: string;
  meta: SessionMeta;
}

export interface SessionStore {
  /** A short name for logs and metrics, such as `"redis"`. */
  readonly kind: string;

  /**
   * The live record under `key`. When a touch is due (see {@link TouchOptions}) the store
   * refreshes the idle deadline in the same atomic step and returns the refreshed meta.
   * A corrupted record (unreadable meta or fields) is removed and answers `"gone"`.
   */
  load(key: string, touch: TouchOptions): Promise<StoredSession | Absent>;

  /** Writes a new record. Resolves `false`, writing nothing, when a live record or a rotation marker holds `key`. */
  create(key: string, record: StoredSession): Promise<boolean>;

  /** Applies `change` to a live record, or writes nothing and says why there is none. */
  apply(key: string, change: SessionChange): Promise<"ok" | Absent>;

  /**
   * Adds `by` to the integer field `field` (absent counts as 0) and resolves the new value
   * (see `addToStoredInteger`). Refreshes the idle deadline in the same atomic step when a
   * touch is due, exactly as `load` does: a request whose only store call is an increment
   * keeps its session alive. Rejects with `SessionValueError`, writing nothing, when the
   * field holds something other than an integer or the sum leaves the safe integer range.
   */
  increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent>;

  /**
   * Sets `field` to `next` (or removes it when `next` is `undefined`) only if it currently
   * holds exactly `expected` (`undefined`: absent).
   */
  compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult>;

  /**
   * Moves the live record under `fromKey` to `toKey` with `rotation.meta` applied, and leaves
   * a rotation marker under `fromKey` until `rotation.markerExpiresAt`. Whatever fails:
   * - a refusal before the move (a full store) leaves `fromKey` exactly as it was;
   * - the record under `fromKey` never gains `rotation.meta`;
   * - once the call resolves, `fromKey` holds no live record.
   * Resolves the moved record, or why `fromKey` held none (then `toKey` holds nothing).
   */
  rotate(fromKey: string, toKey: string, rotation: Rotation): Promise<StoredSession | Absent>;

  /** Removes the record (and any rotation marker). Removing a missing record is not an error. */
  destroy(key: string): Promise<void>;

  /** Resolves when the store answers; rejects when it does not. */
  ping(): Promise<void>;

  /**
   * The live sessions bound to `userId`, in no particular order (optional ability). The store
   * reads them in bounded batches, whatever their number, and drops index entries of sessions
   * no longer live as it finds them.
   */
  listUserSessions?(userId: string, now: number): Promise<UserSessionEntry[]>;

  /**
   * Destroys every session bound to `userId`, in bounded batches, and resolves the keys of
   * those that were live (optional ability): the core reports each one as destroyed. A session
   * of the user that rotates while this runs is ended under its new key too; a store may reject
   * (a system failure) rather than resolve while a session of the user is still live.
   */
  revokeUserSessions?(userId: string, now: number): Promise<string[]>;

  /** How many live sessions the store holds (optional ability); a rotation marker may be counted for the minute it lives. */
  count?(now: number): Promise<number>;

  /**
   * Every live session with its key and meta, for admin tools (optional ability). The store
   * reads in batches and never loads field values, so memory stays bounded by a batch, and no
   * single step holds the backend for long. It costs O(sessions in the store): never call it
   * on a request path.
   *
   * Each key is yielded at most once, in no particular order. A session created, destroyed or
   * rotated while the scan runs may or may not be listed. Breaking out of the loop stops the scan.
   */
  scan?(now: number): AsyncIterable<UserSessionEntry>;

  /**
   * Deletes the records (and rotation markers) that expired and resolves how many sessions it
   * deleted (optional ability). Only stores whose records outlive their expiry until a sweep
   * have it (SQLite, PostgreSQL); Redis expires keys by itself. Runs in short batches.
   */
  purgeExpired?(now: number): Promise<number>;

  /** Releases timers, workers and connections the store opened itself. */
  dispose?(): Promise<void>;
}
