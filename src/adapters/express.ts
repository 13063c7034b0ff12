import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { SessionManager } from "../core/manager.js";
import type { AppSessionData, Session } from "../core/session.js";
import { requestInfoOf, responseHeadersOf } from "./node.js";

declare global {
  namespace Express {
    interface Request {
      /** The request's session, set by `sessionMiddleware`. Its data type is the one declared in `SessionTypes`. */
      session: Session<AppSessionData>;
    }
  }
}

/**
 * The Express 5 adapter: puts the request's session on `req.session`. Every write is
 * awaited inside the handler, so nothing happens after the handler answers and nothing
 * patches the response. Store failures reject with `StoreUnavailableError`, which carries
 * `status: 503` and a `Retry-After` header that Express's error handling sends; the
 * session's cookie is withdrawn from that response.
 *
 * ```ts
 * app.use(sessionMiddleware(manager));
 * app.get("/", async (req, res) => {
 *   res.send(`visit ${await req.session.increment("visits")}`);
 * });
 * ```
 */
export function sessionMiddleware(manager: SessionManager<AppSessionData>): RequestHandler {
  return function session(req: Request, res: Response, next: NextFunction) {
    // The core takes the cookie back off the response when the store fails (withdrawCookie):
    // Express has no hook between a handler's error and the error response.
    req.session = manager.open(requestInfoOf(req), responseHeadersOf(res));
    next();
  };
}
