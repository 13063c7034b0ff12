import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../packages/atomic-session/src/core/ids.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { everyStore, type ServerStoreSetup } from "../../test-support/server-stores.js";

const SECRET_OLD = "old-secret-0123456789-0123456789-0123";
const SECRET_NEW = "new-secret-0123456789-0123456789-0123";

/** Sends raw header lines (fetch would refuse or normalise hostile ones) and resolves the status. */
function rawStatus(
  port: number,
  path: string,
  headers: Record<string, string | string[]>,
  method = "GET",
  body?: Buffer | string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const setups = everyStore;

for (const [name, makeSetup] of setups) {
  describe(`session lifecycle over HTTP on ${name}`, () => {
    let setup: ServerStoreSetup;
    let server: ServerProcess;
    beforeAll(async () => {
      setup = await makeSetup();
      server = await ServerProcess.start({ ...setup.env, SESSION_SECRET: `${SECRET_NEW},${SECRET_OLD}` });
    });
    afterAll(async () => {
      await server?.stop();
      await setup?.close();
    });

    it("login rotates the ID, keeps the visit count, and the pre-login cookie is dead", async () => {
      const jar = new CookieJar();
      await jar.text(`${server.url}/`);
      await jar.text(`${server.url}/`);
      const before = jar.cookie as string;
      const response = await jar.login(server.url, "ada");
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ user: "ada" });
      expect(jar.cookie).not.toBe(before);
      expect((await fetch(`${server.url}/session`, { headers: { cookie: before } })).status).toBe(404);
      const session = (await (await jar.fetch(`${server.url}/session`)).json()) as Record<string, unknown>;
      expect(session).toMatchObject({ user: "ada", visitCount: 2 });
    });

    it("logout destroys the session and clears the cookie; replaying the old cookie gets nothing", async () => {
      const jar = new CookieJar();
      await jar.login(server.url, "grace");
      const cookie = jar.cookie as string;
      const logout = await jar.fetch(`${server.url}/logout`, { method: "POST" });
      expect(logout.status).toBe(204);
      expect(logout.headers.getSetCookie()[0]).toMatch(/^sessionID=; .*Max-Age=0/);
      const replay = await fetch(`${server.url}/session`, { headers: { cookie } });
      expect(replay.status).toBe(404);
      const sessions = await fetch(`${server.url}/sessions`, { headers: { cookie } });
      expect(sessions.status).toBe(401);
    });

    it("lists a user's sessions, revokes one by handle, and logout-all leaves other users alone", async () => {
      const user = `user-${Math.random().toString(36).slice(2, 10)}`;
      const phone = new CookieJar();
      const laptop = new CookieJar();
      const stranger = new CookieJar();
      await phone.login(server.url, user, "phone");
      await laptop.login(server.url, user, "laptop");
      await stranger.login(server.url, `${user}-stranger`, "other");
      const listed = (await (await phone.fetch(`${server.url}/sessions`)).json()) as Record<string, unknown>[];
      expect(listed.map((entry) => entry.userAgent).sort()).toEqual(["laptop", "phone"]);
      expect(listed.find((entry) => entry.current)?.userAgent).toBe("phone");
      for (const entry of listed) {
        expect(Object.keys(entry).sort()).toEqual(["createdAt", "current", "handle", "lastSeenAt", "userAgent"]);
        expect(JSON.stringify(entry)).not.toContain(phone.id);
        expect(JSON.stringify(entry)).not.toContain(laptop.id);
      }
      const laptopHandle = listed.find((entry) => entry.userAgent === "laptop")?.handle as string;
      const strangersView = await stranger.fetch(`${server.url}/sessions/${laptopHandle}`, { method: "DELETE" });
      expect(strangersView.status).toBe(404);
      expect((await laptop.fetch(`${server.url}/session`)).status).toBe(200);
      expect((await phone.fetch(`${server.url}/sessions/${laptopHandle}`, { method: "DELETE" })).status).toBe(204);
      expect((await laptop.fetch(`${server.url}/session`)).status).toBe(404);

      const tablet = new CookieJar();
      await tablet.login(server.url, user, "tablet");
      expect((await phone.fetch(`${server.url}/logout-all`, { method: "POST" })).status).toBe(204);
      expect((await phone.fetch(`${server.url}/session`)).status).toBe(404);
      expect((await tablet.fetch(`${server.url}/session`)).status).toBe(404);
      expect((await stranger.fetch(`${server.url}/session`)).status).toBe(200);
    });

    it("rejects tampered cookies, and accepts then re-signs a cookie signed with the older secret", async () => {
      const jar = new CookieJar();
      await jar.text(`${server.url}/`);
      const [id, signature] = ((jar.cookie as string).split("=")[1] as string).split(".") as [string, string];
      const tampered = `sessionID=${id}.${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`;
      expect((await fetch(`${server.url}/session`, { headers: { cookie: tampered } })).status).toBe(404);
      expect((await fetch(`${server.url}/session`, { headers: { cookie: `sessionID=${id}` } })).status).toBe(404);
      // A second server process signing with the old secret stands for the deployment before the rotation.
      if (!setup.shared) return;
      const oldSigner = await ServerProcess.start({ ...setup.env, SESSION_SECRET: SECRET_OLD });
      try {
        const oldJar = new CookieJar();
        await oldJar.text(`${oldSigner.url}/`);
        await oldJar.text(`${oldSigner.url}/`);
        const signedOld = oldJar.cookie as string;
        const reading = await oldJar.fetch(`${server.url}/session`);
        expect(reading.status).toBe(200);
        const reissued = reading.headers.getSetCookie()[0] ?? "";
        expect(reissued.split(";")[0]?.split(".")[0]).toBe(signedOld.split(".")[0]);
        expect(reissued.split(";")[0]).not.toBe(signedOld);
        expect(await oldJar.text(`${server.url}/`)).toBe("Hello World #2\n");
        const retiring = await ServerProcess.start({ ...setup.env, SESSION_SECRET: SECRET_NEW });
        try {
          expect((await fetch(`${retiring.url}/session`, { headers: { cookie: signedOld } })).status).toBe(404);
          expect((await fetch(`${retiring.url}/session`, { headers: { cookie: oldJar.cookie as string } })).status).toBe(200);
        } finally {
          await retiring.stop();
        }
      } finally {
        await oldSigner.stop();
      }
    });

    it("survives corrupted records: each counts as absent, is removed, and the visitor starts afresh", async (context) => {
      if (Object.keys(setup.corruptions).length === 0) return context.skip();
      for (const [kind, corrupt] of Object.entries(setup.corruptions)) {
        const jar = new CookieJar();
        await jar.text(`${server.url}/`);
        await jar.text(`${server.url}/`);
        const key = storeKeyOf(jar.id as string);
        await corrupt(key);
        const read = await jar.fetch(`${server.url}/session`);
        expect(read.status, kind).toBe(404);
        expect(await setup.holds(key), kind).toBe(false);
        expect(await jar.text(`${server.url}/`), kind).toBe("Hello World #0\n");
        expect(storeKeyOf(jar.id as string)).not.toBe(key);
      }
    });

    it("answers a corpus of hostile cookie headers without a 5xx", async () => {
      const long = "a".repeat(8000);
      const corpus: (string | string[])[] = [
        "",
        "sessionID=",
        'sessionID=""',
        `sessionID="${"a".repeat(43)}"`,
        "sessionID=%",
        "sessionID=%E0%A4%A",
        "sessionID=%00%01",
        `sessionID=${long}`,
        ["sessionID=a", "sessionID=b"],
        `sessionID=${"a".repeat(43)}; sessionID=${"b".repeat(43)}`,
        Array.from({ length: 3000 }, (_, i) => `c${i}=${i}`).join("; "),
        "__proto__=1; constructor=2; prototype=3; toString=4; hasOwnProperty=5",
        "sessionID=__proto__",
        "=; ; ;; ===",
        `sessionID=${"é".repeat(43)}`,
        Buffer.from([0x73, 0x65, 0x73, 0x73, 0x69, 0x6f, 0x6e, 0x49, 0x44, 0x3d, 0xff, 0xfe, 0x80]).toString("latin1"),
        `sessionID=${"a".repeat(43)}.${"é".repeat(22)}`,
        `sessionID=${"a".repeat(43)}.${"a".repeat(43)}.${"a".repeat(43)}`,
      ];
      for (const cookie of corpus) {
        for (const path of ["/", "/session", "/sessions", "/healthz"]) {
          const status = await rawStatus(server.port, path, { cookie });
          expect(status, `${path} with ${JSON.stringify(cookie).slice(0, 80)}`).toBeLessThan(500);
        }
      }
    });

    it("answers a corpus of bad login bodies with 4xx, never a 5xx", async () => {
      const json = { "content-type": "application/json" };
      const cases: [Record<string, string>, string | Buffer, number][] = [
        [json, "", 400],
        [json, "{", 400],
        [json, "null", 400],
        [json, "[]", 400],
        [json, '"ada"', 400],
        [json, "{}", 400],
        [json, '{"user": ""}', 400],
        [json, JSON.stringify({ user: "x".repeat(65) }), 400],
        [json, '{"user": 42}', 400],
        [json, '{"user": {"__proto__": {"admin": true}}}', 400],
        [json, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 400],
        [json, JSON.stringify({ user: "a".repeat(20_000) }), 413],
        [{ "content-type": "text/plain" }, '{"user": "ada"}', 415],
        [{ "content-type": "application/x-www-form-urlencoded" }, "user=ada", 415],
        [{}, '{"user": "ada"}', 415],
      ];
      for (const [headers, body, expected] of cases) {
        expect(await rawStatus(server.port, "/login", headers, "POST", body), String(body).slice(0, 60)).toBe(expected);
      }
      const proto = new CookieJar();
      expect((await proto.login(server.url, "__proto__")).status).toBe(200);
      expect(await (await proto.fetch(`${server.url}/session`)).json()).toMatchObject({ user: "__proto__" });
      expect((await proto.fetch(`${server.url}/sessions`)).status).toBe(200);
    });
  });
}

for (const [name, makeSetup] of setups) {
  describe(`timeouts over HTTP on ${name}`, () => {
    let server: ServerProcess;
    let setup: ServerStoreSetup;
    beforeAll(async () => {
      setup = await makeSetup();
      server = await ServerProcess.start({ ...setup.env, SESSION_IDLE_TIMEOUT: "1", SESSION_ABSOLUTE_TIMEOUT: "3" });
    });
    afterAll(async () => {
      await server?.stop();
      await setup?.close();
    });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    it("idle: a session left alone longer than the idle timeout is gone", async () => {
      const jar = new CookieJar();
      await jar.text(`${server.url}/`);
      await sleep(600);
      expect((await jar.fetch(`${server.url}/session`)).status).toBe(200);
      await sleep(1300);
      expect((await jar.fetch(`${server.url}/session`)).status).toBe(404);
      expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    });

    it("absolute: a session kept busy still ends at the absolute timeout, whatever the cookie says", async () => {
      const jar = new CookieJar();
      await jar.text(`${server.url}/`);
      const cookie = jar.cookie as string;
      const started = Date.now();
      const seen: [number, number][] = [];
      while (Date.now() - started < 4000) {
        await sleep(250);
        seen.push([Date.now() - started, (await fetch(`${server.url}/session`, { headers: { cookie } })).status]);
      }
      // Pings every 250 ms keep the 1 s idle timeout at bay: only the 3 s absolute deadline ends it.
      expect(seen.filter(([at]) => at < 2700).every(([, status]) => status === 200)).toBe(true);
      expect(seen.filter(([at]) => at > 3300).every(([, status]) => status === 404)).toBe(true);
      expect(seen.filter(([at]) => at > 3300).length).toBeGreaterThan(0);
    });
  });
}
