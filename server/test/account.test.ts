import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../packages/atomic-session/src/core/ids.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { type ServerStoreSetup, sqliteSetup } from "../../test-support/server-stores.js";
import { CsrfTokens } from "../src/csrf.js";

const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SECRET = "account-secret-0123456789-0123456789";

/** The account page as a browser with this jar would see it, and the CSRF token its forms carry. */
async function accountPage(
  jar: CookieJar,
  url: string,
  userAgent = "test-agent",
): Promise<{ response: Response; html: string; csrf: string }> {
  const response = await jar.fetch(`${url}/account`, { headers: { "user-agent": userAgent } });
  const html = await response.text();
  const csrf = /name="csrf" value="([^"]*)"/.exec(html)?.[1] ?? "";
  return { response, html, csrf };
}

/** Posts a form the way a browser does (no redirect following: the 303 is what we check). */
function postForm(jar: CookieJar, url: string, fields: Record<string, string>, userAgent = "test-agent"): Promise<Response> {
  return jar.fetch(url, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", "user-agent": userAgent },
    body: new URLSearchParams(fields).toString(),
  });
}

async function sessionOf(jar: CookieJar, url: string): Promise<{ status: number; user?: string | null; visitCount?: number }> {
  const response = await jar.fetch(`${url}/session`);
  return response.status === 200 ? { status: 200, ...((await response.json()) as object) } : { status: response.status };
}

/** Signs in through the account page's form; resolves the jar. */
async function signIn(url: string, user: string, userAgent = "test-agent"): Promise<CookieJar> {
  const jar = new CookieJar();
  const { csrf } = await accountPage(jar, url, userAgent);
  const response = await postForm(jar, `${url}/account/login`, { csrf, user }, userAgent);
  expect(response.status).toBe(303);
  return jar;
}

function handlesOf(html: string): { handle: string; current: boolean }[] {
  return [...html.matchAll(/<tr data-current="(true|false)">[\s\S]*?action="\/account\/sessions\/([A-Za-z0-9_-]+)\/sign-out"/g)].map(
    (match) => ({
      current: match[1] === "true",
      handle: match[2] as string,
    }),
  );
}

function expectHtmlHeaders(response: Response): void {
  expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(response.headers.get("content-security-policy")).toBe(CSP);
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
}

const unique = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;

describe("the account page over HTTP", () => {
  let setup: ServerStoreSetup;
  let server: ServerProcess;
  beforeAll(async () => {
    setup = await sqliteSetup();
    server = await ServerProcess.start({ ...setup.env, SESSION_SECRET: SECRET });
  });
  afterAll(async () => {
    await server?.stop();
    await setup?.close();
  });

  it("is HTML with no-store and a strict CSP on pages, redirects and refusals; it counts visits", async () => {
    const jar = new CookieJar();
    const first = await accountPage(jar, server.url);
    expect(first.response.status).toBe(200);
    expectHtmlHeaders(first.response);
    expect(first.html).toContain('<p id="user">Not signed in.</p>');
    expect(first.html).toContain('<strong id="visit-count">1</strong>');
    expect(first.html).not.toMatch(/<script|\son\w+=/i);
    expect(first.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await accountPage(jar, server.url)).html).toContain('<strong id="visit-count">2</strong>');
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");

    const redirect = await postForm(jar, `${server.url}/account/login`, { csrf: first.csrf, user: "ada" });
    expect(redirect.status).toBe(303);
    expect(redirect.headers.get("location")).toBe("/account");
    expectHtmlHeaders(redirect);

    const refused = await postForm(jar, `${server.url}/account/logout`, { csrf: "nope" });
    expect(refused.status).toBe(403);
    expectHtmlHeaders(refused);
  });

  it("signs in through the form exactly like POST /login: rotates the ID, binds the user, keeps the count", async () => {
    const jar = new CookieJar();
    const { csrf } = await accountPage(jar, server.url);
    const before = jar.cookie as string;
    expect((await postForm(jar, `${server.url}/account/login`, { csrf, user: "x".repeat(64) })).status).toBe(303);
    expect(jar.cookie).not.toBe(before);
    expect((await fetch(`${server.url}/session`, { headers: { cookie: before } })).status).toBe(404);
    expect(await sessionOf(jar, server.url)).toMatchObject({ status: 200, user: "x".repeat(64), visitCount: 1 });
    const page = await accountPage(jar, server.url);
    expect(page.html).toContain(`Signed in as <strong id="user-name">${"x".repeat(64)}</strong>`);
    // The token of the pre-login session died with its ID.
    expect(page.csrf).not.toBe(csrf);
    expect((await postForm(jar, `${server.url}/account/logout`, { csrf })).status).toBe(403);
  });

  it("applies the same user name rules: 1 to 64 characters, else 400 and no change", async () => {
    const jar = new CookieJar();
    const { csrf } = await accountPage(jar, server.url);
    const cookie = jar.cookie;
    for (const user of ["", "x".repeat(65)]) {
      const response = await postForm(jar, `${server.url}/account/login`, { csrf, user });
      expect(response.status, JSON.stringify(user)).toBe(400);
      expectHtmlHeaders(response);
    }
    expect((await postForm(jar, `${server.url}/account/login`, { csrf })).status).toBe(400);
    expect(jar.cookie).toBe(cookie);
    expect(await sessionOf(jar, server.url)).toMatchObject({ status: 200, user: null });
  });

  it("refuses every form with a missing, wrong or foreign CSRF token (403) and changes nothing", async () => {
    const user = unique("victim");
    const phone = await signIn(server.url, user, "phone");
    const laptop = await signIn(server.url, user, "laptop");
    const attacker = new CookieJar();
    const attackerToken = (await accountPage(attacker, server.url)).csrf;
    const phonePage = await accountPage(phone, server.url, "phone");
    const laptopHandle = handlesOf(phonePage.html).find((entry) => !entry.current)?.handle as string;
    expect(laptopHandle).toMatch(/^[A-Za-z0-9_-]{16}$/);
    const phoneCookie = phone.cookie;

    const forms: [string, Record<string, string>][] = [
      ["/account/login", { user: "mallory" }],
      ["/account/logout", {}],
      [`/account/sessions/${laptopHandle}/sign-out`, {}],
      ["/account/sign-out-everywhere", {}],
    ];
    const badTokens: [string, Record<string, string>][] = [
      ["missing", {}],
      ["empty", { csrf: "" }],
      ["wrong", { csrf: phonePage.csrf.replace(/^./, (c) => (c === "A" ? "B" : "A")) }],
      ["another session's", { csrf: attackerToken }],
      ["truncated", { csrf: phonePage.csrf.slice(0, -1) }],
    ];
    for (const [path, fields] of forms) {
      for (const [label, token] of badTokens) {
        const response = await postForm(phone, `${server.url}${path}`, { ...fields, ...token }, "phone");
        expect(response.status, `${path} with a ${label} token`).toBe(403);
        expect(response.headers.getSetCookie(), `${path} with a ${label} token`).toEqual([]);
      }
      // A forged cross-site post carries no cookie at all (SameSite=Lax) but may carry a stolen token: still refused.
      const cookieless = await fetch(`${server.url}${path}`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ ...fields, csrf: phonePage.csrf }).toString(),
      });
      expect(cookieless.status, `${path} without a cookie`).toBe(403);
    }
    expect(phone.cookie).toBe(phoneCookie);
    expect(await sessionOf(phone, server.url)).toMatchObject({ status: 200, user });
    expect(await sessionOf(laptop, server.url)).toMatchObject({ status: 200, user });
    expect(handlesOf((await accountPage(phone, server.url, "phone")).html)).toHaveLength(2);
    // And the right token works.
    const token = (await accountPage(phone, server.url, "phone")).csrf;
    expect((await postForm(phone, `${server.url}/account/sessions/${laptopHandle}/sign-out`, { csrf: token }, "phone")).status).toBe(303);
    expect((await sessionOf(laptop, server.url)).status).toBe(404);
  });

  it("refuses forms that are not form-encoded (415) or too large (413)", async () => {
    const jar = new CookieJar();
    const { csrf } = await accountPage(jar, server.url);
    const json = await jar.fetch(`${server.url}/account/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ csrf, user: "ada" }),
    });
    expect(json.status).toBe(415);
    const large = await postForm(jar, `${server.url}/account/login`, { csrf, user: "ada", padding: "x".repeat(20_000) });
    expect(large.status).toBe(413);
    expect(await sessionOf(jar, server.url)).toMatchObject({ user: null });
  });

  it("escapes the user name and the user agents", async () => {
    const user = "<script>alert(1)</script>";
    const agent = `"><img src=x onerror=alert(2)></td><script>alert(3)</script>&amp;`;
    const jar = await signIn(server.url, user, agent);
    const { html } = await accountPage(jar, server.url, agent);
    expect(html).toContain('Signed in as <strong id="user-name">&lt;script&gt;alert(1)&lt;/script&gt;</strong>');
    expect(html).toContain("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;&amp;amp;");
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain("<title>Account: &lt;script&gt;alert(1)&lt;/script&gt;</title>");
  });

  it("never shows a session ID or a store key, only handles; marks this device", async () => {
    const user = unique("ids");
    const phone = await signIn(server.url, user, "phone");
    const laptop = await signIn(server.url, user, "laptop");
    const { html } = await accountPage(phone, server.url, "phone");
    for (const jar of [phone, laptop]) {
      const id = jar.id as string;
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(html).not.toContain(id);
      expect(html).not.toContain(storeKeyOf(id));
    }
    const rows = handlesOf(html);
    expect(rows.map((row) => row.current).sort()).toEqual([false, true]);
    expect(html).toMatch(/<td class="agent">phone <span class="this-device">\(this device\)<\/span><\/td>/);
    expect(html).toMatch(/<td class="agent">laptop<\/td>/);
    expect(html.match(/this device/g)).toHaveLength(1);
    expect(html).toMatch(/<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">/);
  });

  it("signs out one session (yours only), this device, or every session of the user", async () => {
    const user = unique("owner");
    const phone = await signIn(server.url, user, "phone");
    const laptop = await signIn(server.url, user, "laptop");
    const tablet = await signIn(server.url, user, "tablet");
    const stranger = await signIn(server.url, unique("stranger"), "other");
    const strangerPage = await accountPage(stranger, server.url, "other");
    const laptopHandle = handlesOf((await accountPage(laptop, server.url, "laptop")).html).find((row) => row.current)?.handle as string;

    // Someone else's session is not one of yours: 404, and it lives on.
    const foreign = await postForm(
      stranger,
      `${server.url}/account/sessions/${laptopHandle}/sign-out`,
      { csrf: strangerPage.csrf },
      "other",
    );
    expect(foreign.status).toBe(404);
    expect((await sessionOf(laptop, server.url)).status).toBe(200);
    const unknown = await postForm(
      stranger,
      `${server.url}/account/sessions/${"A".repeat(16)}/sign-out`,
      { csrf: strangerPage.csrf },
      "other",
    );
    expect(unknown.status).toBe(404);

    let phonePage = await accountPage(phone, server.url, "phone");
    expect(handlesOf(phonePage.html)).toHaveLength(3);
    expect(
      (await postForm(phone, `${server.url}/account/sessions/${laptopHandle}/sign-out`, { csrf: phonePage.csrf }, "phone")).status,
    ).toBe(303);
    expect((await sessionOf(laptop, server.url)).status).toBe(404);
    phonePage = await accountPage(phone, server.url, "phone");
    expect(handlesOf(phonePage.html)).toHaveLength(2);

    // Signing out this device's own row is a logout: the cookie is cleared.
    const tabletPage = await accountPage(tablet, server.url, "tablet");
    const tabletHandle = handlesOf(tabletPage.html).find((row) => row.current)?.handle as string;
    const own = await postForm(tablet, `${server.url}/account/sessions/${tabletHandle}/sign-out`, { csrf: tabletPage.csrf }, "tablet");
    expect(own.status).toBe(303);
    expect(own.headers.getSetCookie()[0]).toMatch(/^sessionID=; .*Max-Age=0/);
    expect(tablet.cookie).toBeUndefined();

    const again = await signIn(server.url, user, "tablet");
    phonePage = await accountPage(phone, server.url, "phone");
    expect((await postForm(phone, `${server.url}/account/sign-out-everywhere`, { csrf: phonePage.csrf }, "phone")).status).toBe(303);
    expect(phone.cookie).toBeUndefined();
    expect((await sessionOf(again, server.url)).status).toBe(404);
    expect((await sessionOf(stranger, server.url)).status).toBe(200);
    expect((await accountPage(phone, server.url)).html).toContain("Not signed in.");
  });

  it("logs out through the form", async () => {
    const jar = await signIn(server.url, unique("leaver"));
    const cookie = jar.cookie as string;
    const { csrf } = await accountPage(jar, server.url);
    const response = await postForm(jar, `${server.url}/account/logout`, { csrf });
    expect(response.status).toBe(303);
    expect(jar.cookie).toBeUndefined();
    expect((await fetch(`${server.url}/session`, { headers: { cookie } })).status).toBe(404);
  });

  it("accepts a token from another process that shares the store and the secret", async () => {
    const other = await ServerProcess.start({ ...setup.env, SESSION_SECRET: `new-${SECRET},${SECRET}` });
    try {
      const jar = new CookieJar();
      const { csrf } = await accountPage(jar, server.url);
      expect((await postForm(jar, `${other.url}/account/login`, { csrf, user: "ada" })).status).toBe(303);
      // The other process signs cookies with its first secret, which only it knows.
      expect(await sessionOf(jar, other.url)).toMatchObject({ user: "ada" });
    } finally {
      await other.stop();
    }
  });
});

describe("CSRF tokens", () => {
  it("are bound to the session handle and the secret; older secrets still verify", () => {
    const old = new CsrfTokens(["old-secret-0123456789-0123456789-01"]);
    const rotated = new CsrfTokens(["new-secret-0123456789-0123456789-01", "old-secret-0123456789-0123456789-01"]);
    const token = old.tokenFor("handle-aaaaaaaaa");
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(old.verify("handle-aaaaaaaaa", token)).toBe(true);
    expect(rotated.verify("handle-aaaaaaaaa", token)).toBe(true);
    expect(rotated.tokenFor("handle-aaaaaaaaa")).not.toBe(token);
    expect(old.verify("handle-bbbbbbbbb", token)).toBe(false);
    expect(old.verify(undefined, token)).toBe(false);
    expect(old.verify("handle-aaaaaaaaa", undefined)).toBe(false);
    expect(old.verify("handle-aaaaaaaaa", `${token}x`)).toBe(false);
    expect(new CsrfTokens(["new-secret-0123456789-0123456789-01"]).verify("handle-aaaaaaaaa", token)).toBe(false);
    // Without secrets, each instance (process) draws its own key.
    expect(new CsrfTokens(undefined).verify("h", new CsrfTokens(undefined).tokenFor("h"))).toBe(false);
  });
});
