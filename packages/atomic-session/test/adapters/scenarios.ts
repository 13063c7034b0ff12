import type { Session, SessionStore } from "atomic-session";
import { SessionManager } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { expect } from "vitest";

/**
 * One route of the app every adapter serves for the scenarios: what the handler does with
 * the session, and the text it answers with (200, text/plain).
 */
export interface ScenarioRoute {
  method: "GET" | "POST";
  path: string;
  /** A cookie of the application's own, which the handler sets through the framework before it uses the session. */
  appCookie?: string;
  run(session: Session): Promise<string>;
}

/** The routes, the same for every adapter; each adapter's app is only the glue that serves them. */
export const scenarioRoutes: readonly ScenarioRoute[] = [
  { method: "GET", path: "/increment", run: async (session) => String(await session.increment("visitCount")) },
  { method: "GET", path: "/read", run: async (session) => JSON.stringify({ visitCount: (await session.get("visitCount")) ?? null }) },
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
    appCookie: "theme=dark; Path=/",
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
];

/** An app listening on 127.0.0.1. */
export interface RunningApp {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  close(): Promise<void>;
}

/** Starts an app of one adapter that serves `routes` with sessions from `manager`. */
export type StartApp = (manager: SessionManager, routes: readonly ScenarioRoute[]) => Promise<RunningApp>;

/** The two apps a scenario may talk to, both from one adapter. */
export interface ScenarioApps {
  /** A memory store that works, except that it refuses `compareAndSet` (the `/fail` route). */
  app: RunningApp;
  /** A memory store that never answers, behind a 100 ms store deadline. */
  stalledApp: RunningApp;
}

/** Starts both apps of one adapter; `close()` stops them and disposes their stores. */
export async function startScenarioApps(startApp: StartApp): Promise<ScenarioApps & { close(): Promise<void> }> {
  const memory = [new MemoryStore(), new MemoryStore()] as const;
  const refusing = storeWhere(memory[0], ["compareAndSet"], () =>
    Promise.reject(new Error("READONLY You can't write against a read only replica")),
  );
  const stalled = storeWhere(
    memory[1],
    ["load", "create", "apply", "increment", "compareAndSet", "rotate", "destroy"],
    () => new Promise(() => {}),
  );
  const app = await startApp(new SessionManager({ store: refusing }), scenarioRoutes);
  const stalledApp = await startApp(new SessionManager({ store: stalled, storeTimeoutMs: 100 }), scenarioRoutes);
  return {
    app,
    stalledApp,
    async close() {
      await Promise.all([app.close(), stalledApp.close()]);
      for (const store of memory) await store.dispose();
    },
  };
}

/** `store`, with `operations` replaced by `replacement`. */
function storeWhere(store: SessionStore, operations: readonly string[], replacement: () => Promise<never>): SessionStore {
  return new Proxy(store, {
    get(target, property) {
      if (typeof property === "string" && operations.includes(property)) return replacement;
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

async function send(app: RunningApp, method: "GET" | "POST", path: string, cookie?: string): Promise<Exchange> {
  const response = await fetch(`${app.url}${path}`, { method, headers: cookie === undefined ? {} : { cookie } });
  const cookies = response.headers.getSetCookie();
  return {
    status: response.status,
    body: await response.text(),
    headers: response.headers,
    cookies,
    sessionCookies: cookies.filter((value) => value.startsWith("sessionID=")),
  };
}

/** The `name=value` pair a browser sends back for a Set-Cookie value. */
function pairOf(setCookie: string | undefined): string {
  expect(setCookie).toBeDefined();
  return (setCookie as string).split(";", 1)[0] as string;
}

/** Starts a session with one visit; resolves the cookie to send back. */
async function newSession(app: RunningApp): Promise<string> {
  const first = await send(app, "GET", "/increment");
  expect(first.body).toBe("1");
  return pairOf(first.sessionCookies[0]);
}

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
      expect(first.headers.get("cache-control")).toContain("no-store");
      expect(first.headers.get("vary")).toMatch(/(^|,)\s*cookie\s*(,|$)/i);
      const second = await send(app, "GET", "/increment", pairOf(first.sessionCookies[0]));
      expect(second.body).toBe("2");
      expect(second.cookies).toEqual([]);
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
      expect(destroyed.headers.get("cache-control")).toContain("no-store");
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
      expect(exchange.cookies).toContain("theme=dark; Path=/");
      expect((await send(app, "GET", "/read", pairOf(exchange.sessionCookies[0]))).body).toBe('{"visitCount":1}');
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
];
