import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../packages/atomic-session/src/core/ids.js";
import { createTestDatabase, type TestDatabase } from "../../test-support/postgres.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";

async function sessionOf(jar: CookieJar, url: string): Promise<{ status: number; user?: string | null; visitCount?: number }> {
  const response = await jar.fetch(`${url}/session`);
  return response.status === 200 ? { status: 200, ...((await response.json()) as object) } : { status: response.status };
}

for (const [name, env] of [
  ["DATABASE_URL alone", (url: string) => ({ DATABASE_URL: url })],
  ["SESSION_STORE=postgres", (url: string) => ({ SESSION_STORE: "postgres", DATABASE_URL: url, POSTGRES_TABLE: "web_sessions" })],
] as const) {
  describe(`reference server on PostgreSQL (${name})`, () => {
    let database: TestDatabase;
    let server: ServerProcess;
    const table = "POSTGRES_TABLE" in env("") ? "web_sessions" : "atomic_session";
    beforeAll(async () => {
      database = await createTestDatabase("server");
      server = await ServerProcess.start(env(database.url));
    });
    afterAll(async () => {
      await server?.stop();
      await database?.drop();
    });

    it("counts visits, and keeps counting across a server restart", async () => {
      const jar = new CookieJar();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
      await server.restart();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #3\n");
      expect(await new CookieJar().text(`${server.url}/`)).toBe("Hello World #0\n");
      // The session is one row under the hash of its ID; the ID itself is nowhere in the table.
      const { rows } = await database.pool.query(`SELECT key, fields::text AS fields FROM "public"."${table}" WHERE key = $1`, [
        storeKeyOf(jar.id as string),
      ]);
      expect(rows).toEqual([{ key: storeKeyOf(jar.id as string), fields: '{"visitCount": "4"}' }]);
      const dump = await database.pool.query(`SELECT string_agg(t::text, ' ') AS dump FROM "public"."${table}" AS t`);
      expect(dump.rows[0].dump).not.toContain(jar.id);
    });

    it("logs in (a new ID, the visit count kept) and out (the session ends)", async () => {
      const jar = new CookieJar();
      await jar.fetch(`${server.url}/`);
      const anonymous = jar.cookie;
      const login = await jar.login(server.url, "ada");
      expect(login.status).toBe(200);
      expect(await login.json()).toEqual({ user: "ada" });
      expect(jar.cookie).not.toBe(anonymous);
      expect(await sessionOf(jar, server.url)).toMatchObject({ status: 200, user: "ada", visitCount: 1 });
      // The old cookie no longer opens the session.
      const stale = new CookieJar();
      stale.cookie = anonymous;
      expect((await sessionOf(stale, server.url)).status).toBe(404);
      const logout = await jar.fetch(`${server.url}/logout`, { method: "POST" });
      expect(logout.status).toBe(204);
      expect(jar.cookie).toBeUndefined();
      const { rows } = await database.pool.query(`SELECT count(*)::int AS n FROM "public"."${table}" WHERE user_id = 'ada'`);
      expect(rows).toEqual([{ n: 0 }]);
    });

    it("lists a user's sessions and logs out everywhere", async () => {
      const phone = new CookieJar();
      const laptop = new CookieJar();
      await phone.login(server.url, "grace", "phone");
      await laptop.login(server.url, "grace", "laptop");
      const listed = (await (await phone.fetch(`${server.url}/sessions`)).json()) as { userAgent: string; current: boolean }[];
      expect(listed.map(({ userAgent }) => userAgent).sort()).toEqual(["laptop", "phone"]);
      expect((await phone.fetch(`${server.url}/logout-all`, { method: "POST" })).status).toBe(204);
      expect((await sessionOf(laptop, server.url)).status).toBe(404);
      expect((await phone.fetch(`${server.url}/sessions`)).status).toBe(401);
    });
  });
}
