/**
 * Purging 200,000 expired sessions: the application's event loop is never held (under 20 ms
 * at any point), and the worker serves other calls between the purge's batches.
 *
 * On a machine other work keeps busy, a thread that does nothing still waits tens of
 * milliseconds for a core now and then (measured here: up to 80 ms). That is not the loop
 * being held, so the time the thread waited for a CPU is taken out of each measured stretch.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SqliteStore } from "atomic-session/stores/sqlite";
import { metaFor, newKey } from "atomic-session/testing";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";

const HOUR = 3_600_000;
const EXPIRED = 200_000;
const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const run = promisify(execFile);

/**
 * Writes `count` expired sessions with one field each straight into the file, in one
 * transaction, from a child process: the garbage of 200,000 rows is collected there, not on
 * the event loop being measured.
 */
async function fillExpired(file: string, count: number, now: number): Promise<void> {
  const script = `
    const [file, count, now] = process.argv.slice(1).map((arg, i) => (i === 0 ? arg : Number(arg)));
    const { default: Database } = await import("better-sqlite3");
    const { randomBytes } = await import("node:crypto");
    const raw = new Database(file);
    const session = raw.prepare(
      "INSERT INTO atomic_session_sessions (key, created_at, last_seen_at, absolute_expires_at, expires_at, user_id) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const field = raw.prepare("INSERT INTO atomic_session_fields (session_key, field, value) VALUES (?, 'visits', '1')");
    raw.transaction(() => {
      for (let i = 0; i < count; i++) {
        const key = randomBytes(32).toString("base64url");
        session.run(key, now - ${3 * HOUR}, now - ${2 * HOUR}, now + ${HOUR}, now - 1 - (i % 1000), i % 3 === 0 ? "user-" + (i % 97) : null);
        field.run(key);
      }
    })();
    raw.close();
  `;
  await run(process.execPath, ["--input-type=module", "-e", script, file, String(count), String(now)], { cwd: repositoryRoot });
}

const SCHEDSTAT = "/proc/thread-self/schedstat";

/** Milliseconds this thread has waited for a CPU so far (Linux's schedstat: run time, run-queue wait, timeslices); 0 elsewhere. */
function waitedForCpuMs(): number {
  return existsSync(SCHEDSTAT) ? Number(readFileSync(SCHEDSTAT, "utf8").split(" ")[1]) / 1e6 : 0;
}

/**
 * Samples this thread's event loop every 2 ms; `stop()` answers the longest it was held: the
 * time between two samples, less the 2 ms asked for and the time the thread waited for a CPU meanwhile.
 */
function watchEventLoop(): { stop(): number } {
  let longest = 0;
  let last = performance.now();
  let lastWait = waitedForCpuMs();
  const timer = setInterval(() => {
    const now = performance.now();
    const wait = waitedForCpuMs();
    longest = Math.max(longest, now - last - (wait - lastWait) - 2);
    last = now;
    lastWait = wait;
  }, 2);
  return {
    stop() {
      clearInterval(timer);
      return longest;
    },
  };
}

describe("SqliteStore purging 200,000 expired sessions", () => {
  it("never holds the event loop for 20 ms, and answers a load made during the purge promptly", async () => {
    const file = path.join(tempDir("sqlite-sweep"), "sessions.db");
    // No sweep of its own during the test: the purge below is the only one.
    const store = new SqliteStore({ path: file, sweepIntervalMs: 3_600_000 });
    const now = Date.now();
    await fillExpired(file, EXPIRED, now);
    const live = newKey();
    await store.create(live, { meta: metaFor(Date.now()), fields: new Map([["visits", "7"]]) });
    const touch = () => ({ now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR });

    const eventLoop = watchEventLoop();
    const started = performance.now();
    let purgedAt: number | undefined;
    const purge = store.purgeExpired(now).then((deleted) => {
      purgedAt = performance.now();
      return deleted;
    });
    // Loads every 20 ms while the purge runs, each timed from its call to its answer.
    const loads: { ms: number; duringPurge: boolean; visits: string | undefined }[] = [];
    while (purgedAt === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const called = performance.now();
      const loaded = await store.load(live, touch());
      const answered = performance.now();
      loads.push({
        ms: answered - called,
        duringPurge: purgedAt === undefined || purgedAt > answered,
        visits: typeof loaded === "string" ? loaded : loaded.fields.get("visits"),
      });
    }
    const deleted = await purge;
    const purgeMs = (purgedAt ?? 0) - started;
    const heldMs = eventLoop.stop();

    expect(deleted).toBe(EXPIRED);
    expect(await store.count(Date.now())).toBe(1);
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare("SELECT count(*) AS n FROM atomic_session_fields").get()).toEqual({ n: 1 });
    raw.close();

    // The purge lasted long enough for several loads to land inside it, and each was answered
    // between two of its steps rather than after the whole purge.
    const during = loads.filter((load) => load.duringPurge);
    expect(during.length).toBeGreaterThanOrEqual(3);
    for (const load of during) expect(load.visits).toBe("7");
    const latencies = during.map((load) => load.ms).sort((a, b) => a - b);
    expect(latencies[Math.floor(latencies.length / 2)]).toBeLessThan(250);
    expect(latencies.at(-1)).toBeLessThan(Math.min(1_000, purgeMs / 4));
    expect(heldMs).toBeLessThan(20);
    await store.dispose();
  }, 120_000);
});
