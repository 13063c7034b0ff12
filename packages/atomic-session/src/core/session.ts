import type { StandardSchemaV1 } from "@standard-schema/spec";
import { adoptLegacySession, type LegacySession, type LegacySessionSource } from "./adoption.js";
import type { CookieReading, SessionCookie } from "./cookie.js";
import {
  InsecureRequestError,
  SessionConflictError,
  SessionRotatedError,
  SessionStateError,
  SessionValueError,
  StoreUnavailableError,
} from "./errors.js";
import type { SessionEvent } from "./events.js";
import { handleOf, newSessionId, storeKeyOf } from "./ids.js";
import type { Absent, SessionMeta, SessionStore, StoredSession, TouchOptions } from "./store.js";
import { assertWellFormed, decodeFields, encodeValue, isWellFormed } from "./values.js";

/** Untyped session data: string keys, JSON values. */
export type SessionData = Record<string, unknown>;

/**
 * Declares your application's session data, once, for the manager and every adapter
 * (`session` in node:http handlers, `req.session`, `request.session`, `c.get("session")`),
 * by module augmentation:
 *
 * ```ts
 * declare module "atomic-session" {
 *   interface SessionTypes {
 *     data: { visitCount: number; user?: string };
 *   }
 * }
 * ```
 *
 * `data` may be a type literal, a `type` alias or an `interface`. Left undeclared, session
 * data is {@link SessionData}: any key, `unknown` values.
 */
// biome-ignore lint/suspicious/noEmptyInterface: an interface, not a type, so that applications can augment it.
export interface SessionTypes {}

/** What a `data` declaration that is not an object type turns into: every use of the session then fails to compile, naming the mistake. */
export interface SessionTypesDataMustBeAnObjectType {
  readonly "atomic-session: SessionTypes.data must be an object type, such as { visitCount: number }": never;
}

/** The session data the application declared in `SessionTypes`, or {@link SessionData} when it declared none. */
export type AppSessionData = SessionTypes extends { data: infer Declared }
  ? Declared extends object
    ? Declared
    : SessionTypesDataMustBeAnObjectType
  : SessionData;

/** The keys of the session data. */
export type SessionKey = keyof AppSessionData & string;

/** The keys whose declared type is `number` (optional or not): the only ones `increment()` accepts. */
export type IntegerKey = string extends keyof AppSessionData
  ? string
  : {
      [K in SessionKey]-?: [NonNullable<AppSessionData[K]>] extends [number]
        ? [number] extends [NonNullable<AppSessionData[K]>]
          ? K
          : never
        : never;
    }[SessionKey];

/**
 * What this request did to its session, tracked explicitly rather than by comparing data.
 * - `unmodified`: nothing written;
 * - `modified`: at least one write reached the store;
 * - `destroyed`: the session was destroyed (later writes start a new one and make it `modified`).
 */
export type SessionStatus = "unmodified" | "modified" | "destroyed";

/** Public facts about a live session. Never contains the session ID. */
export interface SessionInfo {
  /** Non-secret name of the session, safe for logs and UIs. */
  handle: string;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
  absoluteExpiresAt: Date;
  /** The logged-in user (`login(userId)`), or `undefined` for an anonymous session. */
  userId: string | undefined;
  /** The User-Agent of the request that logged the user in; `undefined` for anonymous sessions. */
  userAgent: string | undefined;
  /** Whether the cookie outlives the browser session (`Expires`), as chosen at login or by `cookie.persistent`. */
  persistent: boolean;
}

/** Options of `login()`. */
export interface LoginOptions {
  /**
   * "Remember me": `true` gives a persistent cookie (`Expires` = the absolute deadline),
   * `false` a browser-session cookie (no `Expires`). Default: the manager's `cookie.persistent`.
   * The server-side timeouts apply either way.
   */
  persistent?: boolean;
}

/** How the core puts headers on the adapter's response. */
export interface ResponseHeaders {
  /**
   * Puts `value` on the response as the session's `Set-Cookie`, replacing one this request set
   * earlier (and never one the application set), with `Cache-Control: no-store` and `Vary: Cookie`.
   */
  setCookie(value: string): void;
  /** Takes the session's `Set-Cookie` back off a response that is about to report a failure (a 503 or 409 hands out no session). */
  withdrawCookie(): void;
  /**
   * Puts `value` on the response as one more `Set-Cookie`, beside the session's and the
   * application's (clearing a legacy session's cookie, see the `adopt` option), with
   * `Cache-Control: no-store` and `Vary: Cookie`. Never replaced nor withdrawn. Every adapter
   * shipped has it; without it, the dead legacy cookie stays in the browser until it expires.
   */
  appendCookie?(value: string): void;
  /** Marks the response as depending on the cookie (`Vary: Cookie`): the handler used its session. */
  varyOnCookie(): void;
  /** Whether the response headers are already on their way to the client. */
  headersSent(): boolean;
}

/** What the manager gives each session handle: the store behind a deadline, and the policy. */
export interface SessionRuntime {
  readonly store: SessionStore;
  readonly cookie: SessionCookie;
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
  readonly touchIntervalMs: number;
  readonly maxSizeBytes: number;
  readonly updateAttempts: number;
  /** How long a rotated-away key answers "rotated" (so a racing request gets 409, not a new session). */
  readonly rotationMarkerMs: number;
  /** Checks data loaded from the store; data it rejects counts as a corrupted record. */
  readonly schema: StandardSchemaV1 | undefined;
  /** Where sessions of the library used before come from (the `adopt` option), if anywhere. */
  readonly adopt: LegacySessionSource | undefined;
  /** Runs a store operation under the store deadline, turning failures into `StoreUnavailableError`. */
  call<T>(operation: string, run: () => Promise<T>): Promise<T>;
  /** After a login: ends the user's oldest sessions beyond the cap (never fails the login). */
  enforceUserCap(userId: string, currentKey: string): Promise<void>;
  /** Ends every session of the user under the deadline, reporting each; resolves their keys. */
  revokeUser(userId: string): Promise<string[]>;
  /** A plain-HTTP request would get a `Secure` cookie it cannot use: reported once per manager. */
  reportInsecureRequest(): void;
  emit(event: SessionEvent): void;
  /** Whether anyone listens to events: when nobody does, the hot paths skip building them (a handle costs a hash). */
  readonly observed: boolean;
  now(): number;
}

/** The live session behind the handle: its ID lives only here and in the cookie. */
interface Binding {
  id: string;
  key: string;
  /** Absent only after an increment on a session not loaded yet; any load fills it in. */
  meta?: SessionMeta;
  /** `handleOf(key)`, computed on first use. */
  handle?: string;
}

/** What a session without a record holds: shared, never written (most requests never load anything). */
const NO_FIELDS: Map<string, string> = new Map();
const NO_VALUES: Map<string, unknown> = new Map();

const MAX_USER_AGENT_LENGTH = 256;
const MAX_USER_ID_LENGTH = 256;
const MAX_KEY_LENGTH = 256;

/**
 * A request's session. Reads come from the copy loaded on first use; every write is one
 * atomic store operation, awaited by the caller, so a handler knows its write landed before
 * it answers. A write that finds the session destroyed or expired never revives it: the
 * request carries on with a new anonymous session. A write that finds it rotated away by a
 * concurrent login fails with `SessionRotatedError` (409) and sets no cookie.
 *
 * Adapters create one per request (`SessionManager.open()`).
 */
export class Session {
  #status: SessionStatus = "unmodified";
  #binding: Binding | undefined;
  /** The cookie's session was rotated away by a concurrent request: writes fail with 409. */
  #rotatedAway = false;
  /** JSON text of each field as last seen in the store. */
  #fields: Map<string, string> = NO_FIELDS;
  /** Decoded values, null-prototype-safe because it is a Map. */
  #values: Map<string, unknown> = NO_VALUES;
  #loading: Promise<void> | undefined;
  /** Serialises this handle's store operations so that two concurrent writes cannot both create a session. */
  #queue: Promise<unknown> | undefined;
  #varied = false;

  constructor(
    private readonly runtime: SessionRuntime,
    private readonly reading: CookieReading,
    private readonly response: ResponseHeaders,
    private readonly request: { secure: boolean; userAgent: string | undefined; cookieHeader: string | undefined },
  ) {}

  /** What this request has done to the session so far. */
  get status(): SessionStatus {
    return this.#status;
  }

  /**
   * The session's public handle once it is loaded or written; `undefined` while there is
   * no live session. This is the fingerprint to log (never the ID).
   */
  get handle(): string | undefined {
    const binding = this.#binding;
    if (binding === undefined) return undefined;
    binding.handle ??= handleOf(binding.key);
    return binding.handle;
  }

  /** Loads the session (once); resolves whether a live session exists. */
  async exists(): Promise<boolean> {
    await this.#load();
    return this.#binding !== undefined;
  }

  /**
   * Public facts about the live session, or `undefined` when there is none (never created,
   * ended, or ended by a concurrent request while this one ran). Never creates one.
   */
  async info(): Promise<SessionInfo | undefined> {
    await this.#load();
    const meta = this.#binding?.meta;
    return meta === undefined ? undefined : infoOf(this.handle as string, meta, this.runtime.cookie.options.persistent);
  }

  /** The value stored under `key`, as loaded at the start of the request or last written by it. */
  async get<K extends SessionKey>(key: K): Promise<AppSessionData[K] | undefined> {
    await this.#load();
    return this.#values.get(key) as AppSessionData[K] | undefined;
  }

  /** A snapshot of all the session's data, as a null-prototype object. */
  async all(): Promise<Partial<AppSessionData>> {
    await this.#load();
    const snapshot = Object.create(null) as Record<string, unknown>;
    for (const [key, value] of this.#values) snapshot[key] = value;
    return snapshot as Partial<AppSessionData>;
  }

  /**
   * Writes the given keys in one store operation; only these keys are written, so
   * concurrent requests that set other keys do not overwrite each other (per key,
   * the last write wins). A value of `undefined` deletes the key.
   */
  async set(values: Partial<AppSessionData>): Promise<void>;
  async set<K extends SessionKey>(key: K, value: AppSessionData[K]): Promise<void>;
  async set(keyOrValues: string | Partial<AppSessionData>, value?: unknown): Promise<void> {
    const entries: [string, unknown][] =
      typeof keyOrValues === "string" ? [[keyOrValues, value]] : Object.entries(keyOrValues as Record<string, unknown>);
    const toSet = new Map<string, string>();
    const toDelete: string[] = [];
    for (const [key, entryValue] of entries) {
      assertKey(key);
      if (entryValue === undefined) toDelete.push(key);
      else toSet.set(key, encodeValue(key, entryValue));
    }
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      this.#assertSize(toSet, toDelete);
      const binding = this.#binding;
      if (binding !== undefined) {
        const now = this.runtime.now();
        const applied = await this.#call("apply", () => this.runtime.store.apply(binding.key, { set: toSet, delete: toDelete, now }));
        if (applied === "ok") {
          this.#remember(toSet, toDelete);
          this.#status = "modified";
          return;
        }
        this.#lose(binding, applied, "gone before a write");
      }
      if (toSet.size > 0) {
        this.#assertNotRotated();
        await this.#create(toSet);
      }
    });
  }

  /** Deletes keys in one store operation. Deleting from a session that does not exist writes nothing. */
  async delete(...keys: SessionKey[]): Promise<void> {
    const values = Object.create(null) as Record<string, undefined>;
    for (const key of keys) values[key] = undefined;
    await this.set(values as Partial<AppSessionData>);
  }

  /**
   * Adds `by` to an integer key, atomically in the store, and resolves the new value. Two
   * hundred concurrent increments from any number of processes give two hundred distinct
   * results. On a session that does not exist yet, creates it with `by`. Only keys whose
   * declared type is `number` are accepted.
   */
  async increment(key: IntegerKey, by = 1): Promise<number> {
    assertKey(key);
    if (!Number.isSafeInteger(by))
      throw new SessionValueError(`increment(${JSON.stringify(key)}, by): by must be a safe integer, got ${String(by)}`);
    return this.#exclusive(async () => {
      this.#assertWritable();
      // Not loaded yet: increment straight away (the store touches in the same step), so
      // that a request whose only use of its session is a counter costs one round trip.
      let binding = this.#loading === undefined ? this.#unloadedBinding() : undefined;
      if (binding === undefined) {
        await this.#load();
        binding = this.#binding;
      } else {
        this.#vary();
      }
      if (binding !== undefined) {
        const value = await this.#call("increment", () => this.runtime.store.increment(binding.key, key, by, this.#touchOptions()));
        if (typeof value === "number") {
          this.#binding = binding;
          if (binding.meta !== undefined) this.#remember(new Map([[key, String(value)]]), []);
          this.#status = "modified";
          return value;
        }
        // The cookie named no live session: what a load would have found, it found.
        this.#loading ??= Promise.resolve();
        this.#lose(binding, value, "gone before an increment");
      }
      this.#assertNotRotated();
      await this.#create(new Map([[key, String(by)]]));
      return by;
    });
  }

  /**
   * Atomic read-modify-write of one key: `fn` gets the current value and returns the new
   * one (`undefined` deletes the key). The store applies it only if the key still holds
   * the value `fn` saw (compare-and-set); otherwise the latest value is loaded and `fn`
   * runs again, up to `updateAttempts` times, then `SessionConflictError`. `fn` may run
   * more than once, so it must not have side effects.
   */
  async update<K extends SessionKey>(
    key: K,
    fn: (current: AppSessionData[K] | undefined) => AppSessionData[K] | undefined,
  ): Promise<AppSessionData[K] | undefined> {
    assertKey(key);
    return this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      for (let attempt = 1; attempt <= this.runtime.updateAttempts; attempt++) {
        const next = fn(this.#values.get(key) as AppSessionData[K] | undefined);
        const nextJson = next === undefined ? undefined : encodeValue(key, next);
        const binding = this.#binding;
        if (binding === undefined) {
          if (nextJson !== undefined) {
            this.#assertNotRotated();
            await this.#create(new Map([[key, nextJson]]));
          }
          return next;
        }
        const toSet = nextJson === undefined ? new Map<string, string>() : new Map([[key, nextJson]]);
        const toDelete = nextJson === undefined ? [key] : [];
        this.#assertSize(toSet, toDelete);
        const expected = this.#fields.get(key);
        const now = this.runtime.now();
        const result = await this.#call("compareAndSet", () => this.runtime.store.compareAndSet(binding.key, key, expected, nextJson, now));
        if (result === "ok") {
          this.#remember(toSet, toDelete);
          this.#status = "modified";
          return next;
        }
        if (result !== "conflict") {
          this.#lose(binding, result, "gone before an update");
          continue;
        }
        this.runtime.emit({ type: "conflict", handle: this.handle as string, key });
        await this.#reload(binding);
      }
      throw new SessionConflictError(
        `update(${JSON.stringify(key)}) lost the compare-and-set race ${this.runtime.updateAttempts} times; retry the request or raise updateAttempts`,
      );
    });
  }

  /**
   * Gives the session a new ID, keeping its data, and kills the old ID at once. Call it on
   * every privilege change (`login()` does). A session that does not exist yet has nothing to rotate.
   */
  async regenerate(): Promise<void> {
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const binding = this.#binding;
      if (binding === undefined) {
        this.#assertNotRotated();
        return;
      }
      await this.#rotate(binding, {});
    });
  }

  /**
   * Binds the session to `userId` and rotates its ID (the pre-login ID dies at once). The
   * timeouts start again from now; the data is kept. When the user then has more sessions
   * than `maxSessionsPerUser`, the oldest are ended.
   */
  async login(userId: string, options: LoginOptions = {}): Promise<void> {
    if (typeof userId !== "string" || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
      throw new SessionValueError(`login(userId): userId must be a string of 1 to ${MAX_USER_ID_LENGTH} characters`);
    }
    assertWellFormed("login(userId): userId", userId);
    const persistent = options.persistent;
    if (persistent !== undefined && typeof persistent !== "boolean") {
      throw new SessionValueError("login(userId, { persistent }): persistent must be true or false");
    }
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const now = this.runtime.now();
      const fresh = this.#freshMeta(now, userId, persistent);
      const binding = this.#binding;
      if (binding === undefined || !(await this.#rotate(binding, fresh))) {
        this.#assertNotRotated();
        await this.#create(new Map(), fresh);
      }
      await this.runtime.enforceUserCap(userId, (this.#binding as Binding).key);
    });
  }

  /** Removes the session from the store and clears the cookie. Later writes in this request start a new session. */
  async destroy(): Promise<void> {
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const binding = this.#binding;
      if (binding !== undefined) {
        await this.#call("destroy", () => this.runtime.store.destroy(binding.key));
        this.runtime.emit({ type: "destroyed", handle: this.handle as string, userId: binding.meta?.userId });
        this.#forget();
      } else {
        // Clearing the cookie now would log the browser out of the session a concurrent login rotated to.
        this.#assertNotRotated();
      }
      if (this.reading.kind !== "absent" || binding !== undefined) {
        this.response.setCookie(this.runtime.cookie.clear(this.request.secure));
      }
      this.#rotatedAway = false;
      this.#status = "destroyed";
    });
  }

  /**
   * "Log out everywhere": ends every session of this session's user, this one included, then
   * clears this browser's cookie; resolves how many ended. Until every one has ended nothing
   * changes for this browser: a store failure (503) leaves it signed in, so it can retry. An
   * anonymous session has no user: nothing happens (0). Needs a store that indexes users.
   */
  async revokeAll(): Promise<number> {
    return this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const binding = this.#binding;
      const userId = binding?.meta?.userId;
      if (binding === undefined || userId === undefined) {
        this.#assertNotRotated();
        return 0;
      }
      const keys = await this.runtime.revokeUser(userId);
      this.#forget();
      this.response.setCookie(this.runtime.cookie.clear(this.request.secure));
      this.#status = "destroyed";
      return keys.length;
    });
  }

  /** A store call under the deadline; a failure takes back any cookie set earlier in the request. */
  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await this.runtime.call(operation, run);
    } catch (error) {
      if (error instanceof StoreUnavailableError) this.response.withdrawCookie();
      throw error;
    }
  }

  #exclusive<T>(run: () => Promise<T>): Promise<T> {
    // Most requests make one store call: the first runs at once, later ones wait their turn.
    const result = this.#queue === undefined ? run() : this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** The answer depends on the cookie from the moment the handler uses its session, whatever it finds. */
  #vary(): void {
    if (this.#varied) return;
    this.#varied = true;
    if (!this.response.headersSent()) this.response.varyOnCookie();
  }

  #load(): Promise<void> {
    this.#loading ??= this.#loadOnce();
    return this.#loading;
  }

  /**
   * The session the cookie names, before it is loaded (no meta yet), or `undefined` when it
   * must be loaded first: no cookie, several candidate cookies, or one signed with an older
   * secret (the re-issued cookie's expiry needs the loaded absolute deadline).
   */
  #unloadedBinding(): Binding | undefined {
    const reading = this.reading;
    if (reading.kind !== "valid" || reading.ids.length !== 1 || reading.signedWithOldSecret) return undefined;
    const id = reading.ids[0] as string;
    return { id, key: storeKeyOf(id) };
  }

  #touchOptions(): TouchOptions {
    return { now: this.runtime.now(), idleTimeoutMs: this.runtime.idleTimeoutMs, touchIntervalMs: this.runtime.touchIntervalMs };
  }

  async #loadOnce(): Promise<void> {
    this.#vary();
    const reading = this.reading;
    if (reading.kind === "absent") return this.#adoptLegacy();
    if (reading.kind === "invalid") {
      this.runtime.emit({ type: "invalid-cookie", reason: reading.reason });
      return this.#adoptLegacy();
    }
    // A blind increment bound the session without loading it: the load below replaces that.
    const blind = this.#binding;
    this.#forget();
    // Several cookies of our name (one may be planted by a sibling subdomain): the first that loads wins.
    for (const id of reading.ids) {
      const key = storeKeyOf(id);
      const record = await this.#fetch(key);
      if (typeof record === "string") {
        // No clearing Set-Cookie: this request may race a login that just rotated the ID, and
        // clearing the cookie would then log the browser out of the new session.
        if (record === "rotated") this.#rotatedAway = true;
        if (this.runtime.observed) {
          this.runtime.emit({ type: "expired", handle: handleOf(key), reason: blind === undefined ? record : `${record} after a write` });
        }
        continue;
      }
      this.#rotatedAway = false;
      this.#adopt({ id, key, meta: record.meta }, record);
      if (reading.signedWithOldSecret && !this.response.headersSent()) this.#sendCookie();
      return;
    }
  }

  /**
   * No valid cookie of ours: the legacy session the request's legacy cookie names (the `adopt`
   * option), if any, becomes this request's session, once (see core/adoption.ts). A request
   * that finds it taken by a concurrent one is treated like one racing a login.
   */
  async #adoptLegacy(): Promise<void> {
    const source = this.runtime.adopt;
    if (source === undefined) return;
    const legacy = source.readCookie(this.request.cookieHeader);
    if (legacy.kind === "absent") return;
    if (legacy.kind === "invalid") {
      this.runtime.emit({ type: "invalid-cookie", reason: `${source.kind} cookie: ${legacy.reason}` });
      return;
    }
    // A new cookie that cannot reach the client would leave the user with neither session.
    const { secure } = this.runtime.cookie.options;
    if (this.response.headersSent() || (secure === true && !this.request.secure)) return;
    const adoption = await adoptLegacySession(this.runtime, source, legacy.id, {
      freshMeta: (userId, persistent) => this.#freshMeta(this.runtime.now(), userId, persistent),
      refusal: (session) => this.#legacyRefusal(session),
    });
    if (adoption.kind === "refused") {
      this.runtime.emit({ type: "adoption-refused", source: source.kind, reason: adoption.reason });
      return;
    }
    if (adoption.kind === "taken-elsewhere") {
      this.#rotatedAway = true;
      return;
    }
    // Taken (or dead): the browser need not send the legacy cookie again. Same name: ours replaces it.
    if (source.cookieName !== this.runtime.cookie.options.name) this.response.appendCookie?.(source.clearCookie(this.request.secure));
    if (adoption.kind === "gone") return;
    const { id, key, record } = adoption;
    this.#adopt({ id, key, meta: record.meta }, { fields: record.fields, values: decodeFields(record.fields) ?? new Map() });
    this.#status = "modified";
    this.#sendCookie();
    const userId = record.meta.userId;
    this.runtime.emit({ type: "created", handle: this.handle as string, userId });
    this.runtime.emit({ type: "adopted", handle: this.handle as string, userId, source: source.kind });
    if (userId !== undefined) await this.runtime.enforceUserCap(userId, key);
  }

  /** Why a legacy session cannot become one of ours (its user ID, keys or data), or `undefined`. */
  async #legacyRefusal({ userId, data }: LegacySession): Promise<string | undefined> {
    if (userId !== undefined && (userId.length === 0 || userId.length > MAX_USER_ID_LENGTH || !isWellFormed(userId))) {
      return `its user ID is not 1 to ${MAX_USER_ID_LENGTH} characters of well-formed Unicode`;
    }
    try {
      for (const key of data.keys()) assertKey(key);
    } catch (error) {
      return (error as Error).message;
    }
    return (await this.#conformsToSchema(data)) ? undefined : "the schema option rejects its data";
  }

  /**
   * Loads and decodes a record. A record whose fields are not valid JSON, or whose data the
   * `schema` option rejects, is corrupted: it is removed and counts as gone.
   */
  async #fetch(key: string): Promise<(StoredSession & { values: Map<string, unknown> }) | Absent> {
    const { store } = this.runtime;
    const touch = this.#touchOptions();
    const record = await this.#call("load", () => store.load(key, touch));
    if (typeof record === "string") return record;
    const values = decodeFields(record.fields);
    if (values === undefined || !(await this.#conformsToSchema(values))) {
      this.runtime.emit({ type: "corrupted-record", handle: handleOf(key) });
      await this.#call("destroy", () => store.destroy(key));
      return "gone";
    }
    return { ...record, values };
  }

  /**
   * Whether the loaded data passes the `schema` option. Only the verdict is used: the
   * session keeps the stored values, because writes compare against them (`update()`).
   */
  async #conformsToSchema(values: ReadonlyMap<string, unknown>): Promise<boolean> {
    const schema = this.runtime.schema;
    if (schema === undefined) return true;
    const data: Record<string, unknown> = Object.create(null);
    for (const [key, value] of values) data[key] = value;
    // Standard Schema lets validate() answer synchronously or with a Promise; await covers both.
    const result = await schema["~standard"].validate(data);
    return result.issues === undefined;
  }

  async #reload(binding: Binding): Promise<void> {
    const record = await this.#fetch(binding.key);
    if (typeof record === "string") this.#lose(binding, record, "gone during an update");
    else this.#adopt({ ...binding, meta: record.meta }, record);
  }

  #adopt(binding: Binding, record: { fields: Map<string, string>; values: Map<string, unknown> }): void {
    this.#binding = binding;
    // Stores hand out fresh Maps (and `#create` passes its own), so no copy is needed.
    this.#fields = record.fields;
    this.#values = record.values;
  }

  #remember(set: ReadonlyMap<string, string>, deleted: readonly string[]): void {
    // Written only once a record was adopted (which gives the session maps of its own): never the shared empty ones.
    if (this.#fields === NO_FIELDS) this.#fields = new Map();
    if (this.#values === NO_VALUES) this.#values = new Map();
    for (const [key, json] of set) {
      this.#fields.set(key, json);
      this.#values.set(key, JSON.parse(json));
    }
    for (const key of deleted) {
      this.#fields.delete(key);
      this.#values.delete(key);
    }
  }

  /**
   * The live session vanished under this request. Gone (destroyed, expired): carry on as a
   * new anonymous session. Rotated away by a concurrent login: stop here with a 409.
   */
  #lose(binding: Binding, why: Absent, reason: string): void {
    this.runtime.emit({
      type: "expired",
      handle: handleOf(binding.key),
      reason: why === "rotated" ? "rotated by a concurrent request" : reason,
    });
    this.#forget();
    if (why === "rotated") {
      this.#rotatedAway = true;
      this.#assertNotRotated();
    }
  }

  #forget(): void {
    this.#binding = undefined;
    this.#fields = NO_FIELDS;
    this.#values = NO_VALUES;
  }

  #assertNotRotated(): void {
    if (!this.#rotatedAway) return;
    this.response.withdrawCookie();
    throw new SessionRotatedError();
  }

  #persistent(meta: SessionMeta): boolean {
    return meta.persistent ?? this.runtime.cookie.options.persistent;
  }

  #freshMeta(now: number, userId?: string, persistent?: boolean): SessionMeta {
    const absoluteExpiresAt = now + this.runtime.absoluteTimeoutMs;
    const meta: SessionMeta = {
      createdAt: now,
      lastSeenAt: now,
      absoluteExpiresAt,
      expiresAt: Math.min(now + this.runtime.idleTimeoutMs, absoluteExpiresAt),
    };
    if (userId !== undefined) {
      meta.userId = userId;
      // Only a user's sessions are listed with their device; an anonymous session does not
      // keep it (a long User-Agent triples a Redis hash: listpack → hashtable). Present as
      // undefined, it removes what a previous user of a rotated session left (mergeMeta).
      const agent = this.request.userAgent?.slice(0, MAX_USER_AGENT_LENGTH);
      meta.userAgent = agent !== undefined && agent !== "" && isWellFormed(agent) ? agent : undefined;
      meta.persistent = persistent;
    } else if (persistent !== undefined) {
      meta.persistent = persistent;
    }
    return meta;
  }

  /** A cookie can reach this client: not a `Secure`-only cookie on a plain-HTTP request. */
  #assertCookieDeliverable(): void {
    if (this.runtime.cookie.options.secure !== true || this.request.secure) return;
    this.runtime.reportInsecureRequest();
    throw new InsecureRequestError();
  }

  /** Creates a new session holding `fields`, under a new ID, and hands the cookie out. */
  async #create(fields: Map<string, string>, meta?: SessionMeta): Promise<void> {
    this.#assertCookieDeliverable();
    const recordMeta = meta ?? this.#freshMeta(this.runtime.now());
    for (;;) {
      const id = newSessionId();
      const key = storeKeyOf(id);
      const created = await this.#call("create", () => this.runtime.store.create(key, { meta: recordMeta, fields }));
      // A collision of 256-bit random IDs does not happen; if a store says it did, draw again.
      if (!created) continue;
      this.#adopt({ id, key, meta: recordMeta }, { fields, values: decodeFields(fields) ?? new Map() });
      this.#status = "modified";
      this.#sendCookie();
      if (this.runtime.observed) this.runtime.emit({ type: "created", handle: this.handle as string, userId: recordMeta.userId });
      return;
    }
  }

  /** Moves the live session to a new ID; resolves `false` when the session was already gone (a rotated one throws). */
  async #rotate(binding: Binding, meta: Partial<SessionMeta>): Promise<boolean> {
    this.#assertCookieDeliverable();
    const id = newSessionId();
    const key = storeKeyOf(id);
    const now = this.runtime.now();
    const rotation = { meta, now, markerExpiresAt: now + this.runtime.rotationMarkerMs };
    const moved = await this.#call("rotate", () => this.runtime.store.rotate(binding.key, key, rotation));
    if (typeof moved === "string") {
      this.#lose(binding, moved, "gone before a rotation");
      return false;
    }
    const previousKey = binding.key;
    const values = decodeFields(moved.fields) ?? new Map();
    this.#adopt({ id, key, meta: moved.meta }, { fields: moved.fields, values });
    this.#status = "modified";
    this.#sendCookie();
    if (this.runtime.observed) {
      this.runtime.emit({
        type: "rotated",
        handle: this.handle as string,
        previousHandle: handleOf(previousKey),
        userId: moved.meta.userId,
      });
    }
    return true;
  }

  #sendCookie(): void {
    const meta = this.#binding?.meta;
    if (this.#binding === undefined || meta === undefined) return;
    const expires = this.#persistent(meta) ? meta.absoluteExpiresAt : undefined;
    this.response.setCookie(this.runtime.cookie.issue(this.#binding.id, expires, this.request.secure));
  }

  #assertWritable(): void {
    if (this.response.headersSent()) {
      throw new SessionStateError("session written after the response headers were sent: await every session write before answering");
    }
  }

  #assertSize(toSet: ReadonlyMap<string, string>, toDelete: readonly string[]): void {
    let size = 0;
    for (const [key, json] of this.#fields) {
      if (!toSet.has(key) && !toDelete.includes(key)) size += Buffer.byteLength(key) + Buffer.byteLength(json);
    }
    for (const [key, json] of toSet) size += Buffer.byteLength(key) + Buffer.byteLength(json);
    if (size > this.runtime.maxSizeBytes) {
      throw new SessionValueError(
        `session data would be ${size} bytes, over maxSizeBytes (${this.runtime.maxSizeBytes}): keep large data elsewhere and store a reference`,
      );
    }
  }
}

/** Public facts of a session from its meta. */
export function infoOf(handle: string, meta: SessionMeta, defaultPersistent: boolean): SessionInfo {
  return {
    handle,
    createdAt: new Date(meta.createdAt),
    lastSeenAt: new Date(meta.lastSeenAt),
    expiresAt: new Date(meta.expiresAt),
    absoluteExpiresAt: new Date(meta.absoluteExpiresAt),
    userId: meta.userId,
    userAgent: meta.userAgent,
    persistent: meta.persistent ?? defaultPersistent,
  };
}

function assertKey(key: unknown): asserts key is string {
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new SessionValueError(`session keys must be strings of 1 to ${MAX_KEY_LENGTH} characters, got ${JSON.stringify(key)}`);
  }
  assertWellFormed("a session key", key);
}
