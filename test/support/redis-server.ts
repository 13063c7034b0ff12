/**
 * Real `redis-server` instances for tests: each on a free port the OS picked, in its own
 * temporary folder, killed when the test process exits. Never port 6379, so a developer's
 * own Redis is never touched.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

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
const REDIS_DEFAULT_PORT = 6379;

/** Every process this module started and has not seen exit, killed when the test process exits. */
const live = new Set<ChildProcess>();
/** Folders to remove when the test process exits. */
const folders = new Set<string>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", cleanUpNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      cleanUpNow();
      process.off(signal, onSignal);
      // Only re-raise when nobody else handles the signal, so the default behaviour (exit) still applies.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function cleanUpNow(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
  folders.clear();
}

function findOnPath(command: string): string | undefined {
  for (const folder of (process.env.PATH ?? "").split(delimiter)) {
    if (folder === "") continue;
    const candidate = join(folder, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A port nobody listens on right now, as the OS hands it out (listen on 0, read, close). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const chosen = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    if (port !== 0 && port !== REDIS_DEFAULT_PORT) return port;
  }
}

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
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}

/** Starts a fresh `redis-server` and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) throw new Error(`redis-server was not found on PATH: ${INSTALL_HINT}`);
  installExitHooks();
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-redis-"));
  folders.add(dir);

  let port = 0;
  let child: ChildProcess | undefined;
  let output = "";

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
    output = "";
    const started = spawn(binary, argsFor(chosenPort), { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    live.add(started);
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-8_000);
    };
    started.stdout?.on("data", collect);
    started.stderr?.on("data", collect);
    started.once("exit", () => live.delete(started));
    // Keeps the test process from hanging on the child's pipes.
    started.unref();
    (started.stdout as { unref?: () => void } | null)?.unref?.();
    (started.stderr as { unref?: () => void } | null)?.unref?.();
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (started.exitCode !== null || started.signalCode !== null) return false;
      if (await pingOnce(chosenPort, 500)) return true;
      await delay(20);
    }
    started.kill("SIGKILL");
    await waitForExit(started, 2_000);
    throw new Error(`redis-server on port ${chosenPort} did not answer PING within ${startTimeoutMs} ms:\n${output}`);
  };

  // The port can be taken between asking the OS and redis-server binding it: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    if (await launch(port)) break;
    if (attempt >= 4 || !/address already in use/i.test(output)) {
      folders.delete(dir);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server failed to start:\n${output}`);
    }
  }

  const current = (): ChildProcess => {
    if (child === undefined) throw new Error("redis-server was never started");
    return child;
  };
  const isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;

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
      folders.delete(dir);
      rmSync(dir, { recursive: true, force: true });
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
      if (!(await launch(port))) throw new Error(`redis-server failed to restart on port ${port}:\n${output}`);
    },
    pause() {
      if (isRunning()) current().kill("SIGSTOP");
    },
    resume() {
      if (isRunning()) current().kill("SIGCONT");
    },
  };
}
