/**
 * The store contract (`SessionStore`) as a Vitest suite: every store in atomic-session passes
 * it, against every client it supports, and so must a third-party store.
 * @module
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionValueError } from "../core/errors.js";
import type { Rotation, SessionMeta, SessionStore, StoredSession } from "../core/store.js";

/**
 * What a store's test file hands the conformance suite: the store, and a view into its backend
 * that does not go through the store (to see what the store really left there).
 */
export interface StoreHarness {
  store: SessionStore;
  /** A second store instance on the same backend (another connection, as another process would have). */
  second?: SessionStore;
  /** Remaining lifetime of `key` as the backend itself enforces it (Redis PTTL, SQLite column, …), or undefined when absent. */
  backendExpiryMs(key: string): Promise<number | undefined>;
  /** Damages the stored record under `key` the way a crash or a bad write could (bad meta, half-written record). Absent for stores that hold live objects. */
  corrupt?(key: string): Promise<void>;
  /** Whether anything at all is stored under `key` in the backend, expired or not. */
  holdsAnything(key: string): Promise<boolean>;
  close(): Promise<void>;
}

const HOUR = 3_600_000;

export function newKey(): string {
  return randomBytes(32).toString("base64url");
}

export function metaFor(now: number, overrides: Partial<SessionMeta> = {}): SessionMeta {
  return { createdAt: now, lastSeenAt: now, absoluteExpiresAt: now + 2 * HOUR, expiresAt: now + HOUR, ...overrides };
}

function record(fields: Record<string, string>, meta: SessionMeta = metaFor(Date.now())): StoredSession {
  return { meta, fields: new Map(Object.entries(fields)) };
}

const noTouch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

/** A rotation at `now` applying `meta`, whose marker lasts a minute. */
export function rotation(now: number, meta: Partial<SessionMeta> = {}, markerMs = 60_000): Rotation {
  return { meta, now, markerExpiresAt: now + markerMs };
}

/** The live record `load` found; fails the test when it found none. */
function live(found: StoredSession | string): StoredSession {
  if (typeof found === "string") throw new Error(`expected a live record, the store answered ${JSON.stringify(found)}`);
  return found;
}

/** Lets the event loop run for `ms` (finer than a timer can wait). */
async function spin(ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) await new Promise((resolve) => setImmediate(resolve));
}

/** Load options at `now` under which no touch is due (the idle timeout and touch interval are an hour). */
export function at(now: number) {
  return { now, idleTimeoutMs: HOUR, touchIntervalMs: HOUR };
}

/**
 * The contract of `SessionStore` as tests. Every store, and every Redis client behind the Redis
 * store, runs this suite; a store is done when it passes. Call it at the top level of a Vitest
 * test file; `open` runs once, before the first test, and `close` after the last.
 *
 * ```ts
 * import { describeStoreConformance } from "atomic-session/testing";
 * describeStoreConformance("my store", async () => {
 *   const store = new MyStore(...);
 *   return { store, backendExpiryMs: ..., holdsAnything: ..., close: () => store.dispose() };
 * });
 * ```
 */
export function describeStoreConformance(name: string, open: () => Promise<StoreHarness>): void {
  describe(`store conformance: ${name}`, () => {
    let harness: StoreHarness;
    let store: SessionStore;
    beforeAll(async () => {
      harness = await open();
      store = harness.store;
    });
    afterAll(async () => {
      await harness?.close();
    });

    it("answers ping", async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('loads "gone" for a key never written', async () => {
      expect(await store.load(newKey(), noTouch())).toBe("gone");
    });

    it("creates and loads a record with its meta and fields", async () => {
      const key = newKey();
      const now = Date.now();
      const meta = metaFor(now, { userId: "ada", userAgent: "curl/8", persistent: false });
      expect(await store.create(key, record({ a: '"x"', n: "1" }, meta))).toBe(true);
      const loaded = live(await store.load(key, noTouch()));
      expect(loaded.meta).toEqual(meta);
      expect(Object.fromEntries(loaded.fields)).toEqual({ a: '"x"', n: "1" });
      const plain = newKey();
      await store.create(plain, record({}, metaFor(now)));
      expect(live(await store.load(plain, noTouch())).meta).toEqual(metaFor(now));
    });

    it("refuses to create over a live record and leaves it intact", async () => {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      expect(await store.create(key, record({ a: "2" }))).toBe(false);
      expect(live(await store.load(key, noTouch())).fields.get("a")).toBe("1");
    });

    it("applies sets and deletes to the named fields only", async () => {
      const key = newKey();
      await store.create(key, record({ keep: '"k"', change: '"old"', drop: "true" }));
      expect(
        await store.apply(key, {
          set: new Map([
            ["change", '"new"'],
            ["add", "[1,2]"],
          ]),
          delete: ["drop"],
          now: Date.now(),
        }),
      ).toBe("ok");
      const loaded = live(await store.load(key, noTouch()));
      expect(Object.fromEntries(loaded.fields)).toEqual({ keep: '"k"', change: '"new"', add: "[1,2]" });
    });

    it("overwrites a field", async () => {
      const key = newKey();
      await store.create(key, record({ a: '"first"' }));
      await store.apply(key, { set: new Map([["a", '"second"']]), now: Date.now() });
      await store.apply(key, { set: new Map([["a", '"third"']]), now: Date.now() });
      expect(live(await store.load(key, noTouch())).fields.get("a")).toBe('"third"');
    });

    it("updates meta through apply, including the expiry", async () => {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({}, metaFor(now)));
      expect(await store.apply(key, { meta: { userId: "grace", expiresAt: now + 2 * HOUR - 1, persistent: true }, now })).toBe("ok");
      const loaded = live(await store.load(key, noTouch()));
      expect(loaded.meta.userId).toBe("grace");
      expect(loaded.meta.persistent).toBe(true);
      expect(loaded.meta.expiresAt).toBe(now + 2 * HOUR - 1);
      expect(await store.apply(key, { meta: { userId: undefined, persistent: undefined }, now })).toBe("ok");
      const unbound = live(await store.load(key, noTouch()));
      expect(unbound.meta.userId).toBeUndefined();
      expect(unbound.meta.persistent).toBeUndefined();
      expect(unbound.meta.expiresAt).toBe(now + 2 * HOUR - 1);
      const remaining = await harness.backendExpiryMs(key);
      expect(remaining).toBeGreaterThan(HOUR + 30 * 60_000);
    });

    it("never resurrects: apply, increment, compare-and-set and rotate on a destroyed record write nothing", async () => {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      await store.destroy(key);
      const now = Date.now();
      expect(await store.apply(key, { set: new Map([["a", "2"]]), now })).toBe("gone");
      expect(await store.apply(key, { meta: { lastSeenAt: now }, now })).toBe("gone");
      expect(await store.increment(key, "a", 1, at(now))).toBe("gone");
      expect(await store.compareAndSet(key, "a", "1", "3", now)).toBe("gone");
      expect(await store.compareAndSet(key, "b", undefined, "3", now)).toBe("gone");
      const target = newKey();
      expect(await store.rotate(key, target, rotation(now))).toBe("gone");
      expect(await store.load(key, noTouch())).toBe("gone");
      expect(await store.load(target, noTouch())).toBe("gone");
      expect(await harness.holdsAnything(key)).toBe(false);
      expect(await harness.holdsAnything(target)).toBe(false);
    });

    it("destroys a missing record without error", async () => {
      await expect(store.destroy(newKey())).resolves.toBeUndefined();
    });

    it("expires records: absent after expiresAt, and writes after it refused", async () => {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({ a: "1" }, metaFor(now, { expiresAt: now + 300 })));
      live(await store.load(key, noTouch()));
      await new Promise((resolve) => setTimeout(resolve, 450));
      const later = Date.now();
      expect(await store.load(key, { now: later, idleTimeoutMs: HOUR, touchIntervalMs: 0 })).toBe("gone");
      expect(await store.apply(key, { set: new Map([["a", "2"]]), now: later })).toBe("gone");
      expect(await store.increment(key, "a", 1, at(later))).toBe("gone");
      expect(await store.create(key, record({ a: "3" }))).toBe(true);
    });

    it("keeps an expiry on every record in the backend", async () => {
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      const remaining = await harness.backendExpiryMs(key);
      expect(remaining).toBeGreaterThan(HOUR - 60_000);
      expect(remaining).toBeLessThanOrEqual(HOUR);
    });

    it("stores unicode, falsy, empty and large values and awkward keys exactly", async () => {
      const key = newKey();
      const fields = {
        "ключ 🔑 𝒜": JSON.stringify("значение 🚀 \u0000 \u2028 \ud800"),
        zero: "0",
        false: "false",
        null: "null",
        emptyString: '""',
        emptyArray: "[]",
        emptyObject: "{}",
        __proto__: '{"polluted":true}',
        constructor: '"c"',
        prototype: '"p"',
        hasOwnProperty: '"h"',
        "": '"empty key"',
        "a:b{c}": '"separators"',
        large: JSON.stringify("x".repeat(1_000_000)),
      };
      const entries = Object.entries(fields);
      const created: StoredSession = { meta: metaFor(Date.now()), fields: new Map(entries) };
      created.fields.set("__proto__", '{"polluted":true}');
      await store.create(key, created);
      const loaded = live(await store.load(key, noTouch()));
      expect(loaded.fields.size).toBe(created.fields.size);
      for (const [field, value] of created.fields) expect(loaded.fields.get(field)).toBe(value);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });

    it("increments: absent counts as 0, and the new value is returned", async () => {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({}));
      expect(await store.increment(key, "visits", 1, at(now))).toBe(1);
      expect(await store.increment(key, "visits", 5, at(now))).toBe(6);
      expect(await store.increment(key, "visits", -2, at(now))).toBe(4);
      expect(live(await store.load(key, noTouch())).fields.get("visits")).toBe("4");
    });

    it("rejects an increment of a non-integer with SessionValueError", async () => {
      const key = newKey();
      await store.create(key, record({ name: '"ada"', fraction: "1.5", big: "9007199254740991" }));
      await expect(store.increment(key, "name", 1, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
      await expect(store.increment(key, "fraction", 1, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
      await expect(store.increment(key, "big", 1, at(Date.now()))).rejects.toBeInstanceOf(SessionValueError);
      // Refused, it writes nothing: not even the touch that was due.
      const before = live(await store.load(key, noTouch())).meta.lastSeenAt;
      await expect(
        store.increment(key, "name", 1, { now: before + 5_000, idleTimeoutMs: HOUR, touchIntervalMs: 1 }),
      ).rejects.toBeInstanceOf(SessionValueError);
      expect(live(await store.load(key, noTouch())).meta.lastSeenAt).toBe(before);
      expect(Object.fromEntries(live(await store.load(key, noTouch())).fields)).toEqual({
        name: '"ada"',
        fraction: "1.5",
        big: "9007199254740991",
      });
    });

    it("applies 200 concurrent increments exactly, from two store instances", async () => {
      const key = newKey();
      await store.create(key, record({ visits: "0" }));
      const stores = [store, harness.second ?? store];
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (stores[i % 2] as SessionStore).increment(key, "visits", 1, at(Date.now()))),
      );
      expect(new Set(results).size).toBe(200);
      expect(Math.max(...(results as number[]))).toBe(200);
      expect(live(await store.load(key, noTouch())).fields.get("visits")).toBe("200");
    });

    it("compare-and-set: ok on a match, conflict on a mismatch, absent expected, delete", async () => {
      const key = newKey();
      const now = Date.now();
      await store.create(key, record({ a: '"one"' }));
      expect(await store.compareAndSet(key, "a", '"one"', '"two"', now)).toBe("ok");
      expect(await store.compareAndSet(key, "a", '"one"', '"three"', now)).toBe("conflict");
      expect(await store.compareAndSet(key, "b", undefined, "1", now)).toBe("ok");
      expect(await store.compareAndSet(key, "b", undefined, "2", now)).toBe("conflict");
      expect(await store.compareAndSet(key, "a", '"two"', undefined, now)).toBe("ok");
      expect(Object.fromEntries(live(await store.load(key, noTouch())).fields)).toEqual({ b: "1" });
    });

    it("compare-and-set retried by 100 concurrent writers loses no append", async () => {
      const key = newKey();
      await store.create(key, record({ list: "[]" }));
      const stores = [store, harness.second ?? store];
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const own = stores[i % 2] as SessionStore;
          for (;;) {
            const current = live(await own.load(key, noTouch())).fields.get("list") ?? "[]";
            const next = JSON.stringify([...(JSON.parse(current) as number[]), i]);
            if ((await own.compareAndSet(key, "list", current, next, Date.now())) === "ok") return;
          }
        }),
      );
      const list = JSON.parse(live(await store.load(key, noTouch())).fields.get("list") ?? "[]") as number[];
      expect(list).toHaveLength(100);
      expect(new Set(list).size).toBe(100);
    });

    it('rotates: the record moves with its fields, meta is applied, and the old key answers "rotated" to every operation', async () => {
      const from = newKey();
      const to = newKey();
      const now = Date.now();
      await store.create(from, record({ visits: "3", name: '"ada"' }, metaFor(now)));
      const moved = live(await store.rotate(from, to, rotation(now, { userId: "ada", createdAt: now + 1, persistent: false })));
      expect(moved.meta.userId).toBe("ada");
      expect(moved.meta.createdAt).toBe(now + 1);
      expect(moved.meta.persistent).toBe(false);
      expect(Object.fromEntries(moved.fields)).toEqual({ visits: "3", name: '"ada"' });
      expect(await store.load(from, noTouch())).toBe("rotated");
      expect(await store.apply(from, { set: new Map([["x", "1"]]), now })).toBe("rotated");
      expect(await store.increment(from, "visits", 1, at(now))).toBe("rotated");
      expect(await store.compareAndSet(from, "visits", "3", "4", now)).toBe("rotated");
      const refusedTarget = newKey();
      expect(await store.rotate(from, refusedTarget, rotation(now))).toBe("rotated");
      expect(await harness.holdsAnything(refusedTarget)).toBe(false);
      expect(await store.create(from, record({ x: "1" }))).toBe(false);
      expect(await store.load(from, noTouch())).toBe("rotated");
      const loaded = live(await store.load(to, noTouch()));
      expect(loaded.fields.get("visits")).toBe("3");
      expect(loaded.meta.userId).toBe("ada");
      expect(await harness.backendExpiryMs(to)).toBeGreaterThan(0);
      // The marker lives no longer than asked.
      expect((await harness.backendExpiryMs(from)) ?? 0).toBeLessThanOrEqual(60_000);
    });

    it("forgets a rotation when its marker expires, and destroy removes a marker at once", async () => {
      const [from, to, other, otherTo] = [newKey(), newKey(), newKey(), newKey()];
      const now = Date.now();
      await store.create(from, record({ a: "1" }));
      await store.create(other, record({ a: "1" }));
      live(await store.rotate(from, to, rotation(now, {}, 300)));
      live(await store.rotate(other, otherTo, rotation(now)));
      expect(await store.load(from, noTouch())).toBe("rotated");
      await new Promise((resolve) => setTimeout(resolve, 450));
      expect(await store.load(from, noTouch())).toBe("gone");
      expect(await store.apply(from, { set: new Map([["a", "2"]]), now: Date.now() })).toBe("gone");
      await store.destroy(other);
      expect(await store.load(other, noTouch())).toBe("gone");
      expect(await harness.holdsAnything(other)).toBe(false);
      expect(live(await store.load(otherTo, noTouch())).fields.get("a")).toBe("1");
    });

    it("touches on load when due, never past the absolute deadline", async () => {
      const key = newKey();
      const created = Date.now() - 10_000;
      await store.create(key, record({}, metaFor(created, { absoluteExpiresAt: created + 30_000, expiresAt: created + 20_000 })));
      const untouched = live(await store.load(key, { now: Date.now(), idleTimeoutMs: 60_000, touchIntervalMs: 60_000 }));
      expect(untouched.meta.lastSeenAt).toBe(created);
      const now = Date.now();
      const touched = live(await store.load(key, { now, idleTimeoutMs: 60_000, touchIntervalMs: 1000 }));
      expect(touched.meta.lastSeenAt).toBe(now);
      expect(touched.meta.expiresAt).toBe(created + 30_000);
      const again = live(await store.load(key, noTouch()));
      expect(again.meta.expiresAt).toBe(created + 30_000);
      expect(await harness.backendExpiryMs(key)).toBeLessThanOrEqual(created + 30_000 - Date.now() + 50);
    });

    it("touches on increment when due, like load, never past the absolute deadline", async () => {
      const key = newKey();
      const created = Date.now() - 10_000;
      await store.create(key, record({ n: "1" }, metaFor(created, { absoluteExpiresAt: created + 30_000, expiresAt: created + 20_000 })));
      expect(await store.increment(key, "n", 1, { now: Date.now(), idleTimeoutMs: 60_000, touchIntervalMs: 60_000 })).toBe(2);
      expect(live(await store.load(key, noTouch())).meta.lastSeenAt).toBe(created);
      const now = Date.now();
      expect(await store.increment(key, "n", 1, { now, idleTimeoutMs: 5_000, touchIntervalMs: 1000 })).toBe(3);
      const touched = live(await store.load(key, noTouch()));
      expect(touched.meta.lastSeenAt).toBe(now);
      expect(touched.meta.expiresAt).toBe(now + 5_000);
      expect(await store.increment(key, "n", 1, { now: Date.now(), idleTimeoutMs: 60_000, touchIntervalMs: 0 })).toBe(4);
      expect(live(await store.load(key, noTouch())).meta.expiresAt).toBe(created + 30_000);
    });

    it("treats a corrupted record as absent and removes it", async (context) => {
      if (harness.corrupt === undefined) return context.skip();
      const key = newKey();
      await store.create(key, record({ a: "1" }));
      await harness.corrupt(key);
      expect(await store.load(key, noTouch())).toBe("gone");
      expect(await harness.holdsAnything(key)).toBe(false);
    });

    describe("optional abilities", () => {
      it("lists, and destroys, the sessions of one user only", async (context) => {
        if (store.listUserSessions === undefined || store.revokeUserSessions === undefined) return context.skip();
        const user = `user-${newKey().slice(0, 8)}`;
        const other = `other-${newKey().slice(0, 8)}`;
        const now = Date.now();
        const [a, b, c, anon] = [newKey(), newKey(), newKey(), newKey()];
        await store.create(a, record({}, metaFor(now, { userId: user, userAgent: "ua-a" })));
        await store.create(b, record({}, metaFor(now, { userId: user, userAgent: "ua-b" })));
        await store.create(c, record({}, metaFor(now, { userId: other })));
        await store.create(anon, record({}));
        const rotated = newKey();
        live(await store.rotate(anon, rotated, rotation(now, { userId: user })));
        const listed = await store.listUserSessions(user, Date.now());
        expect(listed.map((entry) => entry.key).sort()).toEqual([a, b, rotated].sort());
        expect(listed.find((entry) => entry.key === a)?.meta.userAgent).toBe("ua-a");
        await store.destroy(b);
        expect((await store.listUserSessions(user, Date.now())).map((entry) => entry.key).sort()).toEqual([a, rotated].sort());
        expect((await store.revokeUserSessions(user, Date.now())).sort()).toEqual([a, rotated].sort());
        expect(await store.listUserSessions(user, Date.now())).toEqual([]);
        expect(await store.load(a, noTouch())).toBe("gone");
        expect(await store.load(rotated, noTouch())).toBe("gone");
        expect((await store.listUserSessions(other, Date.now())).map((entry) => entry.key)).toEqual([c]);
      });

      it("lists and revokes 2,500 sessions of one user, some ended behind the index's back", async (context) => {
        if (store.listUserSessions === undefined || store.revokeUserSessions === undefined) return context.skip();
        const user = `many-${newKey().slice(0, 8)}`;
        const now = Date.now();
        const keys = Array.from({ length: 2_500 }, () => newKey());
        for (let i = 0; i < keys.length; i += 250) {
          await Promise.all(keys.slice(i, i + 250).map((key) => store.create(key, record({}, metaFor(now, { userId: user })))));
        }
        // Some of them end behind the index's back: destroyed directly, or expired.
        const destroyed = keys.slice(0, 100);
        await Promise.all(destroyed.map((key) => store.destroy(key)));
        const listed = await store.listUserSessions(user, Date.now());
        expect(listed).toHaveLength(2_400);
        expect(new Set(listed.map((entry) => entry.key))).toEqual(new Set(keys.slice(100)));
        const revoked = await store.revokeUserSessions(user, Date.now());
        expect(revoked.sort()).toEqual(keys.slice(100).sort());
        expect(await store.listUserSessions(user, Date.now())).toEqual([]);
        expect(await store.load(keys[2_000] as string, noTouch())).toBe("gone");
      });

      it("revokes every session of a user even while one of them rotates to a new key (50 races)", async (context) => {
        if (store.listUserSessions === undefined || store.revokeUserSessions === undefined) return context.skip();
        const revoke = store.revokeUserSessions.bind(store);
        // The rotation comes from another connection, as a login in another process would.
        const rotating = harness.second ?? store;
        for (let round = 0; round < 50; round++) {
          const user = `race-${newKey().slice(0, 8)}`;
          const now = Date.now();
          // Mostly the rotated session alone, which a revocation must not take for "nothing left".
          const keys = Array.from({ length: round % 4 === 3 ? 3 : 1 }, () => newKey());
          await Promise.all(keys.map((key) => store.create(key, record({ n: "1" }, metaFor(now, { userId: user })))));
          const [from, to] = [keys[0] as string, newKey()];
          // As regenerate() does: the same user, a new key. The revocation starts a little later each
          // round (0 to 2.4 ms), so that over the rounds it meets every step of the rotation.
          const rotated = rotating.rotate(from, to, rotation(now, { userId: user }));
          await spin((round % 17) * 0.15);
          const [revoked, moved] = await Promise.all([revoke(user, Date.now()), rotated]);
          const what = `round ${round}: revoked ${revoked.length}, rotate answered ${typeof moved === "string" ? moved : "the record"}`;
          expect(await store.listUserSessions(user, Date.now()), what).toEqual([]);
          expect(await store.load(to, noTouch()), what).toBe("gone");
          expect(["gone", "rotated"], what).toContain(await store.load(from, noTouch()));
          expect(new Set(revoked).size, what).toBe(revoked.length);
          expect(revoked, what).toEqual(expect.arrayContaining(keys.slice(1)));
          expect([...keys, to], what).toEqual(expect.arrayContaining(revoked));
          expect(revoked.includes(from) || revoked.includes(to), what).toBe(true);
        }
      });

      it("leaves expired sessions out of a user's list", async (context) => {
        if (store.listUserSessions === undefined) return context.skip();
        const user = `user-${newKey().slice(0, 8)}`;
        const now = Date.now();
        const kept = newKey();
        await store.create(kept, record({}, metaFor(now, { userId: user })));
        await store.create(newKey(), record({}, metaFor(now, { userId: user, expiresAt: now + 100 })));
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect((await store.listUserSessions(user, Date.now())).map((entry) => entry.key)).toEqual([kept]);
      });

      it("counts live sessions", async (context) => {
        if (store.count === undefined) return context.skip();
        const before = await store.count(Date.now());
        await store.create(newKey(), record({}));
        expect(await store.count(Date.now())).toBe(before + 1);
      });

      it("scans every live session once, with its key and meta and never its data", async (context) => {
        const scan = store.scan?.bind(store);
        if (scan === undefined) return context.skip();
        const user = `user-${newKey().slice(0, 8)}`;
        const now = Date.now();
        const overrides = (i: number): Partial<SessionMeta> => (i % 2 === 0 ? { userId: user, userAgent: `ua-${i}` } : {});
        // Enough sessions that a Redis Cluster holds some on every master.
        const keys = Array.from({ length: 30 }, () => newKey());
        await Promise.all(keys.map((key, i) => store.create(key, record({ secret: '"value"' }, metaFor(now, overrides(i))))));
        const destroyed = newKey();
        await store.create(destroyed, record({}));
        await store.destroy(destroyed);
        const expiring = newKey();
        await store.create(expiring, record({}, metaFor(now, { expiresAt: now + 100 })));
        const [rotatedFrom, rotatedTo] = [newKey(), newKey()];
        await store.create(rotatedFrom, record({}));
        live(await store.rotate(rotatedFrom, rotatedTo, rotation(now, { userId: user })));
        await new Promise((resolve) => setTimeout(resolve, 200));

        const at = Date.now();
        const seen = new Map<string, SessionMeta>();
        let yielded = 0;
        for await (const entry of scan(at)) {
          yielded++;
          expect(Object.keys(entry).sort()).toEqual(["key", "meta"]);
          expect(entry.meta.expiresAt).toBeGreaterThan(at);
          seen.set(entry.key, entry.meta);
        }
        expect(yielded).toBe(seen.size);
        keys.forEach((key, i) => {
          expect(seen.get(key)).toEqual(metaFor(now, overrides(i)));
        });
        expect(seen.get(rotatedTo)?.userId).toBe(user);
        for (const gone of [destroyed, expiring, rotatedFrom]) expect(seen.has(gone)).toBe(false);

        // Breaking out of the loop ends the scan.
        for await (const entry of scan(Date.now())) {
          expect(entry.key).toBeTypeOf("string");
          break;
        }
      });

      it("purges expired records, their data with them, and reports how many", async (context) => {
        const purge = store.purgeExpired?.bind(store);
        if (purge === undefined) return context.skip();
        const now = Date.now();
        const expired = [newKey(), newKey()];
        for (const key of expired) await store.create(key, record({ a: "1" }, metaFor(now, { expiresAt: now + 100 })));
        const kept = newKey();
        await store.create(kept, record({ a: "1" }));
        const [rotatedFrom, rotatedTo] = [newKey(), newKey()];
        await store.create(rotatedFrom, record({}));
        live(await store.rotate(rotatedFrom, rotatedTo, rotation(now, {}, 100)));
        await new Promise((resolve) => setTimeout(resolve, 200));
        const at = Date.now();
        expect(await purge(at)).toBeGreaterThanOrEqual(expired.length);
        expect(await purge(at)).toBe(0);
        for (const key of [...expired, rotatedFrom]) expect(await harness.holdsAnything(key)).toBe(false);
        expect(await harness.holdsAnything(kept)).toBe(true);
        expect(live(await store.load(kept, noTouch())).fields.get("a")).toBe("1");
      });
    });
  });
}
