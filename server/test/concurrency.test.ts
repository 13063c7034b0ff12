import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeKeyOf } from "../../packages/atomic-session/src/core/ids.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { everyStore, type ServerStoreSetup } from "../../test-support/server-stores.js";

/** Runs `tasks` with at most `limit` in flight, like a load generator with 50 connections. */
async function inBatches<T>(count: number, limit: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < count) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

function visitNumber(body: string): number {
  const match = /^Hello World #(\d+)\n$/.exec(body);
  if (match === null) throw new Error(`unexpected answer: ${JSON.stringify(body)}`);
  return Number(match[1]);
}

const setups = everyStore;

for (const [name, makeSetup] of setups) {
  describe(`no lost updates on ${name}`, () => {
    let setup: ServerStoreSetup;
    const servers: ServerProcess[] = [];
    beforeAll(async () => {
      setup = await makeSetup();
      servers.push(await ServerProcess.start(setup.env));
      if (setup.shared) servers.push(await ServerProcess.start(setup.env));
    });
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()));
      await setup?.close();
    });

    it("200 concurrent GET / on one session (two server processes when the store is shared) answer #1 … #200, then #201", async () => {
      const jar = new CookieJar();
      expect(await jar.text(`${servers[0]?.url}/`)).toBe("Hello World #0\n");
      const cookie = jar.cookie as string;
      const answers = await inBatches(200, 50, async (i) => {
        const server = servers[i % servers.length] as ServerProcess;
        const response = await fetch(`${server.url}/`, { headers: { cookie } });
        expect(response.headers.getSetCookie()).toEqual([]);
        return visitNumber(await response.text());
      });
      expect([...answers].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(await jar.text(`${servers.at(-1)?.url}/`)).toBe("Hello World #201\n");
    });

    it("a logout among 60 in-flight requests stays a logout: the old cookie is anonymous and the store holds nothing for it", async () => {
      const jar = new CookieJar();
      await jar.fetch(`${servers[0]?.url}/`);
      const login = await jar.login(servers[0]?.url as string, "ada");
      expect(login.status).toBe(200);
      const cookie = jar.cookie as string;
      const id = jar.id as string;
      const statuses = await inBatches(60, 20, async (i) => {
        const server = servers[i % servers.length] as ServerProcess;
        if (i === 20) return (await fetch(`${server.url}/logout`, { method: "POST", headers: { cookie } })).status;
        return (await fetch(`${server.url}/`, { headers: { cookie } })).status;
      });
      expect(statuses[20]).toBe(204);
      expect(statuses.every((status) => status === 200 || status === 204)).toBe(true);
      for (const server of servers) {
        expect((await fetch(`${server.url}/session`, { headers: { cookie } })).status).toBe(404);
      }
      if (setup.shared) expect(await setup.holds(storeKeyOf(id))).toBe(false);
    });
  });
}
