/**
 * Moving from express-session + connect-redis 9 to atomic-session on the same Redis, with real
 * processes: the old application (express-session-app.mjs, a child process) signs users in and
 * counts visits; it is stopped, and an atomic-session Express application with the `adopt`
 * option takes over the same redis-server. Every user is still signed in with their data, the
 * old cookie is cleared and dead, concurrent first requests adopt once, tampered cookies
 * never, and a store failure during adoption answers 503 and loses nothing.
 */
import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { type SessionEvent, SessionManager, type SessionManagerOptions, type SessionStore } from "atomic-session";
import { sessionMiddleware } from "atomic-session/express";
import { expressSessionAdoption } from "atomic-session/express-session";
import { RedisStore } from "atomic-session/stores/redis";
import { cookiePair, openSession } from "atomic-session/testing";
import express, { type NextFunction, type Request, type Response } from "express";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { delay, spawnTracked, waitForExit } from "../../../../test-support/processes.js";
import { CommandCounter } from "../../../../test-support/redis-monitor.js";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";

const LEGACY_APP = fileURLToPath(new URL("./express-session-app.mjs", import.meta.url));
const OLD_SECRET = "the secret express-session signed with last year";
const NEW_SECRET = "the secret express-session signed with lately";
const DAY = 86_400_000;
/** How long an adoption marker lives: the manager's rotation marker. */
const MARKER_MS = 60_000;

/** A browser's cookie jar: every cookie by name, as Set-Cookie leaves it. */
class Browser {
  readonly cookies = new Map<string, string>();

  constructor(cookies: Record<string, string> = {}) {
    for (const [name, value] of Object.entries(cookies)) this.cookies.set(name, value);
  }

  get header(): string | undefined {
    return this.cookies.size === 0 ? undefined : [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  async fetch(url: string, init: RequestInit = {}): Promise<globalThis.Response> {
    const headers = new Headers(init.headers);
    const header = this.header;
    if (header !== undefined) headers.set("cookie", header);
    const response = await fetch(url, { ...init, headers });
    for (const setCookie of response.headers.getSetCookie()) {
      const pair = setCookie.split(";", 1)[0] as string;
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq);
      if (/;\s*max-age=0/i.test(setCookie)) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(eq + 1));
    }
    return response;
  }

  post(url: string, body: unknown = {}): Promise<globalThis.Response> {
    return this.fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  }
}

/** The legacy session ID an express-session cookie value (`s%3A<id>.<signature>`) carries. */
function legacyIdOf(value: string): string {
  const signed = decodeURIComponent(value).slice(2);
  return signed.slice(0, signed.lastIndexOf("."));
}

/** The session cookies a response set, by name. */
function setCookiesOf(response: globalThis.Response): { name: string; value: string; header: string }[] {
  return response.headers.getSetCookie().map((header) => {
    const pair = header.split(";", 1)[0] as string;
    const eq = pair.indexOf("=");
    return { name: pair.slice(0, eq), value: pair.slice(eq + 1), header };
  });
}

/** The express-session application, as a child process on `redisUrl`. */
async function startLegacyApp(redisUrl: string, secrets: string[], maxAgeMs?: number): Promise<{ origin: string; stop(): Promise<void> }> {
  const env: Record<string, string> = { REDIS_URL: redisUrl, SECRETS: JSON.stringify(secrets) };
  if (maxAgeMs !== undefined) env.MAX_AGE = String(maxAgeMs);
  const tracked = spawnTracked(process.execPath, [LEGACY_APP], fileURLToPath(new URL(".", import.meta.url)), env);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the express-session app did not start:\n${tracked.output}`)), 15_000);
    tracked.child.stdout?.on("data", () => {
      const match = /listening (\d+)/.exec(tracked.output);
      if (match === null) return;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
    tracked.child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the express-session app exited with ${code}:\n${tracked.output}`));
    });
  });
  return {
    origin: `http://127.0.0.1:${port}`,
    async stop() {
      tracked.child.kill("SIGTERM");
      if (!(await waitForExit(tracked.child, 5_000))) tracked.child.kill("SIGKILL");
    },
  };
}

/** The atomic-session application: Express, the Express adapter, `manager`. */
async function startAtomicApp(manager: SessionManager): Promise<{ origin: string; close(): Promise<void> }> {
  const app = express();
  app.use(sessionMiddleware(manager));
  app.get("/me", async (req, res) => {
    const info = await req.session.info();
    res.json({
      userId: info?.userId ?? null,
      persistent: info?.persistent ?? null,
      user: (await req.session.get("user")) ?? null,
      visits: (await req.session.get("visits")) ?? 0,
      cart: (await req.session.get("cart")) ?? null,
    });
  });
  app.post("/visit", async (req, res) => {
    res.json({ visits: await req.session.increment("visits") });
  });
  app.post("/note", async (req, res) => {
    await req.session.set("note", "written");
    res.json({ ok: true });
  });
  app.use(
    (error: { status?: number; headers?: Record<string, string>; message: string }, _req: Request, res: Response, _next: NextFunction) => {
      res
        .status(error.status ?? 500)
        .set(error.headers ?? {})
        .json({ error: error.message });
    },
  );
  const server: Server = app.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What the old application knew about a browser, read from it before the switch. */
interface Known {
  browser: Browser;
  user: unknown;
  visits: number;
  legacyCookie: string;
  legacyKey: string;
}

describe("moving from express-session + connect-redis without logging anyone out", () => {
  let redis: RedisServer;
  let view: ReturnType<typeof createClient>;
  let client: ReturnType<typeof createClient>;
  let manager: SessionManager;
  let atomic: { origin: string; close(): Promise<void> };
  const events: SessionEvent[] = [];
  const known = new Map<string, Known>();
  const closers: (() => Promise<unknown>)[] = [];

  const managerOptions = (store: SessionStore, extra: Partial<SessionManagerOptions> = {}): SessionManagerOptions => ({
    store,
    storeTimeoutMs: 500,
    adopt: expressSessionAdoption({ client, secrets: [NEW_SECRET, OLD_SECRET], userField: "user" }),
    ...extra,
  });

  beforeAll(async () => {
    redis = await startRedisServer();
    view = createClient({ url: redis.url });
    view.on("error", () => {});
    await view.connect();

    // Last year's application: persistent cookies (maxAge), signed with the old secret.
    const before = await startLegacyApp(redis.url, [OLD_SECRET], DAY);
    const browse = async (origin: string, name: string, steps: { login?: unknown; visits?: number; cart?: unknown }) => {
      const browser = new Browser();
      await browser.post(`${origin}/visit`);
      if (steps.login !== undefined) expect((await browser.post(`${origin}/login`, { user: steps.login })).status).toBe(200);
      for (let visit = 0; visit < (steps.visits ?? 0); visit++) await browser.post(`${origin}/visit`);
      if (steps.cart !== undefined) await browser.post(`${origin}/cart`, steps.cart);
      const me = (await (await browser.fetch(`${origin}/me`)).json()) as { user: unknown; visits: number };
      const legacyCookie = browser.cookies.get("connect.sid") as string;
      expect(legacyCookie).toMatch(/^s%3A/);
      known.set(name, { browser, user: me.user, visits: me.visits, legacyCookie, legacyKey: `sess:${legacyIdOf(legacyCookie)}` });
    };
    await browse(before.origin, "alice", { login: "alice", visits: 2, cart: { items: ["book", "lamp"] } });
    await browse(before.origin, "bob", { login: "bob", visits: 1 });
    await browse(before.origin, "anon-3", { visits: 2 });
    await browse(before.origin, "anon-cart", { cart: { items: ["tea"] } });
    for (const name of ["rita", "paula", "olga", "tom", "mia"]) await browse(before.origin, name, { login: name, visits: 4 });
    await browse(before.origin, "racer-anon", { visits: 6 });
    await browse(before.origin, "oscar", { login: { id: "oscar", name: "Oscar" } });
    await browse(before.origin, "cost-anon", { visits: 1 });
    await browse(before.origin, "anon-big", { cart: { items: Array.from({ length: 20 }, (_, index) => `item ${index}`) } });
    await browse(before.origin, "cost-user", { login: "cost-user" });
    await before.stop();
    // Then the secret was rotated (express-session signs with the first) and cookies became browser-session ones.
    const lately = await startLegacyApp(redis.url, [NEW_SECRET, OLD_SECRET]);
    await browse(lately.origin, "carol", { login: "carol", visits: 3 });
    await lately.stop();

    // The switch: the same Redis, now behind atomic-session.
    client = createClient({ url: redis.url, disableOfflineQueue: true });
    client.on("error", () => {});
    await client.connect();
    manager = new SessionManager(managerOptions(new RedisStore({ client })));
    manager.on((event) => events.push(event));
    atomic = await startAtomicApp(manager);
  }, 120_000);

  afterAll(async () => {
    for (const close of closers) await close().catch(() => undefined);
    await atomic?.close();
    client?.destroy();
    view?.destroy();
    await redis?.stop();
  });

  const of = (name: string): Known => known.get(name) as Known;
  const only = (cookie: string) => new Browser({ "connect.sid": cookie });
  const me = async (browser: Browser, origin = atomic.origin) => {
    const response = await browser.fetch(`${origin}/me`);
    return { response, body: (await response.json()) as Record<string, unknown> };
  };

  it("every user is still signed in with their data; the old cookie is cleared, and dead afterwards", async () => {
    for (const name of ["alice", "bob", "carol", "anon-3", "anon-cart"]) {
      const { browser, user, visits, legacyCookie, legacyKey } = of(name);
      const legacyRecord = JSON.parse((await view.get(legacyKey)) as string) as { cart?: unknown };
      const first = await me(browser);
      expect(first.response.status, name).toBe(200);
      expect(first.body, name).toEqual({
        userId: user,
        user,
        visits,
        cart: legacyRecord.cart ?? null,
        // express-session's maxAge cookies outlived the browser session; carol's (no maxAge) did not.
        persistent: name !== "carol",
      });
      const cookies = setCookiesOf(first.response);
      expect(cookies.map(({ name: cookie }) => cookie).sort(), name).toEqual(["connect.sid", "sessionID"]);
      expect(cookies.find(({ name: cookie }) => cookie === "connect.sid")?.header).toMatch(/^connect\.sid=; Max-Age=0; Path=\/;/);
      expect(cookies.find(({ name: cookie }) => cookie === "sessionID")?.header.includes("Expires="), name).toBe(name !== "carol");
      expect([...browser.cookies.keys()], name).toEqual(["sessionID"]);

      // From now on the browser holds atomic-session's cookie only, and the session is an ordinary one.
      const again = await me(browser);
      expect(again.body, name).toEqual(first.body);
      expect(setCookiesOf(again.response), name).toEqual([]);
      expect(await (await browser.post(`${atomic.origin}/visit`)).json()).toEqual({ visits: visits + 1 });
      if (typeof user === "string") {
        const sessions = await manager.listUserSessions(user);
        expect(
          sessions.map((session) => session.absoluteExpiresAt.getTime() > Date.now() + 11 * 3_600_000),
          name,
        ).toEqual([true]);
      }

      // The old ID died: its key holds a marker that expires, and the old cookie alone gets nothing.
      expect(JSON.parse((await view.get(legacyKey)) as string)).toMatchObject({ "atomic-session:adopted": true });
      const ttl = await view.pTTL(legacyKey);
      expect(ttl, name).toBeGreaterThan(0);
      expect(ttl, name).toBeLessThanOrEqual(MARKER_MS);
      const replay = await me(only(legacyCookie));
      expect(replay.body, name).toMatchObject({ userId: null, user: null, visits: 0 });
      expect(setCookiesOf(replay.response), name).toEqual([]);
      // Within the marker's minute, a write with the old cookie is refused like one racing a login.
      for (const route of ["/visit", "/note"]) {
        const write = await only(legacyCookie).post(`${atomic.origin}${route}`);
        expect(write.status, `${name} ${route}`).toBe(409);
        expect(setCookiesOf(write), `${name} ${route}`).toEqual([]);
      }
    }
    const adopted = events.filter((event) => event.type === "adopted");
    expect(adopted.map((event) => event.userId)).toEqual(["alice", "bob", "carol", undefined, undefined]);
    expect(adopted.every((event) => event.source === "express-session")).toBe(true);
  });

  it("concurrent first requests with the same old cookie adopt exactly once", async () => {
    for (const name of ["rita", "racer-anon"]) {
      const { user, visits, legacyCookie } = of(name);
      const before = await manager.countSessions();
      // Reads, increments and plain writes, all at once, each from its own copy of the old cookie.
      const routes = ["/me", "/visit", "/note"] as const;
      const routeOf = (index: number) => routes[index % routes.length] as (typeof routes)[number];
      const requests = Array.from({ length: 20 }, (_, index) =>
        routeOf(index) === "/me"
          ? only(legacyCookie).fetch(`${atomic.origin}/me`)
          : only(legacyCookie).post(`${atomic.origin}${routeOf(index)}`),
      );
      const responses = await Promise.all(requests);
      const bodies = await Promise.all(responses.map((response) => response.json() as Promise<Record<string, unknown>>));
      const issued = responses.filter((response) => setCookiesOf(response).some((cookie) => cookie.name === "sessionID"));
      expect(issued, name).toHaveLength(1);
      const winner = issued[0] as globalThis.Response;
      expect(
        setCookiesOf(winner)
          .map((cookie) => cookie.name)
          .sort(),
      ).toEqual(["connect.sid", "sessionID"]);
      for (const [index, response] of responses.entries()) {
        if (response === winner) continue;
        // The others saw no session (reads) or were refused (writes), and set no cookie at all.
        expect(setCookiesOf(response), name).toEqual([]);
        if (routeOf(index) === "/me") expect(bodies[index], name).toMatchObject({ userId: null, visits: 0 });
        else expect(response.status, name).toBe(409);
      }
      expect(await manager.countSessions(), name).toBe((before as number) + 1);
      if (typeof user === "string") expect(await manager.listUserSessions(user), name).toHaveLength(1);
      const winnerWrote = routeOf(responses.indexOf(winner)) === "/visit" ? 1 : 0;
      const adoptedCookie = setCookiesOf(winner).find((cookie) => cookie.name === "sessionID")?.value as string;
      const after = await me(new Browser({ sessionID: adoptedCookie }));
      expect(after.body, name).toMatchObject({ userId: user, visits: visits + winnerWrote });
    }
  });

  it("costs round trips on a browser's first request only", async () => {
    const counter = await CommandCounter.open(redis.url);
    closers.push(() => counter.close());
    // The command names a request sent; an EVAL right after an EVALSHA is its NOSCRIPT retry on a fresh script cache.
    const commands = async (browser: Browser) =>
      (await counter.during(() => me(browser)))
        .map(([name]) => name?.toLowerCase())
        .filter((name, index, all) => !(name === "eval" && all[index - 1] === "evalsha"));
    // Anonymous: read the old record, create the new session, take the old record.
    const anonymous = of("cost-anon");
    expect(await commands(anonymous.browser)).toEqual(["get", "evalsha", "evalsha"]);
    // Logged in: the same, the user's index entry beside the create, then the maxSessionsPerUser check a login makes.
    const user = of("cost-user");
    expect((await commands(user.browser)).slice(0, 4)).toEqual(["get", "evalsha", "evalsha", "evalsha"]);
    for (const { browser, legacyCookie } of [anonymous, user]) {
      // Afterwards the browser holds the new cookie only: one command, as for any session.
      expect(await commands(browser)).toHaveLength(1);
      // A stale copy of the old cookie costs one GET until the browser drops it.
      expect(await commands(only(legacyCookie))).toEqual(["get"]);
    }
  });

  it("tampered, unsigned or foreign-secret cookies are never adopted, and leave the old record alone", async () => {
    const { legacyCookie, legacyKey, visits } = of("tom");
    const record = await view.get(legacyKey);
    const id = legacyIdOf(legacyCookie);
    const mac = decodeURIComponent(legacyCookie).slice(id.length + 3);
    const { createHmac } = await import("node:crypto");
    const foreign = createHmac("sha256", "a secret this app never had").update(id).digest("base64").replace(/=+$/, "");
    const flip = (text: string, at: number) => `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`;
    const forged = [id, `s:${id}`, `s:${id}.${flip(mac, 5)}`, `s:${flip(id, 3)}.${mac}`, `s:${id}.${foreign}`, `s:${id}.${mac}AA`];
    const invalidBefore = events.filter((event) => event.type === "invalid-cookie").length;
    for (const value of forged) {
      const cookie = encodeURIComponent(value);
      const read = await me(only(cookie));
      expect(read.body, value).toMatchObject({ userId: null, visits: 0 });
      expect(setCookiesOf(read.response), value).toEqual([]);
      // A write starts a new anonymous session, as for any visitor without a session.
      const browser = only(cookie);
      expect(await (await browser.post(`${atomic.origin}/visit`)).json(), value).toEqual({ visits: 1 });
      expect(await view.get(legacyKey), value).toBe(record);
    }
    expect(events.filter((event) => event.type === "invalid-cookie").length - invalidBefore).toBe(forged.length * 2);
    // The record was adoptable all along: the genuine cookie adopts it.
    expect((await me(only(legacyCookie))).body).toMatchObject({ userId: "tom", visits });
  });

  it("a store that stalls during adoption gives 503, and the old session is still adoptable afterwards", async () => {
    const { browser, legacyKey, visits } = of("paula");
    const record = await view.get(legacyKey);
    redis.pause();
    let stalled: globalThis.Response;
    try {
      stalled = await browser.fetch(`${atomic.origin}/me`);
    } finally {
      redis.resume();
    }
    expect(stalled.status).toBe(503);
    expect(stalled.headers.get("retry-after")).toBe("1");
    expect(setCookiesOf(stalled)).toEqual([]);
    expect(await view.get(legacyKey)).toBe(record);
    const adopted = await me(browser);
    expect(adopted.body).toMatchObject({ userId: "paula", visits });
    expect(await manager.listUserSessions("paula")).toHaveLength(1);
  });

  it("a write refused while taking the old record (Redis out of memory) gives 503, destroys the new session and loses nothing", async () => {
    const { browser, legacyKey, visits } = of("olga");
    const record = await view.get(legacyKey);
    const inner = new RedisStore({ client });
    let armed = true;
    // The fault lands between the two steps: the new session is created, then Redis refuses every write.
    const store = new Proxy(inner, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== "create" || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
        return async (...args: Parameters<RedisStore["create"]>) => {
          const created = await target.create(...args);
          if (armed) {
            armed = false;
            await view.configSet({ "maxmemory-policy": "noeviction", maxmemory: "1" });
          }
          return created;
        };
      },
    });
    const faulty = new SessionManager(managerOptions(store));
    const failures: SessionEvent[] = [];
    faulty.on((event) => failures.push(event));
    const app = await startAtomicApp(faulty);
    closers.push(() => app.close());
    let refused: globalThis.Response;
    try {
      refused = await browser.fetch(`${app.origin}/me`);
    } finally {
      await view.configSet("maxmemory", "0");
    }
    expect(refused.status).toBe(503);
    expect(setCookiesOf(refused)).toEqual([]);
    expect(failures.filter((event) => event.type === "store-error").map((event) => event.operation)).toEqual(["legacyTake"]);
    expect(await view.get(legacyKey)).toBe(record);
    expect(await faulty.listUserSessions("olga")).toHaveLength(0);
    expect((await me(browser, app.origin)).body).toMatchObject({ userId: "olga", visits });
    expect(await faulty.listUserSessions("olga")).toHaveLength(1);
  });

  it("the old records are gone once their markers expire, and a marker only ever answers 'adopted'", async () => {
    const source = expressSessionAdoption({ client, secrets: [NEW_SECRET, OLD_SECRET], userField: "user" });
    const { legacyCookie, legacyKey } = of("mia");
    const reading = source.readCookie(`connect.sid=${legacyCookie}`);
    if (reading.kind !== "valid") throw new Error(`mia's cookie reads ${JSON.stringify(reading)}`);
    const loaded = await source.load(reading.id);
    if (typeof loaded === "string" || "refused" in loaded) throw new Error(`mia's record loads as ${JSON.stringify(loaded)}`);
    expect(loaded.userId).toBe("mia");
    const record = loaded.version;

    // A write by someone else between load and take: nothing is taken.
    await view.set(legacyKey, JSON.stringify({ ...JSON.parse(record), visits: 99 }), { KEEPTTL: true });
    expect(await source.take(reading.id, loaded, Date.now() + 300)).toBe("changed");
    await view.set(legacyKey, record, { KEEPTTL: true });
    expect(await source.take(reading.id, loaded, Date.now() + 300)).toBe("taken");
    expect(await source.take(reading.id, loaded, Date.now() + 300)).toBe("adopted");
    expect(await source.load(reading.id)).toBe("adopted");
    await delay(700);
    expect(await view.exists(legacyKey)).toBe(0);
    expect(await source.load(reading.id)).toBe("gone");
    expect(await source.take(reading.id, loaded, Date.now() + 300)).toBe("gone");
    // The old cookie now names nothing: no session, and the browser is told to drop it.
    const late = await me(only(legacyCookie));
    expect(late.body).toMatchObject({ userId: null, visits: 0 });
    expect(setCookiesOf(late.response).map((cookie) => cookie.name)).toEqual(["connect.sid"]);
    // Every other adopted record is a marker that expires within the minute: only the unadopted stay.
    const unadopted = new Set(["oscar", "anon-big", "ivy"].map((name) => known.get(name)?.legacyKey));
    for (const key of await view.keys("sess:*")) {
      if (unadopted.has(key)) continue;
      expect(JSON.parse((await view.get(key)) as string), key).toMatchObject({ "atomic-session:adopted": true });
      expect(await view.pTTL(key), key).toBeLessThanOrEqual(MARKER_MS);
    }
    expect(await view.exists(legacyKey)).toBe(0);
  });

  it("refuses, and leaves alone, a record whose user field holds no user ID; a userField function finds it", async () => {
    const { legacyCookie, legacyKey } = of("oscar");
    const record = await view.get(legacyKey);
    const refused = openSession(manager, `connect.sid=${legacyCookie}`);
    expect(await refused.session.info()).toBeUndefined();
    expect(refused.response.cookie).toBeUndefined();
    expect(events.at(-1)).toEqual({
      type: "adoption-refused",
      source: "express-session",
      reason: "its user field holds an object, not a user ID: give userField as a function that returns the ID",
    });
    expect(await view.get(legacyKey)).toBe(record);
    const byFunction = new SessionManager({
      store: new RedisStore({ client }),
      adopt: expressSessionAdoption({ client, secrets: OLD_SECRET, userField: (data) => (data.user as { id?: string } | undefined)?.id }),
    });
    const adopted = openSession(byFunction, `connect.sid=${legacyCookie}`);
    expect((await adopted.session.info())?.userId).toBe("oscar");
    expect(await adopted.session.get("user")).toEqual({ id: "oscar", name: "Oscar" });
    expect(adopted.response.appended).toEqual([expect.stringMatching(/^connect\.sid=; .*Max-Age=0/)]);
    expect(cookiePair(adopted.response.cookie)).toMatch(/^sessionID=/);
  });

  it("refuses, and leaves alone, a record over maxSizeBytes", async () => {
    const { legacyCookie, legacyKey } = of("anon-big");
    const record = await view.get(legacyKey);
    const small = new SessionManager(managerOptions(new RedisStore({ client }), { maxSizeBytes: 64 }));
    const refusals: SessionEvent[] = [];
    small.on((event) => refusals.push(event));
    const { session, response } = openSession(small, `connect.sid=${legacyCookie}`);
    expect(await session.all()).toEqual({});
    expect(response.cookie).toBeUndefined();
    expect(response.appended).toEqual([]);
    expect(refusals).toEqual([
      {
        type: "adoption-refused",
        source: "express-session",
        reason: expect.stringMatching(/^its data is \d+ bytes, over maxSizeBytes \(64\)$/),
      },
    ]);
    expect(await view.get(legacyKey)).toBe(record);
  });

  it("adopts through an ioredis client, and under the legacy cookie's own name replaces it instead of clearing it", async () => {
    const legacy = await startLegacyApp(redis.url, [OLD_SECRET], DAY);
    const browser = new Browser();
    await browser.post(`${legacy.origin}/login`, { user: "ivy" });
    await browser.post(`${legacy.origin}/visit`);
    await legacy.stop();
    const io = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    io.on("error", () => {});
    closers.push(async () => io.disconnect());
    const sameName = new SessionManager({
      store: new RedisStore({ client: io }),
      cookie: { name: "connect.sid" },
      adopt: expressSessionAdoption({ client: io, secrets: [OLD_SECRET], userField: "user" }),
    });
    const { session, response } = openSession(sameName, browser.header);
    expect((await session.info())?.userId).toBe("ivy");
    expect(await session.get("visits")).toBe(1);
    expect(response.appended).toEqual([]);
    expect(cookiePair(response.cookie)).toMatch(/^connect\.sid=[A-Za-z0-9_-]{43}$/);
    // The new cookie under the old name is atomic-session's: it loads the adopted session.
    expect((await openSession(sameName, cookiePair(response.cookie)).session.info())?.userId).toBe("ivy");
  });
});
