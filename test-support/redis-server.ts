/**
 * Real `redis-server` instances for tests: each on a free port the OS picked, in its own
 * temporary folder, killed when the test process exits. Never port 6379, so a developer's
 * own Redis is never touched.
 * @module
 */
import type { ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { createClient } from "redis";
import {
  delay,
  findOnPath,
  freePort,
  removeFolder,
  removeOnExit,
  spawnTracked,
  type TrackedChild,
  tempDir,
  waitForExit,
} from "./processes.js";

export interface RedisServerOptions {
  /** Turn on the append-only file (`--appendonly yes`, `--appendfsync always`). Default off. */
  appendonly?: boolean;
  /** More `redis-server` arguments, such as `["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]`. */
  args?: readonly string[];
  /** How long to wait for the first PONG. Default 10 s. */
  startTimeoutMs?: number;
}

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>/0`. */
  readonly url: string;
  /** The server's working folder (`--dir`): its AOF and RDB files live here. */
  readonly dir: string;
  /** `redis://127.0.0.1:<port>/<db>`. */
  urlFor(db: number): string;
  /** Whether the process is running (paused counts as running). */
  readonly running: boolean;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes its folder. Idempotent. */
  stop(): Promise<void>;
  /**
   * Sends `signal` (default SIGKILL) and waits for the process to exit (SIGSTOP/SIGCONT: does not wait).
   * The folder is kept, for `restart()`.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and folder (stopping it first if it runs), and waits for PONG. */
  restart(): Promise<void>;
  /** Freezes the process (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Thaws a paused process (SIGCONT). */
  resume(): void;
}

const INSTALL_HINT = "install it with `apt-get install -y redis-server`";

/** One PING over a raw socket: resolves true on `+PONG`, false on anything else (refused, LOADING, …). */
function pingOnce(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let reply = "";
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("error", () => finish(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      // A server with requirepass answers NOAUTH: it is up.
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG") || reply.startsWith("-NOAUTH"));
    });
  });
}

/** Commands on one node, in order, over one short-lived connection (no reconnection, 2 s to connect). */
export async function commandsOn(port: number, commands: string[][]): Promise<unknown[]> {
  const client = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false, connectTimeout: 2_000 } });
  client.on("error", () => {});
  await client.connect();
  try {
    const replies: unknown[] = [];
    for (const args of commands) replies.push(await client.sendCommand(args));
    return replies;
  } finally {
    client.destroy();
  }
}

/** One command on one node, over one short-lived connection; resolves its reply. */
export async function commandOn(port: number, args: string[]): Promise<unknown> {
  return (await commandsOn(port, [args]))[0];
}

/** Starts a fresh `redis-server` and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) throw new Error(`redis-server was not found on PATH: ${INSTALL_HINT}`);
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const dir = removeOnExit(tempDir("redis"));

  let port = 0;
  let spawned: TrackedChild | undefined;
  /** What the latest process wrote, for error messages. */
  const output = (): string => spawned?.output ?? "";

  const argsFor = (chosenPort: number): string[] => [
    "--port",
    String(chosenPort),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    options.appendonly === true ? "yes" : "no",
    ...(options.appendonly === true ? ["--appendfsync", "always"] : []),
    "--enable-debug-command",
    "local",
    "--daemonize",
    "no",
    ...(options.args ?? []),
  ];

  /** Spawns on `chosenPort` and waits for PONG; resolves false when the process died first (port taken, bad argument). */
  const launch = async (chosenPort: number): Promise<boolean> => {
    spawned = spawnTracked(binary, argsFor(chosenPort), dir);
    const started = spawned.child;
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (started.exitCode !== null || started.signalCode !== null) return false;
      if (await pingOnce(chosenPort, 500)) return true;
      await delay(20);
    }
    started.kill("SIGKILL");
    await waitForExit(started, 2_000);
    throw new Error(`redis-server on port ${chosenPort} did not answer PING within ${startTimeoutMs} ms:\n${output()}`);
  };

  // The port can be taken between asking the OS and redis-server binding it: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    if (await launch(port)) break;
    if (attempt >= 4 || !/address already in use/i.test(output())) {
      removeFolder(dir);
      throw new Error(`redis-server failed to start:\n${output()}`);
    }
  }

  const current = (): ChildProcess => {
    if (spawned === undefined) throw new Error("redis-server was never started");
    return spawned.child;
  };
  const isRunning = () => spawned !== undefined && spawned.child.exitCode === null && spawned.child.signalCode === null;

  const terminate = async (): Promise<void> => {
    if (!isRunning()) return;
    const process_ = current();
    process_.kill("SIGCONT");
    process_.kill("SIGTERM");
    if (!(await waitForExit(process_, 5_000))) {
      process_.kill("SIGKILL");
      await waitForExit(process_, 5_000);
    }
  };

  let stopped = false;
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    dir,
    urlFor: (db) => `redis://127.0.0.1:${port}/${db}`,
    get running() {
      return isRunning();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate();
      removeFolder(dir);
    },
    async kill(signal = "SIGKILL") {
      if (!isRunning()) return;
      const process_ = current();
      if (signal === "SIGSTOP" || signal === "SIGCONT") {
        process_.kill(signal);
        return;
      }
      process_.kill(signal);
      // A paused server handles no signal but SIGKILL until it is thawed.
      if (signal !== "SIGKILL") process_.kill("SIGCONT");
      await waitForExit(process_, 10_000);
    },
    async restart() {
      if (stopped) throw new Error("redis-server was stopped for good; start a new one");
      await terminate();
      if (!(await launch(port))) throw new Error(`redis-server failed to restart on port ${port}:\n${output()}`);
    },
    pause() {
      if (isRunning()) current().kill("SIGSTOP");
    },
    resume() {
      if (isRunning()) current().kill("SIGCONT");
    },
  };
}
