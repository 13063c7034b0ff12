// A private redis-server for the benchmark (free port, temporary folder, never 6379), the way
// test/support/redis-server.ts does it, plus the measurements the benchmark takes from it.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Redis } from "ioredis";

const REDIS_DEFAULT_PORT = 6379;

function findOnPath(command) {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    if (folder === "") continue;
    try {
      accessSync(join(folder, command), constants.X_OK);
      return join(folder, command);
    } catch {
      // not here
    }
  }
  return undefined;
}

async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
      });
    });
    if (port !== 0 && port !== REDIS_DEFAULT_PORT) return port;
  }
}

/**
 * Starts a redis-server on a free 127.0.0.1 port in a temporary folder, without persistence.
 * @returns {Promise<BenchRedis>}
 */
export async function startRedis() {
  const binary = findOnPath("redis-server");
  if (binary === undefined) throw new Error("redis-server was not found on PATH: install it with `apt-get install -y redis-server`");
  const dir = mkdtempSync(join(tmpdir(), "atomic-session-bench-redis-"));
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let output = "";
    const child = spawn(
      binary,
      ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no"],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    const collect = (chunk) => {
      output = (output + chunk.toString("utf8")).slice(-4000);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null) {
      const admin = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      admin.on("error", () => {});
      try {
        await admin.connect();
        if ((await admin.ping()) === "PONG") return new BenchRedis(child, port, dir, admin);
      } catch {
        admin.disconnect();
      }
      await delay(50);
    }
    child.kill("SIGKILL");
    if (!/address already in use/i.test(output)) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server failed to start:\n${output}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error("redis-server could not find a free port");
}

export class BenchRedis {
  /** @param {import("node:child_process").ChildProcess} child @param {number} port @param {string} dir @param {Redis} admin */
  constructor(child, port, dir, admin) {
    this.child = child;
    this.port = port;
    this.dir = dir;
    this.admin = admin;
    this.url = `redis://127.0.0.1:${port}/0`;
    this.pid = child.pid;
    // Never leave a redis-server behind, whatever way the runner exits.
    this.onExit = () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    };
    process.on("exit", this.onExit);
  }

  async version() {
    const info = await this.admin.info("server");
    return /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  }

  async flush() {
    await this.admin.flushall();
  }

  /**
   * Calls and microseconds spent executing, per command, from INFO commandstats (INFO itself
   * left out). Redis counts the commands scripts run too (and their time inside the script's
   * own), so the call total is "work", not round trips; `usec` is execution time only: reading,
   * parsing and answering a round trip are in the process's CPU time, not here.
   * @returns {Promise<Map<string, { calls: number; usec: number }>>}
   */
  async commandStats() {
    const info = await this.admin.info("commandstats");
    const stats = new Map();
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
      const name = match[1];
      if (name === "info" || name.startsWith("info|")) continue;
      stats.set(name, { calls: Number(match[2]), usec: Number(match[3]) });
    }
    return stats;
  }

  /**
   * Waits until no command reaches Redis for 100 ms (at most `timeoutMs`): requests a load
   * generator left queued in a server go on writing to Redis after it stops.
   */
  async settle(timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    let previous = BenchRedis.callsBetween(new Map(), await this.commandStats());
    while (Date.now() < deadline) {
      await delay(100);
      const current = BenchRedis.callsBetween(new Map(), await this.commandStats());
      if (current === previous) return;
      previous = current;
    }
  }

  /** Commands counted between two commandStats() snapshots. */
  static callsBetween(before, after) {
    let total = 0;
    for (const [name, { calls }] of after) total += calls - (before.get(name)?.calls ?? 0);
    return total;
  }

  /**
   * Per command between two commandStats() snapshots: calls and execution microseconds, only
   * the commands that ran (`evalsha` includes the time of the commands its script ran).
   * @returns {Record<string, { calls: number; usec: number }>}
   */
  static commandsBetween(before, after) {
    /** @type {Record<string, { calls: number; usec: number }>} */
    const out = {};
    for (const [name, { calls, usec }] of after) {
      const was = before.get(name) ?? { calls: 0, usec: 0 };
      if (calls > was.calls) out[name] = { calls: calls - was.calls, usec: usec - was.usec };
    }
    return out;
  }

  /**
   * Counts the commands clients send (scripts' own calls left out) while `action` runs,
   * with MONITOR and two ECHO markers. MONITOR slows Redis down, so the benchmark only uses
   * it for a short probe after each measured run, never during one.
   * @param {() => Promise<unknown>} action
   * @returns {Promise<string[][]>}
   */
  async commandsDuring(action) {
    // monitor() opens a second connection in MONITOR mode: both must be closed afterwards.
    const base = new Redis({ host: "127.0.0.1", port: this.port, lazyConnect: true });
    const monitor = await base.monitor();
    /** @type {{ args: string[]; source: string }[]} */
    const lines = [];
    monitor.on("monitor", (_time, args, source) => lines.push({ args, source }));
    const mark = async (text) => {
      await this.admin.echo(text);
      const deadline = Date.now() + 5000;
      while (!lines.some((line) => line.args[0]?.toLowerCase() === "echo" && line.args[1] === text)) {
        if (Date.now() > deadline) throw new Error("MONITOR did not report the marker");
        await delay(5);
      }
    };
    try {
      const start = `bench-start-${randomBytes(6).toString("hex")}`;
      const end = `bench-end-${randomBytes(6).toString("hex")}`;
      await mark(start);
      await action();
      await mark(end);
      const from = lines.findIndex((line) => line.args[1] === start);
      const to = lines.findIndex((line) => line.args[1] === end);
      return lines
        .slice(from + 1, to)
        .filter((line) => line.source !== "lua")
        .map((line) => line.args);
    } finally {
      monitor.disconnect();
      base.disconnect();
    }
  }

  /** Every key matching `pattern` (SCAN). */
  async keys(pattern) {
    const found = [];
    let cursor = "0";
    do {
      const [next, batch] = await this.admin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== "0");
    return found;
  }

  /** `MEMORY USAGE key SAMPLES 0` (every element counted). */
  async memoryUsage(key) {
    return Number(await this.admin.call("MEMORY", "USAGE", key, "SAMPLES", "0"));
  }

  async usedMemory() {
    const info = await this.admin.info("memory");
    return Number(/used_memory:(\d+)/.exec(info)?.[1]);
  }

  async dbSize() {
    return this.admin.dbsize();
  }

  /**
   * Adds `count` copies of the hash `template` under random keys shaped like `like` (its prefix
   * up to the last ':', then as many base64url characters as it has after it), each with
   * PEXPIREAT `expiresAt`: pipelined HSET + PEXPIREAT in batches, so that a million keys take seconds.
   * @param {string} like a real session key, e.g. `as:a0V0HM17ddfp1luUyNYuM4hSvQKPs9AL`
   * @param {Record<string, string>} template
   * @param {number} count
   * @param {number} expiresAt
   * @param {(done: number) => void} [progress]
   */
  async populate(like, template, count, expiresAt, progress) {
    const pairs = Object.entries(template).flat();
    if (pairs.length === 0) throw new Error(`populate: the template session ${like} has no fields`);
    const prefix = like.slice(0, like.lastIndexOf(":") + 1);
    const idLength = like.length - prefix.length;
    const bytes = Math.ceil((idLength * 3) / 4);
    const BATCH = 5000;
    for (let done = 0; done < count; ) {
      const size = Math.min(BATCH, count - done);
      const ids = randomBytes(bytes * size);
      const pipeline = this.admin.pipeline();
      for (let i = 0; i < size; i++) {
        const key = `${prefix}${ids
          .subarray(i * bytes, (i + 1) * bytes)
          .toString("base64url")
          .slice(0, idLength)}`;
        pipeline.hset(key, ...pairs);
        pipeline.pexpireat(key, expiresAt);
      }
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error !== null);
      if (failed !== undefined) throw failed[0];
      done += size;
      if (progress !== undefined && (done % 100_000 === 0 || done === count)) progress(done);
    }
  }

  async stop() {
    this.admin.disconnect();
    const exited = new Promise((resolve) => {
      if (this.child.exitCode !== null) resolve(undefined);
      else this.child.once("exit", resolve);
    });
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
    rmSync(this.dir, { recursive: true, force: true });
    process.off("exit", this.onExit);
  }
}
