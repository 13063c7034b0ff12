import { createServer, request as httpRequest, type OutgoingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { SessionManager } from "atomic-session";
import { sessionMiddleware as expressSessions } from "atomic-session/express";
import { sessionPlugin } from "atomic-session/fastify";
import { sessionMiddleware as honoSessions } from "atomic-session/hono";
import { withSessions } from "atomic-session/node";
import { MemoryStore } from "atomic-session/stores/memory";
import express from "express";
import express4 from "express4";
import Fastify from "fastify";
import { type Context, Hono } from "hono";
import { etag } from "hono/etag";
import { beforeAll, describe, expect, it, vi } from "vitest";
import {
  type AppHeaders,
  type RunningApp,
  type ScenarioApps,
  type ScenarioRoute,
  type StartApp,
  scenarios,
  startScenarioApps,
} from "./scenarios.js";

/** Listens on a free port of 127.0.0.1. */
async function listening(server: Server): Promise<RunningApp> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return runningApp(server);
}

/** A listening server as the scenarios see it; `close()` also ends idle keep-alive connections, so it never waits on them. */
function runningApp(server: Server): RunningApp {
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

const TEXT = "text/plain; charset=utf-8";

/** The app's own headers a route sets at `when`, or none. */
function appHeadersAt(route: ScenarioRoute, when: AppHeaders["when"]): OutgoingHttpHeaders {
  return route.appHeaders?.when === when ? (route.appHeaders.headers as OutgoingHttpHeaders) : NONE;
}
const NONE: OutgoingHttpHeaders = Object.freeze({});

const startNode: StartApp = (manager, routes) =>
  listening(
    createServer(
      withSessions(manager, async (req, res, session) => {
        const route = routes.find(({ method, path }) => method === req.method && path === req.url);
        if (route === undefined) {
          res.writeHead(404).end();
          return;
        }
        for (const [name, value] of Object.entries(appHeadersAt(route, "before"))) res.setHeader(name, value as string | string[]);
        const body = await route.run(session);
        for (const [name, value] of Object.entries(appHeadersAt(route, "after"))) res.setHeader(name, value as string | string[]);
        // The route's own object, shared by every request: the adapter must not write into it.
        res.setHeader("Content-Type", TEXT);
        res.writeHead(200, appHeadersAt(route, "response")).end(body);
      }),
    ),
  );

/**
 * An Express app (4 or 5) created as with NODE_ENV unset, so that its error handler answers
 * with the development page, which prints the error's stack.
 */
function expressApp<App extends { get(setting: string): unknown }>(create: () => App): App {
  const saved = process.env.NODE_ENV;
  delete process.env.NODE_ENV;
  try {
    const app = create();
    expect(app.get("env")).toBe("development");
    return app;
  } finally {
    process.env.NODE_ENV = saved;
  }
}

/** The handler of one route, in Express's idiom (the same in 4 and 5). */
function expressHandler(route: ScenarioRoute) {
  return async (req: express.Request, res: express.Response) => {
    res.set(appHeadersAt(route, "before"));
    const body = await route.run(req.session);
    res.set(appHeadersAt(route, "after"));
    const given = appHeadersAt(route, "response");
    if (Object.keys(given).length > 0) {
      // The route's own object, shared by every request: the adapter must not write into it.
      res.setHeader("Content-Type", TEXT);
      res.writeHead(200, given).end(body);
      return;
    }
    res.type("text/plain").send(body);
  };
}

const startExpress5: StartApp = (manager, routes) => {
  const app = expressApp(() => express());
  app.use(expressSessions(manager));
  for (const route of routes) app[route.method === "GET" ? "get" : "post"](route.path, expressHandler(route));
  return listening(createServer(app));
};

// Express 4 does not forward an async handler's rejection: the handler passes it to next().
const startExpress4: StartApp = (manager, routes) => {
  const app = expressApp(() => express4());
  app.use(expressSessions(manager));
  for (const route of routes) {
    const handle = expressHandler(route);
    app[route.method === "GET" ? "get" : "post"](route.path, (req, res, next) => {
      handle(req, res).catch(next);
    });
  }
  return listening(createServer(app));
};

const startFastify: StartApp = async (manager, routes) => {
  const app = Fastify();
  await app.register(sessionPlugin, { manager });
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.path,
      handler: async (request, reply) => {
        reply.headers(appHeadersAt(route, "before"));
        const body = await route.run(request.session);
        reply.headers({ ...appHeadersAt(route, "after"), ...appHeadersAt(route, "response") });
        reply.type(TEXT);
        return body;
      },
    });
  }
  await app.listen({ host: "127.0.0.1", port: 0 });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
};

/** Headers as a Fetch `Headers`: a list value gives one header line each. */
function fetchHeaders(given: OutgoingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(given)) {
    for (const one of Array.isArray(value) ? value : [String(value)]) headers.append(name, one);
  }
  return headers;
}

/** Sets (replacing) headers on a Hono context. */
function setHonoHeaders(c: Context, given: OutgoingHttpHeaders): void {
  for (const [name, value] of Object.entries(given)) {
    c.header(name, undefined);
    for (const one of Array.isArray(value) ? value : [String(value)]) c.header(name, one, { append: true });
  }
}

const startHono: StartApp = async (manager, routes) => {
  const app = new Hono().use(honoSessions(manager));
  for (const route of routes) {
    app.on(route.method, route.path, async (c) => {
      setHonoHeaders(c, appHeadersAt(route, "before"));
      const body = await route.run(c.var.session);
      setHonoHeaders(c, appHeadersAt(route, "after"));
      const given = appHeadersAt(route, "response");
      // A plain Response, as a handler may answer.
      if (Object.keys(given).length > 0) return new Response(body, { headers: fetchHeaders({ "Content-Type": TEXT, ...given }) });
      return c.text(body);
    });
  }
  const server = await new Promise<Server>((resolve) => {
    const started = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(started as Server));
  });
  return runningApp(server);
};

const adapters: [name: string, start: StartApp][] = [
  ["node:http", startNode],
  ["Express 4", startExpress4],
  ["Express 5", startExpress5],
  ["Fastify 5", startFastify],
  ["Hono on @hono/node-server", startHono],
];

for (const [name, start] of adapters) {
  describe(name, () => {
    let apps: ScenarioApps & { close(): Promise<void> };
    beforeAll(async () => {
      // Express (outside NODE_ENV=test) and Hono log every error they answer; the scenarios look at the answers.
      const quiet = vi.spyOn(console, "error").mockImplementation(() => {});
      apps = await startScenarioApps(start);
      return async () => {
        await apps?.close();
        quiet.mockRestore();
      };
    });
    for (const scenario of scenarios) it(scenario.name, () => scenario.run(apps));
  });
}

describe("Hono: responses the scenarios do not build", () => {
  const sessionApp = (manager: SessionManager) =>
    new Hono()
      .use(honoSessions(manager))
      .get("/visit", async (c) => c.text(`visit ${await c.var.session.increment("visits")}`))
      // Response.redirect's headers are immutable: off @hono/node-server the session's headers go on a copy.
      .get("/away", async (c) => {
        await c.var.session.increment("visits");
        return Response.redirect("http://127.0.0.1/elsewhere", 302);
      });

  it("puts the session's cookie on a response whose headers are immutable (on @hono/node-server, in writeHead)", async () => {
    const store = new MemoryStore();
    const app = sessionApp(new SessionManager({ store }));
    const server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(started as Server));
    });
    const { url, close } = runningApp(server);
    try {
      const away = await fetch(`${url}/away`, { redirect: "manual" });
      expect(away.status).toBe(302);
      expect(away.headers.get("location")).toBe("http://127.0.0.1/elsewhere");
      expect(away.headers.get("cache-control")).toBe("no-store");
      expect(away.headers.get("vary")).toBe("Cookie");
      const cookie = away.headers.getSetCookie()[0]?.split(";")[0];
      expect(cookie).toMatch(/^sessionID=/);
      // Two Cookie header lines: Node joins them with "; ", as a browser's one line would read.
      const visit = await new Promise<string>((resolve, reject) => {
        const request = createServerRequest(url, "/visit", ["Cookie", "other=1", "Cookie", cookie as string]);
        request.on("response", (response) => {
          let body = "";
          response.on("data", (chunk) => (body += chunk)).on("end", () => resolve(body));
        });
        request.on("error", reject).end();
      });
      expect(visit).toBe("visit 2");
    } finally {
      await close();
      await store.dispose();
    }
  });

  it("keeps the session's headers when a middleware before it rebuilds the response (etag)", async () => {
    const store = new MemoryStore();
    const app = new Hono()
      .use(etag())
      .use(honoSessions(new SessionManager({ store })))
      .get("/visit", async (c) => c.text(`visit ${await c.var.session.increment("visits")}`));
    const server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(started as Server));
    });
    const { url, close } = runningApp(server);
    try {
      const first = await fetch(`${url}/visit`);
      expect(first.headers.get("etag")).toMatch(/^"/);
      const cookie = first.headers.getSetCookie()[0]?.split(";")[0];
      expect(cookie).toMatch(/^sessionID=/);
      expect(first.headers.get("vary")).toBe("Cookie");
      const second = await fetch(`${url}/visit`, { headers: { Cookie: cookie as string } });
      expect(await second.text()).toBe("visit 2");
    } finally {
      await close();
      await store.dispose();
    }
  });

  it("reads the request from the web Request off @hono/node-server (app.request)", async () => {
    const store = new MemoryStore();
    const app = sessionApp(new SessionManager({ store, cookie: { secure: "auto" } }));
    const first = await app.request("https://example.test/visit");
    expect(await first.text()).toBe("visit 1");
    const setCookie = first.headers.getSetCookie()[0] ?? "";
    // The scheme of a runtime's own URL says HTTPS: the cookie is Secure.
    expect(setCookie).toMatch(/; Secure/);
    const second = await app.request("https://example.test/visit", { headers: { Cookie: setCookie.split(";")[0] as string } });
    expect(await second.text()).toBe("visit 2");
    // Immutable headers (Response.redirect): the session's headers go on a copy.
    const away = await app.request("https://example.test/away", { headers: { Cookie: setCookie.split(";")[0] as string } });
    expect(away.status).toBe(302);
    expect(away.headers.get("location")).toBe("http://127.0.0.1/elsewhere");
    expect(away.headers.get("vary")).toBe("Cookie");
    const visits = await app.request("https://example.test/visit", { headers: { Cookie: setCookie.split(";")[0] as string } });
    expect(await visits.text()).toBe("visit 4");
    await store.dispose();
  });
});

/** A GET with raw header lines, as `fetch` cannot send (two Cookie lines). */
function createServerRequest(base: string, path: string, headers: string[]) {
  const { hostname, port } = new URL(base);
  return httpRequest({ host: hostname, port: Number(port), path, method: "GET", headers: ["Host", `${hostname}:${port}`, ...headers] });
}

describe("Fastify: a plugin context created before the session plugin", () => {
  it("answers normally when an earlier onRequest hook answered before the session opened", async () => {
    const store = new MemoryStore();
    const app = Fastify();
    app.addHook("onRequest", async (request, reply) => {
      if (request.url.endsWith("/blocked")) return reply.code(401).send("no");
    });
    // Created before sessionPlugin registers: its replies have the shape they had then.
    app.register(async (child) => {
      child.get("/early/blocked", async () => "never");
      child.get("/early/visit", async (request) => `visit ${await request.session.increment("visits")}`);
    });
    await app.register(sessionPlugin, { manager: new SessionManager({ store }) });
    try {
      const blocked = await app.inject({ url: "/early/blocked" });
      expect(blocked.statusCode).toBe(401);
      expect(blocked.body).toBe("no");
      expect(blocked.headers["set-cookie"]).toBeUndefined();
      const visit = await app.inject({ url: "/early/visit" });
      expect(visit.body).toBe("visit 1");
      expect(String(visit.headers["set-cookie"])).toMatch(/^sessionID=/);
    } finally {
      await app.close();
      await store.dispose();
    }
  });
});
