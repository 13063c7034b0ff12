/**
 * Another process holds the SQLite write lock (`BEGIN IMMEDIATE`) for 6 s. The application's
 * event loop must run on, store calls made through a `SessionManager` must fail at their
 * deadline (not freeze), reads must go on, a call the worker could not start before its deadline
 * must never run later, and once the lock is free the same store must serve again.
 */
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { StoreUnavailableError } from "atomic-session";
import { SqliteStore, SqliteStoreError } from "atomic-session/stores/sqlite";
import { cookiePair, managerFor, openSession } from "atomic-session/testing";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";
import { holdWriteLock } from "../../../../test-support/sqlite.js";

const LOCK_MS = 6_000;
const STORE_TIMEOUT_MS = 1_000;

async function timed<T>(work: Promise<T>): Promise<{ ms: number; outcome: T | unknown }> {
  const started = performance.now();
  const outcome = await work.then(
    (value) => value,
    (error: unknown) => error,
  );
  return { ms: performance.now() - started, outcome };
}

const stores: SqliteStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((store) => store.dispose()));
});

describe("SqliteStore while another process holds the write lock", () => {
  it("keeps the event loop running, fails calls at their deadline, goes on reading, and serves again once the lock is free", async () => {
    const file = path.join(tempDir("sqlite-lock"), "sessions.db");
    // The defaults: busyTimeoutMs 500 below the manager's deadline, so a held lock gives definite failures.
    const store = new SqliteStore({ path: file });
    // A manager deadline shorter than the store's wait: the manager gives up first (outcome
    // unknown to it), and the worker must then drop the call when its own deadline passes.
    const patient = new SqliteStore({ path: file, busyTimeoutMs: 1_500 });
    stores.push(store, patient);
    const manager = managerFor(store, { storeTimeoutMs: STORE_TIMEOUT_MS });
    const hasty = managerFor(patient, { storeTimeoutMs: 300 });

    const first = openSession(manager);
    expect(await first.session.increment("visits")).toBe(1);
    const cookie = cookiePair(first.response.cookie);

    const lock = await holdWriteLock(file, LOCK_MS);
    const lockedAt = performance.now();
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    // A timer on this thread: it must keep firing about every 25 ms.
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 25);

    const failures = [];
    for (let i = 0; i < 3; i++) failures.push(await timed(openSession(manager, cookie).session.increment("visits")));
    const unknown = await timed(openSession(hasty, cookie).session.increment("visits"));
    // A read needs no write lock (no touch is due): it is answered while the lock is held.
    const read = await timed(openSession(manager, cookie).session.get("visits"));
    const tickWindowMs = performance.now() - lockedAt;
    const ticksDuringLock = ticks;
    const maxDelayMs = loopDelay.max / 1e6;
    loopDelay.disable();
    clearInterval(ticker);
    // Everything above happened while the lock was held.
    expect(tickWindowMs).toBeLessThan(LOCK_MS - 1_000);

    for (const { ms, outcome } of failures) {
      expect(outcome).toBeInstanceOf(StoreUnavailableError);
      // The store's own answer, before the manager's deadline: not started, so nothing written.
      expect(outcome).toMatchObject({ timedOut: false });
      expect((outcome as StoreUnavailableError).cause).toBeInstanceOf(SqliteStoreError);
      expect((outcome as StoreUnavailableError).cause).toMatchObject({ code: "SQLITE_BUSY" });
      expect(ms).toBeGreaterThanOrEqual(450);
      expect(ms).toBeLessThan(STORE_TIMEOUT_MS + 500);
    }
    expect(unknown.outcome).toBeInstanceOf(StoreUnavailableError);
    expect(unknown.outcome).toMatchObject({ timedOut: true });
    expect(unknown.ms).toBeLessThan(300 + 500);
    expect(read.outcome).toBe(1);
    expect(read.ms).toBeLessThan(250);

    expect(maxDelayMs).toBeLessThan(150);
    expect(ticksDuringLock).toBeGreaterThan((tickWindowMs / 25) * 0.5);

    await lock.released;
    const after = await timed(openSession(manager, cookie).session.increment("visits"));
    // 2: none of the four increments refused during the lock ran later, not even the one the
    // manager timed out on (its worker dropped it when its busyTimeoutMs passed).
    expect(after.outcome).toBe(2);
    expect(after.ms).toBeLessThan(1_000);
    expect(await openSession(hasty, cookie).session.increment("visits")).toBe(3);
  }, 30_000);
});
