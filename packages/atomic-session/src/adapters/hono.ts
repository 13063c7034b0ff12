import type { IncomingMessage } from "node:http";
import type { Context, MiddlewareHandler } from "hono";
import type { RequestInfo, SessionManager } from "../core/manager.js";
import type { Session } from "../core/session.js";
import { requestInfoOf as nodeRequestInfoOf, type SessionHeaders, sessionErrorAnswer, sessionHeaders, varyWithCookie } from "./http.js";

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
}

/** The request facts the core needs, read from a Hono context. */
function requestInfoOf(c: Context): RequestInfo {
  const incoming = (c.env as NodeServerBindings | undefined)?.incoming;
  // On @hono/node-server, read the Node request: its headers are parsed already, where
  // `c.req.header()` first builds a web `Headers` of them all; and the URL's scheme can come
  // from the request line (an absolute URI), which the client chooses, so the socket tells.
  if (incoming?.headers !== undefined) return nodeRequestInfoOf(incoming);
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
 * headers can drop or undo it.
 */
function putSessionHeaders(c: Context, session: SessionHeaders): void {
  if (session.cookies.length === 0 && !session.varies) return;
  const headers = c.res.headers;
  const vary = session.varies ? varyWithCookie(headers.get("Vary") ?? undefined) : undefined;
  // On the response's own headers, as Hono's cors middleware does: `c.header()` after the
  // handler answered rebuilds the response around its body, which on @hono/node-server turns
  // a plain text answer into a stream (a third of a request's CPU). Only a response whose
  // headers are immutable (one from fetch()) takes that way.
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

/**
 * The Hono adapter: puts the request's session at `c.get("session")` (and `c.var.session`).
 * Every write is awaited inside the handler; the session's cookie goes on the handler's
 * response. A session error that carries a status (a store failure: 503 with `Retry-After`;
 * a race with a login: 409; a `Secure` cookie over plain HTTP: 403) is answered with that
 * status and the same JSON body as the node:http adapter; a store failure or a race with a
 * login hands out no session cookie. Works on any runtime; on `@hono/node-server` the socket
 * tells whether the request came over TLS. Use `@hono/node-server` 2.x: 1.x loses headers set
 * on `c.res.headers` (where this middleware sets them) when a middleware before it rebuilds the
 * response, such as `compress` (honojs/node-server#304).
 *
 * ```ts
 * const app = new Hono().use(sessionMiddleware(manager));
 * app.get("/", async (c) => c.text(`visit ${await c.var.session.increment("visits")}`));
 * ```
 */
export function sessionMiddleware(manager: SessionManager): MiddlewareHandler<SessionEnv> {
  return async function session(c, next) {
    let answered = false;
    const headers = sessionHeaders(() => answered);
    c.set("session", manager.open(requestInfoOf(c), headers));
    await next();
    answered = true;
    // Hono has already turned a handler's error into c.res (app.onError): a session error gets its own answer.
    const answer = c.error === undefined ? undefined : sessionErrorAnswer(c.error);
    if (answer !== undefined) c.res = new Response(answer.body, { status: answer.status, headers: answer.headers });
    putSessionHeaders(c, headers);
  };
}
