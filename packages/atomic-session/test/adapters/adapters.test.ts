import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { sessionMiddleware as expressSessions } from "atomic-session/express";
import { sessionPlugin } from "atomic-session/fastify";
import { sessionMiddleware as honoSessions } from "atomic-session/hono";
import { withSessions } from "atomic-session/node";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, it } from "vitest";
import { type RunningApp, type ScenarioApps, type StartApp, scenarios, startScenarioApps } from "./scenarios.js";

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

const startNode: StartApp = (manager, routes) =>
  listening(
    createServer(
      withSessions(manager, async (req, res, session) => {
        const route = routes.find(({ method, path }) => method === req.method && path === req.url);
        if (route === undefined) {
          res.writeHead(404).end();
          return;
        }
        if (route.appCookie !== undefined) res.setHeader("Set-Cookie", route.appCookie);
        const body = await route.run(session);
        res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" }).end(body);
      }),
    ),
  );

const startExpress: StartApp = (manager, routes) => {
  const app = express();
  app.use(expressSessions(manager));
  for (const route of routes) {
    app[route.method === "GET" ? "get" : "post"](route.path, async (req, res) => {
      if (route.appCookie !== undefined) res.append("Set-Cookie", route.appCookie);
      res.type("text/plain").send(await route.run(req.session));
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
        if (route.appCookie !== undefined) reply.header("set-cookie", route.appCookie);
        reply.type("text/plain; charset=utf-8");
        return route.run(request.session);
      },
    });
  }
  await app.listen({ host: "127.0.0.1", port: 0 });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
};

const startHono: StartApp = async (manager, routes) => {
  const app = new Hono().use(honoSessions(manager));
  for (const route of routes) {
    app.on(route.method, route.path, async (c) => {
      if (route.appCookie !== undefined) c.header("Set-Cookie", route.appCookie, { append: true });
      return c.text(await route.run(c.var.session));
    });
  }
  const server = await new Promise<Server>((resolve) => {
    const started = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(started as Server));
  });
  return runningApp(server);
};

const adapters: [name: string, start: StartApp][] = [
  ["node:http", startNode],
  ["Express 5", startExpress],
  ["Fastify 5", startFastify],
  ["Hono on @hono/node-server", startHono],
];

for (const [name, start] of adapters) {
  describe(name, () => {
    let apps: ScenarioApps & { close(): Promise<void> };
    beforeAll(async () => {
      apps = await startScenarioApps(start);
    });
    afterAll(() => apps?.close());
    for (const scenario of scenarios) it(scenario.name, () => scenario.run(apps));
  });
}
