import type { FastifyPluginCallback, FastifyReply } from "fastify";
import fp from "fastify-plugin";
import { SessionConfigError } from "../core/errors.js";
import type { SessionManager } from "../core/manager.js";
import type { ResponseHeaders, Session } from "../core/session.js";
import { requestInfoOf, varyWithCookie } from "./http.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's session, opened by `sessionPlugin`. Its data type is the one declared in `SessionTypes`. */
    session: Session;
  }
}

/** Options of `sessionPlugin`. */
export interface SessionPluginOptions {
  /** The application's sessions: one `SessionManager`, created once. */
  manager: SessionManager;
}

/**
 * How the core sets headers on a Fastify reply: the session's cookie replaces one it set
 * earlier in the request (the application's own cookies stay: `reply.header("set-cookie")`
 * appends), and travels with `Cache-Control: no-store` and `Vary: Cookie`. Fastify holds the
 * headers until it sends the reply, so nothing here touches the raw response.
 */
function replyHeadersOf(reply: FastifyReply): ResponseHeaders {
  let sent: string | undefined;
  const replaceSessionCookie = (value: string | undefined) => {
    const current = reply.getHeader("set-cookie");
    const list = current === undefined ? [] : Array.isArray(current) ? current.map(String) : [String(current)];
    const next = list.filter((cookie) => cookie !== sent);
    if (value !== undefined) next.push(value);
    // reply.header() appends to an existing Set-Cookie, so clear it first to replace ours.
    reply.removeHeader("set-cookie");
    if (next.length > 0) reply.header("set-cookie", next);
    sent = value;
  };
  const vary = () => {
    const current = reply.getHeader("vary");
    reply.header("vary", varyWithCookie(current === undefined ? undefined : String(current)));
  };
  return {
    setCookie(value) {
      replaceSessionCookie(value);
      reply.header("cache-control", "no-store");
      vary();
    },
    withdrawCookie() {
      if (sent !== undefined && !reply.raw.headersSent) replaceSessionCookie(undefined);
    },
    varyOnCookie: vary,
    // reply.sent covers a hijacked reply, whose headers Fastify no longer controls.
    headersSent: () => reply.sent || reply.raw.headersSent,
  };
}

const plugin: FastifyPluginCallback<SessionPluginOptions> = (fastify, options, done) => {
  const manager = options?.manager;
  if (typeof manager?.open !== "function") {
    done(
      new SessionConfigError(
        "sessionPlugin needs a SessionManager: register it with app.register(sessionPlugin, { manager: new SessionManager({ store }) })",
      ),
    );
    return;
  }
  // Fastify's convention for a per-request object: decorate with null up front, so every
  // request has the same shape, and fill it in from onRequest. (No dependencies: the [].)
  fastify.decorateRequest("session", null, []);
  fastify.addHook("onRequest", function openSession(request, reply, hookDone) {
    request.session = manager.open(requestInfoOf(request.raw), replyHeadersOf(reply));
    hookDone();
  });
  done();
};

/**
 * The Fastify 5 plugin: puts the request's session on `request.session`, opened in an
 * `onRequest` hook. Every write is awaited inside the handler, so nothing happens after the
 * handler answers. A session error carries `statusCode` (503 for a store failure, 409 for a
 * race with a login), `headers` (`Retry-After`) and a message safe to show, which Fastify's
 * error handler sends; the session's cookie is taken off that reply. Register it before the
 * routes that use sessions.
 *
 * ```ts
 * await app.register(sessionPlugin, { manager });
 * app.get("/", async (request) => `visit ${await request.session.increment("visits")}`);
 * ```
 */
export const sessionPlugin = fp(plugin, { fastify: "5.x", name: "atomic-session" });
