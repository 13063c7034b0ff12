import { describe, expect, it } from "vitest";
import { SessionConfigError } from "../../src/core/errors.js";
import { MemoryStore } from "../../src/stores/memory.js";
import { describeSessionConformance } from "../conformance/session-conformance.js";
import { describeStoreConformance, metaFor, newKey } from "../conformance/store-conformance.js";

describeStoreConformance("memory", async () => {
  const store = new MemoryStore();
  return {
    store,
    async backendExpiryMs(key) {
      // The memory store's only expiry is the record's own deadline; now = 0 reads past it.
      const record = await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER });
      return record === undefined ? undefined : record.meta.expiresAt - Date.now();
    },
    async holdsAnything(key) {
      return (await store.load(key, { now: 0, idleTimeoutMs: 1, touchIntervalMs: Number.MAX_SAFE_INTEGER })) !== undefined;
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

  it("holds at most maxEntries records, evicting the oldest", async () => {
    const store = new MemoryStore({ maxEntries: 3 });
    const keys = [newKey(), newKey(), newKey(), newKey()];
    for (const key of keys) await store.create(key, { meta: metaFor(Date.now()), fields: new Map() });
    expect(await store.count(Date.now())).toBe(3);
    expect(await store.load(keys[0] as string, anyTime)).toBeUndefined();
    for (const key of keys.slice(1)) expect(await store.load(key, anyTime)).toBeDefined();
    await store.dispose();
  });

  it("stays within maxEntries under constant churn, keeping the newest records", async () => {
    const store = new MemoryStore({ maxEntries: 1000 });
    const keys = Array.from({ length: 5000 }, () => newKey());
    for (const key of keys) await store.create(key, { meta: metaFor(Date.now()), fields: new Map() });
    expect(await store.count(Date.now())).toBeLessThanOrEqual(1000);
    expect(await store.count(Date.now())).toBeGreaterThanOrEqual(990);
    for (const key of keys.slice(-900)) expect(await store.load(key, anyTime)).toBeDefined();
    expect(await store.load(keys[0] as string, anyTime)).toBeUndefined();
    await store.dispose();
  });

  it("sweeps expired records on its timer", async () => {
    const store = new MemoryStore({ sweepIntervalMs: 50 });
    const key = newKey();
    const now = Date.now();
    await store.create(key, { meta: metaFor(now, { expiresAt: now + 30 }), fields: new Map() });
    expect(await store.load(key, anyTime)).toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 150));
    // now = 0 would still return an expired record that is held: the sweeper removed it.
    expect(await store.load(key, anyTime)).toBeUndefined();
    await store.dispose();
  });

  it("rejects a bad maxEntries when created", () => {
    expect(() => new MemoryStore({ maxEntries: 0 })).toThrow(SessionConfigError);
  });
});
