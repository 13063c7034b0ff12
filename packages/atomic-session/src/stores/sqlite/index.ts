/**
 * The SQLite store: sessions in one file that every process of the application may share,
 * with SQLite on a worker thread so that the application's event loop never waits for it.
 * Needs `better-sqlite3` 12.
 * @module
 */
import { resolve as resolvePath } from "node:path";
import { Worker } from "node:worker_threads";
import { SessionConfigError, SessionValueError } from "../../core/errors.js";
import type {
  Absent,
  CompareAndSetResult,
  Rotation,
  SessionChange,
  SessionStore,
  StoredSession,
  TouchOptions,
  UserSessionEntry,
} from "../../core/store.js";
import type { Failure, Operation, Reply, Request, ScanPage, WorkerSettings } from "./protocol.js";
import { openConnection } from "./schema.js";

/** Options of {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * The database file, created with its parent folder when missing. Default `./data/sessions.db`,
   * relative to the current folder when the store is created. Several processes may share one
   * file. `":memory:"` is a private database that lives as long as the store.
   */
  path?: string;
  /** How often expired sessions are deleted. Default 60 s. */
  sweepIntervalMs?: number;
  /**
   * How long an operation may wait, from the call, before it starts: for the write lock while
   * another connection or process holds it, and behind the store's earlier work. Past it the
   * operation is not started, and never will be: it rejects with {@link SqliteStoreError}
   * (code `SQLITE_BUSY` when the lock was the reason). Default 500 ms; keep it below the
   * manager's `storeTimeoutMs` (default 1000 ms) so that a busy database gives that definite
   * answer rather than the manager's timeout, whose outcome is unknown.
   */
  busyTimeoutMs?: number;
  /**
   * When a commit is on disk. The file is in WAL mode and never corrupts either way.
   * - `"normal"` (default): a commit survives a crash of the process, but a power cut or an
   *   OS crash may lose the commits of the last seconds (those the OS had not written to disk
   *   yet). For sessions that means a login or a counter may be lost, and a lost logout (or
   *   revocation) is a session that comes back until it expires.
   * - `"full"`: each commit is synced to disk before it is answered; with group commit that
   *   is one sync per batch of concurrent writes, not per write.
   */
  synchronous?: "normal" | "full";
}

/**
 * SQLite failed (its message, and its `code` such as `SQLITE_FULL`), or an operation did not
 * start within `busyTimeoutMs`. Either way the operation wrote nothing.
 */
export class SqliteStoreError extends Error {
  override name = "SqliteStoreError";
  /** SQLite's result code (`SQLITE_BUSY`, `SQLITE_FULL`, `SQLITE_IOERR_…`), when there is one. */
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

const DEFAULT_PATH = "./data/sessions.db";
/** `setInterval` fires at once for delays past 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

interface Waiting {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * Sessions in a SQLite file, shared safely by every process that opens it: one row per session
 * and one per field, so a write touches only the fields it changes. WAL mode lets readers
 * proceed while one connection writes.
 *
 * The connection lives on a worker thread that this store starts; the calls of one tick go to
 * it in one message. The worker runs every read it has at hand in one read transaction, which
 * takes no write lock, and every write in one `BEGIN IMMEDIATE … COMMIT` (group commit), each
 * write in its own savepoint: an increment of a value that is not an integer fails alone, with
 * `SessionValueError`, and the others commit. Each operation is atomic across connections and
 * processes. Expired rows are deleted by a periodic sweep in short batches (at most 1,000 rows
 * or about 10 ms each), with other operations served between batches.
 *
 * When another process holds the write lock, the application's event loop runs on: writes wait
 * in the worker (reads go on) until the lock is free, or fail when `busyTimeoutMs` passed since
 * the call; once the lock is free, the store serves again by itself. Through a
 * `SessionManager`, a 503 (`StoreUnavailableError`) then means one of two things:
 * - `timedOut: false`, `cause` a {@link SqliteStoreError}: the operation did not run and never
 *   will (the worker skips an operation whose deadline passed before it started), or SQLite
 *   refused it and rolled it back. Either way nothing was written;
 * - `timedOut: true`: the manager's `storeTimeoutMs` passed first (set it above
 *   `busyTimeoutMs` to avoid this): the write may still have committed, or may commit until its
 *   `busyTimeoutMs` passes.
 *
 * The worker keeps the process alive only while calls are pending; `dispose()` lets the calls
 * already made finish, closes the database and ends the worker. A worker that dies (it should
 * not) fails the calls it held, and the next call starts a new one.
 */
export class SqliteStore implements SessionStore {
  readonly kind = "sqlite";
  readonly #settings: WorkerSettings;
  #worker: Worker | undefined;
  /** Why the last worker died, for the calls it failed. */
  #workerError: string | undefined;
  #referenced = false;
  /** Calls not yet posted: they go to the worker in one message. */
  #outbox: Request[] = [];
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: SqliteStoreOptions = {}) {
    if (typeof options !== "object" || options === null) throw new SessionConfigError("SqliteStore options must be an object");
    const path = options.path ?? DEFAULT_PATH;
    if (typeof path !== "string" || path === "" || path.includes("\0")) {
      throw new SessionConfigError(`SqliteStore path must be a non-empty file path, got ${JSON.stringify(path)}`);
    }
    const sweepIntervalMs = milliseconds("sweepIntervalMs", options.sweepIntervalMs, 60_000, 1);
    const busyTimeoutMs = milliseconds("busyTimeoutMs", options.busyTimeoutMs, 500, 0);
    const synchronous = options.synchronous ?? "normal";
    if (synchronous !== "normal" && synchronous !== "full") {
      throw new SessionConfigError(`SqliteStore synchronous must be "normal" or "full", got ${JSON.stringify(options.synchronous)}`);
    }
    // Absolute: a later process.chdir() must not move the file under a restarted worker.
    this.#settings = { path: path === ":memory:" ? path : resolvePath(path), busyTimeoutMs, synchronous, sweepIntervalMs };
    // Opened once here, synchronously, so that a path that cannot work or a newer schema
    // throws now rather than on the first request; the worker then opens its own connection.
    try {
      openConnection(this.#settings.path, this.#settings).close();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const hint = typeof (error as { code?: unknown })?.code === "string" ? "; check that the path names a file in a writable folder" : "";
      throw new SessionConfigError(`SqliteStore cannot use ${JSON.stringify(path)}: ${reason}${hint}`, { cause: error });
    }
    this.#worker = this.#start();
  }

  load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    return this.#call({ op: "load", key, touch });
  }

  create(key: string, record: StoredSession): Promise<boolean> {
    return this.#call({ op: "create", key, record });
  }

  apply(key: string, change: SessionChange): Promise<"ok" | Absent> {
    return this.#call({ op: "apply", key, change });
  }

  increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    return this.#call({ op: "increment", key, field, by, touch });
  }

  compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    return this.#call({ op: "compareAndSet", key, field, expected, next, now });
  }

  rotate(fromKey: string, toKey: string, rotation: Rotation): Promise<StoredSession | Absent> {
    return this.#call({ op: "rotate", fromKey, toKey, rotation });
  }

  destroy(key: string): Promise<void> {
    return this.#call({ op: "destroy", key });
  }

  ping(): Promise<void> {
    return this.#call({ op: "ping" });
  }

  /** Read 1,000 rows at a time, each batch its own short read. */
  listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    return this.#call({ op: "listUserSessions", userId, now });
  }

  /** Deletes in short transactions (at most 1,000 rows or about 10 ms each); a failure midway keeps the batches already committed. */
  revokeUserSessions(userId: string, now: number): Promise<string[]> {
    return this.#call({ op: "revokeUserSessions", userId, now });
  }

  count(now: number): Promise<number> {
    return this.#call({ op: "count", now });
  }

  /** Every live session's key and meta, 1,000 rows per read, in key order; field rows are never read. */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    let after: string | undefined = "";
    while (after !== undefined) {
      const page: ScanPage = await this.#call({ op: "scanPage", after, now });
      yield* page.entries;
      after = page.after;
    }
  }

  /**
   * Deletes expired sessions (their fields with them) and rotation markers now, in short
   * transactions (at most 1,000 rows or about 10 ms each), and resolves how many sessions. A
   * failure midway keeps the batches already committed.
   */
  purgeExpired(now: number): Promise<number> {
    return this.#call({ op: "purgeExpired", now });
  }

  /** Lets the calls already made finish, closes the database and ends the worker; later calls reject. */
  dispose(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    const closed = this.#call<void>({ op: "close" });
    this.#closing = true;
    // A worker that died has nothing left to close.
    await closed.catch(() => undefined);
    await this.#worker?.terminate();
  }

  #start(): Worker {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { workerData: this.#settings, execArgv: workerExecArgv() });
    worker.unref();
    this.#referenced = false;
    worker.on("message", (replies: Reply[]) => this.#settle(replies));
    worker.on("error", (error: unknown) => {
      this.#workerError = error instanceof Error ? error.message : JSON.stringify(error);
    });
    worker.on("exit", (code) => this.#exited(worker, code));
    return worker;
  }

  #call<T>(operation: Operation): Promise<T> {
    if (this.#closing) return Promise.reject(new SqliteStoreError("SqliteStore: dispose() was called; the store is closed"));
    return new Promise<T>((resolve, reject) => {
      const id = this.#nextId++;
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#outbox.push({ id, deadline: Date.now() + this.#settings.busyTimeoutMs, operation });
      if (this.#outbox.length === 1) setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    const requests = this.#outbox;
    this.#outbox = [];
    if (requests.length === 0) return;
    this.#worker ??= this.#start();
    // Pending calls keep the process alive until they are answered; an idle worker does not.
    if (!this.#referenced) {
      this.#worker.ref();
      this.#referenced = true;
    }
    try {
      this.#worker.postMessage(requests);
    } catch {
      // Something in a request cannot be cloned to another thread: only that call fails.
      for (const request of requests) {
        try {
          this.#worker.postMessage([request]);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          this.#settle([{ id: request.id, ok: false, failure: { kind: "sqlite", message: `SqliteStore: ${reason}`, code: undefined } }]);
        }
      }
    }
  }

  #settle(replies: Reply[]): void {
    for (const reply of replies) {
      const waiting = this.#waiting.get(reply.id);
      if (waiting === undefined) continue;
      this.#waiting.delete(reply.id);
      if (reply.ok) waiting.resolve(reply.value);
      else waiting.reject(errorOf(reply.failure));
    }
    if (this.#waiting.size === 0 && this.#referenced) {
      this.#worker?.unref();
      this.#referenced = false;
    }
  }

  #exited(worker: Worker, code: number): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    const unposted = new Set(this.#outbox.map((request) => request.id));
    const reason = this.#workerError ?? `exit code ${code}`;
    this.#workerError = undefined;
    for (const [id, waiting] of this.#waiting) {
      if (unposted.has(id)) continue;
      this.#waiting.delete(id);
      waiting.reject(new SqliteStoreError(`SqliteStore: the SQLite worker stopped (${reason}); the next call starts a new one`));
    }
  }
}

/**
 * The process's Node options for the worker, without `--input-type`, which a worker refuses
 * (it fails to start when the application runs as `node --input-type=module -e …`).
 */
function workerExecArgv(): string[] {
  const args: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const arg = process.execArgv[i] as string;
    if (arg === "--input-type") i++;
    else if (!arg.startsWith("--input-type=")) args.push(arg);
  }
  return args;
}

function errorOf(failure: Failure): Error {
  return failure.kind === "value" ? new SessionValueError(failure.message) : new SqliteStoreError(failure.message, failure.code);
}

function milliseconds(name: string, value: unknown, fallback: number, min: number): number {
  const ms = value ?? fallback;
  if (!Number.isSafeInteger(ms) || (ms as number) < min || (ms as number) > MAX_TIMER_MS) {
    throw new SessionConfigError(
      `SqliteStore ${name} must be a whole number of milliseconds from ${min} to ${MAX_TIMER_MS}, got ${String(value)}`,
    );
  }
  return ms as number;
}
