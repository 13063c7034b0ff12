import type { Session, SessionEvent, SessionManagerOptions, SessionStore } from "atomic-session";
import { SessionManager } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { expect } from "vitest";

/** Headers of the application's own, as one handler gives them. */
export interface AppHeaders {
  /**
   * - `before`: set (replacing) before the handler uses its session;
   * - `after`: set (replacing) after the handler used its session;
   * - `response`: given with the response itself (node's `writeHead(200, headers)`, a Hono `Response`'s headers).
   */
  when: "before" | "after" | "response";
  headers: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * One route of the app every adapter serves for the scenarios: what the handler does with
 * the session, and the text it answers with (200, text/plain).
 */
export interface ScenarioRoute {
  method: "GET" | "POST";
  path: string;
  /** The application's own headers, which the handler sets through its framework. */
  appHeaders?: AppHeaders;
  run(session: Session): Promise<string>;
}

const THEME = "theme=dark; Path=/";
const LANGUAGE = "lang=en; Path=/";

async function increment(session: Session): Promise<string> {
  return String(await session.increment("visitCount"));
}

function login(options?: { persistent: boolean }): (session: Session) => Promise<string> {
  return async (session) => {
    await session.login("alice", options);
    return "logged in";
  };
}

async function read(session: Session): Promise<string> {
  return JSON.stringify({ visitCount: (await session.get("visitCount")) ?? null });
}

/** The routes, the same for every adapter; each adapter's app is only the glue that serves them. */
export const scenarioRoutes: readonly ScenarioRoute[] = [
  { method: "GET", path: "/increment", run: increment },
  { method: "GET", path: "/read", run: read },
  {
    method: "GET",
    path: "/whoami",
    run: async (session) => {
      const info = await session.info();
      return JSON.stringify({
        user: info?.userId ?? null,
        persistent: info?.persistent ?? null,
        absoluteExpiresAt: info?.absoluteExpiresAt,
      });
    },
  },
  { method: "GET", path: "/static", run: async () => "no session used" },
  { method: "POST", path: "/login", run: login() },
  { method: "POST", path: "/login-browser-session", run: login({ persistent: false }) },
  { method: "POST", path: "/login-remember", run: login({ persistent: true }) },
  {
    method: "POST",
    path: "/destroy",
    run: async (session) => {
      await session.destroy();
      return "destroyed";
    },
  },
  {
    method: "POST",
    path: "/regenerate",
    run: async (session) => {
      await session.regenerate();
      return JSON.stringify({ visitCount: (await session.get("visitCount")) ?? null });
    },
  },
  {
    // A new session, then a rotation in the same request: only the second cookie may go out.
    method: "POST",
    path: "/increment-and-regenerate",
    appHeaders: { when: "before", headers: { "Set-Cookie": THEME } },
    run: async (session) => {
      await session.increment("visitCount");
      await session.regenerate();
      return "rotated";
    },
  },
  {
    // Creates a session (its cookie is set), then update() hits a store that refuses compareAndSet.
    method: "POST",
    path: "/fail",
    run: async (session) => {
      await session.increment("visitCount");
      await session.update("visitCount", (count) => Number(count ?? 0) + 1);
      return "unreachable: the store refuses compareAndSet";
    },
  },
  {
    // The handler fails after its session was created: not the session's error.
    method: "POST",
    path: "/increment-then-throw",
    run: async (session) => {
      await session.increment("visitCount");
      throw new Error("the application's own failure");
    },
  },
  // The application's own cookies, set (replacing) after the session wrote its cookie.
  {
    method: "GET",
    path: "/increment-then-set-cookie",
    appHeaders: { when: "after", headers: { "Set-Cookie": [THEME, LANGUAGE] } },
    run: increment,
  },
  { method: "GET", path: "/increment-then-write-head", appHeaders: { when: "response", headers: { "Set-Cookie": THEME } }, run: increment },
  {
    method: "POST",
    path: "/login-then-set-cookie",
    appHeaders: { when: "after", headers: { "Set-Cookie": [THEME, LANGUAGE] } },
    run: login(),
  },
  { method: "POST", path: "/login-then-write-head", appHeaders: { when: "response", headers: { "Set-Cookie": THEME } }, run: login() },
  // The application's own caching headers.
  { method: "GET", path: "/read-varying", appHeaders: { when: "before", headers: { Vary: "Accept-Encoding" } }, run: read },
  { method: "GET", path: "/read-varying-in-response", appHeaders: { when: "response", headers: { Vary: "Accept-Encoding" } }, run: read },
  {
    method: "GET",
    path: "/increment-then-cache-headers",
    appHeaders: { when: "after", headers: { Vary: "Accept-Encoding", "Cache-Control": "public, max-age=60" } },
    run: increment,
  },
];

/** An app listening on 127.0.0.1. */
export interface RunningApp {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  close(): Promise<void>;
}

/** Starts an app of one adapter that serves `routes` with sessions from `manager`. */
export type StartApp = (manager: SessionManager, routes: readonly ScenarioRoute[]) => Promise<RunningApp>;

/** A running app with its manager and every event the manager emitted. */
export interface ScenarioApp extends RunningApp {
  manager: SessionManager;
  events: SessionEvent[];
}

/** The apps a scenario may talk to, all from one adapter. */
export interface ScenarioApps {
  /** A memory store that works, except that it refuses `compareAndSet` (the `/fail` route). */
  app: ScenarioApp;
  /** A memory store that never answers, behind a 100 ms store deadline. */
  stalledApp: ScenarioApp;
  /** A store of kind "redis" whose every read and write rejects with what a full Redis answers. */
  failingApp: ScenarioApp;
  /** A memory store; `cookie.secure: true`, `trustProxy` (HTTPS is `X-Forwarded-Proto: https`), signed, `partitioned`, `priority: "high"`. */
  secureApp: ScenarioApp;
}

const OOM = "OOM command not allowed when used memory > 'maxmemory'.";
const SECRET = "scenario-secret-".repeat(3);

/** Starts every app of one adapter; `close()` stops them and disposes their stores. */
export async function startScenarioApps(startApp: StartApp): Promise<ScenarioApps & { close(): Promise<void> }> {
  const memory: MemoryStore[] = [];
  const started: ScenarioApp[] = [];
  const start = async (wrap: (store: MemoryStore) => SessionStore, options: Partial<SessionManagerOptions> = {}) => {
    const store = new MemoryStore();
    memory.push(store);
    const manager = new SessionManager({ store: wrap(store), ...options });
    const events: SessionEvent[] = [];
    manager.on((event) => events.push(event));
    const app = { ...(await startApp(manager, scenarioRoutes)), manager, events };
    started.push(app);
    return app;
  };
  const reject = (message: string) => () => Promise.reject(new Error(message));
  const apps = {
    app: await start((store) => storeWhere(store, { compareAndSet: reject("READONLY You can't write against a read only replica") })),
    stalledApp: await start(
      (store) => storeWhere(store, Object.fromEntries(WRITES_AND_READS.map((operation) => [operation, () => new Promise(() => {})]))),
      { storeTimeoutMs: 100 },
    ),
    failingApp: await start((store) =>
      storeWhere(store, { kind: "redis", ...Object.fromEntries(WRITES_AND_READS.map((operation) => [operation, reject(OOM)])) }),
    ),
    secureApp: await start((store) => store, {
      cookie: { secure: true, partitioned: true, priority: "high" },
      trustProxy: true,
      secrets: [SECRET],
    }),
  };
  return {
    ...apps,
    async close() {
      await Promise.all(started.map((app) => app.close()));
      for (const store of memory) await store.dispose();
    },
  };
}

const WRITES_AND_READS = ["load", "create", "apply", "increment", "compareAndSet", "rotate", "destroy"] as const;

/** `store`, with some properties (operations, `kind`) replaced. */
function storeWhere(store: SessionStore, replaced: Readonly<Record<string, unknown>>): SessionStore {
  return new Proxy(store, {
    get(target, property) {
      if (typeof property === "string" && Object.hasOwn(replaced, property)) return replaced[property];
      // Bound to the store itself: its methods use private fields, which the proxy does not have.
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** One HTTP exchange, as the scenarios look at it. */
interface Exchange {
  status: number;
  body: string;
  headers: Headers;
  /** Every Set-Cookie value. */
  cookies: string[];
  /** The session's Set-Cookie values. */
  sessionCookies: string[];
}

async function send(
  app: RunningApp,
  method: "GET" | "POST",
  path: string,
  cookie?: string,
  headers: Record<string, string> = {},
): Promise<Exchange> {
  const response = await fetch(`${app.url}${path}`, { method, headers: cookie === undefined ? headers : { ...headers, cookie } });
  const cookies = response.headers.getSetCookie();
  return {
    status: response.status,
    body: await response.text(),
    headers: response.headers,
    cookies,
    sessionCookies: cookies.filter((value) => value.startsWith("sessionID=")),
  };
}

/** What the secure app takes as an HTTPS request (it trusts the proxy's `X-Forwarded-Proto`). */
const HTTPS = { "x-forwarded-proto": "https" };

/** The `name=value` pair a browser sends back for a Set-Cookie value. */
function pairOf(setCookie: string | undefined): string {
  expect(setCookie).toBeDefined();
  return (setCookie as string).split(";", 1)[0] as string;
}

/** The session cookie a browser's jar holds after `exchange`, when it held `held` before. */
function jarAfter(held: string | undefined, exchange: Exchange): string | undefined {
  const set = exchange.sessionCookies.at(-1);
  if (set === undefined) return held;
  return /max-age=0/i.test(set) ? undefined : pairOf(set);
}

/** Starts a session with one visit; resolves the cookie to send back. */
async function newSession(app: RunningApp, headers?: Record<string, string>): Promise<string> {
  const first = await send(app, "GET", "/increment", undefined, headers);
  expect(first.body).toBe("1");
  return pairOf(first.sessionCookies[0]);
}

/** The lowercased names a `Vary` header lists. */
function varyNames(exchange: Exchange): string[] {
  return (exchange.headers.get("vary") ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== "");
}

/** The `Expires` attribute of a Set-Cookie value, in ms, or `undefined` when it has none. */
function expiresOf(setCookie: string | undefined): number | undefined {
  const expires = /;\s*Expires=([^;]+)/i.exec(setCookie ?? "")?.[1];
  return expires === undefined ? undefined : Date.parse(expires);
}

async function whoami(
  app: RunningApp,
  cookie: string,
): Promise<{ user: string | null; persistent: boolean | null; absoluteExpiresAt?: string }> {
  return JSON.parse((await send(app, "GET", "/whoami", cookie)).body);
}

/** What a body that answers a failing store must not say: the store, the operations, the backend's words. */
const STORE_WORDS = ["redis", "memory", "oom", "maxmemory", ...WRITES_AND_READS.map((operation) => operation.toLowerCase())];

/** One behaviour every adapter must show, over real HTTP. */
export interface Scenario {
  name: string;
  run(apps: ScenarioApps): Promise<void>;
}

/** The scenarios, run against every adapter by `adapters.test.ts`. */
export const scenarios: readonly Scenario[] = [
  {
    name: "a new session sets the cookie, with Cache-Control: no-store and Vary: Cookie",
    async run({ app }) {
      const first = await send(app, "GET", "/increment");
      expect(first.status).toBe(200);
      expect(first.body).toBe("1");
      expect(first.sessionCookies).toHaveLength(1);
      expect(first.sessionCookies[0]).toMatch(/^sessionID=[A-Za-z0-9_-]{43}; /);
      expect(first.sessionCookies[0]).toContain("HttpOnly");
      expect(first.sessionCookies[0]).toContain("SameSite=Lax");
      expect(first.headers.get("cache-control")).toBe("no-store");
      expect(varyNames(first)).toContain("cookie");
      const second = await send(app, "GET", "/increment", pairOf(first.sessionCookies[0]));
      expect(second.body).toBe("2");
      expect(second.cookies).toEqual([]);
      expect(varyNames(second)).toContain("cookie");
    },
  },
  {
    name: "an unchanged session sends no Set-Cookie",
    async run({ app }) {
      const cookie = await newSession(app);
      const read = await send(app, "GET", "/read", cookie);
      expect(read.body).toBe('{"visitCount":1}');
      expect(read.cookies).toEqual([]);
      const anonymous = await send(app, "GET", "/read");
      expect(anonymous.body).toBe('{"visitCount":null}');
      expect(anonymous.cookies).toEqual([]);
    },
  },
  {
    name: "destroy clears the cookie (Max-Age=0) and ends the session",
    async run({ app }) {
      const cookie = await newSession(app);
      const destroyed = await send(app, "POST", "/destroy", cookie);
      expect(destroyed.status).toBe(200);
      expect(destroyed.sessionCookies).toHaveLength(1);
      expect(destroyed.sessionCookies[0]).toMatch(/^sessionID=;/);
      expect(destroyed.sessionCookies[0]).toContain("Max-Age=0");
      expect(destroyed.headers.get("cache-control")).toBe("no-store");
      expect((await send(app, "GET", "/read", cookie)).body).toBe('{"visitCount":null}');
    },
  },
  {
    name: "regenerate changes the ID and keeps the data; the old ID is dead",
    async run({ app }) {
      const cookie = await newSession(app);
      const rotated = await send(app, "POST", "/regenerate", cookie);
      expect(rotated.body).toBe('{"visitCount":1}');
      expect(rotated.sessionCookies).toHaveLength(1);
      const fresh = pairOf(rotated.sessionCookies[0]);
      expect(fresh).not.toBe(cookie);
      expect((await send(app, "GET", "/read", fresh)).body).toBe('{"visitCount":1}');
      expect((await send(app, "GET", "/read", cookie)).body).toBe('{"visitCount":null}');
    },
  },
  {
    name: "a session cookie set earlier in the request is replaced, and the app's own cookies stay",
    async run({ app }) {
      const exchange = await send(app, "POST", "/increment-and-regenerate");
      expect(exchange.body).toBe("rotated");
      expect(exchange.sessionCookies).toHaveLength(1);
      expect(exchange.cookies).toContain(THEME);
      expect((await send(app, "GET", "/read", pairOf(exchange.sessionCookies[0]))).body).toBe('{"visitCount":1}');
    },
  },
  {
    name: "the app's own Set-Cookie after a session write (set, or given with the response) keeps the session cookie",
    async run({ app }) {
      for (const [path, appCookies] of [
        ["/increment-then-set-cookie", [THEME, LANGUAGE]],
        ["/increment-then-write-head", [THEME]],
      ] as const) {
        const first = await send(app, "GET", path);
        expect(first.body, path).toBe("1");
        expect(
          first.cookies.filter((cookie) => !cookie.startsWith("sessionID=")),
          path,
        ).toEqual(appCookies);
        expect(first.sessionCookies, path).toHaveLength(1);
        expect(first.headers.get("cache-control"), path).toBe("no-store");
        const cookie = pairOf(first.sessionCookies[0]);
        const second = await send(app, "GET", path, cookie);
        expect(second.body, path).toBe("2");
        expect(second.sessionCookies, path).toEqual([]);
        // Another visitor gets a session of their own, and never this one's cookie.
        const other = await send(app, "GET", path);
        expect(other.body, path).toBe("1");
        expect(other.sessionCookies, path).toHaveLength(1);
        expect(pairOf(other.sessionCookies[0]), path).not.toBe(cookie);
        expect(
          other.cookies.filter((cookie) => !cookie.startsWith("sessionID=")),
          path,
        ).toEqual(appCookies);
      }
    },
  },
  {
    name: "after a login, the app's own Set-Cookie keeps the rotated session cookie: the user stays logged in",
    async run({ app }) {
      for (const path of ["/login-then-set-cookie", "/login-then-write-head"]) {
        const anonymous = await newSession(app);
        const loggedIn = await send(app, "POST", path, anonymous);
        expect(loggedIn.status, path).toBe(200);
        expect(loggedIn.cookies, path).toContain(THEME);
        expect(loggedIn.sessionCookies, path).toHaveLength(1);
        const cookie = pairOf(loggedIn.sessionCookies[0]);
        expect(cookie, path).not.toBe(anonymous);
        expect((await whoami(app, cookie)).user, path).toBe("alice");
        expect((await send(app, "GET", "/read", cookie)).body, path).toBe('{"visitCount":1}');
      }
    },
  },
  {
    name: "a store failure reaches the framework's error path: 503 with Retry-After and no session cookie",
    async run({ app }) {
      const failed = await send(app, "POST", "/fail");
      expect(failed.status).toBe(503);
      expect(failed.headers.get("retry-after")).toBe("1");
      expect(failed.sessionCookies).toEqual([]);
      expect(failed.body).not.toContain("unreachable");
    },
  },
  {
    name: "a failing store answers 503 with Retry-After, no Set-Cookie, and a body naming neither the store, the operation nor the backend's message",
    async run({ failingApp }) {
      const unknown = `sessionID=${"A".repeat(43)}`;
      const requests = [
        ["GET", "/increment", undefined], // create
        ["GET", "/increment", unknown], // increment
        ["GET", "/read", unknown], // load
        ["POST", "/login", undefined], // create, for a login
      ] as const;
      for (const [method, path, cookie] of requests) {
        const failed = await send(failingApp, method, path, cookie);
        const what = `${method} ${path} ${cookie ?? "(no cookie)"}`;
        expect(failed.status, what).toBe(503);
        expect(failed.headers.get("retry-after"), what).toBe("1");
        expect(failed.cookies, what).toEqual([]);
        const body = failed.body.toLowerCase();
        expect(body, what).toContain("unavailable");
        for (const word of STORE_WORDS) expect(body, `${what}: the body says "${word}"`).not.toContain(word);
      }
      // The logs still learn what happened: the event's error has it all in `detail`.
      const failures = failingApp.events.flatMap((event) => (event.type === "store-error" ? [event.error.detail] : []));
      expect(failures).toContain(`the redis store failed: ${OOM} (operation increment)`);
    },
  },
  {
    name: "a handler that fails after a session write answers 500 and still hands out the session it created",
    async run({ app }) {
      const failed = await send(app, "POST", "/increment-then-throw");
      expect(failed.status).toBe(500);
      expect(failed.sessionCookies).toHaveLength(1);
      expect(failed.headers.get("cache-control")).toBe("no-store");
      expect(varyNames(failed)).toContain("cookie");
      // The cookie names the record that was written: nothing is left behind that nobody holds.
      expect((await send(app, "GET", "/read", pairOf(failed.sessionCookies[0]))).body).toBe('{"visitCount":1}');
    },
  },
  {
    name: "a stalled store answers 503 with Retry-After within the store deadline, never hangs",
    async run({ stalledApp }) {
      const started = Date.now();
      const withCookie = await send(stalledApp, "GET", "/increment", `sessionID=${"A".repeat(43)}`);
      const anonymous = await send(stalledApp, "GET", "/increment");
      for (const failed of [withCookie, anonymous]) {
        expect(failed.status).toBe(503);
        expect(failed.headers.get("retry-after")).toBe("1");
        expect(failed.sessionCookies).toEqual([]);
      }
      expect(Date.now() - started).toBeLessThan(2000);
    },
  },
  {
    name: "a request racing a login writes with the pre-login cookie: 409, no Set-Cookie, and the jar keeps the logged-in cookie",
    async run({ app }) {
      const preLogin = await newSession(app);
      const login = await send(app, "POST", "/login", preLogin);
      expect(login.status).toBe(200);
      let jar = jarAfter(preLogin, login);
      expect(jar).toBeDefined();
      expect(jar).not.toBe(preLogin);
      for (const [method, path] of [
        ["GET", "/increment"],
        ["POST", "/regenerate"],
        ["POST", "/login"],
        ["POST", "/destroy"],
      ] as const) {
        // Sent by the browser before the login's answer arrived, so with the pre-login cookie; answered after it.
        const raced = await send(app, method, path, preLogin);
        expect(raced.status, `${method} ${path}`).toBe(409);
        expect(raced.cookies, `${method} ${path}`).toEqual([]);
        jar = jarAfter(jar, raced);
      }
      expect((await whoami(app, jar as string)).user).toBe("alice");
      // Reading with the pre-login cookie is no conflict: it finds no session.
      const read = await send(app, "GET", "/read", preLogin);
      expect(read.status).toBe(200);
      expect(read.body).toBe('{"visitCount":null}');
      expect(read.cookies).toEqual([]);
    },
  },
  {
    name: "cookie.secure over plain HTTP: 403, no Set-Cookie, nothing stored, and the manager reports it once",
    async run({ secureApp }) {
      const before = await secureApp.manager.countSessions();
      for (const [method, path] of [
        ["GET", "/increment"],
        ["POST", "/login"],
        ["GET", "/increment"],
      ] as const) {
        const refused = await send(secureApp, method, path);
        expect(refused.status, `${method} ${path}`).toBe(403);
        expect(refused.cookies, `${method} ${path}`).toEqual([]);
        expect(refused.body, `${method} ${path}`).toContain("HTTPS");
      }
      expect(await secureApp.manager.countSessions()).toBe(before);
      // A request that only reads needs no cookie, so plain HTTP is fine.
      const read = await send(secureApp, "GET", "/read");
      expect(read.status).toBe(200);
      expect(read.cookies).toEqual([]);
      const reports = () => secureApp.events.filter((event) => event.type === "insecure-request");
      expect(reports()).toHaveLength(1);
      // Over HTTPS (as the trusted proxy says) the session is created.
      const secure = await send(secureApp, "GET", "/increment", undefined, HTTPS);
      expect(secure.status).toBe(200);
      expect(secure.sessionCookies).toHaveLength(1);
      expect(secure.sessionCookies[0]).toContain("; Secure");
      expect(await secureApp.manager.countSessions()).toBe((before as number) + 1);
      expect(reports()).toHaveLength(1);
    },
  },
  {
    name: "duplicate session cookies (one planted by a sibling subdomain), in either order: the one that verifies and loads wins",
    async run({ app, secureApp }) {
      for (const [target, headers, planted] of [
        [app, {}, [`sessionID=${"A".repeat(43)}`, "sessionID=planted", "sessionID="]],
        [secureApp, HTTPS, [`sessionID=${"A".repeat(43)}.${"B".repeat(43)}`, `sessionID=${"A".repeat(43)}`, "sessionID=planted"]],
      ] as const) {
        const cookie = await newSession(target, headers);
        let visits = 1;
        for (const plant of planted) {
          for (const header of [`${plant}; ${cookie}`, `${cookie}; ${plant}`]) {
            const exchange = await send(target, "GET", "/increment", header, headers);
            visits++;
            expect(exchange.body, header).toBe(String(visits));
            expect(exchange.cookies, header).toEqual([]);
          }
        }
      }
    },
  },
  {
    name: "every response whose handler used the session carries Vary: Cookie, merged with the app's own Vary",
    async run({ app }) {
      const anonymous = await send(app, "GET", "/read");
      expect(varyNames(anonymous)).toEqual(["cookie"]);
      expect(anonymous.cookies).toEqual([]);
      const unknown = await send(app, "GET", "/read", `sessionID=${"A".repeat(43)}`);
      expect(unknown.body).toBe('{"visitCount":null}');
      expect(varyNames(unknown)).toEqual(["cookie"]);
      for (const path of ["/read-varying", "/read-varying-in-response"]) {
        const exchange = await send(app, "GET", path);
        expect(exchange.status, path).toBe(200);
        expect(varyNames(exchange), path).toEqual(["accept-encoding", "cookie"]);
      }
      // The app's own Vary and Cache-Control, set after the session wrote its cookie, do not undo the session's.
      const cached = await send(app, "GET", "/increment-then-cache-headers");
      expect(cached.body).toBe("1");
      expect(varyNames(cached)).toEqual(["accept-encoding", "cookie"]);
      expect(cached.headers.get("cache-control")).toBe("no-store");
      expect(cached.sessionCookies).toHaveLength(1);
      // A handler that never used its session answers as the app says: no Vary: Cookie.
      const untouched = await send(app, "GET", "/static");
      expect(untouched.body).toBe("no session used");
      expect(varyNames(untouched)).not.toContain("cookie");
      expect(untouched.cookies).toEqual([]);
    },
  },
  {
    name: "remember me: login { persistent: false } gives a cookie without Expires, kept on later rotations; { persistent: true } Expires at the absolute deadline",
    async run({ app }) {
      const browserSession = await send(app, "POST", "/login-browser-session");
      expect(browserSession.status).toBe(200);
      expect(browserSession.sessionCookies).toHaveLength(1);
      expect(expiresOf(browserSession.sessionCookies[0])).toBeUndefined();
      expect(browserSession.sessionCookies[0]).not.toMatch(/max-age/i);
      const rotated = await send(app, "POST", "/regenerate", pairOf(browserSession.sessionCookies[0]));
      expect(rotated.sessionCookies).toHaveLength(1);
      expect(expiresOf(rotated.sessionCookies[0])).toBeUndefined();
      expect(await whoami(app, pairOf(rotated.sessionCookies[0]))).toMatchObject({ user: "alice", persistent: false });

      const remembered = await send(app, "POST", "/login-remember", await newSession(app));
      expect(remembered.sessionCookies).toHaveLength(1);
      const info = await whoami(app, pairOf(remembered.sessionCookies[0]));
      expect(info).toMatchObject({ user: "alice", persistent: true });
      // Expires has whole seconds.
      const deadline = Date.parse(info.absoluteExpiresAt as string);
      expect(expiresOf(remembered.sessionCookies[0])).toBe(Math.floor(deadline / 1000) * 1000);
    },
  },
  {
    name: "cookie attributes over HTTPS: Secure, Partitioned, Priority, HttpOnly, SameSite, Path, and a signed value",
    async run({ secureApp }) {
      const first = await send(secureApp, "POST", "/login", undefined, HTTPS);
      expect(first.status).toBe(200);
      expect(first.sessionCookies).toHaveLength(1);
      const cookie = first.sessionCookies[0] as string;
      expect(cookie).toMatch(/^sessionID=[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}; /);
      const attributes = cookie
        .split(";")
        .slice(1)
        .map((attribute) => attribute.trim().split("=", 1)[0]?.toLowerCase());
      expect(attributes).toEqual(expect.arrayContaining(["path", "expires", "httponly", "secure", "samesite", "partitioned", "priority"]));
      expect(cookie).toContain("; Partitioned");
      expect(cookie).toContain("; Priority=High");
      expect(cookie).toContain("; SameSite=Lax");
      expect((await send(secureApp, "GET", "/whoami", pairOf(cookie), HTTPS)).body).toContain('"user":"alice"');
    },
  },
];
