import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../src/core/ids.js";
import type { SessionStore } from "../../src/core/store.js";
import { cookiePair, cookieValue, countingStore, managerFor, openSession } from "../support/sessions.js";

export interface SessionHarness {
  store: SessionStore;
  /** A second store instance on the same backend, as a second app process would have. */
  second?: SessionStore;
  close(): Promise<void>;
}

const loadOptions = { now: Date.now(), idleTimeoutMs: 3_600_000, touchIntervalMs: 3_600_000 };

/**
 * The session guarantees that depend on the store (atomic increments, per-key writes,
 * compare-and-set updates, no resurrection, rotation, round trips), run through the
 * `SessionManager` against each store.
 */
export function describeSessionConformance(name: string, open: () => Promise<SessionHarness>): void {
  describe(`session conformance: ${name}`, () => {
    let harness: SessionHarness;
    beforeAll(async () => {
      harness = await open();
    });
    afterAll(async () => {
      await harness?.close();
    });

    it("creates a session on its first write with one store call, keyed by the hash of the ID", async () => {
      const counting = countingStore(harness.store);
      const manager = managerFor(counting.store);
      const { session, response } = openSession(manager);
      expect(await session.increment("visitCount")).toBe(1);
      expect(counting.total()).toBe(1);
      const id = cookieValue(response.cookie);
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(await harness.store.load(id, loadOptions)).toBeUndefined();
      expect((await harness.store.load(storeKeyOf(id), loadOptions))?.fields.get("visitCount")).toBe("1");
    });

    it("costs one store call for a read-only request and one for an increment", async () => {
      const counting = countingStore(harness.store);
      const manager = managerFor(counting.store);
      const first = openSession(manager);
      await first.session.increment("visitCount");
      const cookie = cookiePair(first.response.cookie);
      counting.reset();
      const reader = openSession(manager, cookie);
      expect(await reader.session.get("visitCount")).toBe(1);
      expect(counting.total()).toBe(1);
      expect(reader.response.cookie).toBeUndefined();
      counting.reset();
      const writer = openSession(manager, cookie);
      expect(await writer.session.increment("visitCount")).toBe(2);
      expect(counting.total()).toBe(1);
      expect(writer.response.cookie).toBeUndefined();
      // Reading after an increment loads the session once, and sees the increment.
      expect(await writer.session.get("visitCount")).toBe(2);
      expect(await writer.session.info()).toMatchObject({ userId: undefined });
      expect(counting.total()).toBe(2);
    });

    it("applies 200 concurrent increments on one session exactly, across two app instances", async () => {
      const managers = [managerFor(harness.store), managerFor(harness.second ?? harness.store)];
      const first = openSession(managers[0] as (typeof managers)[0]);
      await first.session.increment("visitCount");
      const cookie = cookiePair(first.response.cookie);
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => openSession(managers[i % 2] as (typeof managers)[0], cookie).session.increment("visitCount")),
      );
      expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
      expect(await openSession(managers[0] as (typeof managers)[0], cookie).session.increment("visitCount")).toBe(202);
    });

    it("keeps both of two concurrent writes to different keys", async () => {
      const manager = managerFor(harness.store);
      const first = openSession(manager);
      await first.session.set("a", 0);
      const cookie = cookiePair(first.response.cookie);
      const one = openSession(manager, cookie).session;
      const two = openSession(manager, cookie).session;
      await Promise.all([one.get("a"), two.get("a")]);
      await Promise.all([one.set("left", "L"), two.set({ right: "R", a: 1 })]);
      const after = await openSession(manager, cookie).session.all();
      expect({ ...after }).toEqual({ a: 1, left: "L", right: "R" });
    });

    it("update(): 100 concurrent appends to one list leave exactly 100 items", async () => {
      const managers = [
        managerFor(harness.store, { updateAttempts: 1000 }),
        managerFor(harness.second ?? harness.store, { updateAttempts: 1000 }),
      ];
      const first = openSession(managers[0] as (typeof managers)[0]);
      await first.session.set("items", []);
      const cookie = cookiePair(first.response.cookie);
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          openSession(managers[i % 2] as (typeof managers)[0], cookie).session.update("items", (items) => [
            ...((items as number[]) ?? []),
            i,
          ]),
        ),
      );
      const items = (await openSession(managers[0] as (typeof managers)[0], cookie).session.get("items")) as number[];
      expect(items).toHaveLength(100);
      expect(new Set(items).size).toBe(100);
    });

    it("never resurrects a destroyed session: in-flight writes go to new anonymous sessions", async () => {
      const manager = managerFor(harness.store);
      const first = openSession(manager);
      await first.session.login("ada");
      const cookie = cookiePair(first.response.cookie);
      const key = storeKeyOf(cookieValue(first.response.cookie));
      const inFlight = Array.from({ length: 30 }, () => openSession(manager, cookie));
      await Promise.all(inFlight.map(({ session }) => session.exists()));
      await openSession(manager, cookie).session.destroy();
      const results = await Promise.all(
        inFlight.map(({ session }, i) =>
          i % 3 === 0
            ? session.increment("visitCount")
            : i % 3 === 1
              ? session.set("late", true)
              : session.update("list", (list) => [...((list as number[]) ?? []), i]),
        ),
      );
      expect(results.filter((value) => typeof value === "number").every((value) => value === 1)).toBe(true);
      expect(await harness.store.load(key, loadOptions)).toBeUndefined();
      for (const { response } of inFlight) expect(storeKeyOf(cookieValue(response.cookie))).not.toBe(key);
      expect(await openSession(manager, cookie).session.exists()).toBe(false);
    });

    it("regenerate() keeps the data, hands out a new ID and kills the old one at once", async () => {
      const manager = managerFor(harness.store);
      const first = openSession(manager);
      await first.session.set({ visitCount: 5, name: "ada" });
      const oldCookie = cookiePair(first.response.cookie);
      const rotating = openSession(manager, oldCookie);
      await rotating.session.regenerate();
      const newCookie = cookiePair(rotating.response.cookie);
      expect(newCookie).not.toBe(oldCookie);
      expect(await openSession(manager, oldCookie).session.exists()).toBe(false);
      expect({ ...(await openSession(manager, newCookie).session.all()) }).toEqual({ visitCount: 5, name: "ada" });
    });

    it("login() binds the user, rotates the ID and keeps the visit count", async () => {
      const manager = managerFor(harness.store);
      const first = openSession(manager);
      await first.session.increment("visitCount");
      const before = cookiePair(first.response.cookie);
      const login = openSession(manager, before, "browser/1");
      await login.session.login("grace");
      const after = cookiePair(login.response.cookie);
      expect(after).not.toBe(before);
      expect(await openSession(manager, before).session.exists()).toBe(false);
      const info = await openSession(manager, after).session.info();
      expect(info?.userId).toBe("grace");
      expect(info?.userAgent).toBe("browser/1");
      expect(await openSession(manager, after).session.get("visitCount")).toBe(1);
    });

    it("lists and ends a user's sessions when the store indexes users", async (context) => {
      if (harness.store.listByUser === undefined) return context.skip();
      const manager = managerFor(harness.store);
      const user = `user-${Math.random().toString(36).slice(2)}`;
      const cookies: string[] = [];
      for (const agent of ["phone", "laptop"]) {
        const { session, response } = openSession(manager, undefined, agent);
        await session.login(user);
        cookies.push(cookiePair(response.cookie));
      }
      const bystander = openSession(manager);
      await bystander.session.login(`${user}-other`);
      const current = openSession(manager, cookies[0]);
      await current.session.exists();
      const listed = await manager.listUserSessions(user, current.session);
      expect(listed.map((entry) => entry.userAgent).sort()).toEqual(["laptop", "phone"]);
      expect(listed.filter((entry) => entry.current)).toHaveLength(1);
      for (const cookie of cookies) expect(JSON.stringify(listed)).not.toContain(cookie.split("=")[1]);
      const laptop = listed.find((entry) => entry.userAgent === "laptop");
      expect(await manager.revokeUserSession(`${user}-other`, laptop?.handle ?? "")).toBe(false);
      expect(await manager.revokeUserSession(user, laptop?.handle ?? "")).toBe(true);
      expect(await openSession(manager, cookies[1]).session.exists()).toBe(false);
      const destroyed: string[] = [];
      manager.on((event) => {
        if (event.type === "destroyed" && event.userId === user) destroyed.push(event.handle);
      });
      expect(await manager.destroyAllForUser(user)).toBe(1);
      expect(destroyed).toEqual([listed.find((entry) => entry.userAgent === "phone")?.handle]);
      expect(await openSession(manager, cookies[0]).session.exists()).toBe(false);
      expect(await openSession(manager, cookiePair(bystander.response.cookie)).session.exists()).toBe(true);
    });
  });
}
