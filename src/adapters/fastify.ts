import type { FastifyPluginCallback, FastifyReply } from "fastify";
import fp from "fastify-plugin";
import { SessionConfigError } from "../core/errors.js";
import type { SessionManager } from "../core/manager.js";
import type { AppSessionData, ResponseHeaders, Session } from "../core/session.js";
import { requestInfoOf, varyWithCookie } from "./node.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's session, opened by `sessionPlugin`. Its data type is the one declared in `SessionTypes`. */
    session: Session<AppSessionData>;
  }
}

/** Options of `sessionPlugin`. */
export interface SessionPluginOptions {
  /** The application's sessions: one `SessionManager`, created once. */
  manager: SessionManager<AppSessionData>;
}

/**
 * How the core sets headers on a Fastify reply: the session's cookie replaces any it set
 * earlier in the request (other cookies stay), and travels with `Cache-Control: no-store`
 * and `Vary: Cookie`. Fastify holds the headers until it sends the reply, so nothing here
 * touches the raw response.
 */
function replyHeadersOf(reply: FastifyReply): ResponseHeaders & { withdrawCookie(): void } {
  let sent: string | undefined;
  const replaceSessionCookie = (value: string | undefined) => {
    const current = reply.getHeader("set-cookie");
    const list = current === undefined ? [] : Array.isArray(current) ? current : [String(current)];
    const others = list.filter((cookie) => cookie !== sent);
    const next = value === undefined ? others : [...others, value];
    // reply.header() appends to an existing Set-Cookie, so clear it first to replace ours.
    reply.removeHeader("set-cookie");
    if (next.length > 0) reply.header("set-cookie", next);
    sent = value;
  };
  return {
    setCookie(value) {
      replaceSessionCookie(value);
      reply.header("cache-control", "no-store");
      const vary = reply.getHeader("vary");
      reply.header("vary", varyWithCookie(vary === undefined ? undefined : String(vary)));
    },
    // reply.sent covers a hijacked reply, whose headers Fastify no longer controls.
    headersSent: () => reply.sent || reply.raw.headersSent,
    /** Removes the session's cookie from a reply that is about to report a failure. */
    withdrawCookie() {
      if (sent !== undefined && !reply.raw.headersSent) replaceSessionCookie(undefined);
    },
  };
}

const withdrawals = new WeakMap<FastifyReply, () => void>();

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
    const headers = replyHeadersOf(reply);
    withdrawals.set(reply, headers.withdrawCookie);
    request.session = manager.open(requestInfoOf(request.raw), headers);
    hookDone();
  });
  // Fastify's error handler sends the error's status and headers (503 and Retry-After for a
  // store failure) but keeps the headers already on the reply: take the session's cookie off.
  fastify.addHook("onError", function withdrawSessionCookie(_request, reply, _error, hookDone) {
    withdrawals.get(reply)?.();
    hookDone();
  });
  done();
};

/**
 * The Fastify 5 plugin: puts the request's session on `request.session`, opened in an
 * `onRequest` hook. Every write is awaited inside the handler, so nothing happens after the
 * handler answers. A store failure rejects with `StoreUnavailableError`, whose `statusCode`
 * (503) and `headers` (`Retry-After`) Fastify's error handler sends; the session's cookie is
 * taken off that reply. Register it before the routes that use sessions.
 *
 * ```ts
 * await app.register(sessionPlugin, { manager });
 * app.get("/", async (request) => `visit ${await request.session.increment("visits")}`);
 * ```
 */
export const sessionPlugin = fp(plugin, { fastify: "5.x", name: "sessionstore" });
