import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { SessionConfigError } from "../core/errors.js";
import { addToStoredInteger, isTimestamp, mergeMeta, touchMeta } from "../core/record.js";
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
} from "../core/store.js";

/** Options of {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * The database file, created with its parent folder when missing. Default `./data/sessions.db`.
   * Several processes may share one file.
   */
  path?: string;
  /** How often expired sessions are deleted. Default 60 s. */
  sweepIntervalMs?: number;
  /**
   * How long a write waits for another connection (or process) holding the write lock
   * before failing. Default 500 ms.
   */
  busyTimeoutMs?: number;
}

/** The schema version this code writes, kept in `PRAGMA user_version` so that a later version can migrate. */
const SCHEMA_VERSION = 1;
const DEFAULT_PATH = "./data/sessions.db";
/** `setInterval` fires at once for delays past 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** Rows deleted per sweep statement, so that a large sweep never holds the write lock for long. */
const SWEEP_BATCH = 1000;
/** Rows read per page of `scan()`: each page is one short read, so no reader holds a snapshot for long. */
const SCAN_PAGE = 1000;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS atomic_session_sessions (
    key TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_id TEXT,
    user_agent TEXT,
    persistent INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS atomic_session_sessions_user_id ON atomic_session_sessions (user_id);
  CREATE INDEX IF NOT EXISTS atomic_session_sessions_expires_at ON atomic_session_sessions (expires_at);
  CREATE TABLE IF NOT EXISTS atomic_session_fields (
    session_key TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session_key, field),
    FOREIGN KEY (session_key) REFERENCES atomic_session_sessions (key) ON DELETE CASCADE ON UPDATE CASCADE
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS atomic_session_rotated (
    key TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
`;

/** A session row as SQLite returns it: columns are loosely typed, so nothing is trusted before `toMeta`. */
interface SessionRow {
  key: unknown;
  created_at: unknown;
  last_seen_at: unknown;
  absolute_expires_at: unknown;
  expires_at: unknown;
  user_id: unknown;
  user_agent: unknown;
  persistent: unknown;
}

interface FieldRow {
  field: unknown;
  value: unknown;
}

/** What a read found under a key: a live record's meta, or why there is none. */
type Lookup = { state: "live"; meta: SessionMeta } | { state: "missing" | "expired" | "corrupt" };

/** Returned by a read-only load attempt that found something to write (a touch or a corrupt row). */
const NEEDS_WRITE = Symbol("needs write");
type LoadResult = StoredSession | Absent | typeof NEEDS_WRITE;

/**
 * Sessions in a SQLite file, shared safely by every process that opens it. One row per
 * session and one row per field, so a write touches only the fields that changed. Each
 * operation runs in one `BEGIN IMMEDIATE` transaction, which makes it atomic across
 * connections and processes; WAL mode lets readers proceed while one process writes.
 * Expired rows are deleted by a periodic sweep.
 */
export class SqliteStore implements SessionStore {
  readonly kind = "sqlite";
  readonly #db: Database.Database;
  readonly #sweeper: NodeJS.Timeout;

  readonly #selectSession: Database.Statement<[string], SessionRow>;
  readonly #selectFields: Database.Statement<[string], FieldRow>;
  readonly #selectField: Database.Statement<[string, string], { value: unknown }>;
  readonly #selectByUser: Database.Statement<[string], SessionRow>;
  readonly #selectRotated: Database.Statement<[string, number], { key: unknown }>;
  readonly #insertSession: Database.Statement<[string, ...MetaColumns]>;
  readonly #updateMeta: Database.Statement<[...MetaColumns, string]>;
  readonly #moveSession: Database.Statement<[string, ...MetaColumns, string]>;
  readonly #insertRotated: Database.Statement<[string, number]>;
  readonly #touch: Database.Statement<[number, number, string]>;
  readonly #upsertField: Database.Statement<[string, string, string]>;
  readonly #deleteField: Database.Statement<[string, string]>;
  readonly #deleteSession: Database.Statement<[string]>;
  readonly #deleteRotated: Database.Statement<[string]>;
  readonly #deleteByUser: Database.Statement<[string]>;
  readonly #countLive: Database.Statement<[number], { n: number }>;
  readonly #sweepBatch: Database.Statement<[number, number]>;
  readonly #sweepRotated: Database.Statement<[number, number]>;
  readonly #scanPage: Database.Statement<[string, number, number], SessionRow>;
  readonly #selectOne: Database.Statement<[]>;

  readonly #loadTx: Database.Transaction<(key: string, touch: TouchOptions, write: boolean) => LoadResult>;
  readonly #createTx: Database.Transaction<(key: string, record: StoredSession) => boolean>;
  readonly #applyTx: Database.Transaction<(key: string, change: SessionChange) => "ok" | Absent>;
  readonly #incrementTx: Database.Transaction<(key: string, field: string, by: number, touch: TouchOptions) => number | Absent>;
  readonly #compareAndSetTx: Database.Transaction<
    (key: string, field: string, expected: string | undefined, next: string | undefined, now: number) => CompareAndSetResult
  >;
  readonly #rotateTx: Database.Transaction<(fromKey: string, toKey: string, rotation: Rotation) => StoredSession | Absent>;
  readonly #destroyTx: Database.Transaction<(key: string) => void>;
  readonly #revokeUserTx: Database.Transaction<(userId: string, now: number) => string[]>;

  constructor(options: SqliteStoreOptions = {}) {
    if (typeof options !== "object" || options === null) throw new SessionConfigError("SqliteStore options must be an object");
    const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    const busyTimeoutMs = options.busyTimeoutMs ?? 500;
    if (!Number.isSafeInteger(sweepIntervalMs) || sweepIntervalMs <= 0 || sweepIntervalMs > MAX_TIMER_MS) {
      throw new SessionConfigError(
        `SqliteStore sweepIntervalMs must be a whole number of milliseconds between 1 and ${MAX_TIMER_MS}, got ${String(options.sweepIntervalMs)}`,
      );
    }
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > MAX_TIMER_MS) {
      throw new SessionConfigError(
        `SqliteStore busyTimeoutMs must be a whole number of milliseconds between 0 and ${MAX_TIMER_MS}, got ${String(options.busyTimeoutMs)}`,
      );
    }
    this.#db = openFile(options.path ?? DEFAULT_PATH);
    try {
      configure(this.#db, busyTimeoutMs);
      migrate(this.#db);
    } catch (error) {
      this.#db.close();
      throw error;
    }

    const db = this.#db;
    const prepare = <P extends unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    const metaColumns =
      "created_at = ?, last_seen_at = ?, absolute_expires_at = ?, expires_at = ?, user_id = ?, user_agent = ?, persistent = ?";
    this.#selectSession = prepare("SELECT * FROM atomic_session_sessions WHERE key = ?");
    this.#selectFields = prepare("SELECT field, value FROM atomic_session_fields WHERE session_key = ?");
    this.#selectField = prepare("SELECT value FROM atomic_session_fields WHERE session_key = ? AND field = ?");
    this.#selectByUser = prepare("SELECT * FROM atomic_session_sessions WHERE user_id = ?");
    this.#selectRotated = prepare("SELECT key FROM atomic_session_rotated WHERE key = ? AND expires_at > ?");
    this.#insertSession = prepare(
      `INSERT INTO atomic_session_sessions (key, created_at, last_seen_at, absolute_expires_at, expires_at, user_id, user_agent, persistent)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#updateMeta = prepare(`UPDATE atomic_session_sessions SET ${metaColumns} WHERE key = ?`);
    // ON UPDATE CASCADE moves the field rows along with the key, in the same statement.
    this.#moveSession = prepare(`UPDATE atomic_session_sessions SET key = ?, ${metaColumns} WHERE key = ?`);
    this.#insertRotated = prepare("INSERT OR REPLACE INTO atomic_session_rotated (key, expires_at) VALUES (?, ?)");
    this.#touch = prepare("UPDATE atomic_session_sessions SET last_seen_at = ?, expires_at = ? WHERE key = ?");
    this.#upsertField = prepare(
      `INSERT INTO atomic_session_fields (session_key, field, value) VALUES (?, ?, ?)
       ON CONFLICT (session_key, field) DO UPDATE SET value = excluded.value`,
    );
    this.#deleteField = prepare("DELETE FROM atomic_session_fields WHERE session_key = ? AND field = ?");
    // ON DELETE CASCADE removes the field rows.
    this.#deleteSession = prepare("DELETE FROM atomic_session_sessions WHERE key = ?");
    this.#deleteRotated = prepare("DELETE FROM atomic_session_rotated WHERE key = ?");
    this.#deleteByUser = prepare("DELETE FROM atomic_session_sessions WHERE user_id = ?");
    // The typeof test keeps a corrupted (text) expires_at, which sorts above every number, out of the count.
    this.#countLive = prepare("SELECT count(*) AS n FROM atomic_session_sessions WHERE expires_at > ? AND typeof(expires_at) = 'integer'");
    this.#sweepBatch = prepare(
      "DELETE FROM atomic_session_sessions WHERE key IN (SELECT key FROM atomic_session_sessions WHERE expires_at <= ? LIMIT ?)",
    );
    this.#sweepRotated = prepare(
      "DELETE FROM atomic_session_rotated WHERE key IN (SELECT key FROM atomic_session_rotated WHERE expires_at <= ? LIMIT ?)",
    );
    // Pages walk the primary key (`+expires_at` keeps the planner off the expiry index, which would sort every live row per page).
    this.#scanPage = prepare("SELECT * FROM atomic_session_sessions WHERE key > ? AND +expires_at > ? ORDER BY key LIMIT ?");
    this.#selectOne = prepare("SELECT 1");

    this.#loadTx = db.transaction(this.#loadRecord.bind(this));
    this.#createTx = db.transaction(this.#createRecord.bind(this));
    this.#applyTx = db.transaction(this.#applyChange.bind(this));
    this.#incrementTx = db.transaction(this.#incrementField.bind(this));
    this.#compareAndSetTx = db.transaction(this.#compareAndSetField.bind(this));
    this.#rotateTx = db.transaction(this.#rotateRecord.bind(this));
    this.#destroyTx = db.transaction((key: string) => {
      this.#deleteSession.run(key);
      this.#deleteRotated.run(key);
    });
    this.#revokeUserTx = db.transaction(this.#revokeUser.bind(this));

    this.#sweeper = setInterval(() => this.#sweep(Date.now()), sweepIntervalMs);
    this.#sweeper.unref();
  }

  async load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    // Most loads write nothing, so they first run as a read that takes no write lock; only
    // when a touch is due or the row is corrupt is the load redone under the write lock.
    let result = this.#loadTx.deferred(key, touch, false);
    if (result === NEEDS_WRITE) result = this.#loadTx.immediate(key, touch, true);
    return result === NEEDS_WRITE ? "gone" : result;
  }

  async create(key: string, record: StoredSession): Promise<boolean> {
    return this.#createTx.immediate(key, record);
  }

  async apply(key: string, change: SessionChange): Promise<"ok" | Absent> {
    return this.#applyTx.immediate(key, change);
  }

  async increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    return this.#incrementTx.immediate(key, field, by, touch);
  }

  async compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    return this.#compareAndSetTx.immediate(key, field, expected, next, now);
  }

  async rotate(fromKey: string, toKey: string, rotation: Rotation): Promise<StoredSession | Absent> {
    return this.#rotateTx.immediate(fromKey, toKey, rotation);
  }

  async destroy(key: string): Promise<void> {
    this.#destroyTx.immediate(key);
  }

  async ping(): Promise<void> {
    this.#selectOne.get();
  }

  async listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    const entries: UserSessionEntry[] = [];
    for (const row of this.#selectByUser.all(userId)) {
      const meta = toMeta(row);
      if (meta !== undefined && meta.expiresAt > now && typeof row.key === "string") entries.push({ key: row.key, meta });
    }
    return entries;
  }

  async revokeUserSessions(userId: string, now: number): Promise<string[]> {
    return this.#revokeUserTx.immediate(userId, now);
  }

  async count(now: number): Promise<number> {
    return this.#countLive.get(now)?.n ?? 0;
  }

  /** Every live session's key and meta, a page of {@link SCAN_PAGE} rows per read, in key order; field rows are never read. */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    let after = "";
    for (;;) {
      const rows = this.#scanPage.all(after, now, SCAN_PAGE);
      for (const row of rows) {
        if (typeof row.key !== "string") continue;
        const meta = toMeta(row);
        if (meta !== undefined && meta.expiresAt > now) yield { key: row.key, meta };
      }
      const last = rows.at(-1)?.key;
      if (rows.length < SCAN_PAGE || typeof last !== "string") return;
      after = last;
    }
  }

  /** Deletes expired sessions (and their fields) and rotation markers now, in batches of {@link SWEEP_BATCH}, and resolves how many sessions. */
  async purgeExpired(now: number): Promise<number> {
    return this.#purge(now);
  }

  async dispose(): Promise<void> {
    clearInterval(this.#sweeper);
    if (this.#db.open) this.#db.close();
  }

  /** What is under `key`; call inside a transaction. */
  #lookup(key: string, now: number): Lookup {
    const row = this.#selectSession.get(key);
    if (row === undefined) return { state: "missing" };
    const meta = toMeta(row);
    if (meta === undefined) return { state: "corrupt" };
    return meta.expiresAt > now ? { state: "live", meta } : { state: "expired" };
  }

  /** Why there is no live record under `key`: a rotation marker, or nothing. */
  #absence(key: string, now: number): Absent {
    return this.#selectRotated.get(key, now) === undefined ? "gone" : "rotated";
  }

  /** The live meta of `key`, or why there is none; a corrupt row is deleted on the way. Call inside a write transaction. */
  #liveForWrite(key: string, now: number): SessionMeta | Absent {
    const found = this.#lookup(key, now);
    if (found.state === "live") return found.meta;
    if (found.state === "corrupt") this.#deleteSession.run(key);
    return this.#absence(key, now);
  }

  /** The fields of `key`, or undefined when a field row is damaged. */
  #fields(key: string): Map<string, string> | undefined {
    const fields = new Map<string, string>();
    for (const { field, value } of this.#selectFields.all(key)) {
      if (typeof field !== "string" || typeof value !== "string") return undefined;
      fields.set(field, value);
    }
    return fields;
  }

  /** The body of `load`; with `write` false it only reads, and says when it would have to write. */
  #loadRecord(key: string, touch: TouchOptions, write: boolean): LoadResult {
    const found = this.#lookup(key, touch.now);
    // An expired row is left to the sweeper: it is already absent to every reader.
    if (found.state === "missing" || found.state === "expired") return this.#absence(key, touch.now);
    const fields = found.state === "live" ? this.#fields(key) : undefined;
    if (found.state !== "live" || fields === undefined) {
      // A corrupt row, or a damaged field row, counts as absent and is removed.
      if (!write) return NEEDS_WRITE;
      this.#deleteSession.run(key);
      return "gone";
    }
    const touched = touchMeta(found.meta, touch);
    if (touched === undefined) return { meta: found.meta, fields };
    if (!write) return NEEDS_WRITE;
    this.#touch.run(touched.lastSeenAt, touched.expiresAt, key);
    return { meta: touched, fields };
  }

  #createRecord(key: string, record: StoredSession): boolean {
    const now = Date.now();
    const found = this.#lookup(key, now);
    if (found.state === "live" || this.#absence(key, now) === "rotated") return false;
    // An expired or corrupt row not yet swept is replaced, its fields with it.
    if (found.state !== "missing") this.#deleteSession.run(key);
    this.#insertSession.run(key, ...metaColumns(record.meta));
    for (const [field, value] of record.fields) this.#upsertField.run(key, field, value);
    return true;
  }

  #applyChange(key: string, change: SessionChange): "ok" | Absent {
    const meta = this.#liveForWrite(key, change.now);
    if (typeof meta === "string") return meta;
    for (const [field, value] of change.set ?? []) this.#upsertField.run(key, field, value);
    for (const field of change.delete ?? []) this.#deleteField.run(key, field);
    if (change.meta !== undefined) this.#updateMeta.run(...metaColumns(mergeMeta(meta, change.meta)), key);
    return "ok";
  }

  #incrementField(key: string, field: string, by: number, touch: TouchOptions): number | Absent {
    const meta = this.#liveForWrite(key, touch.now);
    if (typeof meta === "string") return meta;
    const current = this.#selectField.get(key, field)?.value;
    const next = addToStoredInteger(field, typeof current === "string" || current === undefined ? current : String(current), by);
    // An increment is activity, and often a request's only store call: it touches like a load.
    const touched = touchMeta(meta, touch);
    if (touched !== undefined) this.#touch.run(touched.lastSeenAt, touched.expiresAt, key);
    // Decimal text is the JSON encoding of an integer, so the value reads back as a number.
    this.#upsertField.run(key, field, String(next));
    return next;
  }

  #compareAndSetField(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): CompareAndSetResult {
    const meta = this.#liveForWrite(key, now);
    if (typeof meta === "string") return meta;
    if (this.#selectField.get(key, field)?.value !== expected) return "conflict";
    if (next === undefined) this.#deleteField.run(key, field);
    else this.#upsertField.run(key, field, next);
    return "ok";
  }

  #rotateRecord(fromKey: string, toKey: string, { meta: change, now, markerExpiresAt }: Rotation): StoredSession | Absent {
    const current = this.#liveForWrite(fromKey, now);
    if (typeof current === "string") return current;
    const fields = this.#fields(fromKey);
    if (fields === undefined) {
      this.#deleteSession.run(fromKey);
      return "gone";
    }
    const meta = mergeMeta(current, change);
    // A record under the new key is overwritten, as in the memory store: a fresh random key never holds one.
    this.#deleteSession.run(toKey);
    // One statement in one transaction: the old key is dead whether or not the move commits.
    this.#moveSession.run(toKey, ...metaColumns(meta), fromKey);
    this.#insertRotated.run(fromKey, markerExpiresAt);
    return { meta, fields };
  }

  #revokeUser(userId: string, now: number): string[] {
    const live: string[] = [];
    for (const row of this.#selectByUser.all(userId)) {
      const meta = toMeta(row);
      if (meta !== undefined && meta.expiresAt > now && typeof row.key === "string") live.push(row.key);
    }
    // Expired and corrupt rows of the user go too: they are dead already.
    this.#deleteByUser.run(userId);
    return live;
  }

  /** Deletes expired sessions; each batch commits on its own, so other processes wait at most one batch for the lock. */
  #purge(now: number): number {
    let deleted = 0;
    for (;;) {
      // `changes` counts the session rows; the field rows going with them (ON DELETE CASCADE) are not counted.
      const { changes } = this.#sweepBatch.run(now, SWEEP_BATCH);
      deleted += changes;
      if (changes < SWEEP_BATCH) break;
    }
    while (this.#sweepRotated.run(now, SWEEP_BATCH).changes === SWEEP_BATCH);
    return deleted;
  }

  #sweep(now: number): void {
    try {
      this.#purge(now);
    } catch {
      // A busy or closed database: the next sweep tries again, and readers ignore expired rows meanwhile.
    }
  }
}

type MetaColumns = [number, number, number, number, string | null, string | null, number | null];

function metaColumns(meta: SessionMeta): MetaColumns {
  const persistent = meta.persistent === undefined ? null : meta.persistent ? 1 : 0;
  return [meta.createdAt, meta.lastSeenAt, meta.absoluteExpiresAt, meta.expiresAt, meta.userId ?? null, meta.userAgent ?? null, persistent];
}

/** The meta of a row, or undefined when a column holds something it never should (a corrupt row). */
function toMeta(row: SessionRow): SessionMeta | undefined {
  const { created_at, last_seen_at, absolute_expires_at, expires_at, user_id, user_agent, persistent } = row;
  if (!isTimestamp(created_at) || !isTimestamp(last_seen_at) || !isTimestamp(absolute_expires_at) || !isTimestamp(expires_at)) {
    return undefined;
  }
  if ((user_id !== null && typeof user_id !== "string") || (user_agent !== null && typeof user_agent !== "string")) return undefined;
  if (persistent !== null && persistent !== 0 && persistent !== 1) return undefined;
  const meta: SessionMeta = {
    createdAt: created_at,
    lastSeenAt: last_seen_at,
    absoluteExpiresAt: absolute_expires_at,
    expiresAt: expires_at,
  };
  if (user_id !== null) meta.userId = user_id;
  if (user_agent !== null) meta.userAgent = user_agent;
  if (persistent !== null) meta.persistent = persistent === 1;
  return meta;
}

function openFile(path: string): Database.Database {
  if (typeof path !== "string" || path === "") {
    throw new SessionConfigError(`SqliteStore path must be a non-empty file path, got ${JSON.stringify(path)}`);
  }
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    return new Database(path);
  } catch (error) {
    throw new SessionConfigError(
      `SqliteStore cannot open ${JSON.stringify(path)}: ${error instanceof Error ? error.message : String(error)}; check that the path is writable`,
      { cause: error },
    );
  }
}

function configure(db: Database.Database, busyTimeoutMs: number): void {
  // The busy timeout comes first so that the next pragmas, too, wait for another process's lock.
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  // WAL: readers never block on the writer. An in-memory database answers "memory" and keeps it.
  db.pragma("journal_mode = WAL");
  // In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits, which for sessions is fine.
  db.pragma("synchronous = NORMAL");
  // Field rows follow their session (delete, rotate) only with foreign keys on, which is per connection.
  db.pragma("foreign_keys = ON");
  if (db.pragma("foreign_keys", { simple: true }) !== 1) {
    throw new SessionConfigError("SqliteStore could not turn foreign keys on for its connection");
  }
}

function migrate(db: Database.Database): void {
  // IMMEDIATE: two processes starting on a new file create the schema one after the other.
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true });
    if (typeof version !== "number" || version > SCHEMA_VERSION) {
      throw new SessionConfigError(
        `SqliteStore: the database has schema version ${String(version)}, newer than this atomic-session understands (${SCHEMA_VERSION}); upgrade atomic-session`,
      );
    }
    db.exec(SCHEMA);
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
