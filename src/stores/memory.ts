import { SessionConfigError, SessionValueError } from "../core/errors.js";
import type {
  CompareAndSetResult,
  LoadOptions,
  SessionChange,
  SessionMeta,
  SessionStore,
  StoredSession,
  UserSessionEntry,
} from "../core/store.js";

export interface MemoryStoreOptions {
  /** Most records held at once; creating one more evicts the oldest (1% of the capacity at a time). Default 10,000. */
  maxEntries?: number;
  /** How often expired records are swept. Default 60 s. */
  sweepIntervalMs?: number;
}

const INTEGER_PATTERN = /^-?\d+$/;

/**
 * Sessions in this process's memory: for tests and single-process development. Everything
 * is lost on restart. Each operation runs synchronously, so each is atomic.
 */
export class MemoryStore implements SessionStore {
  readonly kind = "memory";
  readonly #records = new Map<string, StoredSession>();
  readonly #maxEntries: number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries <= 0) {
      throw new SessionConfigError(`MemoryStore maxEntries must be a positive whole number, got ${String(options.maxEntries)}`);
    }
    const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), sweepIntervalMs);
    this.#sweeper.unref();
  }

  async load(key: string, options: LoadOptions): Promise<StoredSession | undefined> {
    const record = this.#live(key, options.now);
    if (record === undefined) return undefined;
    touch(record.meta, options);
    return copy(record);
  }

  async create(key: string, record: StoredSession): Promise<boolean> {
    if (this.#live(key, Date.now()) !== undefined) return false;
    if (this.#records.size >= this.#maxEntries) this.#evict();
    this.#records.set(key, copy(record));
    return true;
  }

  async apply(key: string, change: SessionChange): Promise<boolean> {
    const record = this.#live(key, change.now);
    if (record === undefined) return false;
    for (const [field, value] of change.set ?? []) record.fields.set(field, value);
    for (const field of change.delete ?? []) record.fields.delete(field);
    if (change.meta !== undefined) Object.assign(record.meta, change.meta);
    return true;
  }

  async increment(key: string, field: string, by: number, options: LoadOptions): Promise<number | undefined> {
    const record = this.#live(key, options.now);
    if (record === undefined) return undefined;
    touch(record.meta, options);
    const current = record.fields.get(field) ?? "0";
    if (!INTEGER_PATTERN.test(current))
      throw new SessionValueError(`increment(${JSON.stringify(field)}): the stored value is not an integer`);
    const next = Number(current) + by;
    if (!Number.isSafeInteger(next))
      throw new SessionValueError(`increment(${JSON.stringify(field)}): the result leaves the safe integer range`);
    record.fields.set(field, String(next));
    return next;
  }

  async compareAndSet(
    key: string,
    field: string,
    expected: string | undefined,
    next: string | undefined,
    now: number,
  ): Promise<CompareAndSetResult> {
    const record = this.#live(key, now);
    if (record === undefined) return "gone";
    if (record.fields.get(field) !== expected) return "conflict";
    if (next === undefined) record.fields.delete(field);
    else record.fields.set(field, next);
    return "ok";
  }

  async rotate(fromKey: string, toKey: string, meta: Partial<SessionMeta>, now: number): Promise<StoredSession | undefined> {
    const record = this.#live(fromKey, now);
    if (record === undefined) return undefined;
    this.#records.delete(fromKey);
    Object.assign(record.meta, meta);
    this.#records.set(toKey, record);
    return copy(record);
  }

  async destroy(key: string): Promise<void> {
    this.#records.delete(key);
  }

  async ping(): Promise<void> {}

  async listByUser(userId: string, now: number): Promise<UserSessionEntry[]> {
    const entries: UserSessionEntry[] = [];
    for (const [key, record] of this.#records) {
      if (record.meta.userId === userId && record.meta.expiresAt > now) entries.push({ key, meta: { ...record.meta } });
    }
    return entries;
  }

  async destroyByUser(userId: string, now: number): Promise<string[]> {
    const entries = await this.listByUser(userId, now);
    for (const { key } of entries) this.#records.delete(key);
    return entries.map(({ key }) => key);
  }

  async count(now: number): Promise<number> {
    this.#sweep(now);
    return this.#records.size;
  }

  /** Every live record's key and meta, from a snapshot of the keys (at most `maxEntries` of them). */
  async *scan(now: number): AsyncGenerator<UserSessionEntry> {
    // A snapshot, not the live iterator: a key deleted and set again would be visited twice.
    for (const key of [...this.#records.keys()]) {
      const record = this.#records.get(key);
      if (record !== undefined && record.meta.expiresAt > now) yield { key, meta: { ...record.meta } };
    }
  }

  async dispose(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#records.clear();
  }

  #live(key: string, now: number): StoredSession | undefined {
    const record = this.#records.get(key);
    if (record === undefined) return undefined;
    if (record.meta.expiresAt > now) return record;
    this.#records.delete(key);
    return undefined;
  }

  #sweep(now: number): void {
    for (const [key, record] of this.#records) {
      if (record.meta.expiresAt <= now) this.#records.delete(key);
    }
  }

  /**
   * Makes room by dropping the oldest records (Maps keep insertion order), 1% of the
   * capacity at a time: a Map's iterator walks over the holes that deletions leave at its
   * front, so dropping one record per insert would cost a walk over thousands of holes each.
   */
  #evict(): void {
    let toDrop = Math.max(1, Math.floor(this.#maxEntries / 100));
    for (const key of this.#records.keys()) {
      this.#records.delete(key);
      if (--toDrop === 0) break;
    }
  }
}

/** Refreshes the idle deadline when a touch is due, never past the absolute deadline. */
function touch(meta: SessionMeta, { now, idleTimeoutMs, touchIntervalMs }: LoadOptions): void {
  if (now - meta.lastSeenAt < touchIntervalMs) return;
  meta.lastSeenAt = now;
  meta.expiresAt = Math.min(now + idleTimeoutMs, meta.absoluteExpiresAt);
}

/** Records are copied in and out so that callers never share mutable state with the store. */
function copy(record: StoredSession): StoredSession {
  return { meta: { ...record.meta }, fields: new Map(record.fields) };
}
