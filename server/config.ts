/** The reference server's configuration, read from the environment and checked before anything starts. */
export interface ServerConfig {
  host: string;
  port: number;
  store: "memory" | "sqlite" | "redis";
  sqlitePath: string;
  redisUrl: string | undefined;
  /** `REDIS_CLUSTER`: seed nodes as `host:port`. */
  redisCluster: string[] | undefined;
  /** `REDIS_SENTINEL`: `mastername@host:port,host:port`. */
  redisSentinel: { name: string; nodes: string[] } | undefined;
  secrets: string[] | undefined;
  idleTimeoutMs: number | undefined;
  absoluteTimeoutMs: number | undefined;
  storeTimeoutMs: number | undefined;
  trustProxy: boolean;
  logLevel: string;
}

export class ServerConfigError extends Error {
  override name = "ServerConfigError";
}

const STORES = ["memory", "sqlite", "redis"] as const;

export function readConfig(env: NodeJS.ProcessEnv): ServerConfig {
  const redisUrl = nonEmpty(env.REDIS_URL);
  const redisCluster = clusterNodes(env.REDIS_CLUSTER);
  const redisSentinel = sentinel(env.REDIS_SENTINEL);
  const redisVariables = Object.entries({ REDIS_URL: redisUrl, REDIS_CLUSTER: redisCluster, REDIS_SENTINEL: redisSentinel })
    .filter(([, value]) => value !== undefined)
    .map(([name]) => name);
  if (redisVariables.length > 1) {
    throw new ServerConfigError(`set one of REDIS_URL, REDIS_CLUSTER and REDIS_SENTINEL, not ${redisVariables.join(" and ")}`);
  }
  const store = nonEmpty(env.SESSION_STORE) ?? (redisVariables.length === 0 ? "sqlite" : "redis");
  if (!(STORES as readonly string[]).includes(store)) {
    throw new ServerConfigError(`SESSION_STORE must be one of ${STORES.join(", ")}, not ${JSON.stringify(store)}`);
  }
  if (store === "redis" && redisVariables.length === 0) {
    throw new ServerConfigError(
      "SESSION_STORE=redis needs REDIS_URL (redis://127.0.0.1:6379/0), REDIS_CLUSTER (host:7000,host:7001) or REDIS_SENTINEL (mymaster@host:26379)",
    );
  }
  const secrets = nonEmpty(env.SESSION_SECRET)
    ?.split(",")
    .map((secret) => secret.trim())
    .filter((secret) => secret !== "");
  return {
    host: nonEmpty(env.HOST) ?? "127.0.0.1",
    port: integer("PORT", env.PORT, 5000, 0, 65535),
    store: store as ServerConfig["store"],
    sqlitePath: nonEmpty(env.SQLITE_PATH) ?? "./data/sessions.db",
    redisUrl,
    redisCluster,
    redisSentinel,
    secrets: secrets === undefined || secrets.length === 0 ? undefined : secrets,
    idleTimeoutMs: seconds("SESSION_IDLE_TIMEOUT", env.SESSION_IDLE_TIMEOUT),
    absoluteTimeoutMs: seconds("SESSION_ABSOLUTE_TIMEOUT", env.SESSION_ABSOLUTE_TIMEOUT),
    storeTimeoutMs:
      nonEmpty(env.STORE_TIMEOUT_MS) === undefined ? undefined : integer("STORE_TIMEOUT_MS", env.STORE_TIMEOUT_MS, 0, 1, 60_000),
    trustProxy: flag("TRUST_PROXY", env.TRUST_PROXY),
    logLevel: nonEmpty(env.LOG_LEVEL) ?? "info",
  };
}

/** `host:port` or `[IPv6]:port`, port 1–65535. */
const NODE_ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/** A comma-separated list of `host:port`; `name` and `example` only shape the error message. */
function nodeList(name: string, raw: string, example: string): string[] {
  const nodes = raw.split(",").map((node) => node.trim());
  for (const node of nodes) {
    const port = Number(NODE_ADDRESS.exec(node)?.[1]);
    if (!(port >= 1 && port <= 65535)) {
      throw new ServerConfigError(`${name} must be comma-separated host:port addresses such as ${example}, not ${JSON.stringify(raw)}`);
    }
  }
  return nodes;
}

function clusterNodes(raw: string | undefined): string[] | undefined {
  const text = nonEmpty(raw);
  return text === undefined ? undefined : nodeList("REDIS_CLUSTER", text, "127.0.0.1:7000,127.0.0.1:7001");
}

function sentinel(raw: string | undefined): { name: string; nodes: string[] } | undefined {
  const text = nonEmpty(raw);
  if (text === undefined) return undefined;
  const at = text.indexOf("@");
  const name = text.slice(0, at);
  if (at < 0 || !/^[A-Za-z0-9._-]{1,128}$/.test(name)) {
    throw new ServerConfigError(
      `REDIS_SENTINEL must be mastername@host:port,host:port such as mymaster@127.0.0.1:26379, not ${JSON.stringify(raw)}`,
    );
  }
  return { name, nodes: nodeList("REDIS_SENTINEL", text.slice(at + 1), "mymaster@127.0.0.1:26379,127.0.0.1:26380") };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  const text = nonEmpty(raw);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new ServerConfigError(`${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

function seconds(name: string, raw: string | undefined): number | undefined {
  return nonEmpty(raw) === undefined ? undefined : integer(name, raw, 0, 1, 10 * 365 * 24 * 3600) * 1000;
}

function flag(name: string, raw: string | undefined): boolean {
  const text = nonEmpty(raw)?.toLowerCase();
  if (text === undefined || text === "0" || text === "false") return false;
  if (text === "1" || text === "true") return true;
  throw new ServerConfigError(`${name} must be true or false, not ${JSON.stringify(raw)}`);
}
