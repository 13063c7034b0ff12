import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { CookieReading, SessionCookie } from "./cookie.js";
import { SessionConflictError, SessionStateError, SessionValueError, StoreUnavailableError } from "./errors.js";
import type { SessionEvent } from "./events.js";
import { handleOf, newSessionId, storeKeyOf } from "./ids.js";
import type { LoadOptions, SessionMeta, SessionStore, StoredSession } from "./store.js";
import { decodeFields, encodeValue } from "./values.js";

/** Session data: string keys, JSON values. */
export type SessionData = Record<string, unknown>;

/**
 * Declares your application's session data once, for the manager and every adapter
 * (`req.session`, `request.session`, `c.get("session")`), by module augmentation:
 *
 * ```ts
 * declare module "sessionstore" {
 *   interface SessionTypes {
 *     data: { visitCount: number; user?: string };
 *   }
 * }
 * ```
 *
 * `data` must be a type literal or a `type` alias (an `interface` has no index signature,
 * so it is not a `SessionData`). Left undeclared, session data is `SessionData`.
 */
// biome-ignore lint/suspicious/noEmptyInterface: an interface, not a type, so that applications can augment it.
export interface SessionTypes {}

/** The session data the application declared in `SessionTypes`, or `SessionData` when it declared none. */
export type AppSessionData = SessionTypes extends { data: infer Declared extends SessionData } ? Declared : SessionData;

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
  userId: string | undefined;
  userAgent: string | undefined;
}

/** How the core puts headers on the adapter's response. */
export interface ResponseHeaders {
  /** Puts `value` on the response as the session's `Set-Cookie`, replacing one set earlier in this request. */
  setCookie(value: string): void;
  /** Whether the response headers are already on their way to the client. */
  headersSent(): boolean;
  /**
   * Takes the session's `Set-Cookie` back off a response that is about to report a store
   * failure (a 503 must not hand out a session). Optional: adapters whose framework never
   * sends a failing response with headers set earlier need not implement it.
   */
  withdrawCookie?(): void;
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
  /** Checks data loaded from the store; data it rejects counts as a corrupted record. */
  readonly schema: StandardSchemaV1 | undefined;
  /** Runs a store operation under the store deadline, turning failures into `StoreUnavailableError`. */
  call<T>(operation: string, run: () => Promise<T>): Promise<T>;
  emit(event: SessionEvent): void;
  now(): number;
}

/** The live session behind the handle: its ID lives only here and in the cookie. */
interface Binding {
  id: string;
  key: string;
  /** Absent only after an increment on a session not loaded yet; any load fills it in. */
  meta?: SessionMeta;
  /** `handleOf(key)`, computed on first use: logging asks for it on every request. */
  handle?: string;
}

const MAX_USER_AGENT_LENGTH = 256;
const MAX_USER_ID_LENGTH = 256;

/**
 * A request's session. Reads come from the copy loaded on first use; every write is one
 * atomic store operation, awaited by the caller, so a handler knows its write landed
 * before it answers. A write that finds the session gone (destroyed, rotated away,
 * expired) never revives it: the request carries on with a new anonymous session.
 *
 * Create one per request with `SessionManager.open()` (adapters do this for you).
 */
export class Session<Data extends SessionData = AppSessionData> {
  #status: SessionStatus = "unmodified";
  #binding: Binding | undefined;
  /** JSON text of each field as last seen in the store. */
  #fields = new Map<string, string>();
  /** Decoded values, null-prototype-safe because it is a Map. */
  #values = new Map<string, unknown>();
  #loading: Promise<void> | undefined;
  /** Serialises this handle's store operations so that two concurrent writes cannot both create a session. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly runtime: SessionRuntime,
    private readonly reading: CookieReading,
    private readonly response: ResponseHeaders,
    private readonly request: { secure: boolean; userAgent: string | undefined },
  ) {}

  /** What this request has done to the session so far. */
  get status(): SessionStatus {
    return this.#status;
  }

  /**
   * The session's public handle once it is loaded or created; `undefined` while there is
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

  /** Public facts about the live session, or `undefined` when there is none. Never creates one. */
  async info(): Promise<SessionInfo | undefined> {
    await this.#load();
    const binding = this.#binding;
    // After a load every binding has its meta (only an unloaded increment binds without).
    const meta = binding?.meta;
    if (binding === undefined || meta === undefined) return undefined;
    return {
      handle: handleOf(binding.key),
      createdAt: new Date(meta.createdAt),
      lastSeenAt: new Date(meta.lastSeenAt),
      expiresAt: new Date(meta.expiresAt),
      absoluteExpiresAt: new Date(meta.absoluteExpiresAt),
      userId: meta.userId,
      userAgent: meta.userAgent,
    };
  }

  /** The value stored under `key`, as loaded at the start of the request or last written by it. */
  async get<K extends keyof Data & string>(key: K): Promise<Data[K] | undefined> {
    await this.#load();
    return this.#values.get(key) as Data[K] | undefined;
  }

  /** A snapshot of all the session's data, as a null-prototype object. */
  async all(): Promise<Partial<Data>> {
    await this.#load();
    const snapshot = Object.create(null) as Partial<Data>;
    for (const [key, value] of this.#values) (snapshot as Record<string, unknown>)[key] = value;
    return snapshot;
  }

  /**
   * Writes the given keys in one store operation; only these keys are written, so
   * concurrent requests that set other keys do not overwrite each other (per key,
   * the last write wins). A value of `undefined` deletes the key.
   */
  async set(values: Partial<Data>): Promise<void>;
  async set<K extends keyof Data & string>(key: K, value: Data[K]): Promise<void>;
  async set(keyOrValues: string | Record<string, unknown>, value?: unknown): Promise<void> {
    const entries: [string, unknown][] = typeof keyOrValues === "string" ? [[keyOrValues, value]] : Object.entries(keyOrValues);
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
        if (applied) {
          this.#remember(toSet, toDelete);
          this.#status = "modified";
          return;
        }
        this.#lose(binding, "gone before a write");
      }
      if (toSet.size > 0) await this.#create(toSet);
    });
  }

  /** Deletes keys in one store operation. Deleting from a session that does not exist writes nothing. */
  async delete(...keys: (keyof Data & string)[]): Promise<void> {
    const values = Object.create(null) as Record<string, undefined>;
    for (const key of keys) values[key] = undefined;
    await this.set(values as Partial<Data>);
  }

  /**
   * Adds `by` to an integer key, atomically in the store, and resolves the new value.
   * Two hundred concurrent increments from any number of processes give two hundred
   * distinct results. On a session that does not exist yet, creates it with `by`.
   */
  async increment(key: keyof Data & string, by = 1): Promise<number> {
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
      }
      if (binding !== undefined) {
        const value = await this.#call("increment", () => this.runtime.store.increment(binding.key, key, by, this.#loadOptions()));
        if (value !== undefined) {
          this.#binding = binding;
          if (binding.meta !== undefined) this.#remember(new Map([[key, String(value)]]), []);
          this.#status = "modified";
          return value;
        }
        this.#loading ??= Promise.resolve();
        this.#lose(binding, "gone before an increment");
      }
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
  async update<K extends keyof Data & string>(
    key: K,
    fn: (current: Data[K] | undefined) => Data[K] | undefined,
  ): Promise<Data[K] | undefined> {
    assertKey(key);
    return this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      for (let attempt = 1; attempt <= this.runtime.updateAttempts; attempt++) {
        const next = fn(this.#values.get(key) as Data[K] | undefined);
        const nextJson = next === undefined ? undefined : encodeValue(key, next);
        const binding = this.#binding;
        if (binding === undefined) {
          if (nextJson !== undefined) await this.#create(new Map([[key, nextJson]]));
          return next;
        }
        this.#assertSize(nextJson === undefined ? new Map() : new Map([[key, nextJson]]), nextJson === undefined ? [key] : []);
        const expected = this.#fields.get(key);
        const now = this.runtime.now();
        const result = await this.#call("compareAndSet", () => this.runtime.store.compareAndSet(binding.key, key, expected, nextJson, now));
        if (result === "ok") {
          this.#remember(nextJson === undefined ? new Map() : new Map([[key, nextJson]]), nextJson === undefined ? [key] : []);
          this.#status = "modified";
          return next;
        }
        if (result === "gone") {
          this.#lose(binding, "gone before an update");
          continue;
        }
        this.runtime.emit({ type: "conflict", handle: handleOf(binding.key), key });
        await this.#reload(binding);
      }
      throw new SessionConflictError(
        `update(${JSON.stringify(key)}) lost the compare-and-set race ${this.runtime.updateAttempts} times; retry the request or raise updateAttempts`,
      );
    });
  }

  /**
   * Gives the session a new ID, keeping its data, and kills the old ID at once. Call it
   * on every privilege change. A session that does not exist yet has nothing to rotate.
   */
  async regenerate(): Promise<void> {
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const binding = this.#binding;
      if (binding === undefined) return;
      await this.#rotate(binding, {});
    });
  }

  /**
   * Binds the session to `userId` and rotates its ID (the pre-login ID dies at once).
   * The timeouts start again from now; the data is kept.
   */
  async login(userId: string): Promise<void> {
    if (typeof userId !== "string" || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
      throw new SessionValueError(`login(userId): userId must be a string of 1 to ${MAX_USER_ID_LENGTH} characters`);
    }
    await this.#exclusive(async () => {
      await this.#load();
      this.#assertWritable();
      const now = this.runtime.now();
      const fresh = this.#freshMeta(now, userId);
      const binding = this.#binding;
      if (binding !== undefined && (await this.#rotate(binding, fresh))) return;
      await this.#create(new Map(), fresh);
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
        this.runtime.emit({ type: "destroyed", handle: handleOf(binding.key), userId: binding.meta?.userId });
        this.#forget();
      }
      if (this.reading.kind !== "absent" || binding !== undefined) {
        this.response.setCookie(this.runtime.cookie.clear(this.request.secure));
      }
      this.#status = "destroyed";
    });
  }

  /** A store call under the deadline; a store failure also takes back any cookie set earlier in the request. */
  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await this.runtime.call(operation, run);
    } catch (error) {
      if (error instanceof StoreUnavailableError) this.response.withdrawCookie?.();
      throw error;
    }
  }

  #exclusive<T>(run: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #load(): Promise<void> {
    this.#loading ??= this.#loadOnce();
    return this.#loading;
  }

  /**
   * The session the cookie names, before it is loaded (no meta yet), or `undefined` when the
   * cookie names none. A cookie signed with an older secret goes through a load, which
   * re-issues it: the new cookie's expiry needs the loaded absolute deadline.
   */
  #unloadedBinding(): Binding | undefined {
    const reading = this.reading;
    if (reading.kind !== "valid" || reading.signedWithOldSecret) return undefined;
    return { id: reading.id, key: storeKeyOf(reading.id) };
  }

  #loadOptions(): LoadOptions {
    return { now: this.runtime.now(), idleTimeoutMs: this.runtime.idleTimeoutMs, touchIntervalMs: this.runtime.touchIntervalMs };
  }

  async #loadOnce(): Promise<void> {
    // A blind increment may have bound the session without loading it: the load replaces that.
    this.#forget();
    const reading = this.reading;
    if (reading.kind === "absent") return;
    if (reading.kind === "invalid") {
      this.runtime.emit({ type: "invalid-cookie", reason: reading.reason });
      return;
    }
    const key = storeKeyOf(reading.id);
    const record = await this.#fetch(key);
    if (record === undefined) {
      // No clearing Set-Cookie here: this request may race a login that just rotated the
      // ID, and clearing the cookie would then log the browser out of the new session.
      this.runtime.emit({ type: "expired", handle: handleOf(key) });
      return;
    }
    this.#adopt({ id: reading.id, key, meta: record.meta }, record);
    if (reading.signedWithOldSecret && !this.response.headersSent()) this.#sendCookie();
  }

  /**
   * Loads and decodes a record. A record whose fields are not valid JSON, or whose data the
   * `schema` option rejects, is corrupted: it is removed and counts as absent.
   */
  async #fetch(key: string): Promise<(StoredSession & { values: Map<string, unknown> }) | undefined> {
    const { store } = this.runtime;
    const options = this.#loadOptions();
    const record = await this.#call("load", () => store.load(key, options));
    if (record === undefined) return undefined;
    const values = decodeFields(record.fields);
    if (values === undefined || !(await this.#conformsToSchema(values))) {
      this.runtime.emit({ type: "corrupted-record", handle: handleOf(key) });
      await this.#call("destroy", () => store.destroy(key));
      return undefined;
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
    if (record === undefined) this.#lose(binding, "gone during an update");
    else this.#adopt({ ...binding, meta: record.meta }, record);
  }

  #adopt(binding: Binding, record: { fields: Map<string, string>; values: Map<string, unknown> }): void {
    this.#binding = binding;
    // Stores hand out fresh Maps (and `#create` passes its own), so no copy is needed.
    this.#fields = record.fields;
    this.#values = record.values;
  }

  #remember(set: ReadonlyMap<string, string>, deleted: readonly string[]): void {
    for (const [key, json] of set) {
      this.#fields.set(key, json);
      this.#values.set(key, JSON.parse(json));
    }
    for (const key of deleted) {
      this.#fields.delete(key);
      this.#values.delete(key);
    }
  }

  /** The live session vanished under this request: carry on as a new anonymous session. */
  #lose(binding: Binding, reason: string): void {
    this.runtime.emit({ type: "expired", handle: handleOf(binding.key), reason });
    this.#forget();
  }

  #forget(): void {
    this.#binding = undefined;
    this.#fields = new Map();
    this.#values = new Map();
  }

  #freshMeta(now: number, userId?: string): SessionMeta {
    const absoluteExpiresAt = now + this.runtime.absoluteTimeoutMs;
    return {
      createdAt: now,
      lastSeenAt: now,
      absoluteExpiresAt,
      expiresAt: Math.min(now + this.runtime.idleTimeoutMs, absoluteExpiresAt),
      userId,
      // Only a user's sessions are listed with their device; an anonymous session does not
      // keep it (a long User-Agent triples a Redis hash: listpack → hashtable).
      userAgent: userId === undefined ? undefined : this.request.userAgent?.slice(0, MAX_USER_AGENT_LENGTH),
    };
  }

  /** Creates a new session holding `fields`, under a new ID, and hands the cookie out. */
  async #create(fields: Map<string, string>, meta?: SessionMeta): Promise<void> {
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
      this.runtime.emit({ type: "created", handle: handleOf(key), userId: recordMeta.userId });
      return;
    }
  }

  /** Moves the live session to a new ID; resolves `false` when the session was already gone. */
  async #rotate(binding: Binding, meta: Partial<SessionMeta>): Promise<boolean> {
    const id = newSessionId();
    const key = storeKeyOf(id);
    const now = this.runtime.now();
    const moved = await this.#call("rotate", () => this.runtime.store.rotate(binding.key, key, meta, now));
    if (moved === undefined) {
      this.#lose(binding, "gone before a rotation");
      return false;
    }
    const values = decodeFields(moved.fields) ?? new Map();
    this.#adopt({ id, key, meta: moved.meta }, { fields: moved.fields, values });
    this.#status = "modified";
    this.#sendCookie();
    this.runtime.emit({ type: "rotated", handle: handleOf(key), previousHandle: handleOf(binding.key), userId: moved.meta.userId });
    return true;
  }

  #sendCookie(): void {
    const binding = this.#binding;
    if (binding?.meta === undefined) return;
    this.response.setCookie(this.runtime.cookie.issue(binding.id, binding.meta.absoluteExpiresAt, this.request.secure));
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

function assertKey(key: unknown): asserts key is string {
  if (typeof key !== "string" || key.length === 0 || key.length > 256) {
    throw new SessionValueError(`session keys must be strings of 1 to 256 characters, got ${JSON.stringify(key)}`);
  }
}
