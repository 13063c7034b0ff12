import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createConnection, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SessionManager, type SessionStore, StoreUnavailableError } from "atomic-session";
import { MemoryStore } from "atomic-session/stores/memory";
import { openSession } from "atomic-session/testing";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../../../", import.meta.url));

/** A memory store whose loads answer after `delayMs` (or never, for Infinity). */
function slowStore(delayMs: number): SessionStore {
  const store = new MemoryStore();
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property !== "load") return Reflect.get(target, property, receiver);
      return (...args: Parameters<SessionStore["load"]>) =>
        delayMs === Number.POSITIVE_INFINITY
          ? new Promise(() => {})
          : new Promise((resolve) => setTimeout(() => resolve(target.load(...args)), delayMs));
    },
  });
}

describe("store deadlines", () => {
  it("each call fails at its own deadline, whatever the calls around it do", async () => {
    const manager = new SessionManager({ store: slowStore(Number.POSITIVE_INFINITY), storeTimeoutMs: 300 });
    const cookie = `sessionID=${"a".repeat(43)}`;
    const started = performance.now();
    const first = openSession(manager, cookie)
      .session.exists()
      .catch((error: unknown) => ({ error, at: performance.now() - started }));
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = openSession(manager, cookie)
      .session.exists()
      .catch((error: unknown) => ({ error, at: performance.now() - started }));
    const [a, b] = (await Promise.all([first, second])) as [{ error: unknown; at: number }, { error: unknown; at: number }];
    expect(a.error).toBeInstanceOf(StoreUnavailableError);
    expect(b.error).toBeInstanceOf(StoreUnavailableError);
    expect((a.error as StoreUnavailableError).timedOut).toBe(true);
    expect(a.at).toBeGreaterThanOrEqual(295);
    expect(a.at).toBeLessThan(450);
    expect(b.at).toBeGreaterThanOrEqual(445);
    expect(b.at).toBeLessThan(650);
  });

  it("a call that answers in time is not failed by a deadline that passes later", async () => {
    const manager = new SessionManager({ store: slowStore(50), storeTimeoutMs: 200 });
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => openSession(manager, `sessionID=${"b".repeat(43)}`).session.exists()),
    );
    expect(results.every((result) => result.status === "fulfilled")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
  });

  it("an answer that arrived while the process was busy settles its call, even past the deadline", async () => {
    // A store whose ping is answered by an echo server in another process: the reply sits in
    // this process's socket while it blocks its event loop for longer than the deadline.
    const echo = spawn(
      process.execPath,
      ["-e", `const s = require("node:net").createServer((c) => c.pipe(c)).listen(0, "127.0.0.1", () => console.log(s.address().port));`],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const [line] = (await once(echo.stdout, "data")) as [Buffer];
    const port = Number(line.toString().trim());
    const client: Socket = await new Promise((resolve) => {
      const socket = createConnection({ port, host: "127.0.0.1" }, () => resolve(socket));
    });
    client.on("error", () => {});
    const store = new MemoryStore();
    const echoing: SessionStore = Object.assign(Object.create(store) as SessionStore, {
      kind: "echo",
      ping: () =>
        new Promise<void>((resolve) => {
          client.once("data", () => resolve());
          client.write("x");
        }),
    });
    try {
      const manager = new SessionManager({ store: echoing, storeTimeoutMs: 100 });
      const health = manager.checkHealth();
      const until = performance.now() + 300;
      while (performance.now() < until) {
        // busy: the echo arrives meanwhile, unread
      }
      await expect(health).resolves.toBeUndefined();
    } finally {
      client.destroy();
      echo.kill();
      await store.dispose();
    }
  });

  it("keeps no timer once no call is in flight: a process exits as soon as its work is done", async () => {
    const script = `
      import { SessionManager } from "atomic-session";
      import { MemoryStore } from "atomic-session/stores/memory";
      const store = new MemoryStore();
      const manager = new SessionManager({ store, storeTimeoutMs: 5000 });
      await manager.checkHealth();
      const started = Date.now();
      process.on("exit", () => console.log(Date.now() - started));
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: root, timeout: 10_000 });
    expect(Number(stdout.trim())).toBeLessThan(1000);
  });
});
