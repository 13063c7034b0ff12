/**
 * The reference server on SQLite while another process holds the file's write lock for 6 s:
 * `GET /metrics` answers at once (the event loop is not frozen, even while a request waits
 * for the lock), `GET /` answers 503 within the store deadline, and 200 again once the lock
 * is free, without a restart and without the refused visits counted.
 */
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CookieJar, ServerProcess, tempDir } from "../../test-support/server-process.js";
import { holdWriteLock } from "../../test-support/sqlite.js";

const LOCK_MS = 6_000;
const STORE_TIMEOUT_MS = 1_000;

async function timedFetch(fetching: Promise<Response>): Promise<{ ms: number; response: Response; body: string }> {
  const started = performance.now();
  const response = await fetching;
  const body = await response.text();
  return { ms: performance.now() - started, response, body };
}

let server: ServerProcess | undefined;
afterAll(async () => {
  await server?.stop();
});

describe("the reference server on SQLite while another process holds the write lock", () => {
  it("answers /metrics at once, 503 on / within the deadline, then 200 again once the lock is free", async () => {
    const file = path.join(tempDir("server-sqlite-lock"), "sessions.db");
    server = await ServerProcess.start({ SQLITE_PATH: file, STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS) });
    const jar = new CookieJar();
    expect(await jar.text(`${server.url}/`)).toBe("Hello World #0\n");

    const lock = await holdWriteLock(file, LOCK_MS);
    const lockedAt = performance.now();

    const metrics = await timedFetch(fetch(`${server.url}/metrics`));
    expect(metrics.response.status).toBe(200);
    expect(metrics.ms).toBeLessThan(300);

    // While a visit waits for the lock, the server answers /metrics: its event loop runs on.
    const waiting = timedFetch(jar.fetch(`${server.url}/`));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const meanwhile = await timedFetch(fetch(`${server.url}/metrics`));
    expect(meanwhile.response.status).toBe(200);
    expect(meanwhile.ms).toBeLessThan(300);
    const refused = await waiting;
    expect(refused.response.status).toBe(503);
    expect(refused.response.headers.get("retry-after")).toBe("1");
    expect(refused.ms).toBeLessThan(STORE_TIMEOUT_MS + 500);

    const again = await timedFetch(jar.fetch(`${server.url}/`));
    expect(again.response.status).toBe(503);
    expect(again.ms).toBeLessThan(STORE_TIMEOUT_MS + 500);
    // Visits keep failing for a few seconds while the store's health probe (a read) succeeds:
    // the log says it once, not once per probe.
    for (let i = 0; i < 4; i++) {
      expect((await jar.fetch(`${server.url}/`)).status).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    // Everything above happened while the lock was held.
    expect(performance.now() - lockedAt).toBeLessThan(LOCK_MS - 500);
    const outageLines = server.jsonLogs().filter((line) => /session store (unreachable|reachable again)/.test(String(line.msg)));
    expect(outageLines.filter((line) => /unreachable/.test(String(line.msg)))).toHaveLength(1);
    expect(outageLines.length).toBeLessThanOrEqual(2);

    await lock.released;
    const after = await timedFetch(jar.fetch(`${server.url}/`));
    expect(after.response.status).toBe(200);
    // #1: the two refused visits were never counted, not even once the lock was free.
    expect(after.body).toBe("Hello World #1\n");
    expect(after.ms).toBeLessThan(1_000);
  }, 30_000);
});
