import { SessionConfigError } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import {
  cookiePair,
  describeSessionConformance,
  describeStoreConformance,
  managerFor,
  metaFor,
  newKey,
  openSession,
} from "atomic-session/testing";
import { describe, expect, it, vi } from "vitest";

describeStoreConformance("memory", async () => {
  const store = new MemoryStore();
  return {
    store,
    async backendExpiryMs(key) {
      // The memory store's only expiry is the record's own deadline; now = 0 reads past it.
      const record = await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER });
      return typeof record === "string" ? undefined : record.meta.expiresAt - Date.now();
    },
    async holdsAnything(key) {
      return (await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER })) !== "gone";
    },
    close: () => store.dispose(),
  };
});

describeSessionConformance("memory", async () => {
  const store = new MemoryStore();
  return { store, close: () => store.dispose() };
});

describe("MemoryStore", () => {
  const anyTime = { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER };

  it("holds at most maxEntries records, evicting the least recently used", async () => {
    const store = new MemoryStore({ maxEntries: 3 });
    const keys = [newKey(), newKey(), newKey(), newKey()];
    for (const key of keys.slice(0, 3)) await store.create(key, { meta: metaFor(Date.now()), fields: new Map() });
    // The oldest record is used again: the second oldest is now the least recently used.
    expect(await store.increment(keys[0] as string, "n", 1, anyTime)).toBe(1);
    await store.create(keys[3] as string, { meta: metaFor(Date.now()), fields: new Map() });
    expect(await store.count(Date.now())).toBe(3);
    expect(await store.load(keys[1] as string, anyTime)).toBe("gone");
    for (const key of [keys[0], keys[2], keys[3]]) expect(await store.load(key as string, anyTime)).not.toBe("gone");
    await store.dispose();
  });

  it("keeps an active user through a flood of 10× its capacity in new anonymous sessions", async () => {
    const capacity = 10_000;
    const store = new MemoryStore({ maxEntries: capacity });
    const manager = managerFor(store);
    const login = openSession(manager);
    await login.session.login("active-user");
    const cookie = cookiePair(login.response.cookie);
    // Active every 500 requests (5% of the capacity), while 100,000 cookieless visitors each create a session.
    for (let i = 1; i <= 10 * capacity; i++) {
      await openSession(manager).session.increment("visitCount");
      if (i % 500 === 0) expect(await openSession(manager, cookie).session.increment("visitCount")).toBe(i / 500);
    }
    expect((await openSession(manager, cookie).session.info())?.userId).toBe("active-user");
    expect(await store.count(Date.now())).toBeLessThanOrEqual(capacity);
    await store.dispose();
  });

  it("stays within maxEntries under constant churn, keeping the newest records", async () => {
    const store = new MemoryStore({ maxEntries: 1000 });
    const keys = Array.from({ length: 5000 }, () => newKey());
    for (const key of keys) await store.create(key, { meta: metaFor(Date.now()), fields: new Map() });
    expect(await store.count(Date.now())).toBeLessThanOrEqual(1000);
    expect(await store.count(Date.now())).toBeGreaterThanOrEqual(990);
    for (const key of keys.slice(-900)) expect(await store.load(key, anyTime)).not.toBe("gone");
    expect(await store.load(keys[0] as string, anyTime)).toBe("gone");
    await store.dispose();
  });

  it("sweeps expired records on its timer", async () => {
    const store = new MemoryStore({ sweepIntervalMs: 50 });
    const key = newKey();
    const now = Date.now();
    await store.create(key, { meta: metaFor(now, { expiresAt: now + 30 }), fields: new Map() });
    expect(await store.load(key, anyTime)).not.toBe("gone");
    await new Promise((resolve) => setTimeout(resolve, 150));
    // now = 0 would still return an expired record that is held: the sweeper removed it.
    expect(await store.load(key, anyTime)).toBe("gone");
    await store.dispose();
  });

  it("answers under fake timers, as an application's tests install them", async () => {
    vi.useFakeTimers();
    const store = new MemoryStore();
    const manager = managerFor(store);
    try {
      const first = openSession(manager);
      expect(await first.session.increment("visits")).toBe(1);
      const cookie = cookiePair(first.response.cookie);
      expect(await openSession(manager, cookie).session.increment("visits")).toBe(2);
      // The faked clock still decides expiry: past the idle timeout the session is gone.
      vi.advanceTimersByTime(31 * 60_000);
      expect(await openSession(manager, cookie).session.get("visits")).toBeUndefined();
      // Fake timers installed before the store's module loads (a setup file) do not stop it either.
      vi.resetModules();
      const { MemoryStore: LoadedUnderFakeTimers } = await import("atomic-session/stores/memory");
      const late = new LoadedUnderFakeTimers();
      expect(LoadedUnderFakeTimers).not.toBe(MemoryStore);
      await expect(late.ping()).resolves.toBeUndefined();
      await late.dispose();
    } finally {
      vi.useRealTimers();
      await store.dispose();
    }
  });

  it("rejects a bad maxEntries when created", () => {
    expect(() => new MemoryStore({ maxEntries: 0 })).toThrow(SessionConfigError);
  });
});
