import type { IncomingMessage, ServerResponse } from "node:http";
import type { SessionManager } from "../core/manager.js";
import type { Session } from "../core/session.js";
import { nodeResponseHeaders, requestInfoOf, sessionErrorAnswer } from "./http.js";

/** A node:http request handler that also receives the request's session. */
export type SessionRequestHandler = (req: IncomingMessage, res: ServerResponse, session: Session) => unknown;

export interface WithSessionsOptions {
  /**
   * Called with errors the handler threw that are not the session's own (those become their
   * HTTP status: a store failure 503, a race with a login 409). The response has already been
   * answered 500 (or, when its headers had gone out, cut off). Default: `console.error`.
   */
  onError?: (error: unknown, req: IncomingMessage) => void;
}

/**
 * The node:http adapter: wraps a request handler so that it receives the request's session.
 * Session errors become their status (a store failure `503` with `Retry-After`, and no
 * session cookie); anything else `500`. Every write is awaited inside the handler, so nothing
 * happens after it answers. The session's cookie, `Cache-Control: no-store` and `Vary: Cookie`
 * go on when the headers are written, beside the handler's own (`res.setHeader("Set-Cookie", …)`
 * or `res.writeHead(200, { "Set-Cookie": … })` cannot drop the session's cookie).
 *
 * ```ts
 * const manager = new SessionManager({ store: new SqliteStore() });
 * http.createServer(withSessions(manager, async (req, res, session) => {
 *   const visits = await session.increment("visits");
 *   res.end(`visit ${visits}\n`);
 * })).listen(3000);
 * ```
 */
export function withSessions(
  manager: SessionManager,
  handler: SessionRequestHandler,
  options: WithSessionsOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const onError = options.onError ?? ((error: unknown) => console.error(error));
  return async function sessionHandler(req, res) {
    const headers = nodeResponseHeaders(res);
    try {
      await handler(req, res, manager.open(requestInfoOf(req), headers));
    } catch (error) {
      const answer = sessionErrorAnswer(error);
      if (res.headersSent) {
        res.destroy();
      } else {
        // Headers the handler set for its own body do not describe this one (as Express's finalhandler does).
        for (const name of res.getHeaderNames()) if (name.startsWith("content-")) res.removeHeader(name);
        const { status, headers: answerHeaders, body } = answer ?? INTERNAL_ERROR;
        res.writeHead(status, answerHeaders).end(body);
      }
      if (answer === undefined) onError(error, req);
    }
  };
}

const INTERNAL_ERROR = {
  status: 500,
  headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" },
  body: `${JSON.stringify({ error: "internal error" })}\n`,
};
