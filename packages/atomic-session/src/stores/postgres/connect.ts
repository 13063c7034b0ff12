/**
 * Builds the `pg.Pool` the PostgreSQL store creates from `url`, and owns. The only module of
 * the store that loads `pg` (node-postgres, an optional peer dependency); the store imports it
 * on demand, so an application that injects its own pool never loads it through the store.
 * @module
 */
import { createRequire } from "node:module";
import { SessionConfigError } from "../../core/errors.js";
import type { PostgresPool } from "./index.js";

/** How the store's own pool is set up. */
export interface OwnedPoolSettings {
  url: string;
  /** The store deadline: statement_timeout, and the wait for a connection. */
  timeoutMs: number;
  maxConnections: number;
}

/** A pool the store built: it ends it on `dispose()`. */
export interface OwnedPool extends PostgresPool {
  end(): Promise<void>;
}

const MISSING_PG = "PostgresStore needs the pg package (node-postgres) to connect from a url: npm install pg";

/** Throws `SessionConfigError` when `pg` cannot be found, without loading it (the store calls this when it is created). */
export function assertPgInstalled(): void {
  try {
    createRequire(import.meta.url).resolve("pg");
  } catch (error) {
    throw new SessionConfigError(MISSING_PG, { cause: error });
  }
}

/**
 * A `pg.Pool` for `url`:
 * - `statement_timeout` = the deadline, on every connection (sent at connection start, so it
 *   costs no round trip): PostgreSQL itself cancels a statement that runs or waits for a lock
 *   longer, and the connection stays usable;
 * - `query_timeout`, a little past it: the client gives up on a server that does not answer at
 *   all (stopped with SIGSTOP, a dead network path), and the pool drops that connection;
 * - `connectionTimeoutMillis` = the deadline: waiting for a free connection, or for a new one
 *   to a server that accepts TCP but never answers, fails instead of queueing for ever;
 * - `idle_in_transaction_session_timeout`: a process that stalls inside one of the store's
 *   short transactions cannot hold its row locks for long;
 * - an `error` listener: pg emits `error` when an idle connection dies (a server restart), and
 *   an `error` event nobody listens to crashes the process. The pool replaces the connection.
 * - `allowExitOnIdle`: idle connections do not keep a process alive (a CLI exits when done).
 */
export async function createPool({ url, timeoutMs, maxConnections }: OwnedPoolSettings): Promise<OwnedPool> {
  let pg: typeof import("pg").default;
  try {
    pg = (await import("pg")).default;
  } catch (error) {
    throw new SessionConfigError(MISSING_PG, { cause: error });
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: maxConnections,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + Math.max(250, Math.min(timeoutMs, 2_000)),
    idle_in_transaction_session_timeout: Math.max(10 * timeoutMs, 10_000),
    application_name: "atomic-session",
    allowExitOnIdle: true,
  });
  pool.on("error", () => {
    // The pool has already dropped the connection; the next query opens a new one.
  });
  // Assigned, not cast: pg.Pool must satisfy the structural interface the store declares.
  const owned: OwnedPool = pool;
  return owned;
}
