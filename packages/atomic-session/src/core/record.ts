/**
 * The record semantics every store shares, computed once: when a touch is due and what it
 * writes, how a partial meta lands on a record, and what an increment may add. Stores call
 * these instead of repeating the arithmetic (the Redis store's Lua scripts mirror `touchMeta`
 * and `addToStoredInteger` because they must run inside Redis; its tests hold them to these).
 * @module
 */
import { SessionValueError } from "./errors.js";
import type { SessionMeta, TouchOptions } from "./store.js";

/** Decimal text of a safe integer, as stores keep counters (it is also the value's JSON). */
const INTEGER_TEXT = /^-?(0|[1-9]\d{0,15})$/;

/**
 * The meta after a load or increment at `touch.now`: unchanged when the last touch is more
 * recent than `touchIntervalMs`, else `lastSeenAt = now` and `expiresAt = min(now + idle,
 * absoluteExpiresAt)`. Returns `undefined` when no touch is due, so a store knows it has
 * nothing to write.
 */
export function touchMeta(meta: SessionMeta, { now, idleTimeoutMs, touchIntervalMs }: TouchOptions): SessionMeta | undefined {
  if (now - meta.lastSeenAt < touchIntervalMs) return undefined;
  return { ...meta, lastSeenAt: now, expiresAt: Math.min(now + idleTimeoutMs, meta.absoluteExpiresAt) };
}

/**
 * `change` over `meta`: a timestamp given as `undefined` keeps the current one (timestamps
 * are never removed); `userId`, `userAgent` and `persistent` present with `undefined` are
 * removed (a partial meta with `userId: undefined` unbinds the user).
 */
export function mergeMeta(meta: SessionMeta, change: Partial<SessionMeta>): SessionMeta {
  const merged: SessionMeta = {
    createdAt: change.createdAt ?? meta.createdAt,
    lastSeenAt: change.lastSeenAt ?? meta.lastSeenAt,
    absoluteExpiresAt: change.absoluteExpiresAt ?? meta.absoluteExpiresAt,
    expiresAt: change.expiresAt ?? meta.expiresAt,
  };
  const userId = Object.hasOwn(change, "userId") ? change.userId : meta.userId;
  const userAgent = Object.hasOwn(change, "userAgent") ? change.userAgent : meta.userAgent;
  const persistent = Object.hasOwn(change, "persistent") ? change.persistent : meta.persistent;
  if (userId !== undefined) merged.userId = userId;
  if (userAgent !== undefined) merged.userAgent = userAgent;
  if (persistent !== undefined) merged.persistent = persistent;
  return merged;
}

/**
 * The value an increment stores: `current` (decimal text, or `undefined` for an absent field,
 * which counts as 0) plus `by`. Throws `SessionValueError` when `current` is not the decimal
 * text of a safe integer or the sum leaves the safe integer range; the store then writes nothing.
 */
export function addToStoredInteger(field: string, current: string | undefined, by: number): number {
  if (!Number.isSafeInteger(by)) throw new SessionValueError(`increment(${JSON.stringify(field)}): the step must be a safe integer`);
  if (current !== undefined && !INTEGER_TEXT.test(current)) {
    throw new SessionValueError(`increment(${JSON.stringify(field)}): the stored value is not an integer; set() it to a number first`);
  }
  const next = (current === undefined ? 0 : Number(current)) + by;
  if (!Number.isSafeInteger(next)) {
    throw new SessionValueError(`increment(${JSON.stringify(field)}): the result leaves the safe integer range`);
  }
  return next;
}

/** Whether `value` is a timestamp a store may hold: a safe integer. */
export function isTimestamp(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value);
}
