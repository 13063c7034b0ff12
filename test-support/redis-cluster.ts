/**
 * A real Redis Cluster for tests: 3 masters and 3 replicas, each a `redis-server` on a free
 * port (and a free cluster-bus port) in its own temporary folder, joined with
 * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`. The servers come from
 * `startRedisServer`, so they are killed when the test process exits and never use port 6379.
 * @module
 */
import { execFile } from "node:child_process";
import { delay, findOnPath, freePort } from "./processes.js";
import { commandOn, commandsOn, type RedisServer, startRedisServer } from "./redis-server.js";

export interface ClusterNode {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** `127.0.0.1:<port>`, as `REDIS_CLUSTER` and `new RedisStore({ cluster })` take it. */
  readonly address: string;
  readonly server: RedisServer;
}

export interface RedisClusterOptions {
  /** `cluster-node-timeout`, ms. Default 1500: small, so that a failover takes a few seconds. */
  nodeTimeoutMs?: number;
}

export interface RedisCluster {
  /** All six nodes, masters first as created (roles change after a failover: ask `masters()`). */
  readonly nodes: readonly ClusterNode[];
  /** Every node's `host:port`. */
  readonly addresses: string[];
  /** Every node as `{ host, port }` (node-redis `rootNodes`, ioredis startup nodes). */
  readonly rootNodes: { host: string; port: number }[];
  /** The hash slot of `key` (`CLUSTER KEYSLOT`). */
  slotOf(key: string): Promise<number>;
  /** The node that serves `key`'s slot as master right now (`CLUSTER KEYSLOT` + `CLUSTER SLOTS`). */
  masterFor(key: string): Promise<ClusterNode>;
  /** The nodes that serve slots as masters right now. */
  masters(): Promise<ClusterNode[]>;
  /** Runs one command on one node and resolves its reply. */
  command(node: ClusterNode, args: string[]): Promise<unknown>;
  /** SIGKILLs one node (its folder is kept). */
  kill(node: ClusterNode): Promise<void>;
  /**
   * Waits until every running node says `cluster_state:ok`, every slot is served by a running
   * master and every running node agrees on it: after `kill(master)`, this is the failover.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Waits until every replica has a live link to its master (after a restart, say). */
  waitReplicasInSync(timeoutMs?: number): Promise<void>;
  /**
   * Waits until a replica has acknowledged every write made so far to `key`'s master: writes a
   * marker in `key`'s slot and runs `WAIT 1 <timeoutMs>` on that same connection.
   */
  waitForReplication(key: string, timeoutMs?: number): Promise<void>;
  /** Stops every node and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

const INSTALL_HINT = "install it with `apt-get install -y redis-server` (it ships redis-server and redis-cli)";
const HOST = "127.0.0.1";
const SLOTS = 16_384;

function run(binary: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${binary} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `CLUSTER SLOTS` as [from, to, masterPort] triples. */
function parseSlots(reply: unknown): [number, number, number][] {
  if (!Array.isArray(reply)) return [];
  const ranges: [number, number, number][] = [];
  for (const entry of reply) {
    if (!Array.isArray(entry)) continue;
    const [from, to, master] = entry as [unknown, unknown, unknown];
    const port = Array.isArray(master) ? Number(master[1]) : Number.NaN;
    ranges.push([Number(from), Number(to), port]);
  }
  return ranges;
}

/** A running cluster-enabled node; retried when its bus port was taken in between. */
async function startNode(nodeTimeoutMs: number): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 4; attempt++) {
    // The bus port defaults to port + 10000, which can be taken or past 65535: pick one too.
    const busPort = await freePort();
    try {
      return await startRedisServer({
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-node-timeout",
          String(nodeTimeoutMs),
          "--cluster-port",
          String(busPort),
          // A replica that lost touch with its master for a while may still take over.
          "--cluster-replica-validity-factor",
          "0",
          // A replica's first sync starts at once (the default waits 5 s for more replicas).
          "--repl-diskless-sync-delay",
          "0",
        ],
      });
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

/** Starts 6 nodes, creates the cluster (3 masters, 1 replica each) and waits until it is healthy. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  if (findOnPath("redis-server") === undefined) throw new Error(`redis-server was not found on PATH: ${INSTALL_HINT}`);
  const cli = findOnPath("redis-cli");
  if (cli === undefined) throw new Error(`redis-cli was not found on PATH: ${INSTALL_HINT}`);
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1_500;

  const servers: RedisServer[] = [];
  const stopAll = async () => {
    await Promise.all(servers.map((server) => server.stop()));
  };
  try {
    const started = await Promise.allSettled(Array.from({ length: 6 }, () => startNode(nodeTimeoutMs)));
    for (const outcome of started) if (outcome.status === "fulfilled") servers.push(outcome.value);
    const failed = started.find((outcome) => outcome.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  } catch (error) {
    await stopAll();
    throw error;
  }

  const nodes: ClusterNode[] = servers.map((server) => ({ host: HOST, port: server.port, address: `${HOST}:${server.port}`, server }));
  const byPort = new Map(nodes.map((node) => [node.port, node]));
  const running = () => nodes.filter((node) => node.server.running);

  const slotRanges = async (): Promise<[number, number, number][]> => {
    let lastError: unknown;
    for (const node of running()) {
      try {
        return parseSlots(await commandOn(node.port, ["CLUSTER", "SLOTS"]));
      } catch (error) {
        lastError = error;
      }
    }
    throw new Error("no running cluster node answered CLUSTER SLOTS", { cause: lastError });
  };

  const slotOf = async (key: string): Promise<number> => {
    const [node] = running();
    if (node === undefined) throw new Error("no cluster node is running");
    return Number(await commandOn(node.port, ["CLUSTER", "KEYSLOT", key]));
  };

  /** True when every running node reports ok and the same full map, served by running masters. */
  const healthy = async (): Promise<boolean> => {
    let reference: string | undefined;
    for (const node of running()) {
      const info = String(await commandOn(node.port, ["CLUSTER", "INFO"]));
      if (!info.includes("cluster_state:ok")) return false;
      const ranges = parseSlots(await commandOn(node.port, ["CLUSTER", "SLOTS"]));
      const covered = ranges.reduce((sum, [from, to]) => sum + (to - from + 1), 0);
      if (covered !== SLOTS) return false;
      if (ranges.some(([, , port]) => !byPort.get(port)?.server.running)) return false;
      const shape = JSON.stringify([...ranges].sort((a, b) => a[0] - b[0]));
      if (reference === undefined) reference = shape;
      else if (shape !== reference) return false;
    }
    return reference !== undefined;
  };

  const waitHealthy = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        if (await healthy()) return;
      } catch (error) {
        lastError = error;
      }
      await delay(100);
    }
    throw new Error(`the Redis Cluster did not become healthy within ${timeoutMs} ms`, { cause: lastError });
  };

  /** Waits until every running replica has finished its sync, so that a failover has a replica to promote. */
  const waitReplicasInSync = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const infos = await Promise.all(running().map((node) => commandOn(node.port, ["INFO", "replication"]).then(String)));
      const replicas = infos.filter((info) => info.includes("role:slave"));
      if (replicas.length === running().length - 3 && replicas.every((info) => info.includes("master_link_status:up"))) return;
      await delay(100);
    }
    throw new Error(`the Redis Cluster replicas did not sync within ${timeoutMs} ms`);
  };

  const masterFor = async (key: string): Promise<ClusterNode> => {
    const slot = await slotOf(key);
    const range = (await slotRanges()).find(([from, to]) => from <= slot && slot <= to);
    const node = range === undefined ? undefined : byPort.get(range[2]);
    if (node === undefined) throw new Error(`no master serves slot ${slot}`);
    return node;
  };

  try {
    await run(cli, ["--cluster", "create", ...nodes.map((node) => node.address), "--cluster-replicas", "1", "--cluster-yes"], 60_000);
    await waitHealthy();
    await waitReplicasInSync();
  } catch (error) {
    await stopAll();
    throw error;
  }

  let stopped = false;
  return {
    nodes,
    addresses: nodes.map((node) => node.address),
    rootNodes: nodes.map((node) => ({ host: node.host, port: node.port })),
    slotOf,
    masterFor,
    async masters() {
      const ports = new Set((await slotRanges()).map(([, , port]) => port));
      return nodes.filter((node) => ports.has(node.port));
    },
    command: (node, args) => commandOn(node.port, args),
    kill: (node) => node.server.kill("SIGKILL"),
    waitHealthy,
    waitReplicasInSync,
    async waitForReplication(key, timeoutMs = 1_000) {
      const master = await masterFor(key);
      // `{key}` hashes like `key` (session keys hold no braces), so the marker lands on the same master.
      const [, acknowledged] = await commandsOn(master.port, [
        ["SET", `{${key}}:replicated`, "1", "PX", "60000"],
        ["WAIT", "1", String(timeoutMs)],
      ]);
      if (Number(acknowledged) < 1) throw new Error(`no replica of ${master.address} acknowledged the writes within ${timeoutMs} ms`);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopAll();
    },
  };
}
