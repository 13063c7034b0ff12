/**
 * The admin operations over any `SessionStore`, under a deadline on every store step: a dead
 * or stalled store makes the CLI fail within the deadline, never hang. Scans use the store's
 * optional `scan()` ability; finding a session by handle is a scan, O(sessions).
 * @module
 */
import { handleOf } from "../src/core/ids.js";
import type { SessionStore, UserSessionEntry } from "../src/core/store.js";

/** The store failed or did not answer (exit status 1). */
export class StoreFailure extends Error {
  override name = "StoreFailure";
}

/** A store lacks an ability the command needs (exit status 1). */
export class Unsupported extends Error {
  override name = "Unsupported";
}

export interface AdminOptions {
  /** Deadline on each store step: a call, or one step of a scan. */
  timeoutMs: number;
  /** Called after every {@link PROGRESS_EVERY} sessions scanned, when progress is wanted. */
  progress?: (scanned: number) => void;
}

export const PROGRESS_EVERY = 10_000;

export interface Stats {
  sessions: number;
  /** Distinct users with a live session; `null` when the store can only count. */
  users: number | null;
  /** Sessions bound to a user; `null` when the store can only count. */
  signedIn: number | null;
  anonymous: number | null;
}

export class Admin {
  constructor(
    readonly store: SessionStore,
    private readonly options: AdminOptions,
  ) {}

  /** Resolves when the store answers; the first call of every command, so that "unreachable" is said plainly. */
  async ping(): Promise<void> {
    await this.#call("ping", () => this.store.ping());
  }

  async stats(): Promise<Stats> {
    if (this.store.scan === undefined) {
      const count = this.store.count?.bind(this.store);
      if (count === undefined) throw new Unsupported(`the ${this.store.kind} store can neither scan nor count its sessions`);
      return { sessions: await this.#call("count", () => count(Date.now())), users: null, signedIn: null, anonymous: null };
    }
    let sessions = 0;
    let signedIn = 0;
    const users = new Set<string>();
    for await (const { meta } of this.scan()) {
      sessions++;
      if (meta.userId !== undefined) {
        signedIn++;
        users.add(meta.userId);
      }
    }
    return { sessions, users: users.size, signedIn, anonymous: sessions - signedIn };
  }

  /** Every live session, through `scan()` (O(sessions)), each step under the deadline. */
  async *scan(): AsyncGenerator<UserSessionEntry> {
    const scan = this.store.scan?.bind(this.store);
    if (scan === undefined) throw new Unsupported(`the ${this.store.kind} store cannot list its sessions (no scan ability)`);
    const iterator = scan(Date.now())[Symbol.asyncIterator]();
    let done = false;
    let scanned = 0;
    try {
      for (;;) {
        const step = await this.#call("scan", () => iterator.next());
        if (step.done === true) {
          done = true;
          return;
        }
        yield step.value;
        scanned++;
        if (scanned % PROGRESS_EVERY === 0) this.options.progress?.(scanned);
      }
    } finally {
      // Stops the store's scan when the caller breaks out (or a step failed); its outcome no longer matters.
      if (!done) iterator.return?.().catch(() => undefined);
    }
  }

  /** The live sessions of `userId`, newest first: the per-user index when the store has one, else a scan. */
  async listUser(userId: string): Promise<UserSessionEntry[]> {
    const listByUser = this.store.listByUser?.bind(this.store);
    let entries: UserSessionEntry[];
    if (listByUser !== undefined) {
      entries = await this.#call("listByUser", () => listByUser(userId, Date.now()));
    } else {
      entries = [];
      for await (const entry of this.scan()) if (entry.meta.userId === userId) entries.push(entry);
    }
    return entries.sort((a, b) => b.meta.createdAt - a.meta.createdAt);
  }

  /** The live session whose handle is `handle`, found by scanning every session (O(sessions)). */
  async find(handle: string): Promise<UserSessionEntry | undefined> {
    for await (const entry of this.scan()) {
      if (handleOf(entry.key) === handle) return entry;
    }
    return undefined;
  }

  async destroy(entry: UserSessionEntry): Promise<void> {
    await this.#call("destroy", () => this.store.destroy(entry.key));
  }

  /** Ends every session of `userId` and resolves how many were live. */
  async destroyUser(userId: string): Promise<number> {
    const destroyByUser = this.store.destroyByUser?.bind(this.store);
    if (destroyByUser !== undefined) return (await this.#call("destroyByUser", () => destroyByUser(userId, Date.now()))).length;
    const entries = await this.listUser(userId);
    for (const entry of entries) await this.destroy(entry);
    return entries.length;
  }

  /** How many expired records were deleted, or `undefined` when the store expires records by itself. */
  async purge(): Promise<number | undefined> {
    const purgeExpired = this.store.purgeExpired?.bind(this.store);
    if (purgeExpired === undefined) return undefined;
    // A purge is as many short batches as there are expired records: each batch is a step, the whole gets room.
    return this.#call("purgeExpired", () => purgeExpired(Date.now()), 60_000);
  }

  async #call<T>(operation: string, run: () => Promise<T>, minimumMs = 0): Promise<T> {
    const timeoutMs = Math.max(this.options.timeoutMs, minimumMs);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreFailure(`no answer to ${operation} within ${timeoutMs} ms`)), timeoutMs);
    });
    const work = Promise.resolve().then(run);
    work.catch(() => undefined);
    try {
      return await Promise.race([work, deadline]);
    } catch (error) {
      if (error instanceof StoreFailure || error instanceof Unsupported) throw error;
      throw new StoreFailure(`${operation} failed: ${rootCause(error)}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The innermost message of an error chain (node's connect errors can be an AggregateError with an empty message). */
export function rootCause(error: unknown): string {
  let current = error;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  if (current instanceof AggregateError && current.message === "") return current.errors.map((inner) => rootCause(inner)).join("; ");
  return current instanceof Error ? current.message : String(current);
}
