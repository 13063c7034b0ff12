import type { FastifyPluginCallback, FastifyReply } from "fastify";
import fp from "fastify-plugin";
import { SessionConfigError } from "../core/errors.js";
import type { SessionManager } from "../core/manager.js";
import type { Session } from "../core/session.js";
import { cookieList, headerText, requestInfoOf, type SessionHeaders, sessionHeaders, varyWithCookie } from "./http.js";

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
 * Where a reply keeps its session's headers until `onSend`, which every reply Fastify sends
 * goes through (an error reply included). A reply decoration, not a WeakMap beside the
 * replies: one WeakMap entry per request made the young-generation GC a fifth of the CPU.
 */
const sessionHeadersKey = Symbol("atomic-session headers");

/**
 * `null` until `onRequest` fills it in; `undefined` in a plugin context created before this
 * plugin registered (Fastify copied the reply's shape then), when an earlier `onRequest` hook
 * answered and ours never ran.
 */
type ReplyWithSession = FastifyReply & { [sessionHeadersKey]?: SessionHeaders | null };

/**
 * Puts the session's headers on a reply about to be sent: its cookie beside the application's
 * (`reply.header("set-cookie")` appends) with `Cache-Control: no-store`, and `Cookie` added to
 * the `Vary` the application set. Doing it here, not when the session writes, means nothing
 * the handler does to its own headers afterwards can drop or undo it.
 */
function putSessionHeaders(reply: FastifyReply, session: SessionHeaders): void {
  if (session.cookies.length > 0) {
    const present = cookieList(reply.getHeader("set-cookie"));
    for (const cookie of session.cookies) if (!present.includes(cookie)) reply.header("set-cookie", cookie);
    reply.header("cache-control", "no-store");
  }
  if (session.varies) reply.header("vary", varyWithCookie(headerText(reply.getHeader("vary"))));
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
  fastify.decorateReply(sessionHeadersKey, null, []);
  fastify.addHook("onRequest", function openSession(request, reply, hookDone) {
    // reply.sent covers a hijacked reply, whose headers Fastify no longer controls.
    const headers = sessionHeaders(() => reply.sent || reply.raw.headersSent);
    (reply as ReplyWithSession)[sessionHeadersKey] = headers;
    request.session = manager.open(requestInfoOf(request.raw), headers);
    hookDone();
  });
  fastify.addHook("onSend", function sendSessionHeaders(_request, reply, payload, hookDone) {
    const headers = (reply as ReplyWithSession)[sessionHeadersKey];
    if (headers) putSessionHeaders(reply, headers);
    hookDone(null, payload);
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
