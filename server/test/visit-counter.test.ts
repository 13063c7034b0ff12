import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../packages/atomic-session/src/core/ids.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { memorySetup, redisSetup, type ServerStoreSetup, sqliteSetup } from "../../test-support/server-stores.js";

const setups: [string, () => Promise<ServerStoreSetup>][] = [
  ["sqlite (the default)", sqliteSetup],
  ["memory", memorySetup],
  ["redis", () => redisSetup(3)],
];

for (const [name, makeSetup] of setups) {
  describe(`reference server on ${name}`, () => {
    let setup: ServerStoreSetup;
    let server: ServerProcess;
    beforeAll(async () => {
      setup = await makeSetup();
      server = await ServerProcess.start(setup.env);
    });
    afterAll(async () => {
      await server?.stop();
      await setup.close();
    });

    it("counts visits like the seed's curl transcript: #0 #1 #2, restart, #3 (#0 again on memory)", async () => {
      const jar = new CookieJar();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
      await server.restart();
      expect(await jar.text(`${server.url}/`)).toBe(setup.persistent ? "Hello World #3\n" : "Hello World #0\n");
      const other = new CookieJar();
      expect(await other.text(`${server.url}/`)).toBe("Hello World #0\n");
    });

    it("sets a hardened cookie once, with no-store and Vary: Cookie, and not again on later visits", async () => {
      const jar = new CookieJar();
      const first = await jar.fetch(`${server.url}/`);
      const [setCookie] = first.headers.getSetCookie();
      expect(setCookie).toMatch(/^sessionID=[A-Za-z0-9_-]{43}; /);
      expect(setCookie).toContain("HttpOnly");
      expect(setCookie).toContain("SameSite=Lax");
      expect(setCookie).toContain("Path=/");
      expect(setCookie).not.toMatch(/Domain|Secure/i);
      expect(first.headers.get("cache-control")).toBe("no-store");
      expect(first.headers.get("vary")).toMatch(/cookie/i);
      const second = await jar.fetch(`${server.url}/`);
      expect(second.headers.getSetCookie()).toEqual([]);
      expect(await second.text()).toBe("Hello World #1\n");
    });

    it("answers GET /session for the caller's session and 404 without one", async () => {
      const jar = new CookieJar();
      const none = await jar.fetch(`${server.url}/session`);
      expect(none.status).toBe(404);
      expect(none.headers.getSetCookie()).toEqual([]);
      await jar.fetch(`${server.url}/`);
      await jar.fetch(`${server.url}/`);
      const response = await jar.fetch(`${server.url}/session`);
      expect(response.status).toBe(200);
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ visitCount: 2, user: null });
      expect(Date.parse(body.createdAt as string)).toBeLessThanOrEqual(Date.now());
      expect(Date.parse(body.expiresAt as string)).toBeGreaterThan(Date.now());
      expect(JSON.stringify(body)).not.toContain(jar.id);
    });

    it("answers /healthz, and cookieless /healthz and /session leave the store as it was", async (context) => {
      if (!setup.persistent) return context.skip();
      const before = await setup.count();
      for (let i = 0; i < 5; i++) {
        const health = await fetch(`${server.url}/healthz`);
        expect(health.status).toBe(200);
        expect(await health.json()).toEqual({ status: "ok" });
        expect(health.headers.getSetCookie()).toEqual([]);
        const session = await fetch(`${server.url}/session`);
        expect(session.status).toBe(404);
        expect(session.headers.getSetCookie()).toEqual([]);
      }
      expect(await setup.count()).toBe(before);
    });

    it("logs JSON lines with a session fingerprint and never the raw ID, in logs or in the store", async () => {
      const jar = new CookieJar();
      await jar.fetch(`${server.url}/`);
      await jar.fetch(`${server.url}/`);
      await jar.fetch(`${server.url}/session`);
      const id = jar.id as string;
      await new Promise((resolve) => setTimeout(resolve, 100));
      const lines = server.jsonLogs();
      const visits = lines.filter((line) => line.msg === "Visits: 1");
      expect(visits.length).toBeGreaterThan(0);
      const fingerprint = visits.at(-1)?.session;
      expect(fingerprint).toMatch(/^[A-Za-z0-9_-]{16}$/);
      expect(lines.filter((line) => line.msg === "request" && line.session === fingerprint)).toHaveLength(3);
      expect(lines.some((line) => line.msg === "Hello world" && line.session === fingerprint)).toBe(true);
      expect(server.logs.join("\n")).not.toContain(id);
      expect(await setup.dump()).not.toContain(id);
    });

    it("answers unknown routes 404 without creating a session", async () => {
      const response = await fetch(`${server.url}/nope`);
      expect(response.status).toBe(404);
      expect(response.headers.getSetCookie()).toEqual([]);
    });
  });
}

describe("reference server on redis: the database named by the URL", () => {
  let setup: Awaited<ReturnType<typeof redisSetup>>;
  let server: ServerProcess;
  beforeAll(async () => {
    setup = await redisSetup(3);
    server = await ServerProcess.start(setup.env);
  });
  afterAll(async () => {
    await server?.stop();
    await setup?.close();
  });

  it("writes hashed keys, each with a TTL, into that database and no other", async () => {
    const jar = new CookieJar();
    await jar.text(`${server.url}/`);
    await jar.text(`${server.url}/`);
    const keys = await setup.client.keys("*");
    expect(keys).toEqual([`as:${storeKeyOf(jar.id as string)}`]);
    const ttl = await setup.client.pTTL(keys[0] as string);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30 * 60_000);
    const db0 = createClient({ url: setup.redis.urlFor(0) });
    db0.on("error", () => {});
    await db0.connect();
    try {
      expect(await db0.dbSize()).toBe(0);
    } finally {
      await db0.quit();
    }
  });
});
