/**
 * The PostgreSQL store's schema: where it lives (a schema and a table name, validated and
 * quoted), the DDL that creates it, and the version this code writes. The store runs this DDL
 * on first use unless told not to; `schema.sql` beside this module is the same DDL for the
 * default names, for teams that apply migrations themselves (`postgresSchemaSql()` renders it
 * for other names). Loads no driver.
 * @module
 */
import { createHash } from "node:crypto";
import { SessionConfigError } from "../../core/errors.js";

/** The schema version this code reads and writes, recorded in the `<table>_meta` table. */
export const SCHEMA_VERSION = 1;

export const DEFAULT_SCHEMA = "public";
export const DEFAULT_TABLE = "atomic_session";

/** Plain identifiers only (letters, digits, `_`): quoted, they mean exactly what is written, case included. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** PostgreSQL truncates identifiers past 63 bytes. */
const MAX_IDENTIFIER = 63;
/** The longest suffix the store appends to the table name (`<table>_expires_at`), so every derived name fits in 63 bytes. */
const LONGEST_SUFFIX = "_expires_at".length;

/** Where the store's tables are, quoted for SQL. */
export interface SchemaNames {
  schema: string;
  table: string;
  /** `"schema"`, as `to_regnamespace` reads it. */
  quotedSchema: string;
  /** `"schema"."table"`: the sessions (and rotation markers). */
  sessions: string;
  /** `"schema"."table_meta"`: the schema version. */
  meta: string;
  /** Two 32-bit keys for the advisory locks of this table (schema creation, purge): one per table, whatever the database. */
  lockKeys: [number, number];
}

/** Checks a schema or table name given as option `what`; throws `SessionConfigError` naming it. */
export function checkIdentifier(what: string, value: unknown, maxLength = MAX_IDENTIFIER): string {
  if (typeof value !== "string" || !IDENTIFIER.test(value) || value.length > maxLength) {
    const shown = typeof value === "string" ? JSON.stringify(value.slice(0, 100)) : typeof value;
    throw new SessionConfigError(
      `PostgresStore ${what} must be 1 to ${maxLength} letters, digits or underscores, not starting with a digit; got ${shown}`,
    );
  }
  return value;
}

/** The longest table name the store accepts (its index names add a suffix). */
export const MAX_TABLE_LENGTH = MAX_IDENTIFIER - LONGEST_SUFFIX;

/** Every identifier goes through here: validated above, and always double-quoted, so it can never be read as SQL. */
function quote(identifier: string): string {
  return `"${identifier}"`;
}

/** The names for `schema` and `table` (both validated). */
export function schemaNames(schema: string = DEFAULT_SCHEMA, table: string = DEFAULT_TABLE): SchemaNames {
  checkIdentifier("schema", schema);
  checkIdentifier("table", table, MAX_TABLE_LENGTH);
  const digest = createHash("sha256").update(`${schema}.${table}`).digest();
  return {
    schema,
    table,
    quotedSchema: quote(schema),
    sessions: `${quote(schema)}.${quote(table)}`,
    meta: `${quote(schema)}.${quote(`${table}_meta`)}`,
    // The first key says "atomic-session" ("as" in ASCII), the second which table.
    lockKeys: [0x6173, digest.readInt32BE(0)],
  };
}

/**
 * The DDL of the schema for `schema` and `table` (defaults: `public`, `atomic_session`), as
 * `schema.sql` holds it for the default names. Idempotent: every statement is `IF NOT
 * EXISTS` (or `ON CONFLICT DO NOTHING`), so it can run again over an existing schema.
 *
 * Layout, one row per session:
 * - `key`: the store key (a hash of the session ID, never the ID), in the "C" collation (a
 *   byte comparison: these are random base64url strings, so no linguistic order applies, and
 *   "C" is the fastest to index);
 * - the meta as columns: times as `bigint` milliseconds since the epoch, `user_id` indexed
 *   (with `key`, so that a user's sessions are read in pages of the index);
 * - `fields`: a `jsonb` object whose values are jsonb *strings*, each holding one field's JSON
 *   text. The value is never stored as jsonb itself: jsonb would normalise it (whitespace, key
 *   order, duplicate keys, number spelling), and the store contract is JSON text back byte for
 *   byte. A jsonb string keeps its text exactly, while the object lets one `UPDATE` set, delete
 *   or increment the named fields only (`||`, `-`), so concurrent writers of different fields
 *   never lose each other's writes, and a session is one row (one index lookup per load).
 * - `rotated`: the row is a rotation marker (the key a session left by login): no data, no
 *   user, its expiry the marker's. In the same table as the sessions, so that `create` is one
 *   `INSERT … ON CONFLICT` that refuses a live session and a live marker alike.
 *
 * `fillfactor = 80` leaves room in each page for updated row versions (heap-only tuple
 * updates: an increment that does not touch the idle deadline rewrites no index).
 */
export function postgresSchemaSql(options: { schema?: string; table?: string } = {}): string {
  const names = schemaNames(options.schema, options.table);
  return schemaDdl(names, names.schema !== DEFAULT_SCHEMA);
}

/** The DDL for `names`; `createSchema` adds `CREATE SCHEMA IF NOT EXISTS` (the store leaves it out when the schema exists: it needs a privilege on the database). */
export function schemaDdl(names: SchemaNames, createSchema: boolean): string {
  const table = names.table;
  const schemaLine = createSchema ? `CREATE SCHEMA IF NOT EXISTS ${quote(names.schema)};\n\n` : "";
  return `-- atomic-session PostgreSQL store, schema version ${SCHEMA_VERSION} (atomic-session/stores/postgres).
-- Idempotent. With these names, create the store with { createSchema: false } to use it as applied.

${schemaLine}CREATE TABLE IF NOT EXISTS ${names.sessions} (
  key text COLLATE "C" PRIMARY KEY,
  rotated boolean NOT NULL DEFAULT false,
  created_at bigint NOT NULL,
  last_seen_at bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  user_id text COLLATE "C",
  user_agent text,
  persistent boolean,
  fields jsonb NOT NULL DEFAULT '{}'
) WITH (fillfactor = 80);

CREATE INDEX IF NOT EXISTS ${quote(`${table}_user_id`)} ON ${names.sessions} (user_id, key) WHERE user_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS ${quote(`${table}_expires_at`)} ON ${names.sessions} (expires_at);

CREATE TABLE IF NOT EXISTS ${names.meta} (
  name text PRIMARY KEY,
  value text NOT NULL
);

INSERT INTO ${names.meta} (name, value) VALUES ('schema_version', '${SCHEMA_VERSION}') ON CONFLICT (name) DO NOTHING;
`;
}
