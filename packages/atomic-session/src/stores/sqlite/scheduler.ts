/**
 * How the worker runs what it was asked, on its one connection. Each turn takes every request
 * that has arrived, then:
 * 1. answers, without running them, the requests whose deadline passed before they started;
 * 2. runs the reads together in one read transaction, which takes no write lock (in WAL mode
 *    it waits for nobody);
 * 3. runs the writes together in one `BEGIN IMMEDIATE … COMMIT` (group commit: one commit,
 *    one WAL sync with `synchronous = FULL`, for the whole batch), each inside a savepoint, so
 *    that one failing write rolls back only itself;
 * 4. posts every answer of the turn in one message.
 *
 * The connection's busy timeout is 0: when another connection holds the write lock, SQLite
 * does not sleep on this thread. The scheduler retries the lock itself a few milliseconds
 * later, serving reads and taking in new requests meanwhile, until each waiting write's
 * deadline. Long work (a purge, a user's sessions) is a job of many short steps (at most
 * 1,000 rows, or about 10 ms, each), one step per turn, so other requests are served between them.
 * @module
 */
import type Database from "better-sqlite3";
import { SessionValueError } from "../../core/errors.js";
import type { Failure, Reply } from "./protocol.js";

/** Answered by a step that has more to do, in a later transaction. */
export const MORE = Symbol("more");

/** The steps of one request. */
export interface Job {
  /** Whether the next step needs the write lock. */
  write: boolean;
  /** Runs one step inside the current transaction: the request's answer, or {@link MORE}. */
  step(): unknown;
}

interface Task {
  /** The request's id; 0 for the worker's own sweeps, which nobody awaits. */
  id: number;
  /** Past it (`Date.now()`), the task's next step is not started: the task fails instead. */
  deadline: number;
  job: Job;
  done: boolean;
}

/** Milliseconds between attempts at a write lock another connection holds (SQLite's own busy handler sleeps about as long). */
const LOCK_RETRY_MS = [1, 2, 5, 10, 15, 20, 25];

export class Scheduler {
  readonly #db: Database.Database;
  readonly #busyTimeoutMs: number;
  readonly #pull: () => void;
  readonly #post: (replies: Reply[]) => void;
  readonly #begin: Database.Statement;
  readonly #beginImmediate: Database.Statement;
  readonly #commit: Database.Statement;
  readonly #rollback: Database.Statement;
  readonly #savepoint: Database.Statement;
  readonly #release: Database.Statement;
  readonly #rollbackToSavepoint: Database.Statement;

  #queue: Task[] = [];
  #replies: Reply[] = [];
  /** The last attempt at the write lock (or, rarely, at a read snapshot) found the database busy. */
  #lockBusy = false;
  #readBusy = false;
  #lockAttempts = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #closing = false;
  #onClosed: (() => void) | undefined;

  /**
   * `pull` hands over (through {@link enqueue}) the requests that arrived since the last turn;
   * `post` sends one turn's answers.
   */
  constructor(db: Database.Database, busyTimeoutMs: number, pull: () => void, post: (replies: Reply[]) => void) {
    this.#db = db;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#pull = pull;
    this.#post = post;
    this.#begin = db.prepare("BEGIN");
    this.#beginImmediate = db.prepare("BEGIN IMMEDIATE");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#savepoint = db.prepare("SAVEPOINT operation");
    this.#release = db.prepare("RELEASE operation");
    this.#rollbackToSavepoint = db.prepare("ROLLBACK TO operation");
  }

  enqueue(id: number, deadline: number, job: Job): void {
    this.#queue.push({ id, deadline, job, done: false });
  }

  /** Queues a purge of expired records, unless one is queued already or the worker is closing. Nobody awaits it. */
  sweep(job: () => Job): void {
    if (this.#closing || this.#queue.some((task) => task.id === 0)) return;
    this.enqueue(0, Date.now() + this.#busyTimeoutMs, job());
    this.run();
  }

  /** Lets the queued requests finish (the worker's own sweep stops), then calls `onClosed`, at the end of a turn. */
  close(onClosed: () => void): void {
    this.#closing = true;
    this.#onClosed = onClosed;
    for (const task of this.#queue) if (task.id === 0) task.done = true;
  }

  /** One turn (see the module comment); schedules the next one when work is left. */
  run(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = this.#immediate = undefined;
    this.#pull();
    this.#expire(Date.now());
    if (this.#queue.some((task) => !task.done && !task.job.write)) this.#runReads();
    if (this.#queue.some((task) => !task.done && task.job.write)) this.#runWrites();
    this.#queue = this.#queue.filter((task) => !task.done);
    if (this.#replies.length > 0) {
      this.#post(this.#replies);
      this.#replies = [];
    }
    this.#plan();
  }

  #expire(now: number): void {
    for (const task of this.#queue) {
      if (task.done || task.deadline > now) continue;
      const locked = task.job.write && this.#lockBusy;
      const why = locked ? "another connection or process holds the database's write lock" : "it waited behind earlier work";
      const message = `SQLite: not started within busyTimeoutMs (${this.#busyTimeoutMs} ms) of the call: ${why}`;
      this.#fail(task, Object.assign(new Error(message), { code: locked ? "SQLITE_BUSY" : undefined }));
    }
  }

  #runReads(): void {
    this.#readBusy = false;
    this.#begin.run();
    for (const task of this.#queue) {
      if (task.done || task.job.write) continue;
      try {
        this.#advance(task, task.job.step(), !task.job.write);
      } catch (error) {
        // In WAL mode a read waits for nobody, except while another connection recovers the
        // WAL after a crash: then it is tried again in a later turn.
        if (!isBusy(error)) this.#fail(task, error);
        else this.#readBusy = true;
      }
    }
    // The answers were read from one snapshot; ending it changes none of them.
    this.#end();
  }

  #runWrites(): void {
    const writes = this.#queue.filter((task) => !task.done && task.job.write);
    try {
      this.#beginImmediate.run();
    } catch (error) {
      if (isBusy(error)) this.#lockBusy = true;
      else for (const task of writes) this.#fail(task, error);
      return;
    }
    this.#lockBusy = false;
    this.#lockAttempts = 0;
    const ran: [Task, unknown][] = [];
    for (const task of writes) {
      let value: unknown;
      try {
        this.#savepoint.run();
        value = task.job.step();
        this.#release.run();
      } catch (error) {
        if (this.#undoStep()) {
          this.#fail(task, error);
          continue;
        }
        // SQLite rolled the whole transaction back (disk full, I/O error): the batch's earlier
        // writes are undone too. The writes not reached yet stay queued for the next turn.
        for (const [earlier] of ran) this.#fail(earlier, error);
        this.#fail(task, error);
        return;
      }
      ran.push([task, value]);
    }
    try {
      this.#commit.run();
    } catch (error) {
      this.#end();
      for (const [task] of ran) this.#fail(task, error);
      return;
    }
    for (const [task, value] of ran) this.#advance(task, value, true);
  }

  /** Rolls the failed step back to its savepoint; false when the transaction itself is gone. */
  #undoStep(): boolean {
    if (!this.#db.inTransaction) return false;
    try {
      this.#rollbackToSavepoint.run();
      this.#release.run();
      return true;
    } catch {
      this.#end();
      return false;
    }
  }

  /** Ends the open transaction, if any (a read one, or one that failed), keeping nothing. */
  #end(): void {
    if (this.#db.inTransaction) this.#rollback.run();
  }

  /**
   * Records what a step answered: the result, or one more step. A job that made progress gets
   * a new deadline for its next step (`rearm`); a load that found it must write keeps its own.
   */
  #advance(task: Task, value: unknown, rearm: boolean): void {
    if (value !== MORE) {
      task.done = true;
      if (task.id !== 0) this.#replies.push({ id: task.id, ok: true, value });
    } else if (rearm) {
      task.deadline = Date.now() + this.#busyTimeoutMs;
    }
  }

  #fail(task: Task, error: unknown): void {
    task.done = true;
    if (task.id !== 0) this.#replies.push({ id: task.id, ok: false, failure: failureOf(error) });
  }

  /** The next turn: at once when something can run, else when the lock may be free or a deadline passes. */
  #plan(): void {
    if (this.#queue.length === 0) {
      const onClosed = this.#onClosed;
      this.#onClosed = undefined;
      onClosed?.();
      return;
    }
    const runnable = this.#queue.some((task) => (task.job.write ? !this.#lockBusy : !this.#readBusy));
    if (runnable) {
      this.#immediate = setImmediate(() => this.run());
      return;
    }
    const retry = LOCK_RETRY_MS[Math.min(this.#lockAttempts++, LOCK_RETRY_MS.length - 1)] ?? 25;
    let firstDeadline = Number.POSITIVE_INFINITY;
    for (const task of this.#queue) firstDeadline = Math.min(firstDeadline, task.deadline);
    this.#timer = setTimeout(() => this.run(), Math.max(0, Math.min(retry, firstDeadline - Date.now())));
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

function failureOf(error: unknown): Failure {
  if (error instanceof SessionValueError) return { kind: "value", message: error.message };
  const code = (error as { code?: unknown } | null)?.code;
  return {
    kind: "sqlite",
    message: error instanceof Error ? error.message : String(error),
    code: typeof code === "string" ? code : undefined,
  };
}
