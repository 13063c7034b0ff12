/**
 * A real Redis Sentinel setup for tests: one master, one replica and one sentinel (quorum 1,
 * `down-after-milliseconds` 1000, `failover-timeout` 5000), each on a free port in its own
 * temporary folder, never 6379. The servers come from `startRedisServer`; the sentinel is
 * spawned here. Everything is killed when the test process exits.
 * @module
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { delay, findOnPath, freePort, removeFolder, removeOnExit, spawnTracked, type TrackedChild, tempDir } from "./processes.js";
import { commandOn, commandsOn, type RedisServer, startRedisServer } from "./redis-server.js";

export interface RedisSentinelOptions {
  /** The master's name. Default `mymaster`. */
  name?: string;
  /** `sentinel down-after-milliseconds`. Default 1000. */
  downAfterMs?: number;
  /** `sentinel failover-timeout`. Default 5000. */
  failoverTimeoutMs?: number;
}

export interface RedisSentinelSetup {
  readonly name: string;
  /** The master it started with (after a failover: the killed one). */
  readonly master: RedisServer;
  /** The replica it started with (after a failover: the master). */
  readonly replica: RedisServer;
  /** The sentinel's port. */
  readonly sentinelPort: number;
  /** `127.0.0.1:<sentinel port>`, as `REDIS_SENTINEL` and `new RedisStore({ sentinel })` take it. */
  readonly sentinelAddresses: string[];
  /** The sentinels as `{ host, port }` (node-redis `sentinelRootNodes`, ioredis `sentinels`). */
  readonly sentinels: { host: string; port: number }[];
  /** The master's port as the sentinel reports it now (`SENTINEL GET-MASTER-ADDR-BY-NAME`). */
  currentMasterPort(): Promise<number>;
  /** Writes a marker on the current master and runs `WAIT 1 <timeoutMs>` on that connection: every earlier write is on the replica. */
  waitForReplication(timeoutMs?: number): Promise<void>;
  /** SIGKILLs the current master. */
  killMaster(): Promise<void>;
  /** Waits until the sentinel names a new master and that master says `role:master`. Resolves its port. */
  waitForFailover(timeoutMs?: number): Promise<number>;
  /** Stops everything and removes the folders. Idempotent. */
  stop(): Promise<void>;
}

const INSTALL_HINT = "install it with `apt-get install -y redis-server` (it ships redis-server and redis-sentinel)";
const HOST = "127.0.0.1";

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await delay(50);
  }
  throw new Error(`${what} within ${timeoutMs} ms`, { cause: lastError });
}

/** Entries of `SENTINEL REPLICAS` / `SENTINEL SENTINELS` as field → value maps. */
export function parseEntries(reply: unknown): Map<string, string>[] {
  if (!Array.isArray(reply)) return [];
  return reply.map((entry) => {
    const fields = new Map<string, string>();
    if (Array.isArray(entry)) for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), String(entry[i + 1]));
    return fields;
  });
}

/** Starts a master, a replica of it and a sentinel watching them, and waits until a failover would work. */
export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelSetup> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) throw new Error(`redis-server was not found on PATH: ${INSTALL_HINT}`);
  const name = options.name ?? "mymaster";
  // A replica's first sync starts at once (the default waits 5 s for more replicas).
  const syncAtOnce = ["--repl-diskless-sync-delay", "0"];

  const servers: RedisServer[] = [];
  let sentinel: ChildProcess | undefined;
  const dir = removeOnExit(tempDir("sentinel"));
  let spawned: TrackedChild | undefined;
  /** What the sentinel wrote, for error messages. */
  const output = (): string => spawned?.output ?? "";

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (sentinel !== undefined && sentinel.exitCode === null && sentinel.signalCode === null) {
      const exited = once(sentinel, "exit");
      sentinel.kill("SIGKILL");
      await exited;
    }
    await Promise.all(servers.map((server) => server.stop()));
    removeFolder(dir);
  };

  try {
    const master = await startRedisServer({ args: syncAtOnce });
    servers.push(master);
    const replica = await startRedisServer({ args: [...syncAtOnce, "--replicaof", HOST, String(master.port)] });
    servers.push(replica);
    await waitFor("the replica did not sync", 20_000, async () =>
      String(await commandOn(replica.port, ["INFO", "replication"])).includes("master_link_status:up"),
    );

    const sentinelPort = await freePort();
    const config = join(dir, "sentinel.conf");
    // Sentinel rewrites its config file as it learns the topology: it must be writable.
    writeFileSync(
      config,
      [
        `port ${sentinelPort}`,
        `bind ${HOST}`,
        `dir ${dir}`,
        `sentinel monitor ${name} ${HOST} ${master.port} 1`,
        `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1_000}`,
        `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 5_000}`,
        `sentinel parallel-syncs ${name} 1`,
        "",
      ].join("\n"),
    );
    // Killed when the test process exits, like the servers.
    spawned = spawnTracked(binary, [config, "--sentinel"], dir);
    const child = spawned.child;
    sentinel = child;
    await waitFor("the sentinel did not answer PING", 10_000, async () => {
      if (child.exitCode !== null) throw new Error(`the sentinel exited:\n${output()}`);
      return (await commandOn(sentinelPort, ["PING"])) === "PONG";
    });
    // No failover is possible before the sentinel knows a healthy replica.
    await waitFor("the sentinel did not discover the replica", 20_000, async () => {
      const replicas = parseEntries(await commandOn(sentinelPort, ["SENTINEL", "REPLICAS", name]));
      return replicas.some(
        (entry) =>
          entry.get("port") === String(replica.port) &&
          entry.get("master-link-status") === "ok" &&
          !/s_down|o_down|disconnected/.test(entry.get("flags") ?? ""),
      );
    });

    const currentMasterPort = async (): Promise<number> => {
      const reply = await commandOn(sentinelPort, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
      return Array.isArray(reply) ? Number(reply[1]) : Number.NaN;
    };
    const byPort = (port: number) => servers.find((server) => server.port === port);

    return {
      name,
      master,
      replica,
      sentinelPort,
      sentinelAddresses: [`${HOST}:${sentinelPort}`],
      sentinels: [{ host: HOST, port: sentinelPort }],
      currentMasterPort,
      async waitForReplication(timeoutMs = 1_000) {
        const port = await currentMasterPort();
        const [, acknowledged] = await commandsOn(port, [
          ["SET", "atomic-session-test:replicated", "1", "PX", "60000"],
          ["WAIT", "1", String(timeoutMs)],
        ]);
        if (Number(acknowledged) < 1) throw new Error(`the replica did not acknowledge the writes within ${timeoutMs} ms`);
      },
      async killMaster() {
        const current = byPort(await currentMasterPort());
        if (current === undefined) throw new Error("the sentinel names a master this setup did not start");
        await current.kill("SIGKILL");
      },
      async waitForFailover(timeoutMs = 30_000) {
        let promoted = Number.NaN;
        await waitFor("no failover happened", timeoutMs, async () => {
          const port = await currentMasterPort();
          if (!byPort(port)?.running) return false;
          promoted = port;
          return String(await commandOn(port, ["INFO", "replication"])).includes("role:master");
        });
        return promoted;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw new Error(`the Redis Sentinel setup did not start: ${(error as Error).message}\n${output()}`, { cause: error });
  }
}
