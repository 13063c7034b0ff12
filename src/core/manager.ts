import type { StandardSchemaV1 } from "@standard-schema/spec";
import { type CookieOptions, resolveCookieOptions, SessionCookie, validateSecrets } from "./cookie.js";
import { SessionConfigError, SessionError, StoreUnavailableError } from "./errors.js";
import type { SessionEvent, SessionEventListener } from "./events.js";
import { handleOf } from "./ids.js";
import { type AppSessionData, type ResponseHeaders, Session, type SessionData, type SessionInfo, type SessionRuntime } from "./session.js";
import type { SessionStore } from "./store.js";

export interface SessionManagerOptions {
  /** Where sessions live: `MemoryStore`, `SqliteStore` or `RedisStore`. */
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
  /** Trust `X-Forwarded-Proto` to tell whether the request came over HTTPS. Default `false`. */
  trustProxy?: boolean;
  /**
   * A Standard Schema (zod, valibot, arktype…) that checks the data of every session loaded
   * from the store, as one object with the keys present. Data it rejects counts as a
   * corrupted record: a `corrupted-record` event, the record removed, the session absent.
   * Sessions hold some keys and not others, so make every key optional. Only the verdict
   * is used (not transforms or defaults), and writes are not checked: type them with `Data`.
   * Default: none.
   */
  schema?: StandardSchemaV1;
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
  current: boolean;
}

const MINUTE = 60_000;
const DEFAULTS = {
  idleTimeoutMs: 30 * MINUTE,
  absoluteTimeoutMs: 12 * 60 * MINUTE,
  storeTimeoutMs: 1000,
  maxSizeBytes: 64 * 1024,
  updateAttempts: 16,
};

/**
 * Sessions for one application: the store, the cookie and the timeouts. Create it once;
 * `open()` gives each request its `Session`. Bad options throw `SessionConfigError` here,
 * not on the first request.
 */
export class SessionManager<Data extends SessionData = AppSessionData> {
  readonly store: SessionStore;
  readonly #runtime: SessionRuntime;
  readonly #trustProxy: boolean;
  readonly #listeners = new Set<SessionEventListener>();
  readonly #storeTimeoutMs: number;

  constructor(options: SessionManagerOptions) {
    if (options === null || typeof options !== "object")
      throw new SessionConfigError("SessionManager needs an options object with a store");
    const { store } = options;
    for (const method of ["load", "create", "apply", "increment", "compareAndSet", "rotate", "destroy", "ping"] as const) {
      if (typeof store?.[method] !== "function") {
        throw new SessionConfigError(
          `options.store is not a SessionStore: it has no ${method}() method; use MemoryStore, SqliteStore or RedisStore`,
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
    this.#storeTimeoutMs = positiveInteger("storeTimeoutMs", options.storeTimeoutMs ?? DEFAULTS.storeTimeoutMs);
    this.#trustProxy = options.trustProxy ?? false;
    const schema = options.schema;
    if (schema !== undefined && typeof schema?.["~standard"]?.validate !== "function") {
      throw new SessionConfigError(
        "options.schema is not a Standard Schema (it has no ['~standard'].validate()); pass a zod, valibot or arktype schema",
      );
    }
    this.store = store;
    const listeners = this.#listeners;
    const storeTimeoutMs = this.#storeTimeoutMs;
    const emit = (event: SessionEvent) => {
      for (const listener of listeners) listener(event);
    };
    this.#runtime = {
      store,
      cookie: new SessionCookie(resolveCookieOptions(options.cookie), validateSecrets(options.secrets)),
      idleTimeoutMs,
      absoluteTimeoutMs,
      touchIntervalMs,
      maxSizeBytes: positiveInteger("maxSizeBytes", options.maxSizeBytes ?? DEFAULTS.maxSizeBytes),
      updateAttempts: positiveInteger("updateAttempts", options.updateAttempts ?? DEFAULTS.updateAttempts),
      schema,
      call: (operation, run) => callWithDeadline(store.kind, operation, storeTimeoutMs, run, emit),
      emit,
      now: Date.now,
    };
  }

  /** The session of one request. Nothing is read from the store until the session is first used. */
  open(request: RequestInfo, response: ResponseHeaders): Session<Data> {
    const runtime = this.#runtime;
    return new Session<Data>(runtime, runtime.cookie.read(request.cookieHeader), response, {
      secure: request.encrypted || (this.#trustProxy && firstForwardedProto(request.forwardedProto) === "https"),
      userAgent: request.userAgent,
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
  async listUserSessions(userId: string, session?: Session<Data>): Promise<UserSession[]> {
    const store = this.store;
    const listByUser = store.listByUser?.bind(store);
    if (listByUser === undefined) throw new SessionConfigError(`the ${store.kind} store cannot list a user's sessions`);
    const entries = await this.#runtime.call("listByUser", () => listByUser(userId, Date.now()));
    const currentHandle = session?.handle;
    return entries
      .map(({ key, meta }): UserSession => {
        const handle = handleOf(key);
        return {
          handle,
          current: handle === currentHandle,
          createdAt: new Date(meta.createdAt),
          lastSeenAt: new Date(meta.lastSeenAt),
          expiresAt: new Date(meta.expiresAt),
          absoluteExpiresAt: new Date(meta.absoluteExpiresAt),
          userId: meta.userId,
          userAgent: meta.userAgent,
        };
      })
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }

  /** Ends the session of `userId` whose handle is `handle`; resolves `false` when it is not one of theirs. */
  async revokeUserSession(userId: string, handle: string): Promise<boolean> {
    const store = this.store;
    const listByUser = store.listByUser?.bind(store);
    if (listByUser === undefined) throw new SessionConfigError(`the ${store.kind} store cannot list a user's sessions`);
    const entries = await this.#runtime.call("listByUser", () => listByUser(userId, Date.now()));
    const entry = entries.find(({ key }) => handleOf(key) === handle);
    if (entry === undefined) return false;
    await this.#runtime.call("destroy", () => store.destroy(entry.key));
    this.#runtime.emit({ type: "destroyed", handle, userId });
    return true;
  }

  /** Ends every session of `userId`; resolves how many there were. */
  async destroyAllForUser(userId: string): Promise<number> {
    const store = this.store;
    const destroyByUser = store.destroyByUser?.bind(store);
    if (destroyByUser === undefined) throw new SessionConfigError(`the ${store.kind} store cannot end a user's sessions`);
    const keys = await this.#runtime.call("destroyByUser", () => destroyByUser(userId, Date.now()));
    for (const key of keys) this.#runtime.emit({ type: "destroyed", handle: handleOf(key), userId });
    return keys.length;
  }
}

function firstForwardedProto(header: string | undefined): string | undefined {
  return header?.split(",", 1)[0]?.trim().toLowerCase();
}

function positiveInteger(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) <= 0) {
    throw new SessionConfigError(`${name} must be a positive whole number of milliseconds, got ${String(value)}`);
  }
  return value as number;
}

function nonNegativeInteger(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new SessionConfigError(`${name} must be a whole number of milliseconds >= 0, got ${String(value)}`);
  }
  return value as number;
}

/**
 * Runs one store operation with a deadline. Clients' own timeouts do not cover a command
 * already written to a stalled server, so the deadline lives here, around every call.
 */
function callWithDeadline<T>(
  storeKind: string,
  operation: string,
  timeoutMs: number,
  run: () => Promise<T>,
  emit: (event: SessionEvent) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error instanceof SessionError && !(error instanceof StoreUnavailableError)) return reject(error);
      const failure =
        error instanceof StoreUnavailableError
          ? error
          : new StoreUnavailableError(
              `the ${storeKind} store failed ${operation}: ${(error as Error)?.message ?? String(error)}`,
              operation,
              {
                cause: error,
              },
            );
      emit({ type: "store-error", operation, error: failure });
      reject(failure);
    };
    const timer = setTimeout(
      () => fail(new StoreUnavailableError(`the ${storeKind} store did not answer ${operation} within ${timeoutMs} ms`, operation)),
      timeoutMs,
    );
    let work: Promise<T>;
    try {
      work = run();
    } catch (error) {
      return fail(error);
    }
    // A late failure, after the deadline fired, lands in `fail` and is ignored there: never unhandled.
    work.then((value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    }, fail);
  });
}
