import type { IncomingMessage, ServerResponse } from "node:http";
import { type Session, type SessionManager, StoreUnavailableError } from "atomic-session";
import { withSessions } from "atomic-session/node";
import type { Logger } from "pino";
import { ACCOUNT_SESSION_PATH, accountRoutes } from "./account.js";
import { CsrfTokens } from "./csrf.js";
import { logIn } from "./login.js";
import { MAX_BODY_BYTES, readBodyText } from "./request-body.js";
import "./session-data.js";

type Route = (req: IncomingMessage, res: ServerResponse, session: Session, log: Logger) => Promise<void>;

export interface AppOptions {
  /** Serves `GET /metrics` from this registry (a prom-client `Registry`); no route without it. */
  metrics?: { readonly contentType: string; metrics(): Promise<string> };
  /** Keys for the account page's CSRF tokens (the first signs, all verify); default: random per process. */
  csrfSecrets?: readonly string[];
}

/**
 * The visit counter: `GET /` answers `Hello World #N` where N counts the caller's earlier
 * visits. Every request is logged as one JSON line carrying `session`, the session's
 * public handle (never its ID).
 */
export function createApp(manager: SessionManager, logger: Logger, options: AppOptions = {}) {
  const { metrics } = options;
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
    "POST /login": async (req, res, session) => {
      const body = await readJsonBody(req);
      if (body.kind === "error") return sendJson(res, body.status, { error: body.message });
      const { user: candidate, remember } = (body.value ?? {}) as { user?: unknown; remember?: unknown };
      if (remember !== undefined && typeof remember !== "boolean") return sendJson(res, 400, { error: '"remember" must be true or false' });
      const user = await logIn(session, candidate, remember);
      if (user === undefined) return sendJson(res, 400, { error: 'expected {"user": "<1 to 64 characters>", "remember"?: true | false}' });
      sendJson(res, 200, { user });
    },
    "POST /logout": async (_req, res, session) => {
      await session.destroy();
      sendEmpty(res, 204);
    },
    "GET /sessions": async (_req, res, session) => {
      const user = (await session.info())?.userId;
      if (user === undefined) return sendJson(res, 401, { error: "log in first" });
      const sessions = await manager.listUserSessions(user, session);
      sendJson(
        res,
        200,
        sessions.map((entry) => ({
          handle: entry.handle,
          current: entry.current,
          createdAt: entry.createdAt.toISOString(),
          lastSeenAt: entry.lastSeenAt.toISOString(),
          userAgent: entry.userAgent ?? null,
        })),
      );
    },
    "DELETE /sessions/:handle": async (req, res, session) => {
      const user = (await session.info())?.userId;
      if (user === undefined) return sendJson(res, 401, { error: "log in first" });
      const handle = pathOf(req)?.slice("/sessions/".length) ?? "";
      if (!(await manager.revokeUserSession(user, handle))) return sendJson(res, 404, { error: "no such session" });
      sendEmpty(res, 204);
    },
    "POST /logout-all": async (_req, res, session) => {
      const user = (await session.info())?.userId;
      if (user === undefined) return sendJson(res, 401, { error: "log in first" });
      // Every session of the user, this one included; the cookie is cleared only once all ended, so a 503 can be retried.
      await session.revokeAll();
      sendEmpty(res, 204);
    },
    "GET /healthz": async (_req, res) => {
      try {
        await manager.checkHealth();
        sendJson(res, 200, { status: "ok" });
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        res.setHeader("Retry-After", error.headers["Retry-After"] ?? "1");
        sendJson(res, 503, { status: "unavailable" });
      }
    },
    ...(metrics === undefined
      ? {}
      : {
          // Never touches the session: scraping creates, loads and counts nothing.
          "GET /metrics": async (_req: IncomingMessage, res: ServerResponse) =>
            send(res, 200, metrics.contentType, await metrics.metrics()),
        }),
    ...accountRoutes(manager, new CsrfTokens(options.csrfSecrets)),
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
      const key = routeKey(req);
      const route = routes[key];
      if (route === undefined) return sendJson(res, 404, { error: "not found" });
      // What changes a session answers only requests from this site: CSRF beyond SameSite (the account forms also carry a token).
      if (req.method !== "GET" && crossOrigin(req)) return sendJson(res, 403, { error: "cross-origin request refused" });
      // Every answer but these two depends on the visitor's session: no cache may keep it.
      if (key !== "GET /healthz" && key !== "GET /metrics") res.setHeader("Cache-Control", "no-store");
      await route(req, res, session, logger);
    },
    { onError: (error) => logger.error({ err: error }, "request failed") },
  );
  return handle;
}

const SESSION_PATH = /^\/sessions\/[A-Za-z0-9_-]{1,64}$/;

function routeKey(req: IncomingMessage): string {
  const path = pathOf(req);
  if (path !== undefined && ACCOUNT_SESSION_PATH.test(path)) return `${req.method} /account/sessions/:handle/sign-out`;
  return `${req.method} ${path !== undefined && SESSION_PATH.test(path) ? "/sessions/:handle" : path}`;
}

/** The request path without its query; `undefined` for a request target that is not a path. */
function pathOf(req: IncomingMessage): string | undefined {
  let target = req.url ?? "";
  // The absolute form (`GET http://host/path`), which servers must accept (RFC 9112 §3.2.2).
  if (/^https?:\/\//i.test(target)) target = target.slice(target.indexOf("/", target.indexOf("//") + 2)) || "/";
  if (!target.startsWith("/")) return undefined;
  const query = target.indexOf("?");
  return query === -1 ? target : target.slice(0, query);
}

/**
 * Whether a browser sent this request from another origin: `Origin` present and naming another
 * host (a sibling subdomain is same-site, so SameSite=Lax does not stop it). Clients that send
 * no `Origin` (curl, servers) are not browsers making cross-origin requests.
 */
function crossOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

type BodyReading = { kind: "ok"; value: unknown } | { kind: "error"; status: 400 | 413 | 415; message: string };

const JSON_BODY_ERRORS = {
  "wrong type": "send the body as application/json",
  "too large": `the body is over ${MAX_BODY_BYTES} bytes`,
  unreadable: "the body could not be read",
  "not UTF-8": "the body is not valid UTF-8 JSON",
} as const;

/** Reads a JSON body of at most 16 KiB; every malformed body is a 4xx, never an exception. */
async function readJsonBody(req: IncomingMessage): Promise<BodyReading> {
  const body = await readBodyText(req, "application/json");
  if (body.kind === "error") return { kind: "error", status: body.status, message: JSON_BODY_ERRORS[body.reason] };
  try {
    return { kind: "ok", value: JSON.parse(body.text) };
  } catch {
    return { kind: "error", status: 400, message: JSON_BODY_ERRORS["not UTF-8"] };
  }
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status);
  res.end();
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", `${JSON.stringify(body)}\n`);
}
