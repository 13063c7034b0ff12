/**
 * The reference server's own configuration (where it listens, how it logs), read from the
 * environment and checked before anything starts. The sessions' configuration (store,
 * timeouts, cookie, secrets) is read by `atomic-session/env`.
 * @module
 */
import { type Env, EnvConfigError } from "atomic-session/env";

export interface ServerConfig {
  host: string;
  port: number;
  logLevel: string;
  /** Most time a graceful shutdown waits for requests in flight before it closes their connections. */
  shutdownTimeoutMs: number;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function readServerConfig(env: Env): ServerConfig {
  const logLevel = env.LOG_LEVEL?.trim() || "info";
  if (!LOG_LEVELS.includes(logLevel))
    throw new EnvConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, not ${JSON.stringify(logLevel)}`);
  return {
    host: env.HOST?.trim() || "127.0.0.1",
    port: integer(env, "PORT", 5000, 0, 65535),
    logLevel,
    shutdownTimeoutMs: integer(env, "SHUTDOWN_TIMEOUT_MS", 3000, 0, 60_000),
  };
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const text = env[name]?.trim();
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new EnvConfigError(`${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(env[name])}`);
  }
  return value;
}
