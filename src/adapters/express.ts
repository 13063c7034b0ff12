import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { SessionManager } from "../core/manager.js";
import type { Session, SessionData } from "../core/session.js";
import { requestInfoOf, responseHeadersOf } from "./node.js";

declare global {
  namespace Express {
    interface Request {
      /** The request's session, set by `sessionMiddleware`. Narrow its data type with `SessionManager<Data>`. */
      session: Session;
    }
  }
}

/**
 * The Express 5 adapter: puts the request's session on `req.session`. Every write is
 * awaited inside the handler, so nothing happens after the handler answers and nothing
 * patches the response. Store failures reject with `StoreUnavailableError`, which carries
 * `status: 503` and a `Retry-After` header that Express's error handling sends.
 *
 * ```ts
 * app.use(sessionMiddleware(manager));
 * app.get("/", async (req, res) => {
 *   res.send(`visit ${await req.session.increment("visits")}`);
 * });
 * ```
 */
export function sessionMiddleware<Data extends SessionData>(manager: SessionManager<Data>): RequestHandler {
  return function session(req: Request, res: Response, next: NextFunction) {
    req.session = manager.open(requestInfoOf(req), responseHeadersOf(res)) as unknown as Session;
    next();
  };
}
