import { createServer } from "node:http";
import { pino } from "pino";
import { SessionManager } from "../src/core/manager.js";
import type { SessionStore } from "../src/core/store.js";
import { MemoryStore } from "../src/stores/memory.js";
import { RedisStore } from "../src/stores/redis/index.js";
import { SqliteStore } from "../src/stores/sqlite.js";
import { createApp, type VisitData } from "./app.js";
import { readConfig, type ServerConfig } from "./config.js";

function createStore(config: ServerConfig): SessionStore {
  switch (config.store) {
    case "memory":
      return new MemoryStore();
    case "sqlite":
      return new SqliteStore({ path: config.sqlitePath });
    case "redis":
      return new RedisStore({ url: config.redisUrl });
  }
}

/** Where the store lives, for the start-up line; a Redis URL loses its password. */
function describeStore(config: ServerConfig): string {
  if (config.store === "sqlite") return config.sqlitePath;
  if (config.store === "redis" && config.redisUrl !== undefined) {
    const url = new URL(config.redisUrl);
    url.password = "";
    return url.toString();
  }
  return "process memory";
}

async function main(): Promise<void> {
  const config = readConfig(process.env);
  const logger = pino({ level: config.logLevel });
  const store = createStore(config);
  const manager = new SessionManager<VisitData>({
    store,
    secrets: config.secrets,
    idleTimeoutMs: config.idleTimeoutMs,
    absoluteTimeoutMs: config.absoluteTimeoutMs,
    storeTimeoutMs: config.storeTimeoutMs,
    trustProxy: config.trustProxy,
  });
  manager.on((event) => {
    if (event.type === "store-error") logger.warn({ operation: event.operation, err: event.error }, "session store error");
    else if (event.type !== "conflict") logger.debug({ event }, "session event");
  });

  const server = createServer(createApp(manager, logger));
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : config.port;
    logger.info(
      { host: config.host, port, store: config.store, where: describeStore(config) },
      `listening on http://${config.host}:${port}`,
    );
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server.close(() => {
      void store.dispose?.().finally(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((error: unknown) => {
  console.error(`sessionstore server failed to start: ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
});
