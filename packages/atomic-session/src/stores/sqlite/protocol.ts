/**
 * The messages between `SqliteStore` (main thread) and its worker, which owns the SQLite
 * connection. The main thread posts the requests of one tick as one array and the worker
 * answers each batch it ran with one array of replies. Everything here crosses a thread by
 * structured clone, so it holds plain data only (`Map` fields clone as they are, and a
 * property set to `undefined` stays present, which `mergeMeta` depends on).
 * @module
 */
import type { Rotation, SessionChange, StoredSession, TouchOptions } from "../../core/store.js";

/** What the worker is started with (`workerData`). */
export interface WorkerSettings {
  path: string;
  busyTimeoutMs: number;
  synchronous: "normal" | "full";
  sweepIntervalMs: number;
}

/** One store call, as the worker runs it. */
export type Operation =
  | { op: "load"; key: string; touch: TouchOptions }
  | { op: "create"; key: string; record: StoredSession }
  | { op: "apply"; key: string; change: SessionChange }
  | { op: "increment"; key: string; field: string; by: number; touch: TouchOptions }
  | { op: "compareAndSet"; key: string; field: string; expected: string | undefined; next: string | undefined; now: number }
  | { op: "rotate"; fromKey: string; toKey: string; rotation: Rotation }
  | { op: "destroy"; key: string }
  | { op: "ping" }
  | { op: "listUserSessions"; userId: string; now: number }
  | { op: "revokeUserSessions"; userId: string; now: number }
  | { op: "count"; now: number }
  | { op: "scanPage"; after: string; now: number }
  | { op: "purgeExpired"; now: number }
  /** Lets the operations already posted finish, closes the database, and ends the worker. */
  | { op: "close" };

export interface Request {
  /** Positive; the reply carries it back. */
  id: number;
  /** `Date.now()` past which the worker no longer starts the operation (the call's time + `busyTimeoutMs`). */
  deadline: number;
  operation: Operation;
}

/** Why an operation failed, rebuilt into an error on the main thread. */
export type Failure =
  /** An increment of a value that is not an integer (`SessionValueError`). */
  | { kind: "value"; message: string }
  /**
   * SQLite failed, or the operation could not start before its deadline. Either way a single
   * operation wrote nothing: it never started, or its savepoint or transaction rolled back.
   */
  | { kind: "sqlite"; message: string; code: string | undefined };

export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; failure: Failure };

/** A page of `scan()`: the live entries of up to one page of rows, and the key to continue after (none: the last page). */
export interface ScanPage {
  entries: { key: string; meta: StoredSession["meta"] }[];
  after: string | undefined;
}
