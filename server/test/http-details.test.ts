/**
 * The reference server's answers in the details a hostile review checks: caching headers on
 * personal answers, text no store can keep, a Secure-only cookie over plain HTTP, duplicate
 * session cookies.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { everyStore, type ServerStoreSetup, sqliteSetup } from "../../test-support/server-stores.js";

const setups = everyStore;

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
      await setup?.close();
    });

    it("personal answers carry Cache-Control: no-store and Vary: Cookie, with or without a session", async () => {
      const jar = new CookieJar();
      for (const path of ["/session", "/sessions", "/account", "/"]) {
        const response = await jar.fetch(`${server.url}${path}`);
        expect(response.headers.get("cache-control"), path).toBe("no-store");
        expect(response.headers.get("vary"), path).toMatch(/\bCookie\b/);
      }
      expect((await jar.login(server.url, "cache")).headers.get("cache-control")).toBe("no-store");
      for (const path of ["/session", "/sessions", "/account"]) {
        const response = await jar.fetch(`${server.url}${path}`);
        expect(response.status, path).toBe(200);
        expect(response.headers.get("cache-control"), path).toBe("no-store");
        expect(response.headers.get("vary"), path).toMatch(/\bCookie\b/);
      }
    });

    it("a user name with a lone surrogate is refused with 400, and two such names never share sessions", async () => {
      for (const user of ["\ud800x", "\udbffx", "x\udc00", "nul\u0000"]) {
        const jar = new CookieJar();
        const response = await jar.login(server.url, user);
        expect(response.status, JSON.stringify(user)).toBe(400);
        expect(response.headers.getSetCookie()).toEqual([]);
      }
      // Well-formed text beyond the BMP is a user name like any other, on every store.
      const jar = new CookieJar();
      expect((await jar.login(server.url, "𝒜da 🔑")).status).toBe(200);
      const sessions = (await (await jar.fetch(`${server.url}/sessions`)).json()) as unknown[];
      expect(sessions).toHaveLength(1);
      expect(((await (await jar.fetch(`${server.url}/session`)).json()) as { user: string }).user).toBe("𝒜da 🔑");
    });

    it("remember me: the login chooses a persistent or a browser-session cookie, and the account form has the checkbox", async () => {
      const login = (jar: CookieJar, remember: boolean | undefined) =>
        jar.fetch(`${server.url}/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(remember === undefined ? { user: "remember" } : { user: "remember", remember }),
        });
      const cookieOf = (response: Response) => response.headers.getSetCookie().find((value) => value.startsWith("sessionID=")) ?? "";
      expect(cookieOf(await login(new CookieJar(), true))).toMatch(/; Expires=/);
      expect(cookieOf(await login(new CookieJar(), undefined))).toMatch(/; Expires=/);
      const forgetful = new CookieJar();
      const browserSession = cookieOf(await login(forgetful, false));
      expect(browserSession).toMatch(/^sessionID=/);
      expect(browserSession).not.toMatch(/Expires=|Max-Age=/);
      expect((await login(new CookieJar(), "yes" as unknown as boolean)).status).toBe(400);
      expect(await new CookieJar().text(`${server.url}/account`)).toContain('<input type="checkbox" name="remember">');
    });

    it("refuses state changes a browser sends from another origin (403), and lets same-origin and non-browser clients through", async () => {
      const jar = new CookieJar();
      expect((await jar.login(server.url, "origin")).status).toBe(200);
      const host = new URL(server.url).host;
      for (const origin of ["https://evil.example", `http://sub.${host}`, "null"]) {
        const refused = await jar.fetch(`${server.url}/logout-all`, { method: "POST", headers: { origin, "content-type": "text/plain" } });
        expect(refused.status, origin).toBe(403);
      }
      expect(((await (await jar.fetch(`${server.url}/session`)).json()) as { user: string }).user).toBe("origin");
      expect((await jar.fetch(`${server.url}/logout`, { method: "POST", headers: { origin: `http://${host}` } })).status).toBe(204);
      const curl = new CookieJar();
      expect((await curl.login(server.url, "no-origin")).status).toBe(200);
      expect((await curl.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204);
    });

    it("answers the absolute form of a request target like its path", async () => {
      const { request } = await import("node:http");
      const url = new URL(server.url);
      const body = await new Promise<string>((resolve, reject) => {
        const req = request({ host: url.hostname, port: url.port, path: `${server.url}/healthz`, method: "GET" }, (res) => {
          let text = "";
          res
            .setEncoding("utf8")
            .on("data", (chunk: string) => (text += chunk))
            .on("end", () => resolve(text));
        });
        req.on("error", reject);
        req.end();
      });
      expect(JSON.parse(body)).toEqual({ status: "ok" });
    });

    it("duplicate session cookies (a planted one first or last) bind to the one that verifies and loads", async () => {
      const jar = new CookieJar();
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
      const valid = jar.cookie as string;
      const planted = `sessionID=${"P".repeat(43)}`;
      let expected = 1;
      for (const header of [`${planted}; ${valid}`, `${valid}; ${planted}`, `sessionID=garbage; ${valid}`]) {
        const response = await fetch(`${server.url}/`, { headers: { cookie: header } });
        expect(await response.text()).toBe(`Hello World #${expected++}\n`);
        expect(response.headers.getSetCookie()).toEqual([]);
      }
    });
  });
}

describe("SESSION_COOKIE_SECURE=true on plain HTTP", () => {
  let setup: ServerStoreSetup;
  let server: ServerProcess;
  beforeAll(async () => {
    setup = await sqliteSetup();
    server = await ServerProcess.start({ ...setup.env, SESSION_COOKIE_SECURE: "true" });
  });
  afterAll(async () => {
    await server?.stop();
    await setup?.close();
  });

  it("never issues the cookie and creates no record (403), and says why once in the log", async () => {
    for (let i = 0; i < 5; i++) {
      const response = await fetch(`${server.url}/`);
      expect(response.status).toBe(403);
      expect(response.headers.getSetCookie()).toEqual([]);
    }
    expect(await setup.count()).toBe(0);
    const warnings = server.jsonLogs().filter((line) => /cookie\.secure is true/.test(String(line.msg)));
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.msg)).toMatch(/trustProxy/);
  });
});
