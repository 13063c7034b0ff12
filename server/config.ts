/** The reference server's configuration, read from the environment and checked before anything starts. */
export interface ServerConfig {
  host: string;
  port: number;
  store: "memory" | "sqlite" | "redis";
  sqlitePath: string;
  redisUrl: string | undefined;
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
  const store = nonEmpty(env.SESSION_STORE) ?? (redisUrl === undefined ? "sqlite" : "redis");
  if (!(STORES as readonly string[]).includes(store)) {
    throw new ServerConfigError(`SESSION_STORE must be one of ${STORES.join(", ")}, not ${JSON.stringify(store)}`);
  }
  if (store === "redis" && redisUrl === undefined) {
    throw new ServerConfigError("SESSION_STORE=redis needs REDIS_URL, e.g. REDIS_URL=redis://127.0.0.1:6379/0");
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
    secrets: secrets === undefined || secrets.length === 0 ? undefined : secrets,
    idleTimeoutMs: seconds("SESSION_IDLE_TIMEOUT", env.SESSION_IDLE_TIMEOUT),
    absoluteTimeoutMs: seconds("SESSION_ABSOLUTE_TIMEOUT", env.SESSION_ABSOLUTE_TIMEOUT),
    storeTimeoutMs:
      nonEmpty(env.STORE_TIMEOUT_MS) === undefined ? undefined : integer("STORE_TIMEOUT_MS", env.STORE_TIMEOUT_MS, 0, 1, 60_000),
    trustProxy: flag("TRUST_PROXY", env.TRUST_PROXY),
    logLevel: nonEmpty(env.LOG_LEVEL) ?? "info",
  };
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
