/**
 * Sessions configured by environment variables: the store and the manager's options, read
 * and checked before anything starts. The admin CLI (`npx atomic-session`) reads the same
 * variables, so an application that builds its sessions with these functions is administered
 * with no further setup. Each store's module (and its driver) is loaded only when named.
 *
 * ```ts
 * import { SessionManager } from "atomic-session";
 * import { managerOptionsFromEnv, storeFromEnv } from "atomic-session/env";
 *
 * const manager = new SessionManager({ ...managerOptionsFromEnv(), store: await storeFromEnv() });
 * ```
 *
 * | variable | meaning |
 * | --- | --- |
 * | `SESSION_STORE` | `memory`, `sqlite`, `redis` or `postgres`; default `redis` when a `REDIS_*` variable is set, `postgres` when `DATABASE_URL` is, else `sqlite` |
 * | `SQLITE_PATH` | SQLite file, default `./data/sessions.db` |
 * | `SQLITE_SYNCHRONOUS` | `normal` (default: a commit survives a process crash, a power cut may lose the last ones) or `full` (synced before it is answered) |
 * | `SQLITE_BUSY_TIMEOUT_MS` | how long a SQLite operation may wait to start (for another process's write lock), default 500 |
 * | `REDIS_URL`, `REDIS_CLUSTER`, `REDIS_SENTINEL` | one of them: `redis://host:6379/0`; `host:7000,host:7001`; `mastername@host:26379,host:26380` |
 * | `REDIS_PREFIX` | key prefix, default `as:` |
 * | `REDIS_DURABLE_REPLICAS` | durable logouts, revocations and login rotations: how many replicas must acknowledge them (`WAIT`) before they resolve; unset: asynchronous, as every other write |
 * | `REDIS_DURABLE_TIMEOUT_MS` | how long those writes wait for the replicas before failing (503), default 500; needs `REDIS_DURABLE_REPLICAS` |
 * | `DATABASE_URL` | PostgreSQL connection string, `postgres://user@host:5432/db` |
 * | `POSTGRES_SCHEMA`, `POSTGRES_TABLE` | where the PostgreSQL store keeps its tables; default `public`, `atomic_session` (its version in `<table>_meta`) |
 * | `POSTGRES_CREATE_SCHEMA` | `true` (default): create the tables on first use; `false`: they were applied from the store's `schema.sql` |
 * | `POSTGRES_MAX_CONNECTIONS` | most connections of the pool the PostgreSQL store builds, default 10 |
 * | `MEMORY_MAX_ENTRIES` | most sessions the memory store holds, default 10000 |
 * | `SESSION_SECRET` | comma-separated cookie signing secrets of ≥ 32 characters; the first signs, all verify |
 * | `SESSION_IDLE_TIMEOUT`, `SESSION_ABSOLUTE_TIMEOUT` | seconds; default 1800 and 43200 |
 * | `SESSION_TOUCH_INTERVAL` | seconds between idle-deadline refreshes of an unchanged session |
 * | `STORE_TIMEOUT_MS` | deadline on every store call (and the PostgreSQL store's `statement_timeout`), default 1000 |
 * | `SESSION_MAX_SIZE_BYTES` | cap on a session's data, default 65536 |
 * | `SESSION_MAX_PER_USER` | most sessions of one user (`0`: no cap), default 100 |
 * | `TRUST_PROXY` | `true`: trust `X-Forwarded-Proto` |
 * | `SESSION_COOKIE_NAME`, `SESSION_COOKIE_PATH`, `SESSION_COOKIE_DOMAIN` | cookie name (default `sessionID`), path, domain |
 * | `SESSION_COOKIE_SECURE` | `auto` (default), `true`, `false` |
 * | `SESSION_COOKIE_SAMESITE` | `lax` (default), `strict`, `none` |
 * | `SESSION_COOKIE_PERSISTENT` | `true` (default): `Expires` at the absolute deadline; `false`: browser-session cookies |
 * | `SESSION_COOKIE_PARTITIONED`, `SESSION_COOKIE_PRIORITY` | `Partitioned` (true/false), `Priority` (low/medium/high) |
 * @module
 */
import { SessionConfigError } from "../core/errors.js";
import type { SessionManagerOptions } from "../core/manager.js";
import type { SessionStore } from "../core/store.js";
import { checkIdentifier, MAX_TABLE_LENGTH } from "../stores/postgres/schema.js";

/** The environment, as `process.env` holds it. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A variable holds a value that cannot work; the message names it. */
export class EnvConfigError extends SessionConfigError {
  override name = "EnvConfigError";
}

/** Which store the environment names, and where it is (for messages: a URL loses its password). */
export type StoreEnv =
  | { kind: "memory"; where: string; maxEntries: number | undefined }
  | {
      kind: "sqlite";
      where: string;
      path: string;
      synchronous: "normal" | "full" | undefined;
      busyTimeoutMs: number | undefined;
    }
  | {
      kind: "redis";
      where: string;
      prefix: string | undefined;
      /** `REDIS_DURABLE_REPLICAS` / `REDIS_DURABLE_TIMEOUT_MS`: the store's `durability` option. */
      durability: { replicas: number; timeoutMs: number } | undefined;
      connection: { url: string } | { cluster: string[] } | { sentinel: { name: string; nodes: string[] } };
    }
  | {
      kind: "postgres";
      where: string;
      url: string;
      schema: string | undefined;
      table: string | undefined;
      createSchema: boolean | undefined;
      timeoutMs: number | undefined;
      maxConnections: number | undefined;
    };

const STORES = ["memory", "sqlite", "redis", "postgres"] as const;
const DEFAULT_SQLITE_PATH = "./data/sessions.db";

/** Reads and checks the store variables; throws `EnvConfigError` naming the variable at fault. */
export function storeEnv(env: Env = process.env): StoreEnv {
  const redisUrl = text(env.REDIS_URL);
  const redisCluster = text(env.REDIS_CLUSTER);
  const redisSentinel = text(env.REDIS_SENTINEL);
  const redisVariables = Object.entries({ REDIS_URL: redisUrl, REDIS_CLUSTER: redisCluster, REDIS_SENTINEL: redisSentinel })
    .filter(([, value]) => value !== undefined)
    .map(([name]) => name);
  if (redisVariables.length > 1) {
    throw new EnvConfigError(`set one of REDIS_URL, REDIS_CLUSTER and REDIS_SENTINEL, not ${redisVariables.join(" and ")}`);
  }
  const databaseUrl = text(env.DATABASE_URL);
  const kind =
    text(env.SESSION_STORE)?.toLowerCase() ?? (redisVariables.length > 0 ? "redis" : databaseUrl !== undefined ? "postgres" : "sqlite");
  switch (kind) {
    case "memory":
      return { kind, where: "process memory", maxEntries: integer(env, "MEMORY_MAX_ENTRIES", 1, 100_000_000) };
    case "sqlite": {
      const path = text(env.SQLITE_PATH) ?? DEFAULT_SQLITE_PATH;
      const synchronous = choice(env, "SQLITE_SYNCHRONOUS", ["normal", "full"] as const);
      return { kind, where: path, path, synchronous, busyTimeoutMs: integer(env, "SQLITE_BUSY_TIMEOUT_MS", 0, 600_000) };
    }
    case "redis": {
      const prefix = text(env.REDIS_PREFIX);
      const durability = durabilityOf(env);
      if (redisCluster !== undefined) {
        const cluster = nodeList("REDIS_CLUSTER", redisCluster, "127.0.0.1:7000,127.0.0.1:7001");
        return { kind, where: `Redis Cluster ${cluster.join(",")}`, prefix, durability, connection: { cluster } };
      }
      if (redisSentinel !== undefined) {
        const sentinel = sentinelOf(redisSentinel);
        return { kind, where: `Redis Sentinel ${sentinel.name}@${sentinel.nodes.join(",")}`, prefix, durability, connection: { sentinel } };
      }
      if (redisUrl === undefined) {
        throw new EnvConfigError(
          "SESSION_STORE=redis needs REDIS_URL (redis://127.0.0.1:6379/0), REDIS_CLUSTER (host:7000,host:7001) or REDIS_SENTINEL (mymaster@host:26379)",
        );
      }
      return { kind, where: withoutPassword("REDIS_URL", redisUrl), prefix, durability, connection: { url: redisUrl } };
    }
    case "postgres":
      if (databaseUrl === undefined)
        throw new EnvConfigError("SESSION_STORE=postgres needs DATABASE_URL (postgres://user@127.0.0.1:5432/app)");
      return {
        kind,
        where: withoutPassword("DATABASE_URL", databaseUrl),
        url: databaseUrl,
        schema: postgresName(env, "POSTGRES_SCHEMA"),
        table: postgresName(env, "POSTGRES_TABLE", MAX_TABLE_LENGTH),
        createSchema: flag(env, "POSTGRES_CREATE_SCHEMA"),
        // The statements' own deadline is the manager's, so that PostgreSQL cancels what the manager gave up on.
        timeoutMs: integer(env, "STORE_TIMEOUT_MS", 1, 600_000),
        maxConnections: integer(env, "POSTGRES_MAX_CONNECTIONS", 1, 10_000),
      };
    default:
      throw new EnvConfigError(`SESSION_STORE must be one of ${STORES.join(", ")}, not ${JSON.stringify(env.SESSION_STORE)}`);
  }
}

/**
 * The store the environment names, built by its own module: only that store's driver is
 * loaded. The store owns what it opened (`dispose()` closes it).
 */
export async function storeFromEnv(env: Env = process.env): Promise<SessionStore> {
  return openStore(storeEnv(env));
}

/** The store `config` describes (see {@link storeEnv}), built by its own module. */
export async function openStore(config: StoreEnv): Promise<SessionStore> {
  switch (config.kind) {
    case "memory": {
      const { MemoryStore } = await import("../stores/memory.js");
      return new MemoryStore(config.maxEntries === undefined ? {} : { maxEntries: config.maxEntries });
    }
    case "sqlite": {
      const { SqliteStore } = await import("../stores/sqlite/index.js");
      return new SqliteStore({
        path: config.path,
        ...defined("synchronous", config.synchronous),
        ...defined("busyTimeoutMs", config.busyTimeoutMs),
      });
    }
    case "redis": {
      const { RedisStore } = await import("../stores/redis/index.js");
      return new RedisStore({
        ...config.connection,
        ...(config.prefix === undefined ? {} : { prefix: config.prefix }),
        ...defined("durability", config.durability),
      });
    }
    case "postgres": {
      const { PostgresStore } = await import("../stores/postgres/index.js");
      const { url, schema, table, createSchema, timeoutMs, maxConnections } = config;
      return new PostgresStore({
        url,
        ...defined("schema", schema),
        ...defined("table", table),
        ...defined("createSchema", createSchema),
        ...defined("timeoutMs", timeoutMs),
        ...defined("maxConnections", maxConnections),
      });
    }
  }
}

/** The manager's options from the environment (everything but the store); unset variables leave the defaults. */
export function managerOptionsFromEnv(env: Env = process.env): Omit<SessionManagerOptions, "store"> {
  const secrets = text(env.SESSION_SECRET)
    ?.split(",")
    .map((secret) => secret.trim())
    .filter((secret) => secret !== "");
  const maxPerUser = integer(env, "SESSION_MAX_PER_USER", 0, 1_000_000);
  const options: Omit<SessionManagerOptions, "store"> = {
    cookie: {
      ...defined("name", text(env.SESSION_COOKIE_NAME)),
      ...defined("path", text(env.SESSION_COOKIE_PATH)),
      ...defined("domain", text(env.SESSION_COOKIE_DOMAIN)),
      ...defined("secure", secureOf(choice(env, "SESSION_COOKIE_SECURE", ["auto", "true", "false"] as const))),
      ...defined("sameSite", choice(env, "SESSION_COOKIE_SAMESITE", ["lax", "strict", "none"] as const)),
      ...defined("persistent", flag(env, "SESSION_COOKIE_PERSISTENT")),
      ...defined("partitioned", flag(env, "SESSION_COOKIE_PARTITIONED")),
      ...defined("priority", choice(env, "SESSION_COOKIE_PRIORITY", ["low", "medium", "high"] as const)),
    },
    ...defined("secrets", secrets === undefined || secrets.length === 0 ? undefined : secrets),
    ...defined("idleTimeoutMs", seconds(env, "SESSION_IDLE_TIMEOUT")),
    ...defined("absoluteTimeoutMs", seconds(env, "SESSION_ABSOLUTE_TIMEOUT")),
    ...defined("touchIntervalMs", seconds(env, "SESSION_TOUCH_INTERVAL", 0)),
    ...defined("storeTimeoutMs", integer(env, "STORE_TIMEOUT_MS", 1, 600_000)),
    ...defined("maxSizeBytes", integer(env, "SESSION_MAX_SIZE_BYTES", 1, 16 * 1024 * 1024)),
    ...defined("maxSessionsPerUser", maxPerUser === 0 ? Number.POSITIVE_INFINITY : maxPerUser),
    ...defined("trustProxy", flag(env, "TRUST_PROXY")),
  };
  return options;
}

function defined<K extends string, V>(name: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [name]: value }) as { [P in K]?: V };
}

function text(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === "" ? undefined : trimmed;
}

/** A whole number from `min` to `max`, or undefined when unset. */
function integer(env: Env, name: string, min: number, max: number): number | undefined {
  const raw = text(env[name]);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new EnvConfigError(`${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(env[name])}`);
  }
  return value;
}

function seconds(env: Env, name: string, min = 1): number | undefined {
  const value = integer(env, name, min, 10 * 365 * 24 * 3600);
  return value === undefined ? undefined : value * 1000;
}

/** `true`/`1` or `false`/`0`, or undefined when unset. */
function flag(env: Env, name: string): boolean | undefined {
  const raw = text(env[name])?.toLowerCase();
  if (raw === undefined) return undefined;
  if (raw === "1" || raw === "true") return true;
  if (raw === "0" || raw === "false") return false;
  throw new EnvConfigError(`${name} must be true or false, not ${JSON.stringify(env[name])}`);
}

function choice<const C extends string>(env: Env, name: string, choices: readonly C[]): C | undefined {
  const raw = text(env[name])?.toLowerCase();
  if (raw === undefined) return undefined;
  if (!(choices as readonly string[]).includes(raw)) {
    throw new EnvConfigError(`${name} must be one of ${choices.join(", ")}, not ${JSON.stringify(env[name])}`);
  }
  return raw as C;
}

function secureOf(value: "auto" | "true" | "false" | undefined): boolean | "auto" | undefined {
  return value === undefined || value === "auto" ? value : value === "true";
}

/** A PostgreSQL schema or table name, by the store's own rule; the error names the variable. */
function postgresName(env: Env, name: string, maxLength?: number): string | undefined {
  const raw = text(env[name]);
  if (raw === undefined) return undefined;
  try {
    return checkIdentifier(name, raw, maxLength);
  } catch (error) {
    throw new EnvConfigError((error as Error).message.replace(`PostgresStore ${name}`, name));
  }
}

/** `host:port` or `[IPv6]:port`, port 1–65535. */
const NODE_ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

function nodeList(name: string, raw: string, example: string): string[] {
  const nodes = raw.split(",").map((node) => node.trim());
  for (const node of nodes) {
    const port = Number(NODE_ADDRESS.exec(node)?.[1]);
    if (!(port >= 1 && port <= 65535)) {
      throw new EnvConfigError(`${name} must be comma-separated host:port addresses such as ${example}, not ${JSON.stringify(raw)}`);
    }
  }
  return nodes;
}

/** The Redis store's `durability` from REDIS_DURABLE_REPLICAS and REDIS_DURABLE_TIMEOUT_MS (default 500 ms). */
function durabilityOf(env: Env): { replicas: number; timeoutMs: number } | undefined {
  const replicas = integer(env, "REDIS_DURABLE_REPLICAS", 1, 100);
  const timeoutMs = integer(env, "REDIS_DURABLE_TIMEOUT_MS", 1, 60_000);
  if (replicas === undefined) {
    if (timeoutMs !== undefined)
      throw new EnvConfigError("REDIS_DURABLE_TIMEOUT_MS needs REDIS_DURABLE_REPLICAS (how many replicas must acknowledge)");
    return undefined;
  }
  return { replicas, timeoutMs: timeoutMs ?? 500 };
}

function sentinelOf(raw: string): { name: string; nodes: string[] } {
  const at = raw.indexOf("@");
  const name = raw.slice(0, at);
  if (at < 0 || !/^[A-Za-z0-9._-]{1,128}$/.test(name)) {
    throw new EnvConfigError(
      `REDIS_SENTINEL must be mastername@host:port,host:port such as mymaster@127.0.0.1:26379, not ${JSON.stringify(raw)}`,
    );
  }
  return { name, nodes: nodeList("REDIS_SENTINEL", raw.slice(at + 1), "mymaster@127.0.0.1:26379,127.0.0.1:26380") };
}

/** The URL without its password, for messages; a value that is not a URL is refused without being echoed (it may hold one). */
function withoutPassword(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EnvConfigError(`${name} is not a valid URL`);
  }
  if (url.password !== "") url.password = "***";
  return url.toString();
}
