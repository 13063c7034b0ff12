import type { SessionEvent, SessionStore } from "atomic-session";
import { SessionConfigError, SessionManager, SessionStateError, SessionValueError, StoreUnavailableError } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { cookiePair, cookieValue, countingStore, managerFor, openSession } from "atomic-session/testing";
import { afterEach, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../src/core/ids.js";

const stores: MemoryStore[] = [];
function memory(): MemoryStore {
  const store = new MemoryStore();
  stores.push(store);
  return store;
}
afterEach(async () => {
  for (const store of stores.splice(0)) await store.dispose();
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const SECRET_A = "a".repeat(32);
const SECRET_B = "b".repeat(40);

describe("lazy and strict", () => {
  it("touches no store and sets no cookie for a request that does not use its session", async () => {
    const counting = countingStore(memory());
    const { session, response } = openSession(managerFor(counting.store));
    expect(session.status).toBe("unmodified");
    expect(counting.total()).toBe(0);
    expect(response.cookie).toBeUndefined();
  });

  it("writes nothing and sets no cookie for a cookieless request that only reads", async () => {
    const counting = countingStore(memory());
    const { session, response } = openSession(managerFor(counting.store));
    expect(await session.get("visitCount")).toBeUndefined();
    expect(await session.info()).toBeUndefined();
    await session.delete("visitCount");
    expect(counting.total()).toBe(0);
    expect(response.cookie).toBeUndefined();
    expect(await counting.store.count?.(Date.now())).toBe(0);
  });

  it("never adopts an unknown ID: a write issues a new one", async () => {
    const store = memory();
    const manager = managerFor(store);
    const unknown = "A".repeat(43);
    const { session, response } = openSession(manager, `sessionID=${unknown}`);
    await session.set("a", 1);
    expect(cookieValue(response.cookie)).not.toBe(unknown);
    expect(await store.load(storeKeyOf(unknown), { now: Date.now(), idleTimeoutMs: 1, touchIntervalMs: 1e9 })).toBe("gone");
  });

  it.each([
    ["empty", "sessionID="],
    ["too short", "sessionID=abc"],
    ["too long", `sessionID=${"a".repeat(44)}`],
    ["bad characters", `sessionID=${"a".repeat(42)}!`],
    ["quoted", `sessionID="${"a".repeat(43)}"`],
    ["percent-encoded garbage", "sessionID=%E0%A4%A"],
    ["non-ASCII", `sessionID=${"é".repeat(43)}`],
    ["proto name", "__proto__=x; constructor=y"],
  ])("rejects a %s cookie before any store access", async (_label, header) => {
    const counting = countingStore(memory());
    const events: SessionEvent[] = [];
    const manager = managerFor(counting.store);
    manager.on((event) => events.push(event));
    const { session } = openSession(manager, header);
    expect(await session.exists()).toBe(false);
    expect(counting.total()).toBe(0);
  });
});

describe("cookie", () => {
  it("is HttpOnly, SameSite=Lax, Path=/, has no Domain, and expires at the absolute deadline", async () => {
    const { session, response } = openSession(managerFor(memory(), { absoluteTimeoutMs: 3_600_000 }));
    const before = Date.now();
    await session.set("a", 1);
    const cookie = response.cookie ?? "";
    expect(cookie).toMatch(/^sessionID=[A-Za-z0-9_-]{43}; /);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Lax");
    expect(cookie).toContain("Path=/");
    expect(cookie).not.toMatch(/Domain=/i);
    expect(cookie).not.toContain("Secure");
    const expires = Date.parse(/Expires=([^;]+)/.exec(cookie)?.[1] ?? "");
    expect(Math.abs(expires - (before + 3_600_000))).toBeLessThan(2000);
  });

  it("is Secure over HTTPS, and behind a trusted proxy only when trustProxy is on", async () => {
    const open = (manager: SessionManager, encrypted: boolean, forwardedProto?: string) => {
      let cookie = "";
      const session = manager.open(
        { cookieHeader: undefined, encrypted, forwardedProto, userAgent: undefined },
        {
          setCookie: (value) => (cookie = value),
          withdrawCookie: () => undefined,
          varyOnCookie: () => undefined,
          headersSent: () => false,
        },
      );
      return session.set("a", 1).then(() => cookie);
    };
    const plain = managerFor(memory());
    const trusting = managerFor(memory(), { trustProxy: true });
    expect(await open(plain, true)).toContain("Secure");
    expect(await open(plain, false, "https")).not.toContain("Secure");
    expect(await open(trusting, false, "https, http")).toContain("Secure");
    expect(await open(trusting, false, "http")).not.toContain("Secure");
  });

  it("honours its options and rejects unsafe combinations when the manager is created", () => {
    const store = memory();
    expect(() => managerFor(store, { cookie: { name: "bad name" } })).toThrow(SessionConfigError);
    expect(() => managerFor(store, { cookie: { sameSite: "none" } })).toThrow(/requires cookie.secure/);
    expect(() => managerFor(store, { cookie: { name: "__Host-s", secure: "auto" } })).toThrow(/__Host-/);
    expect(() => managerFor(store, { cookie: { name: "__Host-s", secure: true, domain: "example.com" } })).toThrow(/__Host-/);
    expect(() => managerFor(store, { cookie: { name: "__Host-s", secure: true } })).not.toThrow();
  });
});

describe("configuration", () => {
  it("is checked when the manager is created", () => {
    const store = memory();
    expect(() => new SessionManager({ store: {} as SessionStore })).toThrow(/not a SessionStore/);
    expect(() => managerFor(store, { idleTimeoutMs: 0 })).toThrow(/idleTimeoutMs/);
    expect(() => managerFor(store, { absoluteTimeoutMs: -1 })).toThrow(/absoluteTimeoutMs/);
    expect(() => managerFor(store, { storeTimeoutMs: 1.5 })).toThrow(/storeTimeoutMs/);
    expect(() => managerFor(store, { idleTimeoutMs: 1000, touchIntervalMs: 1000 })).toThrow(/touchIntervalMs/);
    expect(() => managerFor(store, { secrets: ["short"] })).toThrow(/32 characters/);
    expect(() => managerFor(store, { secrets: [] })).toThrow(SessionConfigError);
  });
});

describe("writes", () => {
  it("refuse once the response headers are sent", async () => {
    const { session, response } = openSession(managerFor(memory()));
    await session.set("a", 1);
    response.headersSent = true;
    await expect(session.set("a", 2)).rejects.toBeInstanceOf(SessionStateError);
    await expect(session.increment("n")).rejects.toBeInstanceOf(SessionStateError);
  });

  it("reject values that are not JSON and sessions over the size cap", async () => {
    const { session } = openSession(managerFor(memory(), { maxSizeBytes: 1000 }));
    await expect(session.set("f", (() => 1) as unknown)).rejects.toBeInstanceOf(SessionValueError);
    await expect(session.set("b", 10n as unknown)).rejects.toBeInstanceOf(SessionValueError);
    await session.set("a", "x".repeat(500));
    await expect(session.set("b", "y".repeat(600))).rejects.toThrow(/maxSizeBytes/);
    await session.set("a", "x".repeat(10));
    await session.set("b", "y".repeat(600));
    await expect(session.increment("a")).rejects.toBeInstanceOf(SessionValueError);
  });

  it("keep prototype keys as plain data", async () => {
    const manager = managerFor(memory());
    const { session, response } = openSession(manager);
    await session.set({ ["__proto__" as string]: { polluted: true }, constructor: "c", prototype: "p" });
    const again = openSession(manager, cookiePair(response.cookie)).session;
    const all = await again.all();
    expect(Object.getPrototypeOf(all)).toBeNull();
    expect(await again.get("__proto__")).toEqual({ polluted: true });
    expect(await again.get("constructor")).toBe("c");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("treat a record whose data is not JSON as corrupted: absent and removed", async () => {
    const store = memory();
    const manager = managerFor(store);
    const { session, response } = openSession(manager);
    await session.set("a", 1);
    const key = storeKeyOf(cookieValue(response.cookie));
    await store.apply(key, { set: new Map([["a", "{not json"]]), now: Date.now() });
    const events: SessionEvent[] = [];
    manager.on((event) => events.push(event));
    expect(await openSession(manager, cookiePair(response.cookie)).session.exists()).toBe(false);
    expect(events.map((event) => event.type)).toContain("corrupted-record");
    expect(await store.count(Date.now())).toBe(0);
  });
});

describe("timeouts", () => {
  it("idle: a session used within the idle timeout lives on; one left idle dies", async () => {
    const manager = managerFor(memory(), { idleTimeoutMs: 300, touchIntervalMs: 0 });
    const { session, response } = openSession(manager);
    await session.set("a", 1);
    const cookie = cookiePair(response.cookie);
    for (let i = 0; i < 4; i++) {
      await sleep(150);
      expect(await openSession(manager, cookie).session.exists()).toBe(true);
    }
    await sleep(400);
    expect(await openSession(manager, cookie).session.exists()).toBe(false);
  });

  it("absolute: activity does not extend a session past its absolute deadline", async () => {
    const manager = managerFor(memory(), { idleTimeoutMs: 10_000, absoluteTimeoutMs: 500, touchIntervalMs: 0 });
    const { session, response } = openSession(manager);
    await session.set("a", 1);
    const cookie = cookiePair(response.cookie);
    for (let i = 0; i < 3; i++) {
      await sleep(120);
      expect(await openSession(manager, cookie).session.exists()).toBe(true);
    }
    await sleep(300);
    expect(await openSession(manager, cookie).session.exists()).toBe(false);
  });
});

describe("signed cookies", () => {
  it("sign with the first secret, verify with all, re-issue old ones under the newest, reject the rest", async () => {
    const store = memory();
    const old = managerFor(store, { secrets: [SECRET_A] });
    const first = openSession(old);
    await first.session.set("a", 1);
    const signed = cookiePair(first.response.cookie);
    expect(signed).toMatch(/^sessionID=[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$/);

    const rotated = managerFor(store, { secrets: [SECRET_B, SECRET_A] });
    const reading = openSession(rotated, signed);
    expect(await reading.session.get("a")).toBe(1);
    const reissued = cookiePair(reading.response.cookie);
    expect(reissued).not.toBe(signed);
    expect(reissued.split(".")[0]).toBe(signed.split(".")[0]);
    expect(await openSession(managerFor(store, { secrets: [SECRET_B] }), reissued).session.get("a")).toBe(1);

    const retired = managerFor(store, { secrets: [SECRET_B] });
    expect(await openSession(retired, signed).session.exists()).toBe(false);
  });

  it("reject tampered, unsigned, multibyte and trailing-garbage values before any store access", async () => {
    const counting = countingStore(memory());
    const manager = managerFor(counting.store, { secrets: [SECRET_A] });
    const first = openSession(manager);
    await first.session.set("a", 1);
    const value = cookieValue(first.response.cookie);
    const [id, signature] = value.split(".") as [string, string];
    counting.reset();
    const flipped = `${signature.slice(0, -1)}${signature.endsWith("A") ? "B" : "A"}`;
    for (const bad of [
      `${id}.${flipped}`,
      id,
      `${id}.${"é".repeat(43)}`,
      `${id}.${"é".repeat(21)}a`,
      `${value}x`,
      `${value}.${signature}`,
      `${"B".repeat(43)}.${signature}`,
    ]) {
      expect(await openSession(manager, `sessionID=${bad}`).session.exists()).toBe(false);
    }
    expect(counting.total()).toBe(0);
  });
});

describe("store failures", () => {
  it("a store that does not answer fails the call with StoreUnavailableError within the deadline", async () => {
    const stalled = new Proxy(memory(), {
      get(target, property, receiver) {
        if (property === "load" || property === "ping") return () => new Promise(() => {});
        return Reflect.get(target, property, receiver);
      },
    });
    const manager = managerFor(stalled, { storeTimeoutMs: 200 });
    const started = Date.now();
    const { session } = openSession(manager, `sessionID=${"a".repeat(43)}`);
    const failure = await session.exists().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as StoreUnavailableError).status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(manager.checkHealth()).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it("revokeAll() that the store refuses changes nothing for the browser: signed in, no cookie, free to retry", async () => {
    const store = memory();
    const failing = new Proxy(store, {
      get(target, property, receiver) {
        if (property === "revokeUserSessions") return () => Promise.reject(new Error("connection lost"));
        return Reflect.get(target, property, receiver);
      },
    });
    const login = openSession(managerFor(store));
    await login.session.login("ada");
    const cookie = cookiePair(login.response.cookie);
    const attempt = openSession(managerFor(failing), cookie);
    await expect(attempt.session.revokeAll()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(attempt.response.cookie).toBeUndefined();
    const again = openSession(managerFor(store), cookie);
    expect((await again.session.info())?.userId).toBe("ada");
    expect(await again.session.revokeAll()).toBe(1);
  });

  it("a store that finds its own configuration wrong only at run time is unavailable (503), not a 500 that names it", async () => {
    const misconfigured = new Proxy(memory(), {
      get(target, property, receiver) {
        if (property === "load")
          return () => Promise.reject(new SessionConfigError('PostgresStore: "public"."atomic_session_meta" does not exist'));
        return Reflect.get(target, property, receiver);
      },
    });
    const { session } = openSession(managerFor(misconfigured), `sessionID=${"a".repeat(43)}`);
    const failure = await session.exists().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as StoreUnavailableError).message).not.toMatch(/Postgres|atomic_session/);
    expect((failure as StoreUnavailableError).cause).toBeInstanceOf(SessionConfigError);
  });

  it("a store that throws fails the call with StoreUnavailableError naming the operation, and emits store-error", async () => {
    const broken = new Proxy(memory(), {
      get(target, property, receiver) {
        if (property === "create") return () => Promise.reject(new Error("OOM command not allowed"));
        return Reflect.get(target, property, receiver);
      },
    });
    const manager = managerFor(broken);
    const events: SessionEvent[] = [];
    manager.on((event) => events.push(event));
    const { session, response } = openSession(manager);
    const failure = await session.set("a", 1).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    // What a client may see names neither the store nor what it said; the log line does.
    expect((failure as StoreUnavailableError).message).not.toMatch(/memory|create|OOM/);
    expect((failure as StoreUnavailableError).detail).toBe("the memory store failed: OOM command not allowed (operation create)");
    expect(response.cookie).toBeUndefined();
    expect(events.map((event) => event.type)).toEqual(["store-error"]);
  });
});
