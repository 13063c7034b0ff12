/**
 * The one way to build a session store from the environment's configuration, shared by the
 * reference server (`server/main.ts`) and the admin CLI (`cli/main.ts`).
 * @module
 */
import type { SessionStore } from "../src/core/store.js";
import { MemoryStore } from "../src/stores/memory.js";
import { RedisStore } from "../src/stores/redis/index.js";
import { SqliteStore } from "../src/stores/sqlite.js";
import type { ServerConfig } from "./config.js";

/** The store `config` names (`SESSION_STORE`, `SQLITE_PATH`, `REDIS_URL`, `REDIS_CLUSTER`, `REDIS_SENTINEL`). */
export function createStore(config: ServerConfig): SessionStore {
  switch (config.store) {
    case "memory":
      return new MemoryStore();
    case "sqlite":
      return new SqliteStore({ path: config.sqlitePath });
    case "redis":
      if (config.redisCluster !== undefined) return new RedisStore({ cluster: config.redisCluster });
      if (config.redisSentinel !== undefined) return new RedisStore({ sentinel: config.redisSentinel });
      return new RedisStore({ url: config.redisUrl });
  }
}

/** Where the store lives, for start-up lines and error messages; a Redis URL loses its password. */
export function describeStore(config: ServerConfig): string {
  if (config.store === "sqlite") return config.sqlitePath;
  if (config.store === "redis" && config.redisCluster !== undefined) return `Redis Cluster ${config.redisCluster.join(",")}`;
  if (config.store === "redis" && config.redisSentinel !== undefined) {
    return `Redis Sentinel ${config.redisSentinel.name}@${config.redisSentinel.nodes.join(",")}`;
  }
  if (config.store === "redis" && config.redisUrl !== undefined) {
    const url = new URL(config.redisUrl);
    url.password = "";
    return url.toString();
  }
  return "process memory";
}
