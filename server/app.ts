import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { withSessions } from "../src/adapters/node.js";
import { StoreUnavailableError } from "../src/core/errors.js";
import type { SessionManager } from "../src/core/manager.js";
import type { Session } from "../src/core/session.js";

/** The reference server's session data. */
export interface VisitData extends Record<string, unknown> {
  visitCount: number;
}

type Route = (req: IncomingMessage, res: ServerResponse, session: Session<VisitData>, log: Logger) => Promise<void>;

/**
 * The visit counter: `GET /` answers `Hello World #N` where N counts the caller's earlier
 * visits. Every request is logged as one JSON line carrying `session`, the session's
 * public handle (never its ID).
 */
export function createApp(manager: SessionManager<VisitData>, logger: Logger) {
  const routes: Record<string, Route> = {
    "GET /": async (_req, res, session, log) => {
      const visits = (await session.increment("visitCount")) - 1;
      const requestLog = log.child({ session: session.handle });
      requestLog.info("Hello world");
      requestLog.info(`Visits: ${visits}`);
      send(res, 200, "text/plain; charset=utf-8", `Hello World #${visits}\n`);
    },
    "GET /session": async (_req, res, session) => {
      const info = await session.info();
      if (info === undefined) return sendJson(res, 404, { error: "no session" });
      sendJson(res, 200, {
        visitCount: (await session.get("visitCount")) ?? 0,
        user: info.userId ?? null,
        createdAt: info.createdAt.toISOString(),
        expiresAt: info.expiresAt.toISOString(),
      });
    },
    "GET /healthz": async (_req, res) => {
      try {
        await manager.checkHealth();
        sendJson(res, 200, { status: "ok" });
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        res.setHeader("Retry-After", error.headers["Retry-After"] ?? "1");
        sendJson(res, 503, { status: "unavailable", store: manager.store.kind });
      }
    },
  };

  const handle = withSessions(
    manager,
    async (req, res, session) => {
      const started = process.hrtime.bigint();
      res.on("finish", () => {
        logger.info(
          {
            session: session.handle,
            method: req.method,
            path: pathOf(req),
            status: res.statusCode,
            ms: Number(process.hrtime.bigint() - started) / 1e6,
          },
          "request",
        );
      });
      const route = routes[`${req.method} ${pathOf(req)}`];
      if (route === undefined) return sendJson(res, 404, { error: "not found" });
      await route(req, res, session, logger);
    },
    { onError: (error) => logger.error({ err: error }, "request failed") },
  );
  return handle;
}

/** The request path without its query; `undefined` for a request target that is not a path. */
function pathOf(req: IncomingMessage): string | undefined {
  const target = req.url ?? "";
  if (!target.startsWith("/")) return undefined;
  const query = target.indexOf("?");
  return query === -1 ? target : target.slice(0, query);
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", `${JSON.stringify(body)}\n`);
}
