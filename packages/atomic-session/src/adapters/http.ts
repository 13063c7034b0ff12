/**
 * What every adapter shares: the request facts the core needs, how the session's headers go
 * on a Node response, `Vary`, and the one mapping from a session error to an HTTP answer.
 * Internal: adapters import it; it is not a public subpath.
 * @module
 */
import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { SessionError } from "../core/errors.js";
import type { RequestInfo } from "../core/manager.js";
import type { ResponseHeaders } from "../core/session.js";

/** The request facts the core needs, read from a Node request. */
export function requestInfoOf(req: IncomingMessage): RequestInfo {
  const forwarded = req.headers["x-forwarded-proto"];
  return {
    cookieHeader: req.headers.cookie,
    encrypted: (req.socket as TLSSocket | undefined)?.encrypted === true,
    forwardedProto: Array.isArray(forwarded) ? forwarded[0] : forwarded,
    userAgent: req.headers["user-agent"],
  };
}

/**
 * A `Vary` value that names `Cookie`: the current one with `Cookie` added, unless it already
 * names `Cookie` or `*`. A response that depends on a session varies by cookie, so that no
 * shared cache hands one visitor's answer to another.
 */
export function varyWithCookie(vary: string | undefined): string {
  if (vary === undefined || vary.trim() === "") return "Cookie";
  return /(^|,)\s*(cookie|\*)\s*(,|$)/i.test(vary) ? vary : `${vary}, Cookie`;
}

function headerText(value: OutgoingHttpHeader | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function cookieList(value: OutgoingHttpHeader | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/**
 * How the core sets headers on a Node response (node:http and Express). The session's cookie
 * replaces one it set earlier in the request and travels with `Cache-Control: no-store` and
 * `Vary: Cookie`.
 *
 * The application's own cookies must not replace it: `res.setHeader("Set-Cookie", …)` or
 * `res.writeHead(200, { "Set-Cookie": … })` after a session write would otherwise drop the
 * session's cookie (the record would exist, and nobody would hold it). So this response's
 * `writeHead` — through which every Node response sends its headers, `res.end()` included —
 * puts the session's cookie back beside the application's just before the headers go out,
 * as express-session's `on-headers` does. The body is never held or patched.
 */
export function nodeResponseHeaders(res: ServerResponse): ResponseHeaders {
  let sessionCookie: string | undefined;
  let guarded = false;
  const guard = () => {
    if (guarded) return;
    guarded = true;
    const writeHead = res.writeHead;
    res.writeHead = function writeHeadKeepingSessionCookie(this: ServerResponse, ...args: unknown[]) {
      if (sessionCookie !== undefined && !this.headersSent) {
        // writeHead(status, [message], headers): headers given here are applied after ours.
        const last = args[args.length - 1];
        if (typeof last === "object" && last !== null) {
          const given = last as OutgoingHttpHeaders | OutgoingHttpHeader[];
          if (!Array.isArray(given)) {
            const name = Object.keys(given).find((header) => header.toLowerCase() === "set-cookie");
            if (name !== undefined) {
              const cookies = cookieList(given[name]);
              if (!cookies.includes(sessionCookie)) given[name] = [...cookies, sessionCookie];
            }
          }
        }
        const current = cookieList(this.getHeader("set-cookie"));
        if (!current.includes(sessionCookie)) this.setHeader("Set-Cookie", [...current, sessionCookie]);
      }
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as typeof res.writeHead;
  };
  const vary = () => {
    if (!res.headersSent) res.setHeader("Vary", varyWithCookie(headerText(res.getHeader("vary"))));
  };
  return {
    setCookie(value) {
      guard();
      const others = cookieList(res.getHeader("set-cookie")).filter((cookie) => cookie !== sessionCookie);
      res.setHeader("Set-Cookie", [...others, value]);
      sessionCookie = value;
      res.setHeader("Cache-Control", "no-store");
      vary();
    },
    withdrawCookie() {
      if (sessionCookie === undefined || res.headersSent) return;
      const rest = cookieList(res.getHeader("set-cookie")).filter((cookie) => cookie !== sessionCookie);
      if (rest.length === 0) res.removeHeader("Set-Cookie");
      else res.setHeader("Set-Cookie", rest);
      sessionCookie = undefined;
    },
    varyOnCookie: vary,
    headersSent: () => res.headersSent,
  };
}

/** An HTTP answer for a session error: status, headers and a JSON body. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The one mapping from a session error to an HTTP answer: a `SessionError` that carries a
 * status (503 store unavailable, with `Retry-After`; 409 conflict or rotated; 403 insecure
 * request) answers that status with its message, which never names the store or what the
 * backend said. Anything else is not the session's to answer: `undefined`.
 */
export function sessionErrorAnswer(error: unknown): ErrorAnswer | undefined {
  if (!(error instanceof SessionError) || !("status" in error) || typeof error.status !== "number") return undefined;
  const extra = "headers" in error && typeof error.headers === "object" ? (error.headers as Record<string, string>) : {};
  return {
    status: error.status,
    headers: { ...extra, "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" },
    body: `${JSON.stringify({ error: error.message })}\n`,
  };
}
