import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../test-support/redis-server.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";

/**
 * The reference server on a Redis out of memory (`--maxmemory` + `noeviction`, filled from
 * another database until it refuses writes): a login is a 503 that logs nobody out, reads and
 * logouts go on, and once memory is freed the same login works.
 */
describe("the reference server on a Redis that refuses writes for lack of memory", () => {
  let redis: RedisServer;
  let server: ServerProcess;
  let filler: ReturnType<typeof createClient>;
  beforeAll(async () => {
    redis = await startRedisServer({ args: ["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"] });
    filler = createClient({ url: redis.urlFor(1) });
    filler.on("error", () => {});
    await filler.connect();
    server = await ServerProcess.start({ REDIS_URL: redis.url });
  });
  afterAll(async () => {
    await server?.stop();
    await filler?.close();
    await redis?.stop();
  });

  /** Fills database 1 past maxmemory (see the store's OOM test): 10 KB values until one is refused, then 1 MB more from a script. */
  async function fill(): Promise<void> {
    const value = "x".repeat(10_000);
    for (let batch = 0; ; batch++) {
      if (batch === 1_000) throw new Error("Redis never refused a write: is maxmemory set?");
      const writes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => filler.set(`fill:${batch}:${i}`, value)));
      if (writes.some((write) => write.status === "rejected")) break;
    }
    const over = "redis.call('DEL', KEYS[1]) for i = 1, 100 do redis.call('SET', KEYS[1] .. i, string.rep('x', 10000)) end return 1";
    await filler.eval(over, { keys: ["fill:over:"] });
    await expect(filler.set("fill:probe", "x")).rejects.toThrow(/OOM/);
  }

  it("POST /login answers 503 and GET /session with the old cookie still shows the old user; after freeing memory the login works", async () => {
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    expect((await jar.login(server.url, "ada")).status).toBe(200);
    const adaCookie = jar.cookie as string;
    const other = new CookieJar();
    expect((await other.login(server.url, "ada", "phone")).status).toBe(200);

    await fill();
    try {
      const refused = await jar.login(server.url, "bob");
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(refused.headers.getSetCookie()).toEqual([]);
      expect(jar.cookie).toBe(adaCookie);

      const session = await jar.fetch(`${server.url}/session`);
      expect(session.status).toBe(200);
      expect(await session.json()).toMatchObject({ user: "ada", visitCount: 1 });
      // A visit is a write: refused too, and the count is unchanged.
      expect((await jar.fetch(`${server.url}/`)).status).toBe(503);
      expect(await (await jar.fetch(`${server.url}/session`)).json()).toMatchObject({ user: "ada", visitCount: 1 });
      expect((await (await jar.fetch(`${server.url}/sessions`)).json()) as unknown[]).toHaveLength(2);
      // A logout works.
      expect((await other.fetch(`${server.url}/logout`, { method: "POST" })).status).toBe(204);
      expect((await other.fetch(`${server.url}/session`)).status).toBe(404);
    } finally {
      await filler.flushDb();
    }

    expect((await jar.login(server.url, "bob")).status).toBe(200);
    expect(jar.cookie).not.toBe(adaCookie);
    expect(await (await jar.fetch(`${server.url}/session`)).json()).toMatchObject({ user: "bob", visitCount: 1 });
    expect((await fetch(`${server.url}/session`, { headers: { cookie: adaCookie } })).status).toBe(404);
  });
});
