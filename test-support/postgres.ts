/**
 * PostgreSQL for tests:
 * - `createTestDatabase(label)`: a database of its own on the shared server (127.0.0.1:5432, user
 *   postgres, trust auth), uniquely named per test file and run, dropped by `drop()`; databases
 *   left by runs that died more than a day ago are dropped on the way;
 * - `startPostgresCluster()`: a PRIVATE cluster for fault tests (stop, SIGSTOP, restart), made by
 *   initdb in a temporary folder on a free port and run as a non-root user (PostgreSQL refuses to
 *   run as root: when the tests run as root, the `postgres` system user, else `nobody`). Never the
 *   shared server. Killed, and its folder removed, when the test process exits.
 * @module
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chownSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { delay, findOnPath, freePort, removeFolder, tempDir, waitForExit } from "./processes.js";

const run = promisify(execFile);

/** The shared server's maintenance database, where test databases are created and dropped. */
export const SHARED_SERVER_URL = process.env.ATOMIC_SESSION_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/postgres";
const TEST_PREFIX = "atomic_session_test_";
const STALE_MS = 24 * 3_600_000;

export interface TestDatabase {
  readonly name: string;
  /** `postgres://postgres@127.0.0.1:5432/<name>`. */
  readonly url: string;
  /** A pool on the database for the test's own queries (closed by `drop()`). */
  readonly pool: pg.Pool;
  /** Drops the database (closing every connection to it first). Idempotent. */
  drop(): Promise<void>;
}

/** A database URL with another database name (the shared server's, or a private cluster's). */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withAdmin<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 5_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates `atomic_session_test_<label>_<time>_<pid>` on the shared server (or on `serverUrl`),
 * with `options` (such as `ENCODING 'SQL_ASCII' …`) appended to CREATE DATABASE.
 */
export async function createTestDatabase(
  label: string,
  { serverUrl = SHARED_SERVER_URL, options = "" }: { serverUrl?: string; options?: string } = {},
): Promise<TestDatabase> {
  if (!/^[a-z0-9_]{1,20}$/.test(label)) throw new Error(`test database label must be 1 to 20 of a-z 0-9 _, not ${JSON.stringify(label)}`);
  const name = `${TEST_PREFIX}${label}_${Date.now().toString(36)}_${process.pid}_${Math.floor(Math.random() * 1e4)}`;
  await withAdmin(serverUrl, async (admin) => {
    await dropStale(admin);
    await admin.query(`CREATE DATABASE "${name}" ${options}`);
  });
  const url = databaseUrl(serverUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => {});
  let dropped = false;
  return {
    name,
    url,
    pool,
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.end().catch(() => undefined);
      await withAdmin(serverUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    },
  };
}

/** Drops test databases whose name says they were created more than a day ago (a run that died before its `drop()`). */
async function dropStale(admin: pg.Client): Promise<void> {
  const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1", [`${TEST_PREFIX}%`]);
  for (const { datname } of rows) {
    const created = parseInt(/_([0-9a-z]+)_\d+_\d+$/.exec(datname)?.[1] ?? "", 36);
    if (Number.isFinite(created) && Date.now() - created > STALE_MS) {
      await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => undefined);
    }
  }
}

export interface PostgresCluster {
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres`. */
  readonly url: string;
  readonly running: boolean;
  /** Fast shutdown (SIGINT: running statements are cancelled, connections closed); the folder is kept for `start()`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder, and waits until it accepts connections. */
  start(): Promise<void>;
  /** Freezes the postmaster and every backend (SIGSTOP): connections stay open, nothing answers. */
  pause(): void;
  /** Thaws them (SIGCONT). */
  resume(): void;
  /** Stops it for good and removes its folder. Idempotent. */
  destroy(): Promise<void>;
}

/** The folder of initdb and postgres: PG_BIN, else the newest /usr/lib/postgresql/<version>/bin, else PATH. */
function binaries(): { initdb: string; postgres: string } {
  const candidates: string[] = [];
  if (process.env.PG_BIN !== undefined) candidates.push(process.env.PG_BIN);
  if (existsSync("/usr/lib/postgresql")) {
    const versions = readdirSync("/usr/lib/postgresql")
      .filter((version) => /^\d+$/.test(version))
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions) candidates.push(`/usr/lib/postgresql/${version}/bin`);
  }
  for (const folder of candidates) {
    if (existsSync(join(folder, "initdb")) && existsSync(join(folder, "postgres"))) {
      return { initdb: join(folder, "initdb"), postgres: join(folder, "postgres") };
    }
  }
  const initdb = findOnPath("initdb");
  const postgres = findOnPath("postgres");
  if (initdb === undefined || postgres === undefined) {
    throw new Error("initdb and postgres were not found (set PG_BIN, or apt-get install -y postgresql)");
  }
  return { initdb, postgres };
}

/** Who runs the private cluster: nobody changes when the tests do not run as root; else `postgres`, or `nobody`. */
function clusterUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync("/etc/passwd", "utf8").split("\n");
  for (const name of ["postgres", "nobody"]) {
    const fields = passwd.find((line) => line.startsWith(`${name}:`))?.split(":");
    if (fields !== undefined) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error("the tests run as root and there is neither a postgres nor a nobody user to run a private PostgreSQL cluster");
}

/** The PIDs of `pid`'s children (the backends of a postmaster), from /proc. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return children;
}

/** Signals the postmaster first (a stopped postmaster forks no new backend), then each of its children. */
function signalAll(pid: number, signal: NodeJS.Signals): void {
  const send = (target: number) => {
    try {
      process.kill(target, signal);
    } catch {
      // already gone
    }
  };
  send(pid);
  for (const target of childrenOf(pid)) send(target);
}

const clusters = new Set<() => void>();
let exitHookInstalled = false;

/** Kills every private cluster still running when the test process exits (and thaws a paused one first, so that it can die). */
function killOnExit(kill: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const killNow of clusters) killNow();
    });
  }
  clusters.add(kill);
  return () => clusters.delete(kill);
}

/** Creates and starts a private PostgreSQL cluster (trust auth, user postgres, TCP on 127.0.0.1 only, fsync off). */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const { initdb, postgres } = binaries();
  const user = clusterUser();
  const dir = tempDir("postgres");
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, "data");
  const env = { PATH: process.env.PATH ?? "", LC_ALL: "C", TZ: "UTC" };
  const owner = user === undefined ? {} : { uid: user.uid, gid: user.gid };
  try {
    await run(initdb, ["-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"], {
      env,
      ...owner,
      timeout: 60_000,
    });
  } catch (error) {
    removeFolder(dir);
    throw new Error(`initdb failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
  }
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | undefined;
  let output = "";
  const isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const forget = killOnExit(() => {
    if (child?.pid !== undefined && isRunning()) {
      signalAll(child.pid, "SIGCONT");
      signalAll(child.pid, "SIGKILL");
    }
  });

  const start = async (): Promise<void> => {
    if (isRunning()) return;
    output = "";
    const args = ["-D", data, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="];
    args.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50");
    const started = spawn(postgres, args, { env, ...owner, stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-8_000);
    };
    started.stdout?.on("data", collect);
    started.stderr?.on("data", collect);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (started.exitCode !== null || started.signalCode !== null) throw new Error(`postgres exited while starting:\n${output}`);
      const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
      probe.on("error", () => {});
      try {
        await probe.connect();
        await probe.query("SELECT 1");
        await probe.end();
        return;
      } catch {
        await probe.end().catch(() => undefined);
        await delay(100);
      }
    }
    started.kill("SIGKILL");
    throw new Error(`postgres on port ${port} did not accept connections within 30 s:\n${output}`);
  };

  const stop = async (): Promise<void> => {
    const current = child;
    if (current?.pid === undefined || !isRunning()) return;
    signalAll(current.pid, "SIGCONT");
    current.kill("SIGINT");
    if (!(await waitForExit(current, 15_000))) {
      signalAll(current.pid, "SIGKILL");
      await waitForExit(current, 5_000);
    }
  };

  try {
    await start();
  } catch (error) {
    await stop();
    forget();
    removeFolder(dir);
    throw error;
  }
  let destroyed = false;
  return {
    port,
    url,
    get running() {
      return isRunning();
    },
    stop,
    start,
    pause() {
      if (child?.pid !== undefined && isRunning()) signalAll(child.pid, "SIGSTOP");
    },
    resume() {
      if (child?.pid !== undefined && isRunning()) signalAll(child.pid, "SIGCONT");
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await stop();
      forget();
      removeFolder(dir);
    },
  };
}
