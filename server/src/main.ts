import { createServer } from "node:http";
import { SessionManager } from "atomic-session";
import { managerOptionsFromEnv, openStore, storeEnv } from "atomic-session/env";
import { measureStore, sessionMetrics } from "atomic-session/metrics";
import { pino } from "pino";
import { Registry } from "prom-client";
import { createApp } from "./app.js";
import { readServerConfig } from "./config.js";
import { StoreMonitor } from "./store-monitor.js";

async function main(): Promise<void> {
  const config = readServerConfig(process.env);
  const storeConfig = storeEnv(process.env);
  const options = managerOptionsFromEnv(process.env);
  const logger = pino({ level: config.logLevel });
  const store = measureStore(await openStore(storeConfig));
  const manager = new SessionManager({ ...options, store });
  const monitor = new StoreMonitor(manager, logger, { where: storeConfig.where });
  manager.on((event) => {
    if (event.type === "insecure-request") logger.warn(event.reason);
    else if (event.type !== "store-error" && event.type !== "conflict") logger.debug({ event }, "session event");
  });

  const metrics = new Registry();
  sessionMetrics(manager, { registry: metrics });
  const server = createServer(createApp(manager, logger, { metrics, csrfSecrets: options.secrets }));
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : config.port;
    logger.info({ host: config.host, port, store: store.kind, where: storeConfig.where }, `listening on http://${config.host}:${port}`);
  });

  // Graceful: stop accepting, let requests in flight finish (up to the timeout), dispose the store, exit.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    monitor.stop();
    const force = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      const disposed = Promise.resolve(store.dispose?.()).catch((error: unknown) => logger.warn({ err: error }, "store dispose failed"));
      const cap = new Promise((resolve) => setTimeout(resolve, 2_000).unref());
      void Promise.race([disposed, cap]).then(() => {
        logger.info("stopped");
        logger.flush();
        process.exit(0);
      });
    });
    server.closeIdleConnections();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  await monitor.start();
}

main().catch((error: unknown) => {
  console.error(`atomic-session server failed to start: ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
});
