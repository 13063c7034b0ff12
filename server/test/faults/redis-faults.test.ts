/**
 * Issue 5, part 1: the reference server stays honest while its single Redis dies, stalls,
 * runs out of memory, is demoted to a replica, or restarts. Each test spawns its own
 * redis-server (never port 6379) and its own server process, and every wait is bounded.
 */
import { createClient, type RedisClientType } from "redis";
import { afterEach, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../../packages/atomic-session/src/core/ids.js";
import { type RedisServer, type RedisServerOptions, startRedisServer } from "../../../test-support/redis-server.js";
import { CookieJar, ServerProcess } from "../../../test-support/server-process.js";

/** The server's deadline on every store call (STORE_TIMEOUT_MS). */
const DEADLINE_MS = 750;
/** Slack for a loaded 2-core machine: a 503 "within the deadline" must come before DEADLINE_MS + MARGIN_MS. */
const MARGIN_MS = 1_250;
/** How long recovery may take once Redis is back (node-redis reconnects at most every ~2 s). */
const RECOVERY_MS = 15_000;

interface Stack {
  redis: RedisServer;
  server: ServerProcess;
  /** A separate connection for assertions and for stalling Redis. */
  admin: RedisClientType;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function adminClient(url: string): Promise<RedisClientType> {
  const client: RedisClientType = createClient({ url, socket: { reconnectStrategy: () => 200 } });
  client.on("error", () => {});
  await client.connect();
  cleanups.push(async () => client.destroy());
  return client;
}

async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const redis = await startRedisServer(options);
  cleanups.push(() => redis.stop());
  return redis;
}

async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const server = await ServerProcess.start({ STORE_TIMEOUT_MS: String(DEADLINE_MS), ...env });
  cleanups.push(() => server.stop());
  return server;
}

async function startStack(options: RedisServerOptions = { appendonly: true }, env: Record<string, string> = {}): Promise<Stack> {
  const redis = await startRedis(options);
  const admin = await adminClient(redis.url);
  const server = await startServer({ REDIS_URL: redis.url, ...env });
  return { redis, server, admin };
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

/** A 503 as the issue wants it: Retry-After, no Set-Cookie, within the deadline plus a margin. */
async function expectUnavailable(request: () => Promise<Response>): Promise<number> {
  const { value: response, ms } = await timed(request);
  await response.arrayBuffer();
  expect(response.status).toBe(503);
  expect(response.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
  expect(response.headers.getSetCookie()).toEqual([]);
  expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  return ms;
}

async function status(url: string, init?: RequestInit): Promise<number> {
  const response = await fetch(url, init);
  await response.arrayBuffer();
  return response.status;
}

/** The server process is still running and never reported an unhandled rejection or exception. */
function expectAlive(server: ServerProcess): void {
  expect(server.pid).toBeDefined();
  expect(() => process.kill(server.pid as number, 0)).not.toThrow();
  expect(server.logs.join("\n")).not.toMatch(/unhandled|uncaught/i);
}

/** Runs `count` calls of `run`, at most `concurrency` at a time, and resolves their results in order. */
async function inBatches<T>(count: number, concurrency: number, run: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await run(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/** What the failures the server logged about its store said (its store monitor's `reason` field). */
function storeErrors(server: ServerProcess): string[] {
  return server
    .jsonLogs()
    .filter((line) => typeof line.reason === "string")
    .map((line) => String(line.reason));
}

function sessionKeyOf(jar: CookieJar): string {
  const id = jar.id;
  if (id === undefined) throw new Error("no session cookie in the jar");
  return `as:${storeKeyOf(id)}`;
}

describe("reference server against a single faulty Redis", () => {
  it("Redis killed: 503 + Retry-After at once, no Set-Cookie, /healthz 503, nothing queued; restarted with AOF: the same cookie counts on", async () => {
    const { redis, server } = await startStack();
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
    const cookie = jar.cookie;

    await redis.kill("SIGKILL");
    await expectUnavailable(() => jar.fetch(`${server.url}/`));
    await expectUnavailable(() => jar.fetch(`${server.url}/session`));
    await expectUnavailable(() => jar.login(server.url, "ada"));
    await expectUnavailable(() => jar.fetch(`${server.url}/logout`, { method: "POST" }));
    await expectUnavailable(() => fetch(`${server.url}/`));
    await expectUnavailable(() => fetch(`${server.url}/healthz`));
    expect(jar.cookie).toBe(cookie);

    // 2,000 requests during the outage: every one refused at once. None waited for the
    // deadline, so no command sat in an offline queue.
    const answers = await inBatches(2_000, 50, async () => {
      const started = performance.now();
      const code = await status(`${server.url}/session`, { headers: { cookie: cookie as string } });
      return { code, ms: performance.now() - started };
    });
    expect(answers.every(({ code }) => code === 503)).toBe(true);
    expect(Math.max(...answers.map(({ ms }) => ms))).toBeLessThan(DEADLINE_MS);

    await redis.restart();
    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
    expect(jar.cookie).toBe(cookie);
    expectAlive(server);
  });

  it("DEBUG SLEEP 3 from another connection: 503 within the deadline, the server stays up, then the same cookie works", async () => {
    const { redis, server } = await startStack();
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");

    const sleeper = await adminClient(redis.url);
    const sleeping = sleeper.sendCommand(["DEBUG", "SLEEP", "3"]);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const durations = await Promise.all([
      expectUnavailable(() => jar.fetch(`${server.url}/`)),
      expectUnavailable(() => jar.fetch(`${server.url}/session`)),
      expectUnavailable(() => fetch(`${server.url}/healthz`)),
      expectUnavailable(() => jar.login(server.url, "ada")),
    ]);
    // These were deadline failures (Redis still asleep), not errors Redis answered with.
    for (const ms of durations) expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    await sleeping;

    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    // The stalled visit got a 503 at the deadline, but its increment had reached Redis, which
    // ran it on waking: a 503 from the deadline is an unknown outcome (see the README).
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
    expectAlive(server);
  });

  it("SIGSTOP: 503 within the deadline and at most a bounded number of commands held for Redis; SIGCONT: the same cookie works", async () => {
    const { redis, server } = await startStack();
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    const cookie = jar.cookie as string;

    redis.pause();
    try {
      await expectUnavailable(() => jar.fetch(`${server.url}/`));
      await expectUnavailable(() => jar.fetch(`${server.url}/session`));
      await expectUnavailable(() => fetch(`${server.url}/healthz`));

      // 2,000 requests against the frozen Redis, each a 503 at the deadline. Each one's command
      // stays held for Redis after its 503 (Redis may still answer it), within the store's
      // memory bound (64 MiB; these hold well under 1 MiB): load is shed by the deadline, not by
      // a command count.
      const statuses = await inBatches(2_000, 200, async () => status(`${server.url}/session`, { headers: { cookie } }));
      expect(statuses.every((code) => code === 503)).toBe(true);
    } finally {
      redis.resume();
    }

    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    // As with DEBUG SLEEP: the frozen Redis ran the timed-out visit's increment once thawed.
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #2\n");
    expect(jar.cookie).toBe(cookie);
    expectAlive(server);
  });

  it("log out everywhere on a stalled Redis: 503 with no Set-Cookie, still signed in; retried once Redis is back, every device is out", async () => {
    const { redis, server } = await startStack();
    const laptop = new CookieJar();
    const phone = new CookieJar();
    expect((await laptop.login(server.url, "everywhere")).status).toBe(200);
    expect((await phone.login(server.url, "everywhere")).status).toBe(200);
    // (That a refusal of the revocation itself leaves the browser signed in is session.revokeAll()'s, tested in the library.)
    redis.pause();
    try {
      const refused = await laptop.fetch(`${server.url}/logout-all`, { method: "POST" });
      await refused.arrayBuffer();
      expect(refused.status).toBe(503);
      expect(refused.headers.getSetCookie()).toEqual([]);
    } finally {
      redis.resume();
    }
    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    expect(laptop.cookie).toBeDefined();
    expect((await laptop.fetch(`${server.url}/logout-all`, { method: "POST" })).status).toBe(204);
    expect(laptop.cookie).toBeUndefined();
    expect((await phone.fetch(`${server.url}/session`)).status).toBe(404);
  });

  it("starts while Redis is down: one error line naming the address (no password), 503s, then serves once Redis is up", async () => {
    const password = "s3cret-Pa55word";
    // A second ACL user with a password; the default user stays open for the harness's PING.
    const redis = await startRedis({ appendonly: true, args: ["--user", "app", "on", `>${password}`, "~*", "&*", "+@all"] });
    await redis.kill("SIGKILL");
    const server = await startServer({ REDIS_URL: `redis://app:${password}@127.0.0.1:${redis.port}/0` });
    const address = `127.0.0.1:${redis.port}`;

    const errorLines = () => server.jsonLogs().filter((line) => typeof line.level === "number" && line.level >= 50);
    await expect.poll(() => errorLines().length, { timeout: 5_000, interval: 50 }).toBe(1);
    const [line] = errorLines();
    expect(String(line?.msg)).toContain(address);
    expect(String(line?.msg)).toMatch(/unreachable/);

    await expectUnavailable(() => fetch(`${server.url}/`));
    await expectUnavailable(() => fetch(`${server.url}/healthz`));
    await expectUnavailable(() => new CookieJar().login(server.url, "ada"));

    await redis.restart();
    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
    await expect
      .poll(() => server.jsonLogs().some((entry) => String(entry.msg).startsWith("session store reachable")), {
        timeout: 5_000,
        interval: 100,
      })
      .toBe(true);

    expect(errorLines()).toHaveLength(1);
    expect(server.logs.join("\n")).not.toContain(password);
    expectAlive(server);
  });

  it("OOM under maxmemory + noeviction: login and new sessions are 503 with no cookie; existing sessions still read and log out", async () => {
    const { server, admin } = await startStack({ args: ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"] });
    const existing = new CookieJar();
    expect(await existing.text(`${server.url}/`)).toBe("Hello World #0\n");
    expect((await existing.login(server.url, "ada")).status).toBe(200);

    // Fill Redis until it refuses writes.
    const filler = "x".repeat(64 * 1024);
    let refused: unknown;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      await admin.set(`filler:${i}`, filler).catch((error: unknown) => {
        refused = error;
      });
    }
    expect(String(refused)).toMatch(/OOM/);
    // Pin Redis past its limit: at the boundary, the memory freed with the refused command's
    // buffers would let the next small write or two through.
    await admin.configSet("maxmemory", "2mb");

    const fresh = new CookieJar();
    await expectUnavailable(() => fresh.login(server.url, "grace"));
    await expectUnavailable(() => fresh.fetch(`${server.url}/`));
    expect(fresh.setCookies).toEqual([]);
    // Reads of an existing session still work.
    const read = await existing.fetch(`${server.url}/session`);
    expect(read.status).toBe(200);
    expect(await read.json()).toMatchObject({ user: "ada", visitCount: 1 });
    expect(storeErrors(server).some((message) => /OOM/.test(message))).toBe(true);
    // Logout only deletes, which Redis allows even when full.
    const loggedIn = existing.cookie as string;
    expect((await existing.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204);
    expect(await status(`${server.url}/session`, { headers: { cookie: loggedIn } })).toBe(404);

    // Memory freed: logins work again.
    await admin.flushAll();
    await admin.configSet("maxmemory", "4mb");
    expect((await fresh.login(server.url, "grace")).status).toBe(200);
    expect(fresh.cookie).toBeDefined();
    expectAlive(server);
  });

  // Known defect, left to the owner of src/stores/redis/scripts.ts: INCREMENT runs HINCRBY under
  // redis.pcall and reports every error as {'not-integer'}, so a refused write becomes a
  // SessionValueError (500). Switch to it() once the script passes other errors through.
  it("an increment of an existing session refused with OOM or READONLY is a 503, not a 500", async () => {
    const primary = await startRedis();
    const { server, admin } = await startStack({});
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    await admin.configSet("maxmemory", "1");
    const oom = await jar.fetch(`${server.url}/`);
    await oom.arrayBuffer();
    await admin.configSet("maxmemory", "0");
    await admin.sendCommand(["REPLICAOF", "127.0.0.1", String(primary.port)]);
    const readonly = await jar.fetch(`${server.url}/`);
    await readonly.arrayBuffer();
    expect([oom.status, readonly.status]).toEqual([503, 503]);
  });

  it("READONLY from a Redis demoted to a replica: login is 503 with no cookie; promoted back, login works", async () => {
    const primary = await startRedis();
    const { server, admin } = await startStack({});
    const before = new CookieJar();
    expect((await before.login(server.url, "ada")).status).toBe(200);

    await admin.sendCommand(["REPLICAOF", "127.0.0.1", String(primary.port)]);
    const fresh = new CookieJar();
    await expectUnavailable(() => fresh.login(server.url, "grace"));
    await expectUnavailable(() => fresh.fetch(`${server.url}/`));
    const relogin = await before.login(server.url, "ada");
    await relogin.arrayBuffer();
    expect(relogin.status).toBe(503);
    expect(relogin.headers.getSetCookie()).toEqual([]);
    expect(fresh.setCookies).toEqual([]);
    expect(storeErrors(server).some((message) => /READONLY/.test(message))).toBe(true);

    await admin.sendCommand(["REPLICAOF", "NO", "ONE"]);
    expect((await fresh.login(server.url, "grace")).status).toBe(200);
    expect(fresh.cookie).toBeDefined();
    expectAlive(server);
  });

  it("AOF restart (SIGKILL): sessions keep their remaining TTL; logouts and revocations acknowledged before it stay done", async () => {
    const { redis, server, admin } = await startStack({ appendonly: true }, { SESSION_IDLE_TIMEOUT: "600" });
    const ada = new CookieJar();
    expect((await ada.login(server.url, "ada")).status).toBe(200);
    expect(await ada.text(`${server.url}/`)).toBe("Hello World #0\n");
    const adaBefore = await (await ada.fetch(`${server.url}/session`)).json();

    const bob = new CookieJar();
    expect((await bob.login(server.url, "bob")).status).toBe(200);
    const bobKey = sessionKeyOf(bob);
    const bobCookie = bob.cookie as string;
    expect((await bob.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204);

    const cyLaptop = new CookieJar();
    const cyPhone = new CookieJar();
    expect((await cyLaptop.login(server.url, "cy")).status).toBe(200);
    expect((await cyPhone.login(server.url, "cy")).status).toBe(200);
    const cyPhoneKey = sessionKeyOf(cyPhone);
    const listed = (await (await cyLaptop.fetch(`${server.url}/sessions`)).json()) as { handle: string; current: boolean }[];
    const phone = listed.find((entry) => !entry.current);
    expect(phone).toBeDefined();
    expect((await cyLaptop.fetch(`${server.url}/sessions/${phone?.handle}`, { method: "DELETE" })).status).toBe(204);

    const adaKey = sessionKeyOf(ada);
    const pttlBefore = await admin.pTTL(adaKey);
    const measuredBefore = Date.now();
    expect(pttlBefore).toBeGreaterThan(590_000);

    await redis.kill("SIGKILL");
    await redis.restart();
    const pttlAfter = await admin.pTTL(adaKey);
    const elapsed = Date.now() - measuredBefore;
    // The key expires at the same absolute time as before the restart (PEXPIREAT survives AOF).
    expect(pttlAfter).toBeGreaterThan(0);
    expect(pttlAfter).toBeLessThanOrEqual(pttlBefore);
    expect(Math.abs(pttlBefore - elapsed - pttlAfter)).toBeLessThan(1_000);

    // The server was not restarted: it reconnects on its own.
    await expect.poll(() => status(`${server.url}/healthz`), { timeout: RECOVERY_MS, interval: 200 }).toBe(200);
    const adaAfter = await ada.fetch(`${server.url}/session`);
    expect(adaAfter.status).toBe(200);
    expect(await adaAfter.json()).toEqual(adaBefore);

    expect(await admin.exists(bobKey)).toBe(0);
    expect(await status(`${server.url}/session`, { headers: { cookie: bobCookie } })).toBe(404);
    expect(await admin.exists(cyPhoneKey)).toBe(0);
    expect(await status(`${server.url}/session`, { headers: { cookie: cyPhone.cookie as string } })).toBe(404);
    expect((await cyLaptop.fetch(`${server.url}/session`)).status).toBe(200);
    expectAlive(server);
  });
});
