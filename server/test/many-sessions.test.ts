/**
 * A user's sessions at any count: with 10,000 sessions for one user (the cap off), the
 * reference server lists them, signs one out and signs them all out, and the CLI revokes them,
 * on every store that keeps a per-user index.
 */
import { SessionManager, type SessionStore } from "atomic-session";
import { openStore, storeEnv } from "atomic-session/env";
import { openSession } from "atomic-session/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../packages/atomic-session/test/cli/run.js";
import { CookieJar, ServerProcess } from "../../test-support/server-process.js";
import { type ServerStoreSetup, sharedStores } from "../../test-support/server-stores.js";

const COUNT = 10_000;

const setups = sharedStores;

/** `count` sessions of `user`, written through the library into the store the server uses. */
async function seed(store: SessionStore, user: string, count: number): Promise<void> {
  const manager = new SessionManager({ store, maxSessionsPerUser: Number.POSITIVE_INFINITY });
  for (let i = 0; i < count; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, count - i) }, (_, j) => openSession(manager, undefined, `device-${i + j}`).session.login(user)),
    );
  }
}

for (const [name, makeSetup] of setups) {
  describe(`10,000 sessions of one user on ${name}`, () => {
    let setup: ServerStoreSetup;
    let server: ServerProcess;
    let store: SessionStore;
    beforeAll(async () => {
      setup = await makeSetup();
      server = await ServerProcess.start({ ...setup.env, SESSION_MAX_PER_USER: "0", STORE_TIMEOUT_MS: "10000" });
      store = await openStore(storeEnv(setup.env));
      await seed(store, "ada", COUNT - 1);
      await seed(store, "bob", COUNT);
    }, 300_000);
    afterAll(async () => {
      await store?.dispose?.();
      await server?.stop();
      await setup?.close();
    });

    it("GET /sessions lists them all; DELETE /sessions/:handle ends one; POST /logout-all ends every one", async () => {
      const jar = new CookieJar();
      expect((await jar.login(server.url, "ada", "this-device")).status).toBe(200);
      const listed = (await (await jar.fetch(`${server.url}/sessions`)).json()) as {
        handle: string;
        current: boolean;
        userAgent: string;
      }[];
      expect(listed).toHaveLength(COUNT);
      expect(listed.filter((entry) => entry.current).map((entry) => entry.userAgent)).toEqual(["this-device"]);
      const other = listed.find((entry) => !entry.current) as { handle: string };
      expect((await jar.fetch(`${server.url}/sessions/${other.handle}`, { method: "DELETE" })).status).toBe(204);
      expect((await jar.fetch(`${server.url}/sessions/${other.handle}`, { method: "DELETE" })).status).toBe(404);
      expect(((await (await jar.fetch(`${server.url}/sessions`)).json()) as unknown[]).length).toBe(COUNT - 1);
      expect((await jar.fetch(`${server.url}/logout-all`, { method: "POST" })).status).toBe(204);
      const again = new CookieJar();
      expect((await again.login(server.url, "ada")).status).toBe(200);
      expect(((await (await again.fetch(`${server.url}/sessions`)).json()) as unknown[]).length).toBe(1);
    }, 120_000);

    it("the CLI revokes them with revoke --user", async () => {
      const revoked = await runCli(["revoke", "--user", "bob", "--json"], setup.env, 120_000);
      expect(revoked.status, revoked.stderr).toBe(0);
      expect(JSON.parse(revoked.stdout)).toEqual({ revoked: COUNT, user: "bob" });
      const listed = await runCli(["list", "--user", "bob", "--json"], setup.env, 60_000);
      expect(listed.stdout).toBe("");
    }, 180_000);
  });
}
