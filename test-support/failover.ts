/**
 * A failover bench for the Redis store: Sentinel (1 primary, 2 replicas, 3 sentinels) and
 * Cluster (3 primaries, 3 replicas) on free ports, each node behind a {@link NodeLink} (the
 * node's "network"), sessions under a steady load of logins, increments, logouts and
 * revocations from several managers, each with its own store, and a primary killed with
 * SIGKILL while they run. Every acknowledged operation is recorded and checked afterwards
 * through a fresh store: logouts, revocations and rotations lost (the ended cookie works
 * again), increments lost, requests over the deadline, and how long until writes succeed again.
 *
 * Why the links: on one machine a SIGKILLed Redis loses nothing it wrote to a socket (the
 * kernel still delivers it) and its replicas get every write within microseconds, so the
 * window this bench measures would never open. Real replicas sit across a network, a little
 * behind: each link delays what a primary sends to its replicas by `lagMs` (client traffic
 * passes at once), and killing a primary first cuts its link, so what was still on its way
 * to a replica is lost with the host, as when a machine dies.
 *
 * The links and the load share this process's event loop, so the topology's own checks use
 * raw sockets ({@link adminCommand}): creating a node-redis client per check stalled the loop
 * for tens of milliseconds, enough to hide the window (no request was acknowledged in it) and
 * to hold up the sentinels' pings, which pass through the links. `FAILOVER_DEBUG=1` prints the
 * sentinels' logs at the end.
 * @module
 */
import { execFile } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { type Session, SessionManager, type SessionStore, StoreUnavailableError } from "atomic-session";
import { type DurabilityOptions, RedisStore } from "atomic-session/stores/redis";
import { cookiePair, openSession } from "atomic-session/testing";
import { Cluster, Redis } from "ioredis";
import { expect } from "vitest";
import { delay, findOnPath, freePort, removeFolder, removeOnExit, spawnTracked, type TrackedChild, tempDir } from "./processes.js";
import { parseEntries } from "./redis-sentinel.js";
import { type RedisServer, startRedisServer } from "./redis-server.js";

const HOST = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// The network in front of a node
// ---------------------------------------------------------------------------------------------

interface Pipe {
  client: Socket;
  upstream: Socket;
  /** A replica's link to its primary (it sent REPLCONF): what the primary sends is delayed. */
  replication: boolean;
  sniffed: number;
  queue: { due: number; chunk: Buffer }[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * A TCP proxy in front of one Redis node, on its own port, which the node announces as its
 * address (so replicas, sentinels and clients all come through it). Connections of replicas to
 * this node, when it is a primary, get what it sends delayed by `lagMs`; all else passes at once.
 * `down()` is the host dying: every connection is cut, what was in flight is lost, and nothing
 * connects until `up()`.
 */
export class NodeLink {
  readonly port: number;
  readonly lagMs: number;
  #target = 0;
  #server: Server;
  #down = false;
  readonly #pipes = new Set<Pipe>();

  private constructor(server: Server, port: number, lagMs: number) {
    this.#server = server;
    this.port = port;
    this.lagMs = lagMs;
  }

  /** A link listening on a free port; it forwards once `target` is set. */
  static async open(lagMs: number): Promise<NodeLink> {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      let link: NodeLink | undefined;
      const server = createServer((socket) => link?.accept(socket));
      try {
        await listen(server, port);
      } catch (error) {
        if (attempt >= 4) throw error;
        continue;
      }
      link = new NodeLink(server, port, lagMs);
      return link;
    }
  }

  /** The node's own port. */
  set target(port: number) {
    this.#target = port;
  }

  private accept(client: Socket): void {
    if (this.#down || this.#target === 0) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: HOST, port: this.#target });
    const pipe: Pipe = { client, upstream, replication: false, sniffed: 0, queue: [], timer: undefined };
    this.#pipes.add(pipe);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const end = () => this.#cut(pipe);
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.on("data", (chunk: Buffer) => {
      if (!pipe.replication && pipe.sniffed < 8_192) {
        pipe.sniffed += chunk.length;
        if (/REPLCONF|PSYNC/i.test(chunk.toString("latin1"))) pipe.replication = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!pipe.replication || this.lagMs === 0) {
        client.write(chunk);
        return;
      }
      pipe.queue.push({ due: Date.now() + this.lagMs, chunk });
      this.#schedule(pipe);
    });
  }

  #schedule(pipe: Pipe): void {
    if (pipe.timer !== undefined) return;
    const next = pipe.queue[0];
    if (next === undefined) return;
    pipe.timer = setTimeout(
      () => {
        pipe.timer = undefined;
        const now = Date.now();
        while (pipe.queue.length > 0 && (pipe.queue[0] as { due: number }).due <= now) {
          pipe.client.write((pipe.queue.shift() as { chunk: Buffer }).chunk);
        }
        this.#schedule(pipe);
      },
      Math.max(0, next.due - Date.now()),
    );
  }

  #cut(pipe: Pipe): void {
    if (!this.#pipes.delete(pipe)) return;
    clearTimeout(pipe.timer);
    pipe.queue = [];
    pipe.client.destroy();
    pipe.upstream.destroy();
  }

  /** The host dies: connections cut (in-flight data lost), the port refuses connections. */
  down(): void {
    this.#down = true;
    this.#server.close();
    for (const pipe of [...this.#pipes]) this.#cut(pipe);
  }

  /** The host is back (the node restarted): the port accepts connections again. */
  async up(): Promise<void> {
    if (!this.#down) return;
    const server = createServer((socket) => this.accept(socket));
    await listen(server, this.port);
    this.#server = server;
    this.#down = false;
  }

  async close(): Promise<void> {
    this.down();
  }
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Topologies
// ---------------------------------------------------------------------------------------------

/** One Redis node and its link; `port` is the address everyone uses (the link's). */
export interface Member {
  readonly server: RedisServer;
  readonly link: NodeLink;
  readonly port: number;
}

/** The client libraries the bench drives: the store's own node-redis client, or an injected ioredis one. */
export type ClientFlavor = "node-redis" | "ioredis";

export interface OpenedStore {
  store: SessionStore;
  close(): Promise<void>;
}

/** What the bench needs from a topology. */
export interface FailoverTarget {
  /** For the report, such as "Sentinel (1 primary, 2 replicas, 3 sentinels)". */
  readonly name: string;
  /** A store on this topology through `flavor`, with `durability` or without. */
  open(flavor: ClientFlavor, durability?: DurabilityOptions): Promise<OpenedStore>;
  /** Waits until every node runs, every primary has all its replicas in sync and the topology agrees on it. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** The primary to kill in round `n`. */
  pickPrimary(n: number): Promise<Member>;
  /** Waits until another node serves what `killed` served, as a primary. */
  waitForFailover(killed: Member, timeoutMs?: number): Promise<void>;
  /**
   * Restarts `killed` on its port and folder and lets it be reached again; it comes back as a
   * replica (of the current primary, for Sentinel: as a supervisor would restart it, rather than
   * wait the 8 s Sentinel takes to convert a returning primary).
   */
  restart(killed: Member): Promise<void>;
  stop(): Promise<void>;
}

type Resp = string | number | null | Error | Resp[];

/**
 * One command on one node over a short-lived raw socket, for the topology's own checks: a
 * node-redis client costs tens of milliseconds of CPU to create, and the checks run while
 * the load does, so they would stall the very event loop whose requests the bench times.
 */
export function adminCommand(port: number, args: readonly string[], timeoutMs = 2_000): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: HOST, port });
    let buffer = Buffer.alloc(0);
    const finish = (error: Error | undefined, reply?: Resp) => {
      socket.destroy();
      if (error !== undefined) reject(error);
      else if (reply instanceof Error) reject(reply);
      else resolve(reply ?? null);
    };
    socket.setTimeout(timeoutMs, () => finish(new Error(`:${port} did not answer ${args[0]} within ${timeoutMs} ms`)));
    socket.once("error", (error) => finish(error));
    socket.once("connect", () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")}`);
    });
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        const parsed = parseResp(buffer, 0);
        if (parsed !== undefined) finish(undefined, parsed.value);
      } catch (error) {
        finish(error as Error);
      }
    });
  });
}

/** One RESP2 value from `buffer` at `at`, or undefined when it has not all arrived. */
function parseResp(buffer: Buffer, at: number): { value: Resp; end: number } | undefined {
  const lineEnd = buffer.indexOf("\r\n", at);
  if (lineEnd < 0) return undefined;
  const line = buffer.toString("utf8", at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (String.fromCharCode(buffer[at] as number)) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new Error(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString("utf8", next, next + length), end: next + length + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const values: Resp[] = [];
      let end = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buffer, end);
        if (item === undefined) return undefined;
        values.push(item.value);
        end = item.end;
      }
      return { value: values, end };
    }
    default:
      throw new Error(`not a RESP reply: ${line}`);
  }
}

/** Polls `check` until it answers true; it may answer why not (a string), which the timeout error then says. */
async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean | string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let why = "";
  while (Date.now() < deadline) {
    try {
      const outcome = await check();
      if (outcome === true) return;
      if (typeof outcome === "string") why = outcome;
    } catch (error) {
      lastError = error;
    }
    await delay(50);
  }
  throw new Error(`${what} within ${timeoutMs} ms${why === "" ? "" : `: ${why}`}`, { cause: lastError });
}

/** `INFO replication` as field → value. */
async function replicationInfo(port: number): Promise<Map<string, string>> {
  const text = String(await adminCommand(port, ["INFO", "replication"]));
  return new Map(
    text
      .split("\r\n")
      .filter((line) => line.includes(":"))
      .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1)] as [string, string]),
  );
}

/** Whether the node at `port` is a primary with `replicas` replicas online and caught up. */
/**
 * Whether the node at `port` is a primary with `replicas` replicas online and caught up (within
 * a few KB: the sentinels' hello messages keep the stream moving, and a replica reports its
 * offset once a second), or why not.
 */
async function primaryInSync(port: number, replicas: number): Promise<true | string> {
  const info = await replicationInfo(port);
  const role = info.get("role");
  const connected = Number(info.get("connected_slaves"));
  if (role !== "master" || connected !== replicas) return `:${port} is ${role} with ${connected} replica(s), not master with ${replicas}`;
  const offset = Number(info.get("master_repl_offset"));
  for (let i = 0; i < replicas; i++) {
    const line = info.get(`slave${i}`) ?? "";
    const fields = new Map(line.split(",").map((pair) => pair.split("=") as [string, string]));
    if (fields.get("state") !== "online" || offset - Number(fields.get("offset")) > 16_384 || Number(fields.get("lag")) > 2) {
      return `:${port} (offset ${offset}) has a replica behind: ${line}`;
    }
  }
  return true;
}

/** A replica's first sync starts at once (the default waits 5 s for more replicas). */
const SYNC_AT_ONCE = ["--repl-diskless-sync-delay", "0"];

/** How far behind their primary the benches' replicas run: a replica across a network under load. */
export const BENCH_LAG_MS = 40;

/** Options common to both topologies. */
export interface TopologyOptions {
  /** How far behind its primary each replica receives the stream, ms. Default {@link BENCH_LAG_MS}. */
  lagMs?: number;
}

/**
 * Sentinel: 1 primary, 2 replicas, 3 sentinels (quorum 2, `down-after-milliseconds` 2000). Each
 * node announces its link's port (`replica-announce-port`), and the sentinels monitor the
 * primary through its link, so a failover moves everyone through the links too.
 */
export async function startSentinelTopology(options: TopologyOptions = {}): Promise<FailoverTarget> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) throw new Error("redis-server was not found on PATH: install it with `apt-get install -y redis-server`");
  const lagMs = options.lagMs ?? BENCH_LAG_MS;
  const name = "failover";
  const replicaCount = 2;
  const members: Member[] = [];
  const sentinels: { port: number; child: TrackedChild; dir: string }[] = [];
  const stop = async () => {
    if (process.env.FAILOVER_DEBUG) for (const sentinel of sentinels) console.log(`sentinel :${sentinel.port}\n${sentinel.child.output}`);
    for (const sentinel of sentinels.splice(0)) {
      const { child } = sentinel.child;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGKILL");
        await exited;
      }
      removeFolder(sentinel.dir);
    }
    await Promise.all(members.splice(0).map(async (member) => Promise.all([member.link.close(), member.server.stop()])));
  };

  try {
    const startMember = async (replicaOf?: Member): Promise<Member> => {
      const link = await NodeLink.open(lagMs);
      const args = [...SYNC_AT_ONCE, "--replica-announce-ip", HOST, "--replica-announce-port", String(link.port)];
      if (replicaOf !== undefined) args.push("--replicaof", HOST, String(replicaOf.port));
      const server = await startRedisServer({ args });
      link.target = server.port;
      const member = { server, link, port: link.port };
      members.push(member);
      return member;
    };
    const primary = await startMember();
    for (let i = 0; i < replicaCount; i++) await startMember(primary);
    await waitFor("the replicas did not sync", 20_000, () => primaryInSync(primary.port, replicaCount));

    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = removeOnExit(tempDir("failover-sentinel"));
      const config = join(dir, "sentinel.conf");
      // Sentinel rewrites its config file as it learns the topology: it must be writable.
      writeFileSync(
        config,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir}`,
          `sentinel monitor ${name} ${HOST} ${primary.port} 2`,
          // The sentinels reach the nodes through the links, in this process: on a loaded machine its
          // event loop can stall for a while, and a primary that seems silent for 1 s is failed over.
          `sentinel down-after-milliseconds ${name} 2000`,
          `sentinel failover-timeout ${name} 1500`,
          `sentinel parallel-syncs ${name} 2`,
          "",
        ].join("\n"),
      );
      sentinels.push({ port, child: spawnTracked(binary, [config, "--sentinel"], dir), dir });
    }
    const sentinelPorts = sentinels.map((sentinel) => sentinel.port);
    const byPort = (port: number) => members.find((member) => member.port === port);
    const masterPorts = async () =>
      Promise.all(
        sentinelPorts.map(async (port) => {
          const reply = await adminCommand(port, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
          return Array.isArray(reply) ? Number(reply[1]) : Number.NaN;
        }),
      );
    /** The primary every sentinel names, when they agree on one that runs. */
    const agreedPrimary = async (): Promise<Member | undefined> => {
      const ports = new Set(await masterPorts());
      if (ports.size !== 1) return undefined;
      const member = byPort([...ports][0] as number);
      return member?.server.running ? member : undefined;
    };

    const waitHealthy = async (timeoutMs = 30_000) => {
      await waitFor("the Sentinel setup did not become healthy", timeoutMs, async () => {
        const current = await agreedPrimary();
        if (current === undefined) return `the sentinels name ${(await masterPorts()).join(", ")}`;
        const down = members.filter((member) => !member.server.running);
        if (down.length > 0) return `:${down.map((member) => member.port).join(", :")} not running`;
        const synced = await primaryInSync(current.port, replicaCount);
        if (synced !== true) return synced;
        for (const port of sentinelPorts) {
          const others = parseEntries(await adminCommand(port, ["SENTINEL", "SENTINELS", name])).length;
          if (others !== sentinelPorts.length - 1) return `sentinel :${port} knows ${others} other sentinel(s)`;
          const replicas = parseEntries(await adminCommand(port, ["SENTINEL", "REPLICAS", name]));
          const healthy = replicas.filter(
            (entry) => entry.get("master-link-status") === "ok" && !/s_down|o_down|disconnected/.test(entry.get("flags") ?? ""),
          );
          if (healthy.length < replicaCount) {
            return `sentinel :${port} sees replicas ${replicas.map((entry) => `${entry.get("port")} ${entry.get("flags")} ${entry.get("master-link-status")}`).join("; ")}`;
          }
        }
        return true;
      });
    };
    await waitHealthy();

    const sentinelNodes = sentinelPorts.map((port) => ({ host: HOST, port }));
    return {
      name: `Sentinel (1 primary, ${replicaCount} replicas, 3 sentinels; replicas ${lagMs} ms behind)`,
      async open(flavor, durability) {
        const extra = durability === undefined ? {} : { durability };
        if (flavor === "node-redis") {
          const store = new RedisStore({ sentinel: { name, nodes: sentinelPorts.map((port) => `${HOST}:${port}`) }, ...extra });
          return { store, close: () => store.dispose() };
        }
        const client = new Redis({
          sentinels: sentinelNodes,
          name,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          retryStrategy: (times) => Math.min(times * 50, 500),
        });
        client.on("error", () => {});
        await once(client, "ready");
        const store = new RedisStore({ client, ...extra });
        return {
          store,
          async close() {
            await store.dispose();
            client.disconnect();
          },
        };
      },
      waitHealthy,
      async pickPrimary() {
        const current = await agreedPrimary();
        if (current === undefined) throw new Error("the sentinels do not agree on a running primary");
        return current;
      },
      async waitForFailover(killed, timeoutMs = 30_000) {
        await waitFor("no failover happened", timeoutMs, async () => {
          const current = await agreedPrimary();
          return current !== undefined && current !== killed && (await replicationInfo(current.port)).get("role") === "master";
        });
      },
      async restart(killed) {
        const current = await agreedPrimary();
        if (current === undefined) throw new Error("the sentinels do not agree on a primary to restart the old one under");
        await killed.server.restart();
        await adminCommand(killed.server.port, ["REPLICAOF", HOST, String(current.port)]);
        await killed.link.up();
      },
      stop,
    };
  } catch (error) {
    const output = sentinels.map((sentinel) => sentinel.child.output).join("\n");
    await stop();
    throw new Error(`the failover Sentinel setup did not start: ${(error as Error).message}\n${output}`, { cause: error });
  }
}

const SLOTS = 16_384;

function run(binary: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${binary} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `CLUSTER SLOTS` as [from, to, primary port] triples. */
function parseSlots(reply: unknown): [number, number, number][] {
  if (!Array.isArray(reply)) return [];
  return reply.filter(Array.isArray).map((entry) => {
    const [from, to, primary] = entry as [unknown, unknown, unknown];
    return [Number(from), Number(to), Array.isArray(primary) ? Number(primary[1]) : Number.NaN];
  });
}

export interface ClusterTarget extends FailoverTarget {
  readonly members: readonly Member[];
  /** The nodes that serve slots as primaries now. */
  primaries(): Promise<Member[]>;
  /** The primary that serves `slot` now. */
  primaryOf(slot: number): Promise<Member>;
}

/**
 * Cluster: 3 primaries and 3 replicas (`cluster-node-timeout` 1500), each announcing its link's
 * port (`cluster-announce-port`; the bus port is direct), so replication and clients go through the links.
 */
export async function startClusterTopology(options: TopologyOptions = {}): Promise<ClusterTarget> {
  const cli = findOnPath("redis-cli");
  if (findOnPath("redis-server") === undefined || cli === undefined) {
    throw new Error("redis-server or redis-cli was not found on PATH: install them with `apt-get install -y redis-server`");
  }
  const lagMs = options.lagMs ?? BENCH_LAG_MS;
  const members: Member[] = [];
  const stop = async () => {
    await Promise.all(members.splice(0).map(async (member) => Promise.all([member.link.close(), member.server.stop()])));
  };
  const startMember = async (): Promise<Member> => {
    const link = await NodeLink.open(lagMs);
    let lastError: unknown;
    for (let attempt = 0; attempt < 4; attempt++) {
      const busPort = await freePort();
      try {
        const server = await startRedisServer({
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1500",
            "--cluster-port",
            String(busPort),
            "--cluster-announce-ip",
            HOST,
            "--cluster-announce-port",
            String(link.port),
            "--cluster-announce-bus-port",
            String(busPort),
            // A replica that lost touch with its primary for a while may still take over.
            "--cluster-replica-validity-factor",
            "0",
            ...SYNC_AT_ONCE,
          ],
        });
        link.target = server.port;
        const member = { server, link, port: link.port };
        members.push(member);
        return member;
      } catch (error) {
        lastError = error;
      }
    }
    await link.close();
    throw lastError;
  };

  try {
    await Promise.all(Array.from({ length: 6 }, startMember));
    const byPort = (port: number) => members.find((member) => member.port === port);
    const running = () => members.filter((member) => member.server.running);

    /** Every running node says ok and the same full slot map, served by running primaries, each with its replica in sync. */
    const healthy = async (): Promise<boolean | string> => {
      const down = members.filter((member) => !member.server.running);
      if (down.length > 0) return `:${down.map((member) => member.port).join(", :")} not running`;
      let reference: string | undefined;
      const primaries = new Set<number>();
      for (const member of members) {
        if (!String(await adminCommand(member.port, ["CLUSTER", "INFO"])).includes("cluster_state:ok")) return `:${member.port} is not ok`;
        const ranges = parseSlots(await adminCommand(member.port, ["CLUSTER", "SLOTS"]));
        if (ranges.reduce((sum, [from, to]) => sum + (to - from + 1), 0) !== SLOTS) return `:${member.port} does not cover every slot`;
        const shape = JSON.stringify([...ranges].sort((x, y) => x[0] - y[0]));
        if (reference !== undefined && shape !== reference) return `:${member.port} has another slot map`;
        reference = shape;
        for (const [, , port] of ranges) primaries.add(port);
      }
      for (const port of primaries) {
        const synced = await primaryInSync(port, 1);
        if (synced !== true) return `${synced}\n${String(await adminCommand(port, ["CLUSTER", "NODES"]))}`;
      }
      return primaries.size === 3 || `${primaries.size} primaries`;
    };
    const waitHealthy = (timeoutMs = 30_000) => waitFor("the Redis Cluster did not become healthy", timeoutMs, healthy);
    const primaries = async (): Promise<Member[]> => {
      for (const member of running()) {
        try {
          const ports = new Set(parseSlots(await adminCommand(member.port, ["CLUSTER", "SLOTS"])).map(([, , port]) => port));
          return members.filter((candidate) => ports.has(candidate.port));
        } catch {
          // ask the next one
        }
      }
      throw new Error("no running cluster node answered CLUSTER SLOTS");
    };

    await run(
      cli,
      ["--cluster", "create", ...members.map((member) => `${HOST}:${member.port}`), "--cluster-replicas", "1", "--cluster-yes"],
      60_000,
    );
    await waitHealthy();

    const seeds = members.map((member) => ({ host: HOST, port: member.port }));
    return {
      members,
      primaries,
      async primaryOf(slot) {
        for (const member of running()) {
          const ranges = parseSlots(await adminCommand(member.port, ["CLUSTER", "SLOTS"]).catch(() => null));
          const owner = ranges.find(([from, to]) => from <= slot && slot <= to);
          const found = owner === undefined ? undefined : byPort(owner[2]);
          if (found !== undefined) return found;
        }
        throw new Error(`no primary serves slot ${slot}`);
      },
      name: `Cluster (3 primaries, 3 replicas; replicas ${lagMs} ms behind)`,
      async open(flavor, durability) {
        const extra = durability === undefined ? {} : { durability };
        if (flavor === "node-redis") {
          const store = new RedisStore({ cluster: seeds.map(({ host, port }) => `${host}:${port}`), ...extra });
          return { store, close: () => store.dispose() };
        }
        const client = new Cluster(seeds, {
          redisOptions: { maxRetriesPerRequest: 1 },
          retryDelayOnFailover: 200,
          retryDelayOnClusterDown: 200,
        });
        client.on("error", () => {});
        await once(client, "ready");
        const store = new RedisStore({ client, ...extra });
        return {
          store,
          async close() {
            await store.dispose();
            client.disconnect();
          },
        };
      },
      waitHealthy,
      async pickPrimary(n) {
        const current = (await primaries()).sort((a, b) => a.port - b.port);
        const victim = current[n % current.length];
        if (victim === undefined) throw new Error("the cluster has no primary");
        return victim;
      },
      async waitForFailover(killed, timeoutMs = 30_000) {
        await waitFor("no replica took over", timeoutMs, async () => {
          const current = await primaries();
          if (current.length !== 3 || current.includes(killed)) return false;
          for (const member of running()) {
            if (!String(await adminCommand(member.port, ["CLUSTER", "INFO"])).includes("cluster_state:ok")) return false;
          }
          return true;
        });
      },
      async restart(killed) {
        await killed.server.restart();
        await killed.link.up();
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------------

export interface BenchOptions {
  /** Failovers to run. */
  rounds: number;
  /** The managers' store deadline, ms. */
  storeTimeoutMs: number;
  /** The durable configurations' `durability` option. */
  durability: DurabilityOptions;
  /** Managers (each with its own store and client) per client flavour and mode. Default 2. */
  clientsPerConfig?: number;
  /** Load before the kill, ms. Default 1500. */
  warmupMs?: number;
  /** A client has recovered once it went this long without a failure, and wrote meanwhile, ms. Default 1000. */
  quietMs?: number;
  /** Longest wait, from the kill, for every client to recover, ms. Default 30000. */
  recoveryTimeoutMs?: number;
  /** Users going through journeys at once on each manager. Default 6. */
  lanes?: number;
  /** Mean pause between two requests of one user, ms (sessions must live a while before they end). Default 30. */
  thinkMs?: number;
  /** A request slower than its store calls × the deadline + this counts as over the deadline. Default: the deadline. */
  marginMs?: number;
  /** Called with a line after each round (progress). */
  log?: (line: string) => void;
}

interface Ratio {
  acknowledged: number;
  lost: number;
}

/** What one configuration (client flavour × durability) did over every round. */
export interface ConfigFigures {
  flavor: ClientFlavor;
  durable: boolean;
  requests: number;
  /** Requests that failed with StoreUnavailableError (503). */
  failed: number;
  /** Any other error: a bug (none is expected). */
  unexpected: string[];
  /** Requests that took longer than their store calls × the deadline + the margin. */
  overDeadline: number;
  slowestMs: number;
  logouts: Ratio;
  revocations: Ratio;
  rotations: Ratio;
  /** Increments of long-lived sessions: acknowledged, and missing afterwards. */
  increments: Ratio;
  /**
   * Per round: ms from the kill until writes succeed again, for the last client of this
   * configuration: the later of its first acknowledged write and its last failed one (a
   * cluster keeps serving the other primaries' keys meanwhile).
   */
  writesBackMs: number[];
  /** Per round: the same for logouts, revocations and logins. */
  securityWritesBackMs: number[];
  /** Per round: whether every client recovered within the recovery timeout. */
  recovered: boolean[];
  /** Durations of acknowledged logouts (a load and a destroy), ms. */
  logoutMs: number[];
}

export interface BenchReport {
  topology: string;
  /** The worst stall of this process's event loop during the bench (the machine's load shows here), ms. */
  eventLoopMaxMs: number;
  rounds: number;
  storeTimeoutMs: number;
  durability: DurabilityOptions;
  configs: ConfigFigures[];
}

type RequestKind = "read" | "write" | "security";

interface Ended {
  kind: "logouts" | "revocations" | "rotations";
  cookie: string;
}

interface Visitor {
  cookie: string;
  /** The value the last acknowledged increment answered. */
  value: number;
}

/** One manager with its own store and client; `lanes` users go through journeys on it at once. */
class Client {
  /** Ended cookies acknowledged this round. */
  ended: Ended[] = [];
  /** Long-lived sessions, a few per lane (a lane increments only its own, one at a time). */
  readonly visitors: Visitor[][];
  lastFailure = 0;
  lastSecurityFailure = 0;
  lastWrite = 0;
  lastSecurityWrite = 0;
  /** The first acknowledged write (security write) started after the kill. */
  firstWrite = Number.POSITIVE_INFINITY;
  firstSecurityWrite = Number.POSITIVE_INFINITY;
  #killedAt = Number.POSITIVE_INFINITY;
  readonly manager: SessionManager;
  #calls = 0;
  #journeys = 0;
  #stopping = false;
  #running: Promise<void>[] = [];

  constructor(
    readonly id: string,
    readonly opened: OpenedStore,
    readonly figures: ConfigFigures,
    private readonly settings: Settings,
  ) {
    // Counts this manager's store calls, to bound each request by its calls × the deadline.
    const store = new Proxy(opened.store, {
      get: (target, property, receiver) => {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          this.#calls++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    this.manager = new SessionManager({ store, storeTimeoutMs: settings.storeTimeoutMs, maxSessionsPerUser: Number.POSITIVE_INFINITY });
    this.visitors = Array.from({ length: settings.lanes }, () => []);
  }

  /** From now on, `firstWrite` and `firstSecurityWrite` watch for the first acknowledged ones. */
  killed(at: number): void {
    this.#killedAt = at;
    this.firstWrite = Number.POSITIVE_INFINITY;
    this.firstSecurityWrite = Number.POSITIVE_INFINITY;
  }

  /** ms from the kill until writes (`security`: logouts, revocations, logins) succeed again: the later of the first success and the last failure. */
  backAfter(security: boolean): number {
    const first = security ? this.firstSecurityWrite : this.firstWrite;
    const lastFailure = security ? this.lastSecurityFailure : this.lastFailure;
    return Math.max(first, lastFailure) - this.#killedAt;
  }

  start(): void {
    this.#stopping = false;
    this.ended = [];
    this.#killedAt = Number.POSITIVE_INFINITY;
    this.#running = this.visitors.map((_, lane) => this.#loop(lane));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  /** Went `quietMs` without a failure, and wrote (a security write too) since the last one. */
  recovered(now: number): boolean {
    const quiet = this.settings.quietMs;
    return (
      now - this.lastFailure >= quiet &&
      now - this.lastSecurityFailure >= quiet &&
      this.lastWrite > this.lastFailure &&
      this.lastSecurityWrite > this.lastSecurityFailure
    );
  }

  /**
   * One request, timed against its deadline (its store calls × the deadline, plus the margin;
   * calls of other lanes running meanwhile only widen the bound). Resolves its value, or
   * undefined when it failed.
   */
  async request<T>(kind: RequestKind, run: () => Promise<T>): Promise<{ value: T; ms: number } | undefined> {
    const calls = this.#calls;
    const started = Date.now();
    let value: T | undefined;
    let ok = false;
    try {
      value = await run();
      ok = true;
    } catch (error) {
      if (error instanceof StoreUnavailableError) this.figures.failed++;
      else this.figures.unexpected.push(String(error));
    }
    const now = Date.now();
    const ms = now - started;
    const figures = this.figures;
    figures.requests++;
    if (ms > Math.max(1, this.#calls - calls) * this.settings.storeTimeoutMs + this.settings.marginMs) figures.overDeadline++;
    figures.slowestMs = Math.max(figures.slowestMs, ms);
    if (!ok) {
      if (kind !== "read") this.lastFailure = now;
      if (kind === "security") this.lastSecurityFailure = now;
      return undefined;
    }
    if (kind !== "read") this.lastWrite = now;
    if (kind === "security") this.lastSecurityWrite = now;
    if (started > this.#killedAt) {
      if (kind !== "read") this.firstWrite = Math.min(this.firstWrite, now);
      if (kind === "security") this.firstSecurityWrite = Math.min(this.firstSecurityWrite, now);
    }
    return { value: value as T, ms };
  }

  async #loop(lane: number): Promise<void> {
    while (!this.#stopping) await this.#journey(lane);
  }

  /** A pause between two requests of a lane: sessions live a while before they end, as users' do. */
  #think(): Promise<void> {
    const { thinkMs } = this.settings;
    return delay(thinkMs / 2 + Math.random() * thinkMs);
  }

  /** An increment of one of the lane's long-lived sessions: each acknowledged value must survive. */
  async #visit(lane: number): Promise<void> {
    const own = this.visitors[lane] as Visitor[];
    const visitor = own.length < 2 ? undefined : own[Math.floor(Math.random() * own.length)];
    const opened = openSession(this.manager, visitor?.cookie);
    const done = await this.request("write", () => opened.session.increment("visits"));
    if (done === undefined) return;
    this.figures.increments.acknowledged++;
    if (visitor === undefined) {
      own.push({ cookie: cookiePair(opened.response.cookie), value: done.value });
      return;
    }
    if (opened.response.cookie !== undefined) {
      // The record was gone: every increment acknowledged on it was lost, and this started a new session.
      this.figures.increments.lost += visitor.value;
      visitor.cookie = cookiePair(opened.response.cookie);
    } else if (done.value <= visitor.value) {
      // Counting from an older value: the increments acknowledged since it were lost.
      this.figures.increments.lost += visitor.value - done.value + 1;
    }
    visitor.value = done.value;
  }

  /** A user logs in on two devices, then logs both out, revokes one and logs out, or revokes both. */
  async #journey(lane: number): Promise<void> {
    const n = this.#journeys++;
    const user = `${this.id}-u${n}`;
    const step = async <T>(kind: RequestKind, run: (session: Session) => Promise<T>, cookie?: string) => {
      await this.#think();
      await this.#visit(lane);
      const opened = openSession(this.manager, cookie);
      const done = await this.request(kind, () => run(opened.session));
      return done === undefined ? undefined : { ...done, cookie: opened.response.cookie };
    };
    const device = async (): Promise<string | undefined> => {
      const anonymous = await step("write", (session) => session.increment("pages"));
      if (anonymous?.cookie === undefined) return undefined;
      const before = cookiePair(anonymous.cookie);
      const login = await step("security", (session) => session.login(user), before);
      if (login?.cookie === undefined) return undefined;
      this.ended.push({ kind: "rotations", cookie: before });
      this.figures.rotations.acknowledged++;
      return cookiePair(login.cookie);
    };
    const logout = async (cookie: string): Promise<boolean> => {
      const done = await step("security", (session) => session.destroy(), cookie);
      if (done === undefined) return false;
      this.ended.push({ kind: "logouts", cookie });
      this.figures.logouts.acknowledged++;
      this.figures.logoutMs.push(done.ms);
      return true;
    };

    const first = await device();
    if (first === undefined || this.#stopping) return;
    const second = await device();
    if (second === undefined || this.#stopping) return;
    switch (n % 3) {
      case 0:
        if (await logout(second)) await logout(first);
        return;
      case 1: {
        const handle = (await step("read", (session) => session.info(), second))?.value?.handle;
        if (handle === undefined) return;
        const revoked = await step("security", () => this.manager.revokeUserSession(user, handle));
        if (revoked?.value !== true) return;
        this.ended.push({ kind: "revocations", cookie: second });
        this.figures.revocations.acknowledged++;
        await logout(first);
        return;
      }
      default: {
        if ((await step("security", () => this.manager.revokeUserSessions(user))) === undefined) return;
        for (const cookie of [first, second]) this.ended.push({ kind: "revocations", cookie });
        this.figures.revocations.acknowledged += 2;
      }
    }
  }
}

type Settings = Required<Omit<BenchOptions, "log">>;

function emptyFigures(flavor: ClientFlavor, durable: boolean): ConfigFigures {
  return {
    flavor,
    durable,
    requests: 0,
    failed: 0,
    unexpected: [],
    overDeadline: 0,
    slowestMs: 0,
    logouts: { acknowledged: 0, lost: 0 },
    revocations: { acknowledged: 0, lost: 0 },
    rotations: { acknowledged: 0, lost: 0 },
    increments: { acknowledged: 0, lost: 0 },
    writesBackMs: [],
    securityWritesBackMs: [],
    recovered: [],
    logoutMs: [],
  };
}

/** Retries a check a few times: right after a failover a client may still be finding its way. */
async function settled<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (attempt >= 10) throw error;
      await delay(300);
    }
  }
}

/**
 * Runs `rounds` failovers on `target` under load from node-redis and ioredis clients, with and
 * without durable writes, and returns what each configuration lost. Each round: load for
 * `warmupMs`, kill a primary, bring it back (as a replica) once the failover is done, keep the
 * load on until every client went `quietMs` without a failure, then check every acknowledged
 * operation of the round through a store that saw none of them.
 */
export async function runFailoverBench(target: FailoverTarget, options: BenchOptions): Promise<BenchReport> {
  const settings: Settings = {
    clientsPerConfig: 2,
    warmupMs: 1_500,
    quietMs: 1_000,
    recoveryTimeoutMs: 30_000,
    lanes: 6,
    thinkMs: 30,
    marginMs: options.storeTimeoutMs,
    ...options,
  };
  const log = options.log ?? (() => {});
  const configs: ConfigFigures[] = [];
  const clients: Client[] = [];
  const checker = await target.open("node-redis");
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  try {
    for (const flavor of ["node-redis", "ioredis"] as const) {
      for (const durable of [false, true]) {
        const figures = emptyFigures(flavor, durable);
        configs.push(figures);
        for (let i = 0; i < settings.clientsPerConfig; i++) {
          const opened = await target.open(flavor, durable ? settings.durability : undefined);
          clients.push(new Client(`${flavor}-${durable ? "durable" : "async"}-${i}-${Date.now().toString(36)}`, opened, figures, settings));
        }
      }
    }
    const fresh = new SessionManager({ store: checker.store, storeTimeoutMs: 3_000 });

    for (let round = 0; round < settings.rounds; round++) {
      await target.waitHealthy();
      for (const client of clients) client.start();
      await delay(settings.warmupMs);
      const killed = await target.pickPrimary(round);
      // The host dies: its network first (what is in flight is lost), then the process.
      killed.link.down();
      const killedAt = Date.now();
      for (const client of clients) client.killed(killedAt);
      await killed.server.kill("SIGKILL");
      // A supervisor brings the dead node back once the topology moved on: it rejoins as a replica.
      await target.waitForFailover(killed);
      const failedOverMs = Date.now() - killedAt;
      await target.restart(killed);
      const giveUpAt = killedAt + settings.recoveryTimeoutMs;
      while (Date.now() < giveUpAt && clients.some((client) => !client.recovered(Date.now()))) await delay(50);
      const now = Date.now();
      for (const figures of configs) {
        const own = clients.filter((client) => client.figures === figures);
        figures.recovered.push(own.every((client) => client.recovered(now)));
        figures.writesBackMs.push(Math.max(...own.map((client) => client.backAfter(false))));
        figures.securityWritesBackMs.push(Math.max(...own.map((client) => client.backAfter(true))));
      }
      await Promise.all(clients.map((client) => client.stop()));
      const recoveredMs = Date.now() - killedAt;
      await target.waitHealthy();
      const healthyMs = Date.now() - killedAt;
      for (const client of clients) {
        for (const { kind, cookie } of client.ended) {
          if (await settled(() => openSession(fresh, cookie).session.exists())) client.figures[kind].lost++;
        }
        for (const own of client.visitors) {
          for (const visitor of [...own]) {
            const stored = await settled(() => openSession(fresh, visitor.cookie).session.get("visits"));
            const value = typeof stored === "number" ? stored : 0;
            if (value < visitor.value) client.figures.increments.lost += visitor.value - value;
            if (stored === undefined) own.splice(own.indexOf(visitor), 1);
            else visitor.value = value;
          }
        }
      }
      log(
        `round ${round + 1}/${settings.rounds}: primary :${killed.port} killed, failover after ${failedOverMs} ms, clients recovered after ${recoveredMs} ms, healthy after ${healthyMs} ms, checked after ${Date.now() - killedAt} ms; ${summary(configs)}`,
      );
    }
  } finally {
    for (const client of clients) await client.stop();
    for (const client of clients) await client.opened.close();
    await checker.close();
    loop.disable();
  }
  return {
    topology: target.name,
    eventLoopMaxMs: Math.round(loop.max / 1e6),
    rounds: settings.rounds,
    storeTimeoutMs: settings.storeTimeoutMs,
    durability: settings.durability,
    configs,
  };
}

function label(figures: ConfigFigures): string {
  return `${figures.flavor} ${figures.durable ? "durable" : "async"}`;
}

/** Lost logouts, revocations and rotations of one configuration. */
export function securityLost(figures: ConfigFigures): number {
  return figures.logouts.lost + figures.revocations.lost + figures.rotations.lost;
}

function summary(configs: ConfigFigures[]): string {
  return configs.map((f) => `${label(f)} lost ${securityLost(f)} security, ${f.increments.lost} increments`).join("; ");
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** The report as a table, one row per client flavour and mode. */
export function formatReport(report: BenchReport): string {
  const header = [
    "client, writes",
    "logouts lost",
    "revocations lost",
    "rotations lost",
    "increments lost",
    "requests failed",
    "over deadline",
    "slowest ms",
    "writes back after s (median/max)",
    "security writes back after s",
    "logout p50 ms",
  ];
  const ratio = ({ lost, acknowledged }: Ratio) => `${lost} / ${acknowledged}`;
  const seconds = (values: number[]) => `${(median(values) / 1000).toFixed(1)} / ${(Math.max(...values) / 1000).toFixed(1)}`;
  const rows = report.configs.map((f) => [
    label(f),
    ratio(f.logouts),
    ratio(f.revocations),
    ratio(f.rotations),
    ratio(f.increments),
    `${f.failed} / ${f.requests}`,
    String(f.overDeadline),
    String(f.slowestMs),
    seconds(f.writesBackMs),
    seconds(f.securityWritesBackMs),
    String(median(f.logoutMs)),
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i] as number)).join(" | ")} |`;
  const { replicas, timeoutMs } = report.durability;
  return [
    `${report.topology}: ${report.rounds} failovers (a primary's link cut, then SIGKILL); storeTimeoutMs ${report.storeTimeoutMs}; durable = { replicas: ${replicas}, timeoutMs: ${timeoutMs} }; event loop stalled up to ${report.eventLoopMaxMs} ms; lost / acknowledged`,
    line(header),
    line(widths.map((width) => "-".repeat(width))),
    ...rows.map(line),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// What the failover tests share
// ---------------------------------------------------------------------------------------------

/** Failovers per topology: 3, or `FAILOVER_ROUNDS` (the full bench: `FAILOVER_ROUNDS=10`). */
export function failoverRounds(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env.FAILOVER_ROUNDS?.trim();
  if (raw === undefined || raw === "") return 3;
  const rounds = Number(raw);
  if (!/^\d+$/.test(raw) || rounds < 1 || rounds > 100)
    throw new Error(`FAILOVER_ROUNDS must be a whole number from 1 to 100, not ${JSON.stringify(raw)}`);
  return rounds;
}

/** The manager deadline of both benches. */
export const BENCH_STORE_TIMEOUT_MS = 1_000;

/** Runs the bench with the shared settings, printing progress and the table. */
export async function runBench(target: FailoverTarget, rounds: number, durability: DurabilityOptions): Promise<BenchReport> {
  const report = await runFailoverBench(target, {
    rounds,
    storeTimeoutMs: BENCH_STORE_TIMEOUT_MS,
    durability,
    log: (line) => console.log(`[failover] ${target.name}: ${line}`),
  });
  console.log(`\n${formatReport(report)}\n`);
  return report;
}

/**
 * What must hold for every configuration: no error but 503s, no request past its deadline, the
 * same stores writing again after every failover, a load that did each kind of operation; and
 * with durable writes, no acknowledged logout, revocation or rotation lost. (Without them the
 * figures are printed, not asserted: they depend on timing.)
 */
export function expectFailoverFigures(report: BenchReport): void {
  for (const figures of report.configs) {
    const which = `${figures.flavor} ${figures.durable ? "durable" : "async"}`;
    expect(figures.unexpected, `${which}: errors other than StoreUnavailableError`).toEqual([]);
    expect(figures.overDeadline, `${which}: requests past their deadline (slowest ${figures.slowestMs} ms)`).toBe(0);
    expect(figures.recovered, `${which}: recovered after each failover`).toEqual(figures.recovered.map(() => true));
    for (const kind of ["logouts", "revocations", "rotations", "increments"] as const) {
      expect(figures[kind].acknowledged, `${which}: acknowledged ${kind}`).toBeGreaterThan(0);
    }
    if (figures.durable) {
      expect(
        { logouts: figures.logouts.lost, revocations: figures.revocations.lost, rotations: figures.rotations.lost },
        `${which}: acknowledged security writes lost`,
      ).toEqual({ logouts: 0, revocations: 0, rotations: 0 });
    }
  }
}
