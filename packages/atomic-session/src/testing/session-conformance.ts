/**
 * The session guarantees that depend on the store, run through the `SessionManager`.
 * @module
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionRotatedError, SessionValueError } from "../core/errors.js";
import { storeKeyOf } from "../core/ids.js";
import type { SessionStore } from "../core/store.js";
import { cookiePair, cookieValue, countingStore, managerFor, openSession } from "./sessions.js";

/** What a store's test file hands the session conformance suite. */
export interface SessionHarness {
  store: SessionStore;
  /** A second store instance on the same backend, as a second app process would have. */
  second?: SessionStore;
  close(): Promise<void>;
}

const loadOptions = { now: Date.now(), idleTimeoutMs: 3_600_000, touchIntervalMs: 3_600_000 };

/**
 * The session guarantees that depend on the store (atomic increments, per-key writes,
 * compare-and-set updates, no resurrection, rotation and the requests racing it, round trips,
 * a user's sessions), run through the `SessionManager` against a store. Call it at the top
 * level of a Vitest test file, like `describeStoreConformance`.
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
      expect(await harness.store.load(id, loadOptions)).toBe("gone");
      const stored = await harness.store.load(storeKeyOf(id), loadOptions);
      expect(typeof stored === "string" ? stored : stored.fields.get("visitCount")).toBe("1");
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
      expect(await harness.store.load(key, loadOptions)).toBe("gone");
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

    it("a write racing a login is refused with SessionRotatedError and sets no cookie; the logged-in session is untouched", async () => {
      const manager = managerFor(harness.store);
      const first = openSession(manager);
      await first.session.increment("visitCount");
      const before = cookiePair(first.response.cookie);
      const racers = Array.from({ length: 3 }, () => openSession(manager, before));
      await Promise.all(racers.map(({ session }) => session.exists()));
      const login = openSession(manager, before);
      await login.session.login("racer");
      const after = cookiePair(login.response.cookie);
      const [setter, incrementer, updater] = racers as [(typeof racers)[0], (typeof racers)[0], (typeof racers)[0]];
      await expect(setter.session.set("late", true)).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(incrementer.session.increment("visitCount")).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(updater.session.update("visitCount", (n) => Number(n) + 1)).rejects.toBeInstanceOf(SessionRotatedError);
      for (const { response } of racers) expect(response.cookie).toBeUndefined();
      // A request that arrives with the old cookie after the login is refused the same way, reads included.
      const late = openSession(manager, before);
      expect(await late.session.get("visitCount")).toBeUndefined();
      await expect(late.session.increment("visitCount")).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(openSession(manager, before).session.set("late", true)).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(openSession(manager, before).session.update("late", () => 1)).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(openSession(manager, before).session.login("someone-else")).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(openSession(manager, before).session.regenerate()).rejects.toBeInstanceOf(SessionRotatedError);
      await expect(openSession(manager, before).session.destroy()).rejects.toBeInstanceOf(SessionRotatedError);
      expect(late.response.cookie).toBeUndefined();
      const loggedIn = openSession(manager, after).session;
      expect({ ...(await loggedIn.all()) }).toEqual({ visitCount: 1 });
      expect((await loggedIn.info())?.userId).toBe("racer");
    });

    it("a double-submitted login logs in once and leaves no orphan session", async () => {
      const manager = managerFor(harness.store);
      const user = `double-${Math.random().toString(36).slice(2)}`;
      const first = openSession(manager);
      await first.session.increment("visitCount");
      const cookie = cookiePair(first.response.cookie);
      const logins = [openSession(manager, cookie), openSession(manager, cookie)];
      const outcomes = await Promise.allSettled(logins.map(({ session }) => session.login(user)));
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
      const refused = outcomes.find((outcome) => outcome.status === "rejected");
      expect(refused?.status === "rejected" && refused.reason).toBeInstanceOf(SessionRotatedError);
      expect(logins.filter(({ response }) => response.cookie !== undefined)).toHaveLength(1);
      if (harness.store.listUserSessions !== undefined) expect(await manager.listUserSessions(user)).toHaveLength(1);
    });

    it("after an increment, a concurrent logout or login leaves reads in a clean ended state, never an error", async () => {
      const manager = managerFor(harness.store);
      for (const end of ["logout", "login"] as const) {
        const first = openSession(manager);
        await first.session.increment("visitCount");
        const cookie = cookiePair(first.response.cookie);
        const request = openSession(manager, cookie);
        expect(await request.session.increment("visitCount")).toBe(2);
        const other = openSession(manager, cookie).session;
        if (end === "logout") await other.destroy();
        else await other.login("someone");
        expect(await request.session.info()).toBeUndefined();
        expect(await request.session.get("visitCount")).toBeUndefined();
        expect(request.session.handle).toBeUndefined();
        if (end === "logout") {
          // Like any request whose session ended: a write starts a new anonymous session.
          expect(await request.session.increment("visitCount")).toBe(1);
          expect(request.response.cookie).toBeDefined();
        } else {
          await expect(request.session.increment("visitCount")).rejects.toBeInstanceOf(SessionRotatedError);
          expect(request.response.cookie).toBeUndefined();
        }
      }
    });

    it("refuses user IDs and keys that are not well-formed Unicode, writing nothing", async () => {
      const counting = countingStore(harness.store);
      const manager = managerFor(counting.store);
      const { session, response } = openSession(manager);
      for (const bad of ["\ud800x", "x\udbff", "\udc00", "nul\u0000"]) {
        await expect(session.login(bad)).rejects.toBeInstanceOf(SessionValueError);
        await expect(session.set(bad, 1)).rejects.toBeInstanceOf(SessionValueError);
        await expect(session.increment(bad)).rejects.toBeInstanceOf(SessionValueError);
      }
      expect(counting.total()).toBe(0);
      expect(response.cookie).toBeUndefined();
      // Well-formed text beyond the BMP round-trips exactly, as a user ID and as a key.
      const user = `𝒜da-${Math.random().toString(36).slice(2)} 🔑`;
      await session.login(user);
      await session.set("ключ 𝒜", "значение 🚀");
      const cookie = cookiePair(response.cookie);
      const again = openSession(manager, cookie).session;
      expect((await again.info())?.userId).toBe(user);
      expect(await again.get("ключ 𝒜")).toBe("значение 🚀");
      if (harness.store.listUserSessions !== undefined) {
        expect((await manager.listUserSessions(user)).map((entry) => entry.userId)).toEqual([user]);
        expect(await manager.listUserSessions(`${user.slice(0, -2)}\ufffd`)).toEqual([]);
      }
    });

    it("remember me: login chooses a persistent or a browser-session cookie, kept across rotations", async () => {
      const manager = managerFor(harness.store);
      const remembered = openSession(manager);
      await remembered.session.login("remembered", { persistent: true });
      expect(remembered.response.cookie).toMatch(/; Expires=/);
      const forgotten = openSession(manager);
      await forgotten.session.login("forgotten", { persistent: false });
      expect(forgotten.response.cookie).not.toMatch(/Expires=/);
      const cookie = cookiePair(forgotten.response.cookie);
      const rotating = openSession(manager, cookie);
      expect((await rotating.session.info())?.persistent).toBe(false);
      await rotating.session.regenerate();
      expect(rotating.response.cookie).not.toMatch(/Expires=/);
      expect(rotating.response.cookie).not.toContain(cookie);
      // Another user logging in on that session does not inherit the previous user's choice or device.
      const takeover = openSession(manager, cookiePair(rotating.response.cookie), "");
      await takeover.session.login("next-user");
      const info = await openSession(manager, cookiePair(takeover.response.cookie)).session.info();
      expect(info).toMatchObject({ userId: "next-user", persistent: true, userAgent: undefined });
      expect(takeover.response.cookie).toMatch(/; Expires=/);
    });

    it("a burst of 300 concurrent logins of one user: every login succeeds, and the cap holds once they have answered", async (context) => {
      if (harness.store.listUserSessions === undefined) return context.skip();
      const manager = managerFor(harness.store, { maxSessionsPerUser: 50, storeTimeoutMs: 10_000 });
      const user = `burst-${Math.random().toString(36).slice(2)}`;
      const logins = Array.from({ length: 300 }, () => openSession(manager));
      const outcomes = await Promise.allSettled(logins.map(({ session }) => session.login(user)));
      expect(outcomes.filter((outcome) => outcome.status === "rejected")).toEqual([]);
      expect((await manager.listUserSessions(user)).length).toBeLessThanOrEqual(50);
      await manager.revokeUserSessions(user);
    });

    it("revokeAll() logs out everywhere: every session of the user ends, then this browser's cookie is cleared", async (context) => {
      if (harness.store.revokeUserSessions === undefined) return context.skip();
      const manager = managerFor(harness.store);
      const user = `everywhere-${Math.random().toString(36).slice(2)}`;
      const cookies: string[] = [];
      for (const device of ["laptop", "phone", "tablet"]) {
        const { session, response } = openSession(manager, undefined, device);
        await session.login(user);
        cookies.push(cookiePair(response.cookie));
      }
      const bystander = openSession(manager);
      await bystander.session.login(`${user}-bystander`);
      const laptop = openSession(manager, cookies[0]);
      expect(await laptop.session.revokeAll()).toBe(3);
      expect(laptop.response.cookie).toMatch(/Max-Age=0/);
      expect(laptop.session.status).toBe("destroyed");
      for (const cookie of cookies) expect(await openSession(manager, cookie).session.exists()).toBe(false);
      expect(await openSession(manager, cookiePair(bystander.response.cookie)).session.exists()).toBe(true);
      // An anonymous session has nobody to log out everywhere.
      const anonymous = openSession(manager);
      expect(await anonymous.session.revokeAll()).toBe(0);
      expect(anonymous.response.cookie).toBeUndefined();
    });

    it("a login past maxSessionsPerUser ends the user's oldest sessions", async (context) => {
      if (harness.store.listUserSessions === undefined) return context.skip();
      const manager = managerFor(harness.store, { maxSessionsPerUser: 3 });
      const user = `capped-${Math.random().toString(36).slice(2)}`;
      const cookies: string[] = [];
      const ended: string[] = [];
      manager.on((event) => {
        if (event.type === "destroyed" && event.reason === "maxSessionsPerUser") ended.push(event.handle);
      });
      for (let i = 0; i < 5; i++) {
        const { session, response } = openSession(manager, undefined, `device-${i}`);
        await session.login(user);
        cookies.push(cookiePair(response.cookie));
        // Distinct login times, so that "oldest" is well defined.
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const listed = await manager.listUserSessions(user);
      expect(listed.map((entry) => entry.userAgent).sort()).toEqual(["device-2", "device-3", "device-4"]);
      expect(ended).toHaveLength(2);
      expect(await openSession(manager, cookies[0]).session.exists()).toBe(false);
      expect(await openSession(manager, cookies[1]).session.exists()).toBe(false);
      expect(await openSession(manager, cookies[4]).session.exists()).toBe(true);
    });

    it("lists and ends a user's sessions when the store indexes users", async (context) => {
      if (harness.store.listUserSessions === undefined) return context.skip();
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
      expect(await manager.revokeUserSessions(user)).toBe(1);
      expect(destroyed).toEqual([listed.find((entry) => entry.userAgent === "phone")?.handle]);
      expect(await openSession(manager, cookies[0]).session.exists()).toBe(false);
      expect(await openSession(manager, cookiePair(bystander.response.cookie)).session.exists()).toBe(true);
    });
  });
}
