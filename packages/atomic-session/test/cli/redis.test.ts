/**
 * The admin CLI against a spawned redis-server that the reference server fills: every command,
 * `--json` parsed, a revoked session's cookie answered 404, the per-user index keys and foreign
 * keys under the prefix left out of the scan, and an unreachable or stalled Redis failing fast.
 */
import { randomBytes } from "node:crypto";
import { RedisStore } from "atomic-session/stores/redis";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { CookieJar, freePort, ServerProcess } from "../../../../test-support/server-process.js";
import { handleOf, storeKeyOf } from "../../src/core/ids.js";
import { handleOfJar, jsonLines, printed, runCli, UNKNOWN_HANDLE } from "./run.js";

const HOUR = 3_600_000;
const secrets = new Set<string>();

function remember(jar: CookieJar): void {
  const id = jar.id;
  if (id === undefined) return;
  secrets.add(id);
  secrets.add(storeKeyOf(id));
}

async function login(jar: CookieJar, url: string, user: string | undefined, userAgent: string): Promise<void> {
  expect((await jar.fetch(`${url}/`, { headers: { "user-agent": userAgent } })).status).toBe(200);
  remember(jar);
  if (user === undefined) return;
  expect((await jar.login(url, user, userAgent)).status).toBe(200);
  remember(jar);
}

describe("admin CLI on Redis", () => {
  let redis: RedisServer;
  let server: ServerProcess;
  let env: Record<string, string>;
  const anonymous = new CookieJar();
  const ada1 = new CookieJar();
  const ada2 = new CookieJar();
  const bob = new CookieJar();

  beforeAll(async () => {
    redis = await startRedisServer();
    env = { REDIS_URL: redis.urlFor(2) };
    server = await ServerProcess.start(env);
    await login(anonymous, server.url, undefined, "agent/anonymous");
    await login(ada1, server.url, "ada", "agent/ada-1");
    await login(ada2, server.url, "ada", "agent/ada-2");
    await login(bob, server.url, "bob", "agent/bob");
  });
  afterAll(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it("stats and list skip the per-user index keys and keys that are not sessions", async () => {
    const admin = createClient({ url: env.REDIS_URL });
    admin.on("error", () => {});
    await admin.connect();
    try {
      expect((await admin.keys("as:user:*")).length).toBe(2);
      // A foreign value under the prefix (HMGET answers WRONGTYPE) and a hash that is not a session.
      await admin.set("as:not-a-hash", "text");
      await admin.hSet("as:foreign-hash", "x", "1");
    } finally {
      await admin.close();
    }
    const stats = await runCli(["stats", "--json"], env);
    expect(stats.status).toBe(0);
    expect(JSON.parse(stats.stdout)).toEqual({ store: "redis", sessions: 4, users: 2, signedIn: 3, anonymous: 1 });

    const list = await runCli(["list", "--json"], env);
    expect(list.status).toBe(0);
    const byHandle = new Map(jsonLines(list.stdout).map((entry) => [entry.handle, entry]));
    expect([...byHandle.keys()].sort()).toEqual([anonymous, ada1, ada2, bob].map(handleOfJar).sort());
    expect(byHandle.get(handleOfJar(ada2))).toMatchObject({ user: "ada", userAgent: "agent/ada-2" });

    const table = await runCli(["list"], env);
    expect(table.stdout.trimEnd().split("\n").at(-1)).toBe("(4 sessions)");
  });

  it("list --user and show", async () => {
    const ada = await runCli(["list", "--user", "ada", "--json"], env);
    expect(ada.status).toBe(0);
    expect(jsonLines(ada.stdout).map((entry) => entry.handle)).toEqual([handleOfJar(ada2), handleOfJar(ada1)]);

    const show = await runCli(["show", handleOfJar(bob), "--json"], env);
    expect(show.status).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ handle: handleOfJar(bob), user: "bob", userAgent: "agent/bob" });
    const unknown = await runCli(["show", UNKNOWN_HANDLE], env);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain("no live session has the handle");
  });

  it("revoke <handle> and revoke --user end the sessions: their cookies get 404", async () => {
    const handle = handleOfJar(ada1);
    const one = await runCli(["revoke", handle, "--json"], env);
    expect(one.status).toBe(0);
    expect(JSON.parse(one.stdout)).toEqual({ revoked: 1, handle, user: "ada" });
    expect((await ada1.fetch(`${server.url}/session`)).status).toBe(404);
    expect((await ada2.fetch(`${server.url}/session`)).status).toBe(200);
    expect((await runCli(["revoke", handle], env)).status).toBe(1);

    const all = await runCli(["revoke", "--user", "ada"], env);
    expect(all.status).toBe(0);
    expect(all.stdout).toBe("revoked 1 session of user ada\n");
    expect((await ada2.fetch(`${server.url}/session`)).status).toBe(404);
    expect((await bob.fetch(`${server.url}/session`)).status).toBe(200);
    expect((await anonymous.fetch(`${server.url}/session`)).status).toBe(200);
    expect((await runCli(["list", "--user", "ada", "--json"], env)).stdout).toBe("");
  });

  it("purge says that Redis expires sessions by itself", async () => {
    const text = await runCli(["purge"], env);
    expect(text.status).toBe(0);
    expect(text.stdout).toBe("nothing to purge: the redis store expires sessions by itself\n");
    const json = await runCli(["purge", "--json"], env);
    expect(JSON.parse(json.stdout)).toEqual({ purged: 0, automatic: true });
  });

  it("scans thousands of sessions (several SCAN steps, batches of HMGETs), with progress", async () => {
    const other = { REDIS_URL: redis.urlFor(5) };
    const store = new RedisStore({ url: other.REDIS_URL });
    const count = 10_050;
    const keys = Array.from({ length: count }, () => randomBytes(32).toString("base64url"));
    try {
      const now = Date.now();
      for (let i = 0; i < keys.length; i += 500) {
        await Promise.all(
          keys.slice(i, i + 500).map((key, j) =>
            store.create(key, {
              meta: {
                createdAt: now,
                lastSeenAt: now,
                absoluteExpiresAt: now + 2 * HOUR,
                expiresAt: now + HOUR,
                userId: `u${(i + j) % 7}`,
              },
              fields: new Map([["secret", '"value"']]),
            }),
          ),
        );
      }
    } finally {
      await store.dispose();
    }
    const stats = await runCli(["stats", "--json", "--progress"], other);
    expect(stats.status).toBe(0);
    expect(JSON.parse(stats.stdout)).toEqual({ store: "redis", sessions: count, users: 7, signedIn: count, anonymous: 0 });
    expect(stats.stderr).toBe("atomic-session: scanned 10,000 sessions…\n");
    const list = await runCli(["list", "--json"], other);
    const handles = new Set(jsonLines(list.stdout).map((entry) => entry.handle));
    expect(handles.size).toBe(count);
    expect(handles.has(handleOf(keys[0] as string))).toBe(true);
    const all = printed.join("\n");
    expect(all).not.toContain(keys[0] as string);
    expect(all).not.toContain('"value"');
  });

  it("an unreachable Redis exits 1 at once, naming the address without its password", async () => {
    const port = await freePort();
    const result = await runCli(["stats"], { REDIS_URL: `redis://:hunter2@127.0.0.1:${port}/0` });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`127.0.0.1:${port}`);
    expect(result.stderr).toMatch(/unreachable.*ECONNREFUSED/);
    expect(result.stderr).not.toContain("hunter2");
    expect(result.ms).toBeLessThan(5_000);
  });

  it("a stalled Redis exits 1 after STORE_TIMEOUT_MS, never hangs", async () => {
    redis.pause();
    try {
      const result = await runCli(["list"], { ...env, STORE_TIMEOUT_MS: "500" });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/did not answer within the deadline \(operation ping\)/);
      expect(result.ms).toBeLessThan(8_000);
    } finally {
      redis.resume();
    }
    expect((await runCli(["stats", "--json"], env)).status).toBe(0);
  });

  it("never prints a session ID or a store key", () => {
    expect(secrets.size).toBeGreaterThanOrEqual(8);
    const all = printed.join("\n");
    for (const secret of secrets) expect(all).not.toContain(secret);
  });
});
