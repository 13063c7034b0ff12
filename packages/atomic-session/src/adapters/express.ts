import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { SessionManager } from "../core/manager.js";
import type { Session } from "../core/session.js";
import { nodeResponseHeaders, requestInfoOf } from "./http.js";

declare global {
  namespace Express {
    interface Request {
      /** The request's session, set by `sessionMiddleware`. Its data type is the one declared in `SessionTypes`. */
      session: Session;
    }
  }
}

/**
 * The Express adapter (Express 4 and 5): puts the request's session on `req.session`. Every
 * write is awaited inside the handler, so nothing happens after the handler answers and the
 * body is never held back. The session's cookie, `Cache-Control: no-store` and `Vary: Cookie`
 * go on when the headers are written, beside whatever the application set (`res.cookie()`,
 * `res.setHeader("Set-Cookie", …)`, `res.writeHead(200, { … })`). A session error carries
 * `status` (503 for a store failure, 409 for a race with a login, 403 for a `Secure` cookie
 * over plain HTTP), `headers` (`Retry-After`) and a message safe to show (its stack, which
 * Express's development error page prints, names no store), which Express's error handling
 * sends, without the session's cookie. On Express 4, pass a rejected write to `next(error)`
 * (Express 5 does it for async handlers).
 *
 * ```ts
 * app.use(sessionMiddleware(manager));
 * app.get("/", async (req, res) => {
 *   res.send(`visit ${await req.session.increment("visits")}`);
 * });
 * ```
 */
export function sessionMiddleware(manager: SessionManager): RequestHandler {
  return function session(req: Request, res: Response, next: NextFunction) {
    req.session = manager.open(requestInfoOf(req), nodeResponseHeaders(res));
    next();
  };
}
