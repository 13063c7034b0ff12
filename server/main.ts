import { createServer } from "node:http";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import { SessionManager } from "../src/core/manager.js";
import type { SessionStore } from "../src/core/store.js";
import { measureStore, sessionMetrics } from "../src/metrics/prometheus.js";
import { createApp, type VisitData } from "./app.js";
import { readConfig, type ServerConfig } from "./config.js";
import { createStore, describeStore } from "./store.js";

/**
 * Probes the store once at start-up. The server starts either way (the Redis client keeps
 * reconnecting, and requests get 503 meanwhile), but an unreachable store gets one error line
 * naming where it is (never its password), and one info line once it answers.
 */
async function reportStoreAtStart(store: SessionStore, config: ServerConfig, logger: Logger, stopping: () => boolean): Promise<void> {
  const where = describeStore(config);
  const timeoutMs = config.storeTimeoutMs ?? 1000;
  const probe = async (): Promise<string | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${timeoutMs} ms`), timeoutMs);
    });
    const answered = store.ping().then(() => undefined, rootCauseOf);
    try {
      return await Promise.race([answered, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
  const problem = await probe();
  if (problem === undefined) return;
  logger.error(
    { store: config.store, where, reason: problem },
    `session store unreachable at ${where} (${problem}): answering 503 until it is up`,
  );
  while (!stopping()) {
    await new Promise((resolve) => setTimeout(resolve, 1000).unref());
    if (!stopping() && (await probe()) === undefined) {
      logger.info({ store: config.store, where }, `session store reachable at ${where}`);
      return;
    }
  }
}

/** The innermost message of an error chain (node's connect errors can be an AggregateError with an empty message). */
function rootCauseOf(error: unknown): string {
  let current = error;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  if (current instanceof AggregateError && current.message === "") return current.errors.map((inner) => rootCauseOf(inner)).join("; ");
  return current instanceof Error ? current.message : String(current);
}

async function main(): Promise<void> {
  const config = readConfig(process.env);
  const logger = pino({ level: config.logLevel });
  const store = createStore(config);
  const manager = new SessionManager<VisitData>({
    store: measureStore(store),
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

  const metrics = new Registry();
  sessionMetrics(manager, { registry: metrics });
  const server = createServer(createApp(manager, logger, { metrics, csrfSecrets: config.secrets }));
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
  void reportStoreAtStart(store, config, logger, () => stopping);
}

main().catch((error: unknown) => {
  console.error(`sessionstore server failed to start: ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
});
