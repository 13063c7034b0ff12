import type { Context, MiddlewareHandler } from "hono";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { SessionError, StoreUnavailableError } from "../core/errors.js";
import type { RequestInfo, SessionManager } from "../core/manager.js";
import type { AppSessionData, ResponseHeaders, Session } from "../core/session.js";
import { interceptFailures, varyWithCookie } from "./node.js";

declare module "hono" {
  interface ContextVariableMap {
    /** The request's session, set by `sessionMiddleware`. Its data type is the one declared in `SessionTypes`. */
    session: Session<AppSessionData>;
  }
}

/**
 * The Hono environment `sessionMiddleware` gives the handlers after it: `c.get("session")`,
 * `c.var.session`. Its data type is the one declared in `SessionTypes`, the same as in
 * `ContextVariableMap` (two different ones would merge into a session that accepts both).
 */
export type SessionEnv = { Variables: { session: Session<AppSessionData> } };

/**
 * A session error on its way to Hono's error path: an `HTTPException` with the error's
 * status (503 for a store failure, with `Retry-After`; 409 for `update()` conflicts), so
 * that the default error handler, and an `app.onError` that answers
 * `err.getResponse()` for HTTP exceptions, send it. `cause` is the session error.
 */
export class SessionHTTPException extends HTTPException {
  override readonly cause: SessionError & { status: number };

  constructor(error: SessionError & { status: number }) {
    super(error.status as ContentfulStatusCode, { message: error.message, cause: error });
    this.cause = error;
  }

  /** A fresh JSON error response each time (a response body can be read only once). */
  override getResponse(): Response {
    const error = this.cause;
    const retry = error instanceof StoreUnavailableError ? error.headers : {};
    const message = error instanceof StoreUnavailableError ? "session store unavailable" : error.message;
    return new Response(`${JSON.stringify({ error: message })}\n`, {
      status: this.status,
      headers: { ...retry, "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" },
    });
  }
}

/** Session errors that carry an HTTP status become `SessionHTTPException`; others pass unchanged. */
function toHttpException(error: unknown): unknown {
  return error instanceof SessionError && "status" in error && typeof error.status === "number"
    ? new SessionHTTPException(error as SessionError & { status: number })
    : error;
}

/** What `@hono/node-server` puts in `c.env`; absent on other runtimes. */
interface NodeServerBindings {
  incoming?: { socket?: { encrypted?: boolean } };
}

/** The request facts the core needs, read from a Hono context. */
function requestInfoOf(c: Context): RequestInfo {
  const incoming = (c.env as NodeServerBindings | undefined)?.incoming;
  return {
    cookieHeader: c.req.header("cookie"),
    // On @hono/node-server the URL's scheme can come from the request line (an absolute
    // URI), which the client chooses: ask the socket. Other runtimes build the URL themselves.
    encrypted: incoming !== undefined ? incoming.socket?.encrypted === true : new URL(c.req.url).protocol === "https:",
    forwardedProto: c.req.header("x-forwarded-proto"),
    userAgent: c.req.header("user-agent"),
  };
}

/**
 * How the core sets headers in Hono: the session's latest cookie is kept aside and put on the
 * handler's response once it exists (`flush`), so a cookie set earlier in the request is
 * replaced rather than sent twice, a handler that answers with a plain `Response` still
 * carries it, and an error response never does.
 */
function deferredResponseHeaders(): ResponseHeaders & { flush(c: Context): void } {
  let cookie: string | undefined;
  let flushed = false;
  return {
    setCookie(value) {
      cookie = value;
    },
    headersSent: () => flushed,
    flush(c) {
      flushed = true;
      if (cookie === undefined || c.error !== undefined) return;
      c.header("Set-Cookie", cookie, { append: true });
      c.header("Cache-Control", "no-store");
      c.header("Vary", varyWithCookie(c.res.headers.get("Vary") ?? undefined));
    },
  };
}

/**
 * The Hono adapter: puts the request's session at `c.get("session")` (and `c.var.session`).
 * Every write is awaited inside the handler; the session's cookie goes on the handler's
 * response. A session error that carries a status (a store failure: 503 with
 * `Retry-After`) reaches Hono's error path as a `SessionHTTPException`. Works on any
 * runtime; on `@hono/node-server` the socket tells whether the request came over TLS.
 *
 * ```ts
 * const app = new Hono().use(sessionMiddleware(manager));
 * app.get("/", async (c) => c.text(`visit ${await c.var.session.increment("visits")}`));
 * ```
 */
export function sessionMiddleware(manager: SessionManager<AppSessionData>): MiddlewareHandler<SessionEnv> {
  return createMiddleware<SessionEnv>(async function session(c, next) {
    const headers = deferredResponseHeaders();
    c.set("session", interceptFailures(manager.open(requestInfoOf(c), headers), toHttpException));
    await next();
    headers.flush(c);
  });
}
