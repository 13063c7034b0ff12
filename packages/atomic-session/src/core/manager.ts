import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { LegacySessionSource } from "./adoption.js";
import { type CookieOptions, resolveCookieOptions, SessionCookie, validateSecrets } from "./cookie.js";
import { SessionConfigError, SessionError, StoreUnavailableError } from "./errors.js";
import type { SessionEvent, SessionEventListener } from "./events.js";
import { handleOf } from "./ids.js";
import { infoOf, type ResponseHeaders, Session, type SessionInfo, type SessionRuntime } from "./session.js";
import type { SessionStore, UserSessionEntry } from "./store.js";

export interface SessionManagerOptions {
  /** Where sessions live: `MemoryStore`, `SqliteStore`, `RedisStore`, `PostgresStore`, or any `SessionStore`. */
  store: SessionStore;
  cookie?: CookieOptions;
  /** Signed cookies: the first secret signs, every one verifies. Each at least 32 characters. Default: unsigned. */
  secrets?: readonly string[];
  /** Idle (sliding) timeout. Default 30 minutes. */
  idleTimeoutMs?: number;
  /** Absolute timeout from creation (or login). Default 12 hours. */
  absoluteTimeoutMs?: number;
  /** Least time between two refreshes of an unchanged session's idle deadline. Default min(60 s, idle timeout / 10). */
  touchIntervalMs?: number;
  /** Deadline on every store call; past it the request fails with `StoreUnavailableError` (503). Default 1000 ms. */
  storeTimeoutMs?: number;
  /** Cap on a session's encoded data. Default 64 KiB. */
  maxSizeBytes?: number;
  /** How many times `update()` runs its function before giving up with `SessionConflictError`. Default 16. */
  updateAttempts?: number;
  /**
   * Most live sessions one user may have: a login past it ends that user's oldest sessions
   * (by login time), as Spring Session's `maximumSessions` does. Default 100; `Infinity` for no cap.
   * Needs a store that lists a user's sessions.
   */
  maxSessionsPerUser?: number;
  /** Trust `X-Forwarded-Proto` to tell whether the request came over HTTPS. Default `false`. */
  trustProxy?: boolean;
  /**
   * A Standard Schema (zod, valibot, arktype…) that checks the data of every session loaded
   * from the store, as one object with the keys present. Data it rejects counts as a
   * corrupted record: a `corrupted-record` event, the record removed, the session absent.
   * Sessions hold some keys and not others, so make every key optional. Only the verdict
   * is used (not transforms or defaults), and writes are not checked: type them with `SessionTypes`.
   * Default: none.
   */
  schema?: StandardSchemaV1;
  /**
   * Moving from another session library without logging anyone out: a request with no valid
   * cookie of ours but a valid legacy cookie whose record exists gets that session, once,
   * under a new ID, and the legacy record dies. For express-session + connect-redis:
   * `expressSessionAdoption({ client, secrets })` from `atomic-session/express-session`.
   * Remove it once the legacy sessions have expired. Default: none.
   */
  adopt?: LegacySessionSource;
}

/** What an adapter knows about the request. */
export interface RequestInfo {
  cookieHeader: string | undefined;
  /** Whether the connection itself is TLS. */
  encrypted: boolean;
  /** The `X-Forwarded-Proto` header, used only with `trustProxy`. */
  forwardedProto: string | undefined;
  userAgent: string | undefined;
}

/** A user's session as listed for account pages; `handle` is the non-secret name to revoke it by. */
export interface UserSession extends SessionInfo {
  /** Whether this is the session of the request that asked. */
  current: boolean;
}

const MINUTE = 60_000;
const DEFAULTS = {
  idleTimeoutMs: 30 * MINUTE,
  absoluteTimeoutMs: 12 * 60 * MINUTE,
  storeTimeoutMs: 1000,
  maxSizeBytes: 64 * 1024,
  updateAttempts: 16,
  maxSessionsPerUser: 100,
};
/**
 * How long a key left by a rotation answers "rotated": longer than a request that read the old
 * cookie can still be in flight, so such a request gets 409 instead of a new session; short,
 * because a browser whose login answer was lost (a 503 whose rotation landed late) gets 409s
 * until it passes.
 */
const ROTATION_MARKER_MS = 15_000;
const REQUIRED_METHODS = ["load", "create", "apply", "increment", "compareAndSet", "rotate", "destroy", "ping"] as const;

/**
 * Sessions for one application: the store, the cookie and the timeouts. Create it once;
 * adapters call `open()` to give each request its `Session`. Bad options throw
 * `SessionConfigError` here, not on the first request.
 */
export class SessionManager {
  readonly store: SessionStore;
  readonly #runtime: SessionRuntime;
  readonly #trustProxy: boolean;
  readonly #listeners = new Set<SessionEventListener>();
  /** The cap passes running, by user: see #enforceUserCap. */
  readonly #capPasses = new Map<string, { again: boolean; keep: Set<string> }>();
  readonly #cookieOptions: { persistent: boolean };

  constructor(options: SessionManagerOptions) {
    if (options === null || typeof options !== "object")
      throw new SessionConfigError("SessionManager needs an options object with a store");
    const { store } = options;
    for (const method of REQUIRED_METHODS) {
      if (typeof store?.[method] !== "function") {
        throw new SessionConfigError(
          `options.store is not a SessionStore: it has no ${method}() method; use MemoryStore, SqliteStore, RedisStore or PostgresStore`,
        );
      }
    }
    const idleTimeoutMs = positiveInteger("idleTimeoutMs", options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs);
    const absoluteTimeoutMs = positiveInteger("absoluteTimeoutMs", options.absoluteTimeoutMs ?? DEFAULTS.absoluteTimeoutMs);
    const touchIntervalMs = nonNegativeInteger(
      "touchIntervalMs",
      options.touchIntervalMs ?? Math.min(MINUTE, Math.floor(idleTimeoutMs / 10)),
    );
    if (touchIntervalMs >= idleTimeoutMs) {
      throw new SessionConfigError(
        `touchIntervalMs (${touchIntervalMs}) must be shorter than idleTimeoutMs (${idleTimeoutMs}), or sessions in use would expire`,
      );
    }
    const storeTimeoutMs = positiveInteger("storeTimeoutMs", options.storeTimeoutMs ?? DEFAULTS.storeTimeoutMs);
    const maxSessionsPerUser = options.maxSessionsPerUser ?? DEFAULTS.maxSessionsPerUser;
    if (maxSessionsPerUser !== Number.POSITIVE_INFINITY) positiveInteger("maxSessionsPerUser", maxSessionsPerUser, "sessions");
    if (
      options.maxSessionsPerUser !== undefined &&
      maxSessionsPerUser !== Number.POSITIVE_INFINITY &&
      store.listUserSessions === undefined
    ) {
      throw new SessionConfigError(
        `maxSessionsPerUser needs a store that lists a user's sessions, and the ${store.kind} store cannot: leave the option out`,
      );
    }
    if (options.trustProxy !== undefined && typeof options.trustProxy !== "boolean") {
      throw new SessionConfigError("trustProxy must be true or false");
    }
    this.#trustProxy = options.trustProxy ?? false;
    const schema = options.schema;
    if (schema !== undefined && typeof schema?.["~standard"]?.validate !== "function") {
      throw new SessionConfigError(
        "options.schema is not a Standard Schema (it has no ['~standard'].validate()); pass a zod, valibot or arktype schema",
      );
    }
    const adopt = options.adopt;
    for (const method of ["readCookie", "load", "take", "clearCookie"] as const) {
      if (adopt !== undefined && typeof adopt?.[method] !== "function") {
        throw new SessionConfigError(
          `options.adopt is not a legacy session source (it has no ${method}() method): use expressSessionAdoption() from "atomic-session/express-session"`,
        );
      }
    }
    this.store = store;
    const listeners = this.#listeners;
    const emit = (event: SessionEvent) => {
      for (const listener of listeners) listener(event);
    };
    const cookie = new SessionCookie(resolveCookieOptions(options.cookie), validateSecrets(options.secrets));
    this.#cookieOptions = cookie.options;
    let insecureReported = false;
    const deadlines = new Deadlines();
    const call = <T>(operation: string, run: () => Promise<T>) =>
      callWithDeadline(deadlines, store.kind, operation, storeTimeoutMs, run, emit);
    this.#runtime = {
      store,
      cookie,
      idleTimeoutMs,
      absoluteTimeoutMs,
      touchIntervalMs,
      maxSizeBytes: positiveInteger("maxSizeBytes", options.maxSizeBytes ?? DEFAULTS.maxSizeBytes, "bytes"),
      updateAttempts: positiveInteger("updateAttempts", options.updateAttempts ?? DEFAULTS.updateAttempts, "attempts"),
      rotationMarkerMs: ROTATION_MARKER_MS,
      schema,
      adopt,
      call,
      enforceUserCap: (userId, currentKey) => this.#enforceUserCap(userId, currentKey, maxSessionsPerUser),
      revokeUser: (userId) => this.#revokeUser(userId),
      reportInsecureRequest: () => {
        if (insecureReported) return;
        insecureReported = true;
        emit({
          type: "insecure-request",
          reason:
            "cookie.secure is true but a request came over plain HTTP: it got no session (403). Serve HTTPS, or set trustProxy behind a TLS proxy",
        });
      },
      emit,
      get observed() {
        return listeners.size > 0;
      },
      now: Date.now,
    };
  }

  /** The session of one request. Nothing is read from the store until the session is first used. */
  open(request: RequestInfo, response: ResponseHeaders): Session {
    const runtime = this.#runtime;
    return new Session(runtime, runtime.cookie.read(request.cookieHeader), response, {
      secure: request.encrypted || (this.#trustProxy && firstForwardedProto(request.forwardedProto) === "https"),
      userAgent: request.userAgent,
      cookieHeader: request.cookieHeader,
    });
  }

  /** Subscribes to session events; returns the unsubscribe function. A listener must not throw. */
  on(listener: SessionEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the store answers within the deadline; rejects with `StoreUnavailableError` otherwise. */
  async checkHealth(): Promise<void> {
    await this.#runtime.call("ping", () => this.store.ping());
  }

  /**
   * The live sessions of `userId`, newest first. `current` marks the one `session` is.
   * Needs a store that indexes users.
   */
  async listUserSessions(userId: string, session?: Session): Promise<UserSession[]> {
    const currentHandle = session?.handle;
    return (await this.#userEntries(userId))
      .map((entry): UserSession => {
        const info = this.#infoOf(entry);
        return { ...info, current: info.handle === currentHandle };
      })
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }

  /** Ends the session of `userId` whose handle is `handle`; resolves `false` when it is not one of theirs. */
  async revokeUserSession(userId: string, handle: string): Promise<boolean> {
    const entry = (await this.#userEntries(userId)).find(({ key }) => handleOf(key) === handle);
    if (entry === undefined) return false;
    await this.#runtime.call("destroy", () => this.store.destroy(entry.key));
    this.#runtime.emit({ type: "destroyed", handle, userId });
    return true;
  }

  /**
   * Ends every session of `userId`; resolves how many there were. For a user's own "log out
   * everywhere", `session.revokeAll()` also clears that browser's cookie, and only once all ended.
   */
  async revokeUserSessions(userId: string): Promise<number> {
    return (await this.#revokeUser(userId)).length;
  }

  /**
   * Every live session, for admin tools: public facts only, never data or IDs. Each step of
   * the store's scan runs under the store deadline. O(sessions in the store): never on a request path.
   */
  async *listSessions(): AsyncGenerator<SessionInfo> {
    for await (const entry of this.#scan()) yield this.#infoOf(entry);
  }

  /** The live session whose handle is `handle`, found by scanning every session (O(sessions)). */
  async findSession(handle: string): Promise<SessionInfo | undefined> {
    for await (const info of this.listSessions()) if (info.handle === handle) return info;
    return undefined;
  }

  /** Ends the session whose handle is `handle`, found by scanning every session; resolves its facts, or `undefined` when there was none. */
  async revokeSession(handle: string): Promise<SessionInfo | undefined> {
    for await (const entry of this.#scan()) {
      if (handleOf(entry.key) !== handle) continue;
      await this.#runtime.call("destroy", () => this.store.destroy(entry.key));
      this.#runtime.emit({ type: "destroyed", handle, userId: entry.meta.userId });
      return this.#infoOf(entry);
    }
    return undefined;
  }

  /** How many live sessions the store holds, or `undefined` when it cannot count. */
  async countSessions(): Promise<number | undefined> {
    const count = this.store.count?.bind(this.store);
    return count === undefined ? undefined : this.#runtime.call("count", () => count(Date.now()));
  }

  /**
   * Deletes expired records now and resolves how many, or `undefined` when the store expires
   * records by itself (Redis, memory). Stores sweep on their own timer too; this is for admin
   * tools. It runs in short batches but as long as it takes, without the store deadline: bound
   * it yourself (the CLI gives it a minute).
   */
  async purgeExpired(): Promise<number | undefined> {
    const purge = this.store.purgeExpired?.bind(this.store);
    return purge === undefined ? undefined : purge(Date.now());
  }

  /** Ends every session of `userId` under the deadline, reports each, and resolves their keys. */
  async #revokeUser(userId: string): Promise<string[]> {
    const store = this.store;
    const revoke = store.revokeUserSessions?.bind(store);
    if (revoke === undefined) throw new SessionConfigError(`the ${store.kind} store cannot end a user's sessions`);
    const keys = await this.#runtime.call("revokeUserSessions", () => revoke(userId, Date.now()));
    for (const key of keys) this.#runtime.emit({ type: "destroyed", handle: handleOf(key), userId });
    return keys;
  }

  /** The store's scan, each step under the store deadline; stopping early stops the store's scan. */
  async *#scan(): AsyncGenerator<UserSessionEntry> {
    const store = this.store;
    const scan = store.scan?.bind(store);
    if (scan === undefined) throw new SessionConfigError(`the ${store.kind} store cannot list its sessions (no scan ability)`);
    const iterator = scan(Date.now())[Symbol.asyncIterator]();
    let done = false;
    try {
      for (;;) {
        const step = await this.#runtime.call("scan", () => iterator.next());
        if (step.done === true) {
          done = true;
          return;
        }
        yield step.value;
      }
    } finally {
      // Stops the store's scan when the caller breaks out (or a step failed); its outcome no longer matters.
      if (!done) iterator.return?.().catch(() => undefined);
    }
  }

  #infoOf({ key, meta }: UserSessionEntry): SessionInfo {
    return infoOf(handleOf(key), meta, this.#cookieOptions.persistent);
  }

  async #userEntries(userId: string): Promise<UserSessionEntry[]> {
    const store = this.store;
    const list = store.listUserSessions?.bind(store);
    if (list === undefined) throw new SessionConfigError(`the ${store.kind} store cannot list a user's sessions`);
    return this.#runtime.call("listUserSessions", () => list(userId, Date.now()));
  }

  /**
   * Ends the oldest sessions of `userId` beyond `cap`, never `currentKey` (the one just logged
   * in). A failure here does not undo the login: the cap is enforced again at the next one.
   */
  async #enforceUserCap(userId: string, currentKey: string, cap: number): Promise<void> {
    if (cap === Number.POSITIVE_INFINITY || this.store.listUserSessions === undefined) return;
    // One pass per user at a time: a burst of logins of one user would otherwise list the
    // user's sessions once per login and destroy the same oldest ones over and over. A login
    // during a pass asks for one more pass, which sees its session.
    const running = this.#capPasses.get(userId);
    if (running !== undefined) {
      running.again = true;
      running.keep.add(currentKey);
      return;
    }
    const pass = { again: false, keep: new Set([currentKey]) };
    this.#capPasses.set(userId, pass);
    try {
      do {
        pass.again = false;
        const keep = new Set(pass.keep);
        pass.keep.clear();
        await this.#trimUser(userId, keep, cap);
      } while (pass.again);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    } finally {
      this.#capPasses.delete(userId);
    }
  }

  /**
   * Ends the oldest sessions of `userId` beyond `cap`, the ones in `keep` (just logged in) kept
   * first: only a burst of more than `cap` logins ends a session that has just logged in.
   */
  async #trimUser(userId: string, keep: ReadonlySet<string>, cap: number): Promise<void> {
    const entries = await this.#userEntries(userId);
    if (entries.length <= cap) return;
    const rank = (key: string) => (keep.has(key) ? 1 : 0);
    entries.sort((a, b) => rank(b.key) - rank(a.key) || b.meta.createdAt - a.meta.createdAt);
    for (const { key } of entries.slice(cap)) {
      await this.#runtime.call("destroy", () => this.store.destroy(key));
      this.#runtime.emit({ type: "destroyed", handle: handleOf(key), userId, reason: "maxSessionsPerUser" });
    }
  }
}

function firstForwardedProto(header: string | undefined): string | undefined {
  return header?.split(",", 1)[0]?.trim().toLowerCase();
}

function positiveInteger(name: string, value: unknown, unit = "milliseconds"): number {
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw new SessionConfigError(`${name} must be a positive whole number of ${unit}, got ${String(value)}`);
  }
  return value as number;
}

function nonNegativeInteger(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new SessionConfigError(`${name} must be a whole number of milliseconds >= 0, got ${String(value)}`);
  }
  return value as number;
}

/** A store call waiting for its answer or its deadline. */
interface PendingCall {
  readonly deadline: number;
  settled: boolean;
  expire(): void;
}

/** How late a deadline may fire: the price of one timer for every call in flight instead of one per call. */
const DEADLINE_GRANULARITY_MS = 10;

/**
 * The deadlines of one manager's store calls. Every call has the same timeout, so deadlines
 * (on the monotonic clock) come in the order calls start: a queue, checked by one timer that fires at most every
 * {@link DEADLINE_GRANULARITY_MS}, replaces a timer per call (setting and clearing one was a
 * measurable share of a request's CPU). Settled calls stay in the queue until their deadline
 * passes, marked; the timer stops when no call is in flight. A call expires only after the
 * event loop has read what its sockets already received.
 */
class Deadlines {
  readonly #queue: PendingCall[] = [];
  #head = 0;
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;

  add(call: PendingCall): void {
    this.#queue.push(call);
    this.#inFlight++;
    if (this.#timer === undefined) this.#arm(call.deadline);
  }

  settled(call: PendingCall): void {
    call.settled = true;
    if (--this.#inFlight === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#queue.length = 0;
      this.#head = 0;
    }
  }

  #arm(deadline: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(deadline - performance.now(), DEADLINE_GRANULARITY_MS));
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const queue = this.#queue;
    const due: PendingCall[] = [];
    while (this.#head < queue.length) {
      const call = queue[this.#head] as PendingCall;
      if (!call.settled && call.deadline > now) break;
      this.#head++;
      if (!call.settled) due.push(call);
    }
    // Timers run before the event loop reads sockets: an answer that already arrived (a busy
    // process reads late, not a slow store) gets one turn of I/O to settle its call first.
    if (due.length > 0) {
      setImmediate(() => {
        for (const call of due) if (!call.settled) call.expire();
      });
    }
    // Drop the expired front once it outweighs the rest, so the queue does not grow for ever.
    if (this.#head > 1024 && this.#head * 2 > queue.length) {
      queue.splice(0, this.#head);
      this.#head = 0;
    }
    const next = queue[this.#head];
    if (next !== undefined && this.#inFlight > 0) this.#arm(next.deadline);
  }
}

/**
 * Runs one store operation with a deadline. Clients' own timeouts do not cover a command
 * already written to a stalled server, so the deadline lives here, around every call.
 */
function callWithDeadline<T>(
  deadlines: Deadlines,
  store: string,
  operation: string,
  timeoutMs: number,
  run: () => Promise<T>,
  emit: (event: SessionEvent) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fail = (error: unknown, timedOut: boolean) => {
      if (pending.settled) return;
      deadlines.settled(pending);
      // A value the store refused (SessionValueError) is the caller's; a store that finds its own
      // configuration wrong only now (a PostgreSQL schema missing) is unavailable, like any failure.
      if (error instanceof SessionError && !(error instanceof StoreUnavailableError) && !(error instanceof SessionConfigError)) {
        return reject(error);
      }
      const failure =
        error instanceof StoreUnavailableError ? error : new StoreUnavailableError({ store, operation, timedOut, cause: error });
      emit({ type: "store-error", operation, error: failure });
      reject(failure);
    };
    const pending: PendingCall = { deadline: performance.now() + timeoutMs, settled: false, expire: () => fail(undefined, true) };
    deadlines.add(pending);
    let work: Promise<T>;
    try {
      work = run();
    } catch (error) {
      return fail(error, false);
    }
    // A late failure, after the deadline fired, lands in `fail` and is ignored there: never unhandled.
    work.then(
      (value) => {
        if (pending.settled) return;
        deadlines.settled(pending);
        resolve(value);
      },
      (error: unknown) => fail(error, false),
    );
  });
}
