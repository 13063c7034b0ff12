import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandCounter } from "../../test-support/redis-monitor.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { redisSetup } from "../../test-support/server-stores.js";

/**
 * Write economy, counted at the Redis server with MONITOR (commands run inside scripts
 * are not round trips and are left out).
 */
describe("Redis round trips per request of the reference server", () => {
  let setup: Awaited<ReturnType<typeof redisSetup>>;
  let server: ServerProcess;
  let counter: CommandCounter;
  beforeAll(async () => {
    setup = await redisSetup(0);
    server = await ServerProcess.start(setup.env);
    counter = await CommandCounter.open(setup.redis.url);
    // Steady state: each script's first run on a fresh Redis costs an extra EVAL (NOSCRIPT) once.
    const warmUp = new CookieJar();
    await warmUp.text(`${server.url}/`);
    await warmUp.text(`${server.url}/`);
    await warmUp.fetch(`${server.url}/session`);
  });
  afterAll(async () => {
    await counter?.close();
    await server?.stop();
    await setup?.close();
  });

  it("a new session costs one command, an increment one, a read-only request one", async () => {
    const jar = new CookieJar();
    const created = await counter.during(() => jar.text(`${server.url}/`));
    expect(created.map((args) => args[0]?.toLowerCase())).toEqual(["evalsha"]);

    const incremented = await counter.during(() => jar.text(`${server.url}/`));
    expect(incremented.map((args) => args[0]?.toLowerCase())).toEqual(["evalsha"]);

    const read = await counter.during(() => jar.fetch(`${server.url}/session`));
    expect(read).toHaveLength(1);
  });

  it("cookieless and invalid-cookie requests to /session cost nothing", async () => {
    const commands = await counter.during(async () => {
      await fetch(`${server.url}/session`);
      await fetch(`${server.url}/session`, { headers: { cookie: "sessionID=not-an-id" } });
      await fetch(`${server.url}/`, { headers: { cookie: "sessionID=" } }).then((response) => response.text());
    });
    // The last request writes (it counts a visit): exactly the one create of its new session.
    expect(commands).toHaveLength(1);
  });

  it("an unchanged session is touched at most once per interval: repeated reads add no write", async () => {
    const jar = new CookieJar();
    await jar.text(`${server.url}/`);
    const reads = await counter.during(async () => {
      for (let i = 0; i < 10; i++) await jar.fetch(`${server.url}/session`);
    });
    expect(reads).toHaveLength(10);
    // A read with no touch due is a plain HGETALL: no script, no write.
    expect(reads.every((args) => args[0]?.toLowerCase() === "hgetall")).toBe(true);
  });
});
