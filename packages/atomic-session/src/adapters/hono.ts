import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, MiddlewareHandler } from "hono";
import type { RequestInfo, SessionManager } from "../core/manager.js";
import type { Session } from "../core/session.js";
import {
  requestInfoOf as nodeRequestInfoOf,
  nodeResponseHeaders,
  type SessionHeaders,
  sessionErrorAnswer,
  sessionHeaders,
  varyWithCookie,
} from "./http.js";

declare module "hono" {
  interface ContextVariableMap {
    /** The request's session, set by `sessionMiddleware`. Its data type is the one declared in `SessionTypes`. */
    session: Session;
  }
}

/** The Hono environment `sessionMiddleware` gives the handlers after it: `c.get("session")`, `c.var.session`. */
export type SessionEnv = { Variables: { session: Session } };

/** What `@hono/node-server` puts in `c.env`; absent on other runtimes. */
interface NodeServerBindings {
  incoming?: IncomingMessage;
  outgoing?: ServerResponse;
}

/** The request facts the core needs, read from a Hono context (off @hono/node-server). */
function requestInfoOf(c: Context): RequestInfo {
  return {
    cookieHeader: c.req.header("cookie"),
    encrypted: new URL(c.req.url).protocol === "https:",
    forwardedProto: c.req.header("x-forwarded-proto"),
    userAgent: c.req.header("user-agent"),
  };
}

/**
 * Puts the session's headers on the response the handler produced (a plain `Response`
 * included): its cookie beside the application's with `Cache-Control: no-store`, and `Cookie`
 * added to the response's `Vary`. Done once the handler has answered, so a cookie set earlier
 * in the request was replaced rather than sent twice, and nothing the handler did to its own
 * headers can drop or undo it. On the response's own headers, as Hono's `cors` does; only a
 * response whose headers are immutable (one from `fetch()`) is rebuilt, by `c.header()`.
 */
function putSessionHeaders(c: Context, session: SessionHeaders): void {
  if (session.cookies.length === 0 && !session.varies) return;
  const headers = c.res.headers;
  const vary = session.varies ? varyWithCookie(headers.get("Vary") ?? undefined) : undefined;
  try {
    writeSessionHeaders(session, vary, (name, value, append) => (append ? headers.append(name, value) : headers.set(name, value)));
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    writeSessionHeaders(session, vary, (name, value, append) => c.header(name, value, { append }));
  }
}

function writeSessionHeaders(
  session: SessionHeaders,
  vary: string | undefined,
  put: (name: string, value: string, append: boolean) => void,
): void {
  if (session.cookies.length > 0) {
    for (const cookie of session.cookies) put("Set-Cookie", cookie, true);
    put("Cache-Control", "no-store", false);
  }
  if (vary !== undefined) put("Vary", vary, false);
}

/** Answers a session error with its status, replacing the response Hono's error handler made for it. */
function answerSessionError(c: Context): void {
  // Hono has already turned a handler's error into c.res (app.onError): a session error gets its own answer.
  const answer = c.error === undefined ? undefined : sessionErrorAnswer(c.error);
  if (answer !== undefined) c.res = new Response(answer.body, { status: answer.status, headers: answer.headers });
}

/**
 * The Hono adapter: puts the request's session at `c.get("session")` (and `c.var.session`).
 * Every write is awaited inside the handler; the session's cookie goes on the handler's
 * response. A session error that carries a status (a store failure: 503 with `Retry-After`;
 * a race with a login: 409; a `Secure` cookie over plain HTTP: 403) is answered with that
 * status and the same JSON body as the node:http adapter; a store failure or a race with a
 * login hands out no session cookie. Works on any runtime.
 *
 * On `@hono/node-server` it works on the Node request and response, as the node:http adapter
 * does: the socket tells whether the request came over TLS (the URL's scheme can come from
 * the request line, which the client chooses), and the session's headers join the response's
 * when the server writes them (other middleware does not see them in `c.res.headers`). So no
 * web `Headers` is built for them, whose checks of every value were a tenth of the request's
 * CPU, and `@hono/node-server` keeps its fast path for a response without headers of its own
 * (1.x also drops headers set on `c.res.headers` once a later step rebuilds the response:
 * honojs/node-server#304).
 *
 * ```ts
 * const app = new Hono().use(sessionMiddleware(manager));
 * app.get("/", async (c) => c.text(`visit ${await c.var.session.increment("visits")}`));
 * ```
 */
export function sessionMiddleware(manager: SessionManager): MiddlewareHandler<SessionEnv> {
  return async function session(c, next) {
    const { incoming, outgoing } = (c.env as NodeServerBindings | undefined) ?? {};
    if (incoming?.headers !== undefined && outgoing !== undefined && typeof outgoing.writeHead === "function") {
      c.set("session", manager.open(nodeRequestInfoOf(incoming), nodeResponseHeaders(outgoing)));
      await next();
      answerSessionError(c);
      return;
    }
    let answered = false;
    const headers = sessionHeaders(() => answered);
    c.set("session", manager.open(requestInfoOf(c), headers));
    await next();
    answered = true;
    answerSessionError(c);
    putSessionHeaders(c, headers);
  };
}
