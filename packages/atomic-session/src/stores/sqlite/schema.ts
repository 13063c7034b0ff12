/**
 * The SQLite file: its schema, and a connection configured as every connection of the store
 * needs it. `SqliteStore`'s constructor opens the file once this way on the main thread, so
 * that a bad path or a newer schema throws there; the worker then opens its own connection.
 * @module
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

/**
 * The schema version this code writes, kept in `PRAGMA user_version` so that a later version
 * can migrate. 2: the user index leaves out anonymous sessions (most of them), so creating one
 * writes one b-tree page fewer (about a third less WAL per new session).
 */
export const SCHEMA_VERSION = 2;

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
  CREATE INDEX IF NOT EXISTS atomic_session_sessions_user_id ON atomic_session_sessions (user_id) WHERE user_id IS NOT NULL;
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

export interface ConnectionOptions {
  /** How long opening (and a first migration) waits for another connection's lock. */
  busyTimeoutMs: number;
  synchronous: "normal" | "full";
}

/**
 * A connection to `path` (created with its parent folder when missing) in WAL mode, with
 * foreign keys on and the schema current. Throws what the file system or SQLite threw, or an
 * `Error` saying the schema is newer than this code.
 */
export function openConnection(path: string, { busyTimeoutMs, synchronous }: ConnectionOptions): Database.Database {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  // `timeout` is the busy timeout, set before the first statement so that the pragmas below wait too.
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    // WAL: readers never block on the writer. It is a property of the file, so it is set only once;
    // an in-memory database answers "memory" and keeps it.
    if (db.pragma("journal_mode", { simple: true }) !== "wal") db.pragma("journal_mode = WAL");
    // See `SqliteStoreOptions.synchronous` for what each level survives.
    db.pragma(`synchronous = ${synchronous === "full" ? "FULL" : "NORMAL"}`);
    // Field rows follow their session (delete, rotate) only with foreign keys on, which is per connection.
    db.pragma("foreign_keys = ON");
    if (db.pragma("foreign_keys", { simple: true }) !== 1) throw new Error("SQLite could not turn foreign keys on for the connection");
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

function migrate(db: Database.Database): void {
  // A current file needs no write lock: most opens take none.
  if (schemaVersion(db) === SCHEMA_VERSION) return;
  // IMMEDIATE: two processes starting on a new file create the schema one after the other.
  db.transaction(() => {
    // Version 1 indexed every session's user_id, NULL included: that index is replaced.
    if (schemaVersion(db) === 1) db.exec("DROP INDEX IF EXISTS atomic_session_sessions_user_id");
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function schemaVersion(db: Database.Database): number {
  const version = db.pragma("user_version", { simple: true });
  if (typeof version !== "number" || version > SCHEMA_VERSION) {
    throw new Error(
      `the database has schema version ${String(version)}, newer than this atomic-session understands (${SCHEMA_VERSION}); upgrade atomic-session`,
    );
  }
  return version;
}
