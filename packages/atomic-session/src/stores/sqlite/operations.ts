/**
 * What each store operation does in SQL, on the worker's connection, with statements prepared
 * once. Each body runs inside a transaction the scheduler opened (a read transaction, or one
 * `BEGIN IMMEDIATE` shared by a batch of writes with a savepoint around each); `jobFor` turns
 * a request into the steps the scheduler runs.
 * @module
 */
import type Database from "better-sqlite3";
import { addToStoredInteger, isTimestamp, mergeMeta, touchMeta } from "../../core/record.js";
import type {
  Absent,
  CompareAndSetResult,
  Rotation,
  SessionChange,
  SessionMeta,
  StoredSession,
  TouchOptions,
  UserSessionEntry,
} from "../../core/store.js";
import type { Operation, ScanPage } from "./protocol.js";
import { type Job, MORE } from "./scheduler.js";

/**
 * Most rows per step of a purge, a revocation or a listing, and per page of `scan()`: each step
 * is one short transaction, so neither this worker nor another process waits long behind one.
 */
export const BATCH_ROWS = 1000;
/** Rows per statement of a purge or a revocation. */
const CHUNK_ROWS = 100;
/**
 * A purge or revocation step ends after the statement that passes this much time: deleting
 * rows of random keys dirties a page or two per row, and on a slow disk 1,000 of them can take
 * 100 ms or more, which every call queued behind the step would wait.
 */
const STEP_BUDGET_MS = 10;

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

type MetaColumns = [number, number, number, number, string | null, string | null, number | null];

/** What a read found under a key: a live record's meta, or why there is none. */
type Lookup = { state: "live"; meta: SessionMeta } | { state: "missing" | "expired" | "corrupt" };

/** Answered by a load that ran without the write lock and found something to write (a touch due, a corrupt row). */
export const NEEDS_WRITE = Symbol("needs write");

const META_COLUMNS =
  "created_at = ?, last_seen_at = ?, absolute_expires_at = ?, expires_at = ?, user_id = ?, user_agent = ?, persistent = ?";

/** The store operations on one connection. */
export class Operations {
  readonly #selectSession: Database.Statement<[string], SessionRow>;
  readonly #selectFields: Database.Statement<[string], FieldRow>;
  readonly #selectField: Database.Statement<[string, string], { value: unknown }>;
  readonly #selectUserPage: Database.Statement<[string, string, number], SessionRow>;
  readonly #selectUserFirst: Database.Statement<[string, number], SessionRow>;
  readonly #deleteUserFirst: Database.Statement<[string, number]>;
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
  readonly #countLive: Database.Statement<[number], { n: number }>;
  readonly #sweepSessions: Database.Statement<[number, number]>;
  readonly #sweepRotated: Database.Statement<[number, number]>;
  readonly #scanPage: Database.Statement<[string, number, number], SessionRow>;
  readonly #selectOne: Database.Statement<[], unknown>;

  constructor(db: Database.Database) {
    const prepare = <P extends unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    this.#selectSession = prepare("SELECT * FROM atomic_session_sessions WHERE key = ?");
    this.#selectFields = prepare("SELECT field, value FROM atomic_session_fields WHERE session_key = ?");
    this.#selectField = prepare("SELECT value FROM atomic_session_fields WHERE session_key = ? AND field = ?");
    // The user_id index holds (user_id, key): a page is a range of it.
    this.#selectUserPage = prepare("SELECT * FROM atomic_session_sessions WHERE user_id = ? AND key > ? ORDER BY key LIMIT ?");
    this.#selectUserFirst = prepare("SELECT * FROM atomic_session_sessions WHERE user_id = ? ORDER BY key LIMIT ?");
    // The same rows as #selectUserFirst in the same transaction, whatever their key holds.
    this.#deleteUserFirst = prepare(
      "DELETE FROM atomic_session_sessions WHERE key IN (SELECT key FROM atomic_session_sessions WHERE user_id = ? ORDER BY key LIMIT ?)",
    );
    this.#selectRotated = prepare("SELECT key FROM atomic_session_rotated WHERE key = ? AND expires_at > ?");
    this.#insertSession = prepare(
      `INSERT INTO atomic_session_sessions (key, created_at, last_seen_at, absolute_expires_at, expires_at, user_id, user_agent, persistent)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#updateMeta = prepare(`UPDATE atomic_session_sessions SET ${META_COLUMNS} WHERE key = ?`);
    // ON UPDATE CASCADE moves the field rows along with the key, in the same statement.
    this.#moveSession = prepare(`UPDATE atomic_session_sessions SET key = ?, ${META_COLUMNS} WHERE key = ?`);
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
    // The typeof test keeps a corrupted (text) expires_at, which sorts above every number, out of the count.
    this.#countLive = prepare("SELECT count(*) AS n FROM atomic_session_sessions WHERE expires_at > ? AND typeof(expires_at) = 'integer'");
    this.#sweepSessions = prepare(
      "DELETE FROM atomic_session_sessions WHERE key IN (SELECT key FROM atomic_session_sessions WHERE expires_at <= ? LIMIT ?)",
    );
    this.#sweepRotated = prepare(
      "DELETE FROM atomic_session_rotated WHERE key IN (SELECT key FROM atomic_session_rotated WHERE expires_at <= ? LIMIT ?)",
    );
    // Pages walk the primary key (`+expires_at` keeps the planner off the expiry index, which would sort every live row per page).
    this.#scanPage = prepare("SELECT * FROM atomic_session_sessions WHERE key > ? AND +expires_at > ? ORDER BY key LIMIT ?");
    this.#selectOne = prepare("SELECT 1");
  }

  /** The body of `load`; with `write` false it only reads, and answers {@link NEEDS_WRITE} when it would have to write. */
  load(key: string, touch: TouchOptions, write: boolean): StoredSession | Absent | typeof NEEDS_WRITE {
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

  create(key: string, record: StoredSession): boolean {
    const now = Date.now();
    const found = this.#lookup(key, now);
    if (found.state === "live" || this.#absence(key, now) === "rotated") return false;
    // An expired or corrupt row not yet swept is replaced, its fields with it.
    if (found.state !== "missing") this.#deleteSession.run(key);
    this.#insertSession.run(key, ...metaColumns(record.meta));
    for (const [field, value] of record.fields) this.#upsertField.run(key, field, value);
    return true;
  }

  apply(key: string, change: SessionChange): "ok" | Absent {
    const meta = this.#liveForWrite(key, change.now);
    if (typeof meta === "string") return meta;
    for (const [field, value] of change.set ?? []) this.#upsertField.run(key, field, value);
    for (const field of change.delete ?? []) this.#deleteField.run(key, field);
    if (change.meta !== undefined) this.#updateMeta.run(...metaColumns(mergeMeta(meta, change.meta)), key);
    return "ok";
  }

  increment(key: string, field: string, by: number, touch: TouchOptions): number | Absent {
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

  compareAndSet(key: string, field: string, expected: string | undefined, next: string | undefined, now: number): CompareAndSetResult {
    const meta = this.#liveForWrite(key, now);
    if (typeof meta === "string") return meta;
    if (this.#selectField.get(key, field)?.value !== expected) return "conflict";
    if (next === undefined) this.#deleteField.run(key, field);
    else this.#upsertField.run(key, field, next);
    return "ok";
  }

  rotate(fromKey: string, toKey: string, { meta: change, now, markerExpiresAt }: Rotation): StoredSession | Absent {
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

  destroy(key: string): void {
    this.#deleteSession.run(key);
    this.#deleteRotated.run(key);
  }

  ping(): void {
    this.#selectOne.get();
  }

  count(now: number): number {
    return this.#countLive.get(now)?.n ?? 0;
  }

  /** The live sessions of `userId` among the next {@link BATCH_ROWS} rows of that user after key `after`, and the last key read (none: no more rows). */
  userSessionsPage(userId: string, now: number, after: string): { entries: UserSessionEntry[]; last: string | undefined } {
    const rows = this.#selectUserPage.all(userId, after, BATCH_ROWS);
    const last = rows.length < BATCH_ROWS ? undefined : rows.at(-1)?.key;
    return { entries: liveEntries(rows, now), last: typeof last === "string" ? last : undefined };
  }

  /**
   * Deletes up to {@link CHUNK_ROWS} sessions of `userId`, expired and corrupt ones too (they
   * are dead already), adds the keys of those that were live to `revoked`, and says how many rows.
   */
  revokeUserChunk(userId: string, now: number, revoked: string[]): number {
    const rows = this.#selectUserFirst.all(userId, CHUNK_ROWS);
    for (const entry of liveEntries(rows, now)) revoked.push(entry.key);
    this.#deleteUserFirst.run(userId, CHUNK_ROWS);
    return rows.length;
  }

  /** Every live session's key and meta among the next {@link BATCH_ROWS} rows in key order; field rows are never read. */
  scanPage(after: string, now: number): ScanPage {
    const rows = this.#scanPage.all(after, now, BATCH_ROWS);
    const last = rows.at(-1)?.key;
    return { entries: liveEntries(rows, now), after: rows.length < BATCH_ROWS || typeof last !== "string" ? undefined : last };
  }

  /** Deletes up to {@link CHUNK_ROWS} expired sessions (their fields with them, by cascade) and says how many. */
  sweepSessions(now: number): number {
    return this.#sweepSessions.run(now, CHUNK_ROWS).changes;
  }

  /** Deletes up to {@link CHUNK_ROWS} expired rotation markers and says how many. */
  sweepRotated(now: number): number {
    return this.#sweepRotated.run(now, CHUNK_ROWS).changes;
  }

  /** What is under `key`. */
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
}

/** The steps that carry out `operation` on `ops` (`close` is the scheduler's own). */
export function jobFor(operation: Exclude<Operation, { op: "close" }>, ops: Operations): Job {
  switch (operation.op) {
    case "load": {
      const { key, touch } = operation;
      // Most loads write nothing, so they first run in a read transaction that takes no write
      // lock; only when a touch is due or the row is corrupt is the load redone in a write batch.
      const job: Job = {
        write: false,
        step: () => {
          const found = ops.load(key, touch, job.write);
          if (found !== NEEDS_WRITE) return found;
          job.write = true;
          return MORE;
        },
      };
      return job;
    }
    case "create":
      return writeOnce(() => ops.create(operation.key, operation.record));
    case "apply":
      return writeOnce(() => ops.apply(operation.key, operation.change));
    case "increment":
      return writeOnce(() => ops.increment(operation.key, operation.field, operation.by, operation.touch));
    case "compareAndSet": {
      const { key, field, expected, next, now } = operation;
      return writeOnce(() => ops.compareAndSet(key, field, expected, next, now));
    }
    case "rotate":
      return writeOnce(() => ops.rotate(operation.fromKey, operation.toKey, operation.rotation));
    case "destroy":
      return writeOnce(() => ops.destroy(operation.key));
    case "ping":
      return readOnce(() => ops.ping());
    case "count":
      return readOnce(() => ops.count(operation.now));
    case "scanPage":
      return readOnce(() => ops.scanPage(operation.after, operation.now));
    case "listUserSessions": {
      const { userId, now } = operation;
      const entries: UserSessionEntry[] = [];
      let after = "";
      return {
        write: false,
        step: () => {
          const page = ops.userSessionsPage(userId, now, after);
          entries.push(...page.entries);
          if (page.last === undefined) return entries;
          after = page.last;
          return MORE;
        },
      };
    }
    case "revokeUserSessions": {
      const { userId, now } = operation;
      const revoked: string[] = [];
      return { write: true, step: () => (inChunks(() => ops.revokeUserChunk(userId, now, revoked)).more ? MORE : revoked) };
    }
    case "purgeExpired": {
      const { now } = operation;
      let deleted = 0;
      let sessionsLeft = true;
      return {
        write: true,
        step: () => {
          // Sessions first (the count is theirs; the field rows going with them are not counted), then markers.
          if (sessionsLeft) {
            const step = inChunks(() => ops.sweepSessions(now));
            deleted += step.rows;
            sessionsLeft = step.more;
            if (sessionsLeft) return MORE;
          }
          return inChunks(() => ops.sweepRotated(now)).more ? MORE : deleted;
        },
      };
    }
  }
}

/**
 * Runs `deleteChunk` (which deletes up to {@link CHUNK_ROWS} rows and says how many) until it
 * deletes fewer, {@link BATCH_ROWS} rows are gone, or {@link STEP_BUDGET_MS} passed; `more`: rows may be left.
 */
function inChunks(deleteChunk: () => number): { rows: number; more: boolean } {
  const started = performance.now();
  let rows = 0;
  for (;;) {
    const chunk = deleteChunk();
    rows += chunk;
    if (chunk < CHUNK_ROWS) return { rows, more: false };
    if (rows >= BATCH_ROWS || performance.now() - started >= STEP_BUDGET_MS) return { rows, more: true };
  }
}

function writeOnce(run: () => unknown): Job {
  return { write: true, step: run };
}

function readOnce(run: () => unknown): Job {
  return { write: false, step: run };
}

function liveEntries(rows: SessionRow[], now: number): UserSessionEntry[] {
  const entries: UserSessionEntry[] = [];
  for (const row of rows) {
    const meta = toMeta(row);
    if (meta !== undefined && meta.expiresAt > now && typeof row.key === "string") entries.push({ key: row.key, meta });
  }
  return entries;
}

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
