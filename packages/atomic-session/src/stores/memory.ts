// node:timers' own setImmediate, not the global one: fake timers (vitest's, Jest's) replace the
// global, and an application's tests under them would otherwise wait for ever on every answer.
import { setImmediate as settleSoon } from "node:timers";
import { SessionConfigError } from "../core/errors.js";
import { addToStoredInteger, mergeMeta, touchMeta } from "../core/record.js";
import type {
  Absent,
  CompareAndSetResult,
  Rotation,
  SessionChange,
  SessionStore,
  StoredSession,
  TouchOptions,
  UserSessionEntry,
} from "../core/store.js";

export interface MemoryStoreOptions {
  /**
   * Most sessions held at once; past it the least recently used are evicted (1% of the
   * capacity at a time), to within a quarter of the capacity: a record in use moves up only
   * once that many others came after it. Default 10,000.
   */
  maxEntries?: number;
  /** How often expired records are swept. Default 60 s. */
  sweepIntervalMs?: number;
}

/** `setInterval` fires at once for delays past 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Sessions in this process's memory: for tests and single-process development. Everything
 * is lost on restart. Each operation runs synchronously when it is called, so each is atomic;
 * its promise settles with the others of the same event-loop turn (see {@link answer}).
 * Eviction is by least recent use (to within a quarter of the capacity), so a flood of new
 * anonymous sessions evicts idle ones, not active users.
 */
export class MemoryStore implements SessionStore {
  readonly kind = "memory";
  /** In order of last move (see {@link #use}): the first entries are the least recently used. */
  readonly #records = new Map<string, HeldSession>();
  /** Positions handed out in `#records`' order: each insert or move takes the next one. */
  #lastPosition = 0;
  /** How far behind the back of `#records` a record in use may fall before it is moved there. */
  readonly #moveAfter: number;
  /** Keys left by a rotation, with the time their marker expires. */
  readonly #rotated = new Map<string, number>();
  /** userId → keys of that user's sessions. */
  readonly #byUser = new Map<string, Set<string>>();
  readonly #maxEntries: number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries <= 0) {
      throw new SessionConfigError(`MemoryStore maxEntries must be a positive whole number, got ${String(options.maxEntries)}`);
    }
    this.#moveAfter = Math.floor(this.#maxEntries / 4);
    const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    if (!Number.isSafeInteger(sweepIntervalMs) || sweepIntervalMs <= 0 || sweepIntervalMs > MAX_TIMER_MS) {
      throw new SessionConfigError(`MemoryStore sweepIntervalMs must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}`);
    }
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), sweepIntervalMs);
    this.#sweeper.unref();
  }

  load(key: string, touch: TouchOptions): Promise<StoredSession | Absent> {
    return answer(() => {
      const record = this.#use(key, touch.now);
      if (typeof record === "string") return record;
      record.meta = touchMeta(record.meta, touch) ?? record.meta;
      return copy(record);
    });
  }

  create(key: string, record: StoredSession): Promise<boolean> {
    return answer(() => {
      if (this.#live(key, Date.now()) !== "gone") return false;
      if (this.#records.size >= this.#maxEntries) this.#evict();
      this.#put(key, copy(record));
      return true;
    });
  }

  apply(key: string, change: SessionChange): Promise<"ok" | Absent> {
    return answer(() => {
      const record = this.#use(key, change.now);
      if (typeof record === "string") return record;
      for (const [field, value] of change.set ?? []) record.fields.set(field, value);
      for (const field of change.delete ?? []) record.fields.delete(field);
      if (change.meta !== undefined) this.#setMeta(key, record, mergeMeta(record.meta, change.meta));
      return "ok" as const;
    });
  }

  increment(key: string, field: string, by: number, touch: TouchOptions): Promise<number | Absent> {
    return answer(() => {
      const record = this.#use(key, touch.now);
      if (typeof record === "string") return record;
      const next = addToStoredInteger(field, record.fields.get(field), by);
      record.meta = touchMeta(record.meta, touch) ?? record.meta;
      record.fields.set(field, String(next));
      return next;
    });
  }

  compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    return answer((): CompareAndSetResult => {
      const record = this.#use(key, now);
      if (typeof record === "string") return record;
      if (record.fields.get(field) !== expected) return "conflict";
      if (next === undefined) record.fields.delete(field);
      else record.fields.set(field, next);
      return "ok";
    });
  }

  rotate(fromKey: string, toKey: string, rotation: Rotation): Promise<StoredSession | Absent> {
    return answer(() => {
      const record = this.#live(fromKey, rotation.now);
      if (typeof record === "string") return record;
      this.#delete(fromKey);
      this.#rotated.set(fromKey, rotation.markerExpiresAt);
      const moved = { meta: mergeMeta(record.meta, rotation.meta), fields: record.fields };
      this.#put(toKey, moved);
      return copy(moved);
    });
  }

  destroy(key: string): Promise<void> {
    return answer(() => {
      this.#delete(key);
      this.#rotated.delete(key);
    });
  }

  ping(): Promise<void> {
    return answer(() => undefined);
  }

  listUserSessions(userId: string, now: number): Promise<UserSessionEntry[]> {
    return answer(() => this.#userEntries(userId, now));
  }

  revokeUserSessions(userId: string, now: number): Promise<string[]> {
    return answer(() => {
      const keys = this.#userEntries(userId, now).map(({ key }) => key);
      for (const key of keys) this.#delete(key);
      return keys;
    });
  }

  count(now: number): Promise<number> {
    return answer(() => {
      this.#sweep(now);
      return this.#records.size;
    });
  }

  /** Every live record's key and meta, from a snapshot of the keys (at most `maxEntries` of them). */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    // A snapshot, not the live iterator: a key used during the scan moves to the end and would be visited twice.
    for (const key of [...this.#records.keys()]) {
      const record = this.#records.get(key);
      if (record !== undefined && record.meta.expiresAt > now) yield { key, meta: { ...record.meta } };
    }
  }

  async dispose(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#records.clear();
    this.#rotated.clear();
    this.#byUser.clear();
  }

  #userEntries(userId: string, now: number): UserSessionEntry[] {
    const entries: UserSessionEntry[] = [];
    for (const key of [...(this.#byUser.get(userId) ?? [])]) {
      const record = this.#live(key, now);
      if (typeof record !== "string") entries.push({ key, meta: { ...record.meta } });
    }
    return entries;
  }

  /** The live record under `key`, or why there is none; an expired one is removed on the way. */
  #live(key: string, now: number): HeldSession | Absent {
    const record = this.#records.get(key);
    if (record !== undefined && record.meta.expiresAt > now) return record;
    if (record !== undefined) this.#delete(key);
    return this.#rotatedAt(key, now) ? "rotated" : "gone";
  }

  /**
   * {@link #live}, and keeps the record away from the front, where eviction takes. Moving a key
   * to the back of a Map (delete, then set) leaves a deleted entry in that key's hash bucket
   * until V8 rehashes the table, so one busy session moved on every use made each of its
   * lookups walk thousands of them (14 µs at 10,000 entries). A record moves only once it has
   * fallen a quarter of the capacity behind: every record used within that much traffic stays
   * in the newest half, far from eviction.
   */
  #use(key: string, now: number): HeldSession | Absent {
    const record = this.#live(key, now);
    if (typeof record === "string") return record;
    if (this.#lastPosition - record.position > this.#moveAfter) {
      this.#records.delete(key);
      this.#records.set(key, record);
      record.position = ++this.#lastPosition;
    }
    return record;
  }

  #rotatedAt(key: string, now: number): boolean {
    const until = this.#rotated.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#rotated.delete(key);
    return false;
  }

  #put(key: string, record: StoredSession): void {
    this.#records.set(key, { meta: record.meta, fields: record.fields, position: ++this.#lastPosition });
    this.#index(key, record.meta.userId);
  }

  #index(key: string, userId: string | undefined): void {
    if (userId !== undefined) {
      const keys = this.#byUser.get(userId);
      if (keys === undefined) this.#byUser.set(userId, new Set([key]));
      else keys.add(key);
    }
  }

  #setMeta(key: string, record: StoredSession, meta: StoredSession["meta"]): void {
    if (meta.userId !== record.meta.userId) {
      this.#unindex(key, record.meta.userId);
      record.meta = meta;
      this.#index(key, meta.userId);
    } else {
      record.meta = meta;
    }
  }

  #delete(key: string): void {
    const record = this.#records.get(key);
    if (record === undefined) return;
    this.#records.delete(key);
    this.#unindex(key, record.meta.userId);
  }

  #unindex(key: string, userId: string | undefined): void {
    if (userId === undefined) return;
    const keys = this.#byUser.get(userId);
    keys?.delete(key);
    if (keys?.size === 0) this.#byUser.delete(userId);
  }

  #sweep(now: number): void {
    for (const [key, record] of this.#records) if (record.meta.expiresAt <= now) this.#delete(key);
    for (const [key, until] of this.#rotated) if (until <= now) this.#rotated.delete(key);
  }

  /**
   * Makes room by dropping the records used longest ago (the front of the Map, see #use), 1% of the
   * capacity at a time: a Map's iterator walks over the holes deletions leave at its front, so
   * dropping one record per insert would cost a walk over thousands of holes each time.
   */
  #evict(): void {
    let toDrop = Math.max(1, Math.floor(this.#maxEntries / 100));
    for (const key of this.#records.keys()) {
      if (toDrop-- === 0) break;
      this.#delete(key);
    }
    // Rotation markers are bounded too: a burst of logins cannot grow them without limit.
    if (this.#rotated.size > this.#maxEntries) {
      for (const key of [...this.#rotated.keys()].slice(0, this.#rotated.size - this.#maxEntries)) this.#rotated.delete(key);
    }
  }
}

/** A record as the store holds it: with its position in the use order. */
interface HeldSession extends StoredSession {
  position: number;
}

/** Records are copied in and out so that callers never share mutable state with the store. */
function copy(record: StoredSession): StoredSession {
  return { meta: { ...record.meta }, fields: new Map(record.fields) };
}

/** Operations answered in this event-loop turn, settled together by one `setImmediate`. */
let answering: (() => void)[] | undefined;

/**
 * Runs `operation` now, so that it is atomic and in call order, and settles its promise
 * together with every other answer of this event-loop turn, once the loop has handled all the
 * I/O it read (`setImmediate`). A server then writes its responses to a burst of requests in
 * a burst, as a network store's replies arrive, and as Redis writes its replies before it
 * sleeps: a client is woken once per burst instead of once per answer. Answering each call
 * at once cost a loaded server about a third of its throughput (bench/RESULTS.md).
 */
function answer<T>(operation: () => T): Promise<T> {
  let outcome: { value: T } | { error: unknown };
  try {
    outcome = { value: operation() };
  } catch (error) {
    outcome = { error };
  }
  return new Promise<T>((resolve, reject) => {
    if (answering === undefined) {
      settleSoon(settleAnswers);
      answering = [];
    }
    answering.push("error" in outcome ? () => reject(outcome.error) : () => resolve(outcome.value));
  });
}

function settleAnswers(): void {
  const settles = answering ?? [];
  answering = undefined;
  for (const settle of settles) settle();
}
