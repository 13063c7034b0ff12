/**
 * Sessions in PostgreSQL, on node-postgres (`pg`, an optional peer dependency).
 *
 * One row per session (see `postgresSchemaSql` for the layout): the meta in columns, the
 * fields in a jsonb object of JSON-text strings, the user ID in an indexed column, rotation
 * markers as rows of their own. Each operation is one statement, or one short transaction
 * where the new meta depends on the old (`rotate`, `apply` with a meta change), so each is
 * atomic across connections and processes:
 * - `load`: one `SELECT`; a second statement (`UPDATE … RETURNING`) only when a touch is due;
 * - `create`: one `INSERT … ON CONFLICT DO UPDATE … WHERE expired`, refusing a live session
 *   or marker and replacing an expired row;
 * - `apply` (no meta), `increment`, `compareAndSet`: one `UPDATE … WHERE live … RETURNING`,
 *   whose `WHERE` is re-checked by PostgreSQL on the newest row version when another writer
 *   got there first, so no write is lost and none lands on a destroyed session; a second read
 *   only when the update matched nothing, to say why;
 * - `rotate`: `SELECT … FOR UPDATE`, then one statement that copies the row to the new key and
 *   turns the old one into a marker, in one transaction.
 * Expired rows and markers are deleted in batches by a timer, in one process at a time.
 * @module
 */
import { SessionConfigError, SessionError, SessionValueError } from "../../core/errors.js";
import { addToStoredInteger, isTimestamp, mergeMeta, touchMeta } from "../../core/record.js";
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
import { assertPgInstalled, createPool, type OwnedPool } from "./connect.js";
import { DEFAULT_SCHEMA, DEFAULT_TABLE, SCHEMA_VERSION, type SchemaNames, schemaDdl, schemaNames } from "./schema.js";

export { postgresSchemaSql, SCHEMA_VERSION } from "./schema.js";

/** One statement as the store sends it (a subset of pg's `QueryConfig`). */
export interface PostgresQuery {
  text: string;
  values?: unknown[];
  /** Set for the store's frequent statements: the server parses and plans them once per connection. */
  name?: string;
  /** The store reads every column as text and parses it itself, whatever type parsers the application set. */
  types?: { getTypeParser(oid: number, format?: string): (value: string) => unknown };
}

/** What the store reads from a result. */
export interface PostgresResult {
  rows: unknown[];
}

/** A connection checked out of the pool, for the store's short transactions and its purge. */
export interface PostgresPoolClient {
  query(query: PostgresQuery): Promise<PostgresResult>;
  /** `release(true)` closes the connection instead of returning it (pg's `PoolClient.release`). */
  release(destroy?: boolean | Error): void;
}

/**
 * The little the store needs from a node-postgres `Pool` (`new pg.Pool(…)` satisfies it).
 * Declared here, so that the store's types never need `@types/pg`.
 */
export interface PostgresPool {
  query(query: PostgresQuery): Promise<PostgresResult>;
  connect(): Promise<PostgresPoolClient>;
}

export interface PostgresStoreOptions {
  /**
   * `postgres[ql]://[user[:password]@]host[:port]/database[?sslmode=…]`: the store creates a
   * `pg.Pool` (and ends it on `dispose()`), with the deadline below as `statement_timeout` and
   * `connectionTimeoutMillis`. Give exactly one of `url` and `pool`.
   */
  url?: string;
  /**
   * A `pg.Pool` the application created and owns; `dispose()` leaves it open. Give it an
   * `error` listener (pg crashes the process on an unhandled one) and, so that a stalled
   * server costs a 503 and not a hung connection, `statement_timeout`, `query_timeout` and
   * `connectionTimeoutMillis` near the manager's `storeTimeoutMs`.
   */
  pool?: PostgresPool;
  /** The PostgreSQL schema of the store's tables. Default `public`. */
  schema?: string;
  /** The sessions table; the version is kept in `<table>_meta`. Default `atomic_session`. */
  table?: string;
  /**
   * Create the tables on first use when they are missing (default `true`). `false`: the schema
   * was applied beforehand (`schema.sql`, or `postgresSchemaSql()` for other names) and the
   * store only checks its version.
   */
  createSchema?: boolean;
  /**
   * The deadline of one statement and of getting a connection, for the pool the store creates
   * from `url`; match the manager's `storeTimeoutMs`. Default 1000 ms.
   */
  timeoutMs?: number;
  /** Most connections of the pool the store creates from `url`. Default 10. */
  maxConnections?: number;
  /** How often expired sessions and rotation markers are deleted. Default 60 s. */
  sweepIntervalMs?: number;
}

/** `setInterval` fires at once for delays past 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** Rows deleted per purge statement, so that no sweep holds locks or the server for long. */
const SWEEP_BATCH = 1000;
/** Rows read per page of `scan()` and of a user's sessions; rows deleted per statement of a revocation. */
const PAGE = 1000;
/** Stands for "never" where SQL needs a number (an idle timeout or touch interval of Infinity). */
const NEVER = Number.MAX_SAFE_INTEGER;
/** How often an update that matched nothing is retried when the row turns out to be live and writable (a race with another writer). */
const ATTEMPTS = 5;
/** The decimal text of a bigint column or of an incremented field, as the store reads it back (then checked as a safe integer). */
const INTEGER_TEXT = /^-?\d{1,16}$/;
const URL_PROTOCOLS = new Set(["postgres:", "postgresql:"]);

/** Every column arrives as its text (or null), whatever type parsers the application installed. */
const RAW = { getTypeParser: () => (value: string) => value };

/** A row as the store reads it: every column as text or null. */
type Row = Record<string, string | null | undefined>;

type Queryable = Pick<PostgresPool, "query">;

/** The meta columns, in `metaValues` order. */
const META_COLUMNS = "created_at, last_seen_at, absolute_expires_at, expires_at, user_id, user_agent, persistent";

/** The store's statements for one table. */
function statements(names: SchemaNames) {
  const t = names.sessions;
  const id = (names.lockKeys[1] >>> 0).toString(16).padStart(8, "0");
  const named = (name: string, text: string): PostgresQuery => ({ name: `atomic_session_${id}_${name}`, text, types: RAW });
  const columns = `rotated, ${META_COLUMNS}`;
  const replaceAll = `rotated = false, created_at = EXCLUDED.created_at, last_seen_at = EXCLUDED.last_seen_at,
    absolute_expires_at = EXCLUDED.absolute_expires_at, expires_at = EXCLUDED.expires_at, user_id = EXCLUDED.user_id,
    user_agent = EXCLUDED.user_agent, persistent = EXCLUDED.persistent, fields = EXCLUDED.fields`;
  // A touch, as `touchMeta` computes it ($2 now, $3 now + idle timeout, $4 touch interval): due when
  // now - lastSeenAt >= interval; then lastSeenAt = now, expiresAt = min(now + idle, absoluteExpiresAt).
  const due = "$2::bigint - last_seen_at >= $4::bigint";
  return {
    load: named("load", `SELECT ${columns}, fields FROM ${t} WHERE key = $1 AND expires_at > $2::bigint`),
    touch: named(
      "touch",
      `UPDATE ${t} SET last_seen_at = $2::bigint, expires_at = LEAST($3::bigint, absolute_expires_at)
       WHERE key = $1 AND NOT rotated AND expires_at > $2::bigint AND ${due}
       RETURNING ${columns}, fields`,
    ),
    create: named(
      "create",
      `INSERT INTO ${t} AS s (key, ${columns}, fields)
       VALUES ($1, false, $3::bigint, $4::bigint, $5::bigint, $6::bigint, $7::text, $8::text, $9::boolean, $10::jsonb)
       ON CONFLICT (key) DO UPDATE SET ${replaceAll}
       WHERE s.expires_at <= $2::bigint
       RETURNING 1 AS created`,
    ),
    // Set first, then delete, as the memory store does; `jsonb - text[]` removes the named keys.
    apply: named(
      "apply",
      `UPDATE ${t} SET fields = (fields || $3::jsonb) - ARRAY(SELECT jsonb_array_elements_text($4::jsonb))
       WHERE key = $1 AND NOT rotated AND expires_at > $2::bigint AND jsonb_typeof(fields) = 'object'
       RETURNING 1 AS applied`,
    ),
    applyWithMeta: named(
      "apply_meta",
      `UPDATE ${t} SET fields = (fields || $2::jsonb) - ARRAY(SELECT jsonb_array_elements_text($3::jsonb)),
         created_at = $4::bigint, last_seen_at = $5::bigint, absolute_expires_at = $6::bigint, expires_at = $7::bigint,
         user_id = $8::text, user_agent = $9::text, persistent = $10::boolean
       WHERE key = $1`,
    ),
    // The integer rule of `addToStoredInteger`, in SQL so that the read, the check and the write are one
    // statement: absent counts as 0; the stored text must be the decimal text of an integer of at most 16
    // digits (CASE, because SQL does not promise to evaluate AND left to right: no cast of a non-integer);
    // the sum, in double precision as JavaScript computes it, must stay within ±(2^53 - 1). A value it
    // refuses is read back and refused by `addToStoredInteger` itself, which then throws. The touch is
    // the one of `load`.
    increment: named(
      "increment",
      `UPDATE ${t} SET
         fields = fields || jsonb_build_object($5::text, (COALESCE(fields ->> $5::text, '0')::float8 + $6::float8)::bigint::text),
         last_seen_at = CASE WHEN ${due} THEN $2::bigint ELSE last_seen_at END,
         expires_at = CASE WHEN ${due} THEN LEAST($3::bigint, absolute_expires_at) ELSE expires_at END
       WHERE key = $1 AND NOT rotated AND expires_at > $2::bigint AND jsonb_typeof(fields) = 'object'
         AND CASE
           WHEN fields ->> $5::text IS NULL THEN abs($6::float8) <= ${NEVER}
           WHEN fields ->> $5::text ~ '^-?(0|[1-9][0-9]{0,15})$' THEN abs((fields ->> $5::text)::float8 + $6::float8) <= ${NEVER}
           ELSE false
         END
       RETURNING fields ->> $5::text AS value`,
    ),
    /** Why a write matched nothing: the row's state, and the value of one field. */
    inspect: named(
      "inspect",
      `SELECT ${columns}, jsonb_typeof(fields) AS shape, fields ->> $3::text AS value FROM ${t} WHERE key = $1 AND expires_at > $2::bigint`,
    ),
    // The swap, and in the same statement the row as it was before it, to say why when nothing was swapped
    // (a conflict is the common refusal under contention: it costs no second round trip).
    compareAndSet: named(
      "compare_and_set",
      `WITH before AS (
         SELECT ${columns}, jsonb_typeof(fields) AS shape FROM ${t} WHERE key = $1 AND expires_at > $2::bigint
       ), swapped AS (
         UPDATE ${t} SET fields = CASE WHEN $5::text IS NULL THEN fields - $3::text ELSE fields || jsonb_build_object($3::text, $5::text) END
         WHERE key = $1 AND NOT rotated AND expires_at > $2::bigint AND jsonb_typeof(fields) = 'object'
           AND (fields ->> $3::text) IS NOT DISTINCT FROM $4::text
         RETURNING 1
       )
       SELECT EXISTS (SELECT 1 FROM swapped) AS swapped, before.* FROM (VALUES (1)) AS one LEFT JOIN before ON true`,
    ),
    lock: named("lock", `SELECT ${columns}, fields FROM ${t} WHERE key = $1 AND expires_at > $2::bigint FOR UPDATE`),
    lockMeta: named(
      "lock_meta",
      `SELECT ${columns}, jsonb_typeof(fields) AS shape FROM ${t} WHERE key = $1 AND expires_at > $2::bigint FOR UPDATE`,
    ),
    // Both parts read the snapshot from before the statement: the INSERT copies the old row's fields while
    // the UPDATE empties that row into a marker (no data, no user, the marker's expiry).
    move: named(
      "move",
      `WITH moved AS (
         INSERT INTO ${t} AS s (key, ${columns}, fields)
         SELECT $2::text, false, $3::bigint, $4::bigint, $5::bigint, $6::bigint, $7::text, $8::text, $9::boolean, fields FROM ${t} WHERE key = $1
         ON CONFLICT (key) DO UPDATE SET ${replaceAll}
         RETURNING 1
       )
       UPDATE ${t} SET rotated = true, fields = '{}', user_id = NULL, user_agent = NULL, persistent = NULL,
         created_at = $10::bigint, last_seen_at = $10::bigint, absolute_expires_at = $11::bigint, expires_at = $11::bigint
       WHERE key = $1`,
    ),
    destroy: named("destroy", `DELETE FROM ${t} WHERE key = $1`),
    destroyCorrupt: named("destroy_corrupt", `DELETE FROM ${t} WHERE key = $1 AND NOT rotated`),
    // Pages walk the (user_id, key) index.
    userPage: named(
      "user_page",
      `SELECT key, ${META_COLUMNS} FROM ${t}
       WHERE user_id = $1 AND key > $2 AND expires_at > $3::bigint AND NOT rotated ORDER BY key LIMIT ${PAGE}`,
    ),
    // One row per candidate the snapshot found, with `live` set for those deleted while live. The outer
    // `user_id = $1` is checked again on the newest row version: a candidate rotated meanwhile (its row
    // now a marker, with no user) is not deleted and its marker stays, while the row it moved to, not in
    // this statement's snapshot, is a candidate of the next batch. `candidates` is named twice, so
    // PostgreSQL computes it once: the rows reported are the rows the DELETE was given.
    revokeBatch: named(
      "revoke_batch",
      `WITH candidates AS (
         SELECT key FROM ${t} WHERE user_id = $1 LIMIT ${PAGE}
       ), deleted AS (
         DELETE FROM ${t} WHERE key IN (SELECT key FROM candidates) AND user_id = $1
         RETURNING key, (expires_at > $2::bigint AND NOT rotated) AS live
       )
       SELECT candidates.key, deleted.key IS NOT NULL AS deleted, deleted.live FROM candidates LEFT JOIN deleted USING (key)`,
    ),
    count: named("count", `SELECT count(*) AS n FROM ${t} WHERE expires_at > $1::bigint AND NOT rotated`),
    // Pages walk the primary key.
    scanPage: named(
      "scan_page",
      `SELECT key, ${META_COLUMNS} FROM ${t} WHERE key > $1 AND expires_at > $2::bigint AND NOT rotated ORDER BY key LIMIT ${PAGE}`,
    ),
    // SKIP LOCKED: a row another statement holds is left for the next sweep; the outer condition is
    // re-checked on the newest version, so a row that `create` just replaced with a live session stays.
    purgeBatch: named(
      "purge_batch",
      `WITH purged AS (
         DELETE FROM ${t} WHERE key IN (SELECT key FROM ${t} WHERE expires_at <= $1::bigint LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED)
           AND expires_at <= $1::bigint
         RETURNING rotated
       )
       SELECT count(*) AS n, count(*) FILTER (WHERE NOT rotated) AS sessions FROM purged`,
    ),
    tryLock: named("try_lock", "SELECT pg_try_advisory_lock($1::int, $2::int) AS locked"),
    unlock: named("unlock", "SELECT pg_advisory_unlock($1::int, $2::int) AS unlocked"),
    ping: named("ping", "SELECT 1 AS ok"),
  };
}

type Statements = ReturnType<typeof statements>;

/**
 * Stores sessions in PostgreSQL. Give it a `url` (it builds and owns a `pg.Pool`) or a `pool`
 * the application owns. The tables are created on first use (in `schema`.`table`), or applied
 * beforehand from `schema.sql` with `createSchema: false`; a database whose schema version is
 * newer than this code's is refused with `SessionConfigError`.
 */
export class PostgresStore implements SessionStore {
  readonly kind = "postgres";
  readonly #names: SchemaNames;
  readonly #sql: Statements;
  readonly #createSchema: boolean;
  readonly #owned: Promise<OwnedPool> | undefined;
  readonly #poolReady: Promise<PostgresPool>;
  #pool: PostgresPool | undefined;
  #schemaReady = false;
  #preparing: Promise<void> | undefined;
  readonly #sweeper: NodeJS.Timeout;
  #sweeping: Promise<unknown> | undefined;
  #disposed = false;

  constructor(options: PostgresStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new SessionConfigError("PostgresStore needs options: { url } or { pool }");
    }
    const { url, pool, schema = DEFAULT_SCHEMA, table = DEFAULT_TABLE, createSchema = true } = options;
    const timeoutMs = whole("timeoutMs", options.timeoutMs ?? 1000, 1, 600_000);
    const maxConnections = whole("maxConnections", options.maxConnections ?? 10, 1, 10_000);
    const sweepIntervalMs = whole("sweepIntervalMs", options.sweepIntervalMs ?? 60_000, 1, MAX_TIMER_MS);
    if (typeof createSchema !== "boolean") throw new SessionConfigError("PostgresStore createSchema must be true or false");
    this.#names = schemaNames(schema, table);
    this.#sql = statements(this.#names);
    this.#createSchema = createSchema;
    if (url !== undefined && pool !== undefined) throw new SessionConfigError("PostgresStore takes one of url and pool, not both");
    if (pool !== undefined) {
      if (typeof pool !== "object" || pool === null || typeof pool.query !== "function" || typeof pool.connect !== "function") {
        throw new SessionConfigError("PostgresStore pool must be a pg.Pool (an object with query() and connect())");
      }
      this.#pool = pool;
      this.#poolReady = Promise.resolve(pool);
    } else if (url !== undefined) {
      checkUrl(url);
      assertPgInstalled();
      // pg is loaded only here: a store given a pool never loads it.
      const owned = createPool({ url, timeoutMs, maxConnections });
      owned.catch(() => undefined);
      this.#owned = owned;
      this.#poolReady = owned.then((built) => {
        this.#pool = built;
        return built;
      });
      this.#poolReady.catch(() => undefined);
    } else {
      throw new SessionConfigError("PostgresStore needs a url (postgres://user@host:5432/database) or a pg.Pool as pool");
    }
    this.#sweeper = setInterval(() => this.#sweep(), sweepIntervalMs);
    this.#sweeper.unref();
  }

  async load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    const pool = await this.#ready();
    const [now, deadline, interval] = touchArguments(touch);
    // Decided at the same whole millisecond as the SQL touch, so both agree on whether one is due.
    const at = { ...touch, now };
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const row = (await pool.query({ ...this.#sql.load, values: [key, now] })).rows[0] as Row | undefined;
      if (row === undefined) return "gone";
      if (row.rotated === "t") return "rotated";
      const record = toRecord(row);
      if (record === undefined) return this.#removeCorrupt(pool, key);
      // Most loads write nothing: the touch is a second statement, only when one is due.
      if (touchMeta(record.meta, at) === undefined) return record;
      const touched = (await pool.query({ ...this.#sql.touch, values: [key, now, deadline, interval] })).rows[0] as Row | undefined;
      if (touched !== undefined) return toRecord(touched) ?? this.#removeCorrupt(pool, key);
      // Someone else touched, destroyed or rotated it meanwhile: read it again.
    }
    throw new Error("PostgreSQL store load: the record kept changing under the touch");
  }

  async create(key: string, record: StoredSession): Promise<boolean> {
    const pool = await this.#ready();
    const { rows } = await pool.query({
      ...this.#sql.create,
      values: [key, Date.now(), ...metaValues(record.meta), fieldsJson(record.fields)],
    });
    return rows.length === 1;
  }

  async apply(key: string, change: SessionChange): Promise<"ok" | Absent> {
    const pool = await this.#ready();
    const now = Math.floor(change.now);
    const set = fieldsJson(change.set ?? new Map());
    const deletes = namesJson(change.delete ?? []);
    if (change.meta !== undefined) return this.#applyWithMeta(pool, key, now, set, deletes, change.meta);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const { rows } = await pool.query({ ...this.#sql.apply, values: [key, now, set, deletes] });
      if (rows.length === 1) return "ok";
      const why = await this.#whyNot(pool, key, now);
      if (why !== "live") return why;
    }
    throw new Error("PostgreSQL store apply: the record kept changing");
  }

  async increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    // The step is checked (and refused with SessionValueError) before anything is sent.
    addToStoredInteger(field, undefined, by);
    const pool = await this.#ready();
    const [now, deadline, interval] = touchArguments(touch);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const { rows } = await pool.query({ ...this.#sql.increment, values: [key, now, deadline, interval, field, by] });
      const value = (rows[0] as Row | undefined)?.value;
      if (typeof value === "string" && INTEGER_TEXT.test(value)) return Number(value);
      if (rows.length === 1) throw new Error(`PostgreSQL store increment: unexpected value ${JSON.stringify(value)}`);
      const inspected = (await pool.query({ ...this.#sql.inspect, values: [key, now, field] })).rows[0] as Row | undefined;
      const why = this.#stateOf(inspected);
      if (why === "corrupt") return this.#removeCorrupt(pool, key);
      if (why !== "live") return why;
      // Live, so the SQL refused the value: addToStoredInteger throws the same refusal, writing nothing.
      // Should it not (the value changed meanwhile), the increment is tried again.
      addToStoredInteger(field, inspected?.value ?? undefined, by);
    }
    throw new Error("PostgreSQL store increment: the record kept changing");
  }

  async compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    const pool = await this.#ready();
    const at = Math.floor(now);
    const row = (await pool.query({ ...this.#sql.compareAndSet, values: [key, at, field, expected ?? null, next ?? null] })).rows[0] as
      | Row
      | undefined;
    if (row?.swapped === "t") return "ok";
    // Nothing swapped: the row as the statement found it says why. A live one held another value, or
    // was changed by a writer the swap waited for: a conflict either way, and the caller reads again.
    const why = this.#stateOf(row?.rotated === null ? undefined : row);
    if (why === "corrupt") return this.#removeCorrupt(pool, key);
    return why === "live" ? "conflict" : why;
  }

  async rotate(fromKey: string, toKey: string, { meta: change, now, markerExpiresAt }: Rotation): Promise<StoredSession | Absent> {
    if (fromKey === toKey) throw new Error("PostgreSQL store rotate: the new key is the old key");
    const pool = await this.#ready();
    const at = Math.floor(now);
    const markerUntil = time("markerExpiresAt", markerExpiresAt);
    return this.#transaction(pool, async (client) => {
      const row = (await client.query({ ...this.#sql.lock, values: [fromKey, at] })).rows[0] as Row | undefined;
      if (row === undefined) return "gone";
      if (row.rotated === "t") return "rotated";
      const record = toRecord(row);
      if (record === undefined) {
        await client.query({ ...this.#sql.destroyCorrupt, values: [fromKey] });
        return "gone";
      }
      const meta = mergeMeta(record.meta, change);
      // A record under the new key is overwritten, as in the other stores: a fresh random key never holds one.
      await client.query({ ...this.#sql.move, values: [fromKey, toKey, ...metaValues(meta), at, markerUntil] });
      return { meta, fields: record.fields };
    });
  }

  async destroy(key: string): Promise<void> {
    const pool = await this.#ready();
    await pool.query({ ...this.#sql.destroy, values: [key] });
  }

  /** Resolves when PostgreSQL answers (and the schema is in place); rejects otherwise. */
  async ping(): Promise<void> {
    const pool = await this.#ready();
    await pool.query({ ...this.#sql.ping, values: [] });
  }

  /** A user's live sessions, read in pages of the `(user_id, key)` index. Expired rows in it are left to the purge. */
  async listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    const pool = await this.#ready();
    const at = Math.floor(now);
    const entries: UserSessionEntry[] = [];
    let after = "";
    for (;;) {
      const { rows } = await pool.query({ ...this.#sql.userPage, values: [userId, after, at] });
      for (const row of rows as Row[]) {
        const meta = toMeta(row);
        if (meta !== undefined && typeof row.key === "string") entries.push({ key: row.key, meta });
      }
      const last = (rows.at(-1) as Row | undefined)?.key;
      if (rows.length < PAGE || typeof last !== "string") return entries;
      after = last;
    }
  }

  /**
   * Deletes every session of `userId`, {@link PAGE} rows per statement (each its own short
   * transaction), until none is left; resolves the keys of those that were live. Expired rows
   * of the user go too: they are dead already.
   *
   * A batch ends the revocation only when it found less than a page and deleted every row it
   * found. A row it found but could not delete was changed meanwhile: destroyed, rebound, or
   * rotated (a login or `regenerate()` that held the row while this batch waited), and then the
   * session lives on in a row this batch could not see, which the next batch finds.
   */
  async revokeUserSessions(userId: string, now: number): Promise<string[]> {
    const pool = await this.#ready();
    const at = Math.floor(now);
    const revoked: string[] = [];
    for (;;) {
      const { rows } = await pool.query({ ...this.#sql.revokeBatch, values: [userId, at] });
      let changed = false;
      for (const row of rows as Row[]) {
        if (row.deleted !== "t") changed = true;
        else if (row.live === "t" && typeof row.key === "string") revoked.push(row.key);
      }
      if (rows.length < PAGE && !changed) return revoked;
    }
  }

  async count(now: number): Promise<number> {
    const pool = await this.#ready();
    const { rows } = await pool.query({ ...this.#sql.count, values: [Math.floor(now)] });
    return Number((rows[0] as Row | undefined)?.n ?? 0);
  }

  /** Every live session's key and meta, a page of {@link PAGE} rows per statement, in key order; fields are never read. */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    const pool = await this.#ready();
    const at = Math.floor(now);
    let after = "";
    for (;;) {
      const { rows } = await pool.query({ ...this.#sql.scanPage, values: [after, at] });
      for (const row of rows as Row[]) {
        const meta = toMeta(row);
        if (meta !== undefined && typeof row.key === "string") yield { key: row.key, meta };
      }
      const last = (rows.at(-1) as Row | undefined)?.key;
      if (rows.length < PAGE || typeof last !== "string") return;
      after = last;
    }
  }

  /**
   * Deletes the sessions and rotation markers expired at `now`, {@link SWEEP_BATCH} rows per
   * statement, and resolves how many sessions. One process purges a table at a time (a
   * PostgreSQL advisory lock): when another holds it, this resolves 0 at once, and that one
   * deletes the rows.
   */
  async purgeExpired(now: number): Promise<number> {
    await this.#sweeping?.catch(() => undefined);
    return this.#purge(Math.floor(now));
  }

  /** Stops the sweeper and ends the pool the store created from `url`; an injected pool stays open. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    clearInterval(this.#sweeper);
    await this.#sweeping?.catch(() => undefined);
    const owned = await this.#owned?.catch(() => undefined);
    if (owned === undefined) return;
    // end() waits for checked-out connections; a server that stopped answering must not hang dispose().
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 5_000);
      timer.unref();
    });
    await Promise.race([owned.end().catch(() => undefined), timedOut]);
    clearTimeout(timer);
  }

  /** The pool, once the schema is in place (created, or checked, on first use). */
  async #ready(): Promise<PostgresPool> {
    if (this.#disposed) throw new Error("the PostgreSQL store was disposed");
    const pool = this.#pool ?? (await this.#poolReady);
    if (!this.#schemaReady) {
      this.#preparing ??= this.#migrate(pool).then(
        () => {
          this.#schemaReady = true;
        },
        (error: unknown) => {
          // Tried again by the next call: the database may be back, or the schema applied.
          this.#preparing = undefined;
          throw error;
        },
      );
      await this.#preparing;
    }
    return pool;
  }

  /** Checks the schema version, and creates the schema when it is missing and allowed to. */
  async #migrate(pool: PostgresPool): Promise<void> {
    const names = this.#names;
    const version = await schemaVersion(pool, names);
    if (version !== undefined) return;
    if (!this.#createSchema) {
      throw new SessionConfigError(
        `PostgresStore: ${names.meta} does not exist in this database, and createSchema is false; apply the store's schema.sql (atomic-session/stores/postgres/schema.sql, or postgresSchemaSql() for other names) or leave createSchema on`,
      );
    }
    await this.#transaction(pool, async (client) => {
      // Processes starting together on an empty database create the schema one after the other.
      await client.query({ text: "SELECT pg_advisory_xact_lock($1::int, $2::int)", values: [...names.lockKeys] });
      if ((await schemaVersion(client, names)) !== undefined) return;
      const schemaExists = await client.query({
        text: "SELECT to_regnamespace($1) IS NOT NULL AS present",
        values: [names.quotedSchema],
        types: RAW,
      });
      await client.query({ text: schemaDdl(names, (schemaExists.rows[0] as Row | undefined)?.present !== "t") });
    });
  }

  /** Runs `work` in one transaction on one connection; a connection left in doubt is closed, not returned. */
  async #transaction<T>(pool: PostgresPool, work: (client: PostgresPoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    let destroy = false;
    try {
      await client.query({ text: "BEGIN" });
      const result = await work(client);
      await client.query({ text: "COMMIT" });
      return result;
    } catch (error) {
      if (connectionIntact(error)) {
        try {
          await client.query({ text: "ROLLBACK" });
        } catch {
          destroy = true;
        }
      } else {
        destroy = true;
      }
      throw error;
    } finally {
      client.release(destroy);
    }
  }

  async #applyWithMeta(
    pool: PostgresPool,
    key: string,
    now: number,
    set: string,
    deletes: string,
    change: Partial<SessionMeta>,
  ): Promise<"ok" | Absent> {
    return this.#transaction(pool, async (client) => {
      const row = (await client.query({ ...this.#sql.lockMeta, values: [key, now] })).rows[0] as Row | undefined;
      const why = this.#stateOf(row);
      if (why === "corrupt") {
        await client.query({ ...this.#sql.destroyCorrupt, values: [key] });
        return "gone";
      }
      if (why !== "live") return why;
      const meta = mergeMeta(toMeta(row as Row) as SessionMeta, change);
      await client.query({ ...this.#sql.applyWithMeta, values: [key, set, deletes, ...metaValues(meta)] });
      return "ok";
    });
  }

  /** Why a write to `key` matched nothing: no live row, a marker, a corrupt row (removed), or a live row after all. */
  async #whyNot(pool: PostgresPool, key: string, now: number): Promise<Absent | "live"> {
    const row = (await pool.query({ ...this.#sql.inspect, values: [key, now, ""] })).rows[0] as Row | undefined;
    const state = this.#stateOf(row);
    return state === "corrupt" ? this.#removeCorrupt(pool, key) : state;
  }

  #stateOf(row: Row | undefined): Absent | "corrupt" | "live" {
    if (row === undefined) return "gone";
    if (row.rotated === "t") return "rotated";
    return toMeta(row) === undefined || row.shape !== "object" ? "corrupt" : "live";
  }

  /** A row whose meta or fields cannot be read counts as absent, and goes. */
  async #removeCorrupt(pool: PostgresPool, key: string): Promise<"gone"> {
    await pool.query({ ...this.#sql.destroyCorrupt, values: [key] });
    return "gone";
  }

  #sweep(): void {
    if (this.#sweeping !== undefined || this.#disposed) return;
    const sweep = this.#purge(Date.now()).catch(() => {
      // Unreachable or busy: the next sweep tries again, and reads ignore expired rows meanwhile.
    });
    this.#sweeping = sweep.finally(() => {
      this.#sweeping = undefined;
    });
  }

  /** The purge, on one connection that holds the table's advisory lock for the whole of it. */
  async #purge(now: number): Promise<number> {
    const pool = await this.#ready();
    const client = await pool.connect();
    const keys = [...this.#names.lockKeys];
    let destroy = false;
    try {
      const locked = (await client.query({ ...this.#sql.tryLock, values: keys })).rows[0] as Row | undefined;
      if (locked?.locked !== "t") return 0;
      try {
        let deleted = 0;
        for (;;) {
          const batch = (await client.query({ ...this.#sql.purgeBatch, values: [now] })).rows[0] as Row | undefined;
          deleted += Number(batch?.sessions ?? 0);
          if (Number(batch?.n ?? 0) < SWEEP_BATCH) return deleted;
        }
      } finally {
        await client.query({ ...this.#sql.unlock, values: keys });
      }
    } catch (error) {
      // Closing the connection releases the lock, whatever state it was left in.
      destroy = true;
      throw error;
    } finally {
      client.release(destroy);
    }
  }
}

/** The version recorded in `<table>_meta`, or undefined when there is no such table; refuses one it does not understand. */
async function schemaVersion(db: Queryable, names: SchemaNames): Promise<number | undefined> {
  const { rows } = await db.query({
    text: "SELECT current_setting('server_encoding') AS encoding, to_regclass($1) IS NOT NULL AS present",
    values: [names.meta],
    types: RAW,
  });
  const info = rows[0] as Row | undefined;
  if (info?.encoding !== "UTF8") {
    throw new SessionConfigError(
      `PostgresStore needs a database with UTF8 encoding (this one is ${String(info?.encoding)}): session data is Unicode text; create the database with ENCODING 'UTF8'`,
    );
  }
  if (info.present !== "t") return undefined;
  const recorded = (await db.query({ text: `SELECT value FROM ${names.meta} WHERE name = 'schema_version'`, types: RAW })).rows[0] as
    | Row
    | undefined;
  const version = Number(recorded?.value);
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new SessionConfigError(
      `PostgresStore: ${names.meta} records no readable schema_version (${JSON.stringify(recorded?.value ?? null)}); restore it or apply schema.sql again`,
    );
  }
  if (version > SCHEMA_VERSION) {
    throw new SessionConfigError(
      `PostgresStore: ${names.sessions} has schema version ${version}, newer than this atomic-session understands (${SCHEMA_VERSION}); upgrade atomic-session`,
    );
  }
  return version;
}

/** Whether the connection is still in a known state after `error` (then a ROLLBACK is worth sending). */
function connectionIntact(error: unknown): boolean {
  if (error instanceof SessionError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  // An SQLSTATE from the server, but not a connection failure (class 08) or a shutdown (57P01-57P03).
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith("08") && !/^57P0[1-3]$/.test(code);
}

function whole(name: string, value: unknown, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new SessionConfigError(`PostgresStore ${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return value as number;
}

/** Refuses a URL pg would misread, without echoing it (it can hold a password). */
function checkUrl(url: unknown): void {
  if (typeof url !== "string" || url.length === 0) throw new SessionConfigError("PostgresStore url must be a non-empty string");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SessionConfigError("PostgresStore url is not a valid URL (expected postgres://user@host:5432/database)");
  }
  if (!URL_PROTOCOLS.has(parsed.protocol)) {
    throw new SessionConfigError(`PostgresStore url must start with postgres:// or postgresql://, not ${parsed.protocol}//`);
  }
}

/** now, now + idle timeout, touch interval, as the SQL touch takes them: integers, "never" as 2^53 - 1. */
function touchArguments({ now, idleTimeoutMs, touchIntervalMs }: TouchOptions): [number, number, number] {
  const at = Math.floor(now);
  const deadline = Number.isFinite(idleTimeoutMs) ? Math.min(at + Math.floor(idleTimeoutMs), NEVER) : NEVER;
  // now - lastSeenAt is an integer, so `>= 1.5` is `>= 2`.
  const interval = Number.isFinite(touchIntervalMs) ? Math.max(Math.min(Math.ceil(touchIntervalMs), NEVER), -NEVER) : NEVER;
  return [at, deadline, interval];
}

/** A stored time: a safe integer. */
function time(name: string, value: unknown): number {
  if (!isTimestamp(value)) throw new SessionValueError(`session meta ${name} must be a whole number of milliseconds`);
  return value;
}

/** The meta as the parameters of {@link META_COLUMNS}. */
function metaValues(meta: SessionMeta): [number, number, number, number, string | null, string | null, string | null] {
  for (const name of ["userId", "userAgent"] as const) {
    if (meta[name] !== undefined && typeof meta[name] !== "string") throw new SessionValueError(`session meta ${name} must be a string`);
  }
  return [
    time("createdAt", meta.createdAt),
    time("lastSeenAt", meta.lastSeenAt),
    time("absoluteExpiresAt", meta.absoluteExpiresAt),
    time("expiresAt", meta.expiresAt),
    meta.userId ?? null,
    meta.userAgent ?? null,
    meta.persistent === undefined ? null : String(meta.persistent === true),
  ];
}

/** Fields as the jsonb object the table holds: each value a JSON string whose content is the field's JSON text. */
function fieldsJson(fields: ReadonlyMap<string, string>): string {
  const parts: string[] = [];
  for (const [name, value] of fields) {
    if (typeof name !== "string" || typeof value !== "string") throw new SessionValueError("session fields must be strings of JSON text");
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(value)}`);
  }
  return `{${parts.join(",")}}`;
}

function namesJson(names: readonly string[]): string {
  for (const name of names) if (typeof name !== "string") throw new SessionValueError("session field names must be strings");
  return JSON.stringify(names);
}

function timestampOf(text: string | null | undefined): number | undefined {
  if (typeof text !== "string" || !INTEGER_TEXT.test(text)) return undefined;
  const value = Number(text);
  return isTimestamp(value) ? value : undefined;
}

/** The meta of a row, or undefined when a column holds something it never should (a corrupt row). */
function toMeta(row: Row): SessionMeta | undefined {
  const createdAt = timestampOf(row.created_at);
  const lastSeenAt = timestampOf(row.last_seen_at);
  const absoluteExpiresAt = timestampOf(row.absolute_expires_at);
  const expiresAt = timestampOf(row.expires_at);
  if (createdAt === undefined || lastSeenAt === undefined || absoluteExpiresAt === undefined || expiresAt === undefined) return undefined;
  const meta: SessionMeta = { createdAt, lastSeenAt, absoluteExpiresAt, expiresAt };
  if (typeof row.user_id === "string") meta.userId = row.user_id;
  if (typeof row.user_agent === "string") meta.userAgent = row.user_agent;
  if (row.persistent === "t" || row.persistent === "f") meta.persistent = row.persistent === "t";
  return meta;
}

/** A row with its fields as a record, or undefined when the meta or a field cannot be read. */
function toRecord(row: Row): StoredSession | undefined {
  const meta = toMeta(row);
  if (meta === undefined || typeof row.fields !== "string") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.fields);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const fields = new Map<string, string>();
  // JSON.parse makes every key, "__proto__" included, an own property: nothing reaches a prototype.
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== "string") return undefined;
    fields.set(name, value);
  }
  return { meta, fields };
}
