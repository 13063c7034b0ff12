/**
 * Requests racing a login or a logout, over HTTP, as a browser sends them: the response that
 * arrives last sets the browser's cookie. A racing request never answers 5xx, never hands out a
 * cookie that replaces the newer one, and never answers success for a write that went nowhere.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { everyStore, type ServerStoreSetup } from "../../test-support/server-stores.js";

const setups = everyStore;

const TRIALS = 60;

/** A browser: one cookie jar; responses update it in the order they arrive. */
async function browserWithSession(origin: string): Promise<CookieJar> {
  const jar = new CookieJar();
  expect(await jar.text(`${origin}/`)).toBe("Hello World #0\n");
  return jar;
}

for (const [name, makeSetup] of setups) {
  describe(`requests racing a login or a logout on ${name}`, () => {
    let setup: ServerStoreSetup;
    let server: ServerProcess;
    beforeAll(async () => {
      setup = await makeSetup();
      server = await ServerProcess.start({ ...setup.env, SESSION_MAX_PER_USER: "0" });
    });
    afterAll(async () => {
      await server?.stop();
      await setup?.close();
    });

    it(`a login and a concurrent GET / on the pre-login cookie: the browser always ends logged in (${TRIALS} trials)`, async () => {
      const outcomes = { "GET / before the login": 0, "GET / after the login (409)": 0 };
      for (let trial = 0; trial < TRIALS; trial++) {
        const jar = await browserWithSession(server.url);
        const user = `racer-${trial}`;
        const [login, visit] = await Promise.all([jar.login(server.url, user), jar.fetch(`${server.url}/`)]);
        expect(login.status).toBe(200);
        expect([200, 409]).toContain(visit.status);
        if (visit.status === 409) {
          // Refused: nothing written, and no cookie that could replace the logged-in one.
          expect(visit.headers.getSetCookie()).toEqual([]);
          expect(await visit.json()).toEqual({ error: expect.stringMatching(/concurrent request/) });
          outcomes["GET / after the login (409)"]++;
        } else {
          expect(await visit.text()).toBe("Hello World #1\n");
          outcomes["GET / before the login"]++;
        }
        const session = (await (await jar.fetch(`${server.url}/session`)).json()) as { user: string; visitCount: number };
        expect(session.user).toBe(user);
        // The visit counted exactly when it answered 200.
        expect(session.visitCount).toBe(visit.status === 200 ? 2 : 1);
      }
      console.log(`${name}: ${JSON.stringify(outcomes)}`);
    });

    it("a request on the pre-login cookie that arrives after the login: 409, no cookie, and the browser stays logged in", async () => {
      for (const [method, path] of [
        ["GET", "/"],
        ["GET", "/account"],
        ["POST", "/logout"],
      ] as const) {
        const jar = await browserWithSession(server.url);
        const stale = jar.cookie as string;
        expect((await jar.login(server.url, "late")).status).toBe(200);
        const late = await fetch(`${server.url}${path}`, { method, headers: { cookie: stale } });
        expect(late.status, `${method} ${path}`).toBe(409);
        expect(late.headers.getSetCookie()).toEqual([]);
        const session = await (await jar.fetch(`${server.url}/session`)).json();
        expect(session).toMatchObject({ user: "late", visitCount: 1 });
      }
      // A read that writes nothing sees no session, and hands out none.
      const jar = await browserWithSession(server.url);
      const stale = jar.cookie as string;
      expect((await jar.login(server.url, "late")).status).toBe(200);
      const read = await fetch(`${server.url}/session`, { headers: { cookie: stale } });
      expect(read.status).toBe(404);
      expect(read.headers.getSetCookie()).toEqual([]);
    });

    it(`a double-submitted login logs in once: one session for the user, no orphan (${TRIALS} trials)`, async () => {
      for (let trial = 0; trial < TRIALS; trial++) {
        const jar = await browserWithSession(server.url);
        const user = `double-${trial}`;
        const answers = await Promise.all([jar.login(server.url, user), jar.login(server.url, user)]);
        expect(answers.map((answer) => answer.status).sort()).toEqual([200, 409]);
        const sessions = (await (await jar.fetch(`${server.url}/sessions`)).json()) as { current: boolean }[];
        expect(sessions).toHaveLength(1);
        expect(sessions[0]?.current).toBe(true);
      }
    });

    it(`GET /account racing a logout or a login never answers 5xx (${TRIALS} trials each)`, async () => {
      const statuses = new Map<number, number>();
      for (let trial = 0; trial < TRIALS; trial++) {
        for (const end of ["logout", "login"] as const) {
          const jar = await browserWithSession(server.url);
          if (end === "logout") expect((await jar.login(server.url, `account-${trial}`)).status).toBe(200);
          const other = new CookieJar();
          other.cookie = jar.cookie;
          const [page] = await Promise.all([
            jar.fetch(`${server.url}/account`),
            end === "logout" ? other.fetch(`${server.url}/logout`, { method: "POST" }) : other.login(server.url, `account-${trial}`),
          ]);
          statuses.set(page.status, (statuses.get(page.status) ?? 0) + 1);
          expect([200, 409]).toContain(page.status);
          if (page.status === 409) expect(page.headers.getSetCookie()).toEqual([]);
          else expect(await page.text()).toContain("Visit count");
        }
      }
      console.log(`${name}: GET /account statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    });

    it("a request after a logout starts afresh: 200 with a new cookie, never the destroyed session", async () => {
      const jar = await browserWithSession(server.url);
      const stale = jar.cookie as string;
      expect((await jar.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204);
      const late = await fetch(`${server.url}/`, { headers: { cookie: stale } });
      expect(await late.text()).toBe("Hello World #0\n");
      expect(late.headers.getSetCookie()[0]?.split(";")[0]).not.toBe(stale);
    });
  });
}
