/**
 * Configuration errors are not outages, and outages are not log floods: what the reference
 * server logs about its store while requests keep coming.
 */
import { afterAll, describe, expect, it } from "vitest";
import { delay } from "../../test-support/processes.js";
import { type RedisServer, startRedisServer } from "../../test-support/redis-server.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";

const servers: ServerProcess[] = [];
const redisServers: RedisServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  await Promise.all(redisServers.map((redis) => redis.stop()));
});

async function hammer(server: ServerProcess, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) statuses.push((await fetch(`${server.url}/`)).status);
  return statuses;
}

describe("what the reference server logs about its store", () => {
  it("a wrong Redis password: one error line saying what to fix, no stack trace, however many requests fail", async () => {
    const redis = await startRedisServer({ args: ["--requirepass", "the-right-password"] });
    redisServers.push(redis);
    const server = await ServerProcess.start({ REDIS_URL: `redis://:wrong-password@127.0.0.1:${redis.port}/0`, STORE_TIMEOUT_MS: "500" });
    servers.push(server);
    const statuses = await hammer(server, 40);
    expect(new Set(statuses)).toEqual(new Set([503]));
    await delay(300);
    const text = server.logs.join("\n");
    expect(text).not.toContain("wrong-password");
    expect(text).not.toMatch(/\n\s+at /);
    const errors = server.jsonLogs().filter((line) => (line.level as number) >= 40);
    const authentication = errors.filter((line) => /WRONGPASS|NOAUTH/.test(String(line.msg)));
    expect(authentication).toHaveLength(1);
    expect(String(authentication[0]?.msg)).toMatch(/check the user and password in the store's URL \(REDIS_URL\)/);
    // Besides that one line, at most one more about the store (the unreachable line at start).
    expect(errors.length).toBeLessThanOrEqual(2);
  });

  it("an outage: one line when the store goes, counted failures at most every interval, one line when it is back", async () => {
    const redis = await startRedisServer({ appendonly: true });
    redisServers.push(redis);
    const server = await ServerProcess.start({ REDIS_URL: redis.url, STORE_TIMEOUT_MS: "300" });
    servers.push(server);
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");
    await redis.kill("SIGKILL");
    const during = await hammer(server, 30);
    expect(during.every((status) => status === 503)).toBe(true);
    const outageLines = () => server.jsonLogs().filter((line) => /session store/.test(String(line.msg)));
    expect(outageLines().filter((line) => /unreachable/.test(String(line.msg)))).toHaveLength(1);
    await redis.restart();
    for (let i = 0; i < 150 && !outageLines().some((line) => /reachable again/.test(String(line.msg))); i++) await delay(100);
    expect(outageLines().filter((line) => /reachable again/.test(String(line.msg)))).toHaveLength(1);
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #1\n");
    // 30 failed requests in well under the 10 s interval: the unreachable line and the recovery line, nothing per request.
    expect(outageLines().length).toBeLessThanOrEqual(3);
    expect(server.logs.join("\n")).not.toMatch(/\n\s+at /);
  });
});
