import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../test-support/redis-server.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";

/**
 * A healthy Redis never produces a 503: one reference-server process on a spawned redis-server,
 * thousands of concurrent requests at once. The store sheds load by its deadline (and a memory
 * bound no burst like this comes near), never by a small command count.
 */
describe("the reference server on Redis under a burst of concurrent requests", () => {
  let redis: RedisServer;
  let server: ServerProcess;
  beforeAll(async () => {
    redis = await startRedisServer();
    // The default deadline (1 s). A burst of 2,500 requests from a load generator on the same
    // cores can keep the server's event loop from reading Redis's replies for a while: a deadline
    // expires only after the loop has read what already arrived, so a busy process is not a slow store.
    server = await ServerProcess.start({ REDIS_URL: redis.url });
  });
  afterAll(async () => {
    await server?.stop();
    await redis?.stop();
  });

  it("2,500 concurrent GET / on one session: no error, and every visit counted once (#1 … #2500)", async () => {
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    const cookie = jar.cookie as string;
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 2_500 }, async () => {
        try {
          const response = await fetch(`${server.url}/`, { headers: { cookie }, signal: AbortSignal.timeout(45_000) });
          return { status: response.status, body: await response.text() };
        } catch (error) {
          return { status: 0, body: String(error) };
        }
      }),
    );
    const failures = answers.filter(({ status }) => status !== 200);
    expect(failures.length, JSON.stringify(failures.slice(0, 3))).toBe(0);
    const counts = answers.map(({ body }) => Number(/^Hello World #(\d+)\n$/.exec(body)?.[1]));
    expect(new Set(counts).size).toBe(2_500);
    expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 2_500 }, (_, i) => i + 1));
    expect(Date.now() - started).toBeLessThan(45_000);
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #2501\n");
  }, 60_000);

  it("2,500 concurrent first visits: no error, 2,500 sessions, each at #0", async () => {
    const answers = await Promise.all(
      Array.from({ length: 2_500 }, async () => {
        try {
          const response = await fetch(`${server.url}/`, { signal: AbortSignal.timeout(45_000) });
          return { status: response.status, body: await response.text(), cookie: response.headers.getSetCookie()[0] ?? "" };
        } catch (error) {
          return { status: 0, body: String(error), cookie: "" };
        }
      }),
    );
    const failures = answers.filter(({ status }) => status !== 200);
    expect(failures.length, JSON.stringify(failures.slice(0, 3))).toBe(0);
    expect(answers.every(({ body }) => body === "Hello World #0\n")).toBe(true);
    expect(new Set(answers.map(({ cookie }) => cookie.split(";", 1)[0])).size).toBe(2_500);
  }, 60_000);

  it("1,000 concurrent logins as one user: no error, the cap (100) holds, and another visitor right after is served", async () => {
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, async () => {
        try {
          const response = await new CookieJar().login(server.url, "one-name");
          await response.arrayBuffer();
          return response.status;
        } catch {
          return 0;
        }
      }),
    );
    expect(answers.filter((status) => status !== 200)).toEqual([]);
    const visitor = new CookieJar();
    const visits: number[] = [];
    for (let i = 0; i < 10; i++) visits.push((await visitor.fetch(`${server.url}/`)).status);
    expect(visits.every((status) => status === 200)).toBe(true);
    const someone = new CookieJar();
    expect((await someone.login(server.url, "one-name")).status).toBe(200);
    const sessions = (await (await someone.fetch(`${server.url}/sessions`)).json()) as unknown[];
    expect(sessions.length).toBeLessThanOrEqual(100);
  }, 60_000);
});
