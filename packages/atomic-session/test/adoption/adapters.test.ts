/**
 * The clearing `Set-Cookie` of an adoption (`ResponseHeaders.appendCookie`) through every
 * adapter, over real HTTP on a real redis-server: it goes out beside the new session cookie
 * and the application's own cookie, whichever way the application sets its headers, with
 * `Cache-Control: no-store` and `Vary: Cookie`.
 */
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { SessionManager } from "atomic-session";
import { sessionMiddleware as expressSessions } from "atomic-session/express";
import { expressSessionAdoption } from "atomic-session/express-session";
import { sessionPlugin } from "atomic-session/fastify";
import { sessionMiddleware as honoSessions } from "atomic-session/hono";
import { withSessions } from "atomic-session/node";
import { RedisStore } from "atomic-session/stores/redis";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";

const signature = createRequire(import.meta.url)("cookie-signature") as { sign(value: string, secret: string): string };
const SECRET = "the express-session secret";
const APP_COOKIE = "theme=dark; Path=/";

interface App {
  url: string;
  close(): Promise<void>;
}

async function listening(server: Server): Promise<App> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Each adapter's app: `GET /<how>` reads the session, then sets the app's own cookie `how`, and answers the user. */
const adapters: [string, string[], (manager: SessionManager) => Promise<App>][] = [
  [
    "node:http",
    ["setHeader", "writeHead object", "writeHead list"],
    (manager) =>
      listening(
        createServer(
          withSessions(manager, async (req, res, session) => {
            const body = JSON.stringify({ userId: (await session.info())?.userId ?? null });
            if (req.url === "/setHeader") {
              res.setHeader("Set-Cookie", APP_COOKIE);
              res.end(body);
            } else if (req.url === "/writeHead%20object") {
              res.writeHead(200, { "Set-Cookie": APP_COOKIE, "Content-Type": "application/json" }).end(body);
            } else {
              res.writeHead(200, ["Set-Cookie", APP_COOKIE, "Content-Type", "application/json"]).end(body);
            }
          }),
        ),
      ),
  ],
  [
    "Express 5",
    ["res.cookie"],
    (manager) => {
      const app = express();
      app.use(expressSessions(manager));
      app.get("/res.cookie", async (req, res) => {
        const userId = (await req.session.info())?.userId ?? null;
        res.cookie("theme", "dark").json({ userId });
      });
      return listening(createServer(app));
    },
  ],
  [
    "Fastify 5",
    ["reply.header"],
    async (manager) => {
      const app = Fastify();
      await app.register(sessionPlugin, { manager });
      app.get("/reply.header", async (request, reply) => {
        const userId = (await request.session.info())?.userId ?? null;
        reply.header("set-cookie", APP_COOKIE);
        return { userId };
      });
      await app.listen({ host: "127.0.0.1", port: 0 });
      return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() };
    },
  ],
  [
    "Hono",
    ["c.header"],
    async (manager) => {
      const app = new Hono().use(honoSessions(manager));
      app.get("/c.header", async (c) => {
        const userId = (await c.var.session.info())?.userId ?? null;
        c.header("Set-Cookie", APP_COOKIE, { append: true });
        return c.json({ userId });
      });
      const server = await new Promise<Server>((resolve) => {
        const started = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(started as Server));
      });
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      };
    },
  ],
];

describe("the legacy cookie is cleared through every adapter", () => {
  let redis: RedisServer;
  let client: ReturnType<typeof createClient>;
  let manager: SessionManager;
  let sequence = 0;

  beforeAll(async () => {
    redis = await startRedisServer();
    client = createClient({ url: redis.url });
    client.on("error", () => {});
    await client.connect();
    manager = new SessionManager({
      store: new RedisStore({ client }),
      adopt: expressSessionAdoption({ client, secrets: SECRET, userField: "user" }),
    });
  });

  afterAll(async () => {
    client?.destroy();
    await redis?.stop();
  });

  /** A legacy session as connect-redis 9 writes it (`SET sess:<id> <JSON> EX <ttl>`), and the cookie express-session gave for it. */
  async function legacySession(user: string): Promise<string> {
    const id = `legacy-${++sequence}-${Math.random().toString(36).slice(2)}`;
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const record = { cookie: { originalMaxAge: 86_400_000, expires, httpOnly: true, path: "/" }, user };
    await client.set(`sess:${id}`, JSON.stringify(record), { expiration: { type: "EX", value: 86_400 } });
    return `connect.sid=${encodeURIComponent(`s:${signature.sign(id, SECRET)}`)}`;
  }

  for (const [adapter, routes, start] of adapters) {
    it(`${adapter}: the new cookie, the clearing one and the application's own all go out`, async () => {
      const app = await start(manager);
      try {
        for (const route of routes) {
          const user = `${adapter}-${route}`;
          const response = await fetch(`${app.url}/${encodeURIComponent(route)}`, { headers: { cookie: await legacySession(user) } });
          expect(response.status, route).toBe(200);
          expect(await response.json(), route).toEqual({ userId: user });
          const cookies = response.headers.getSetCookie();
          expect(cookies.map((cookie) => cookie.split("=", 1)[0]).sort(), route).toEqual(["connect.sid", "sessionID", "theme"]);
          expect(
            cookies.find((cookie) => cookie.startsWith("connect.sid=")),
            route,
          ).toMatch(/^connect\.sid=; Max-Age=0; Path=\//);
          expect(response.headers.get("cache-control"), route).toBe("no-store");
          expect(response.headers.get("vary"), route).toMatch(/\bCookie\b/);
        }
      } finally {
        await app.close();
      }
    });
  }
});
