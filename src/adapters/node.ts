import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { SessionError, StoreUnavailableError } from "../core/errors.js";
import type { RequestInfo, SessionManager } from "../core/manager.js";
import type { ResponseHeaders, Session, SessionData } from "../core/session.js";

export type SessionRequestHandler<Data extends SessionData> = (
  req: IncomingMessage,
  res: ServerResponse,
  session: Session<Data>,
) => unknown | Promise<unknown>;

export interface WithSessionsOptions {
  /**
   * Called with errors the handler threw that are not the session's own (those become
   * their HTTP status, a store failure 503). The response has already been answered 500
   * when the headers were still unsent. Default: `console.error`.
   */
  onError?: (error: unknown, req: IncomingMessage) => void;
}

/** The request facts the core needs, read from a Node request. */
export function requestInfoOf(req: IncomingMessage): RequestInfo {
  const forwarded = req.headers["x-forwarded-proto"];
  return {
    cookieHeader: req.headers.cookie,
    encrypted: (req.socket as TLSSocket).encrypted === true,
    forwardedProto: Array.isArray(forwarded) ? forwarded[0] : forwarded,
    userAgent: req.headers["user-agent"],
  };
}

/**
 * How the core sets headers on a Node response: the session's cookie replaces any it set
 * earlier in the request, and travels with `Cache-Control: no-store` and `Vary: Cookie`
 * so that no cache hands one visitor's cookie to another.
 */
export function responseHeadersOf(res: ServerResponse): ResponseHeaders & { withdrawCookie(): void } {
  let sent: string | undefined;
  const others = () => {
    const current = res.getHeader("set-cookie");
    const list = current === undefined ? [] : Array.isArray(current) ? current : [String(current)];
    return list.filter((value) => value !== sent);
  };
  return {
    setCookie(value) {
      res.setHeader("Set-Cookie", [...others(), value]);
      sent = value;
      res.setHeader("Cache-Control", "no-store");
      const vary = res.getHeader("vary");
      res.setHeader("Vary", varyWithCookie(vary === undefined ? undefined : String(vary)));
    },
    headersSent: () => res.headersSent,
    /** Removes the session's cookie from a response that is about to report a failure. */
    withdrawCookie() {
      if (sent === undefined || res.headersSent) return;
      const rest = others();
      if (rest.length === 0) res.removeHeader("Set-Cookie");
      else res.setHeader("Set-Cookie", rest);
      sent = undefined;
    },
  };
}

/**
 * A `Vary` value that names `Cookie`: the current one with `Cookie` added, unless it already
 * names `Cookie` or `*`. A response that carries or depends on a session varies by cookie,
 * so that no shared cache hands one visitor's answer to another.
 */
export function varyWithCookie(vary: string | undefined): string {
  if (vary === undefined || vary.trim() === "") return "Cookie";
  return /(^|,)\s*(cookie|\*)\s*(,|$)/i.test(vary) ? vary : `${vary}, Cookie`;
}

/**
 * The session as an adapter hands it to application code, with `onFailure` standing between
 * a failed session operation and its caller: it sees the error first and returns the error
 * the caller gets instead. Adapters use it where the framework has no hook between a
 * handler's error and the error response (Express), or expects errors of its own type (Hono).
 */
export function interceptFailures<Data extends SessionData>(session: Session<Data>, onFailure: (error: unknown) => unknown): Session<Data> {
  const methods = new Map<PropertyKey, (...args: unknown[]) => unknown>();
  return new Proxy(session, {
    get(target, property) {
      // The session itself is the receiver, not the proxy: its private fields live on it.
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      let method = methods.get(property);
      if (method === undefined) {
        method = (...args: unknown[]) => {
          const result: unknown = value.apply(target, args);
          return result instanceof Promise
            ? result.catch((error: unknown) => {
                throw onFailure(error);
              })
            : result;
        };
        methods.set(property, method);
      }
      return method;
    },
  });
}

/**
 * The node:http adapter: wraps a request handler so that it receives the request's
 * session. Store failures become `503` with `Retry-After` (and no session cookie);
 * other session errors their own status; anything else `500`.
 *
 * ```ts
 * const manager = new SessionManager({ store: new SqliteStore() });
 * http.createServer(withSessions(manager, async (req, res, session) => {
 *   const visits = await session.increment("visits");
 *   res.end(`visit ${visits}\n`);
 * })).listen(3000);
 * ```
 */
export function withSessions<Data extends SessionData>(
  manager: SessionManager<Data>,
  handler: SessionRequestHandler<Data>,
  options: WithSessionsOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const onError = options.onError ?? ((error: unknown) => console.error(error));
  return async (req, res) => {
    const headers = responseHeadersOf(res);
    try {
      await handler(req, res, manager.open(requestInfoOf(req), headers));
    } catch (error) {
      if (!(error instanceof SessionError) || !("status" in error)) onError(error, req);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      headers.withdrawCookie();
      sendError(res, error);
    }
  };
}

function sendError(res: ServerResponse, error: unknown): void {
  const status = error instanceof SessionError && "status" in error && typeof error.status === "number" ? error.status : 500;
  const message =
    error instanceof StoreUnavailableError ? "session store unavailable" : status === 500 ? "internal error" : (error as Error).message;
  const extra = error instanceof StoreUnavailableError ? error.headers : {};
  res.writeHead(status, { ...extra, "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
  res.end(`${JSON.stringify({ error: message })}\n`);
}
