/**
 * What every adapter shares: the request facts the core needs, what the session decides about
 * the response's headers, how that goes on a Node response, `Vary`, and the one mapping from
 * a session error to an HTTP answer.
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

/** A header value as one string (a list joined with ", "), or `undefined`. */
export function headerText(value: OutgoingHttpHeader | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(", ") : String(value);
}

/** A `Set-Cookie` header value as a list of cookies. */
export function cookieList(value: OutgoingHttpHeader | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/**
 * What the session decided about this response's headers, kept until they go out: the
 * session's latest cookie (one set earlier in the request is replaced; a withdrawn one is
 * gone) and whether the answer depends on the cookie. Each adapter puts it on the response at
 * the last moment, in its framework's idiom, so that nothing the application does to its own
 * headers in between (`Set-Cookie`, `Vary`, `Cache-Control`) can drop or undo it.
 */
export interface SessionHeaders extends ResponseHeaders {
  /** The session's `Set-Cookie` value, when one goes out (with `Cache-Control: no-store`). */
  readonly cookie: string | undefined;
  /** Every `Set-Cookie` the session puts on: the appended ones (`appendCookie`), then its own. */
  readonly cookies: readonly string[];
  /** Whether the handler used its session, so the response carries `Vary: Cookie`. */
  readonly varies: boolean;
}

/** What one response's session decided, as a class: one object per request, its methods shared. */
class SessionHeaderState implements SessionHeaders {
  cookie: string | undefined;
  varies = false;
  #appended: string[] | undefined;

  constructor(readonly headersSent: () => boolean) {}

  get cookies(): readonly string[] {
    const appended = this.#appended ?? [];
    return this.cookie === undefined ? appended : [...appended, this.cookie];
  }

  setCookie(value: string): void {
    this.cookie = value;
    this.varies = true;
  }

  withdrawCookie(): void {
    this.cookie = undefined;
  }

  appendCookie(value: string): void {
    this.#appended ??= [];
    if (!this.#appended.includes(value)) this.#appended.push(value);
    this.varies = true;
  }

  varyOnCookie(): void {
    this.varies = true;
  }
}

/** Fresh {@link SessionHeaders} for one response; `headersSent` tells whether its headers went out. */
export function sessionHeaders(headersSent: () => boolean): SessionHeaders {
  return new SessionHeaderState(headersSent);
}

/**
 * How the core sets headers on a Node response (node:http and Express). The session's headers
 * are put on in the response's `writeHead`, through which every Node response sends its
 * headers (`res.write()`, `res.end()` and Express's `res.send()` included), as express-session's
 * `on-headers` does: the session's cookie beside the application's, `Cache-Control: no-store`
 * with it, and `Cookie` added to the application's `Vary`. So `res.setHeader("Set-Cookie", …)`
 * or `res.writeHead(200, { "Set-Cookie": … })` after a session write cannot drop the session's
 * cookie (the record would exist, and nobody would hold it). The body is never held or patched.
 */
export function nodeResponseHeaders(res: ServerResponse): SessionHeaders {
  const headers = sessionHeaders(() => res.headersSent);
  const writeHead = res.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
  res.writeHead = function writeHeadWithSession(this: ServerResponse, ...args: unknown[]) {
    if (!this.headersSent && (headers.cookie !== undefined || headers.varies)) {
      // writeHead(status, [message], [headers]): headers given here replace the ones set before, so they get ours too.
      const last = args.length - 1;
      const given = args[last];
      if (last > 0 && typeof given === "object" && given !== null) {
        args[last] = Array.isArray(given)
          ? withSessionHeaderList(given, headers)
          : withSessionHeaderObject(given as OutgoingHttpHeaders, headers);
      }
      if (headers.cookies.length > 0) {
        const cookies = cookieList(this.getHeader("set-cookie"));
        this.setHeader("Set-Cookie", [...cookies, ...headers.cookies.filter((cookie) => !cookies.includes(cookie))]);
        this.setHeader("Cache-Control", "no-store");
      }
      if (headers.varies) this.setHeader("Vary", varyWithCookie(headerText(this.getHeader("vary"))));
    }
    return writeHead.apply(this, args);
  } as typeof res.writeHead;
  return headers;
}

/** A copy of writeHead's headers object with the session's headers merged in (never the caller's object: it may be shared). */
function withSessionHeaderObject(given: OutgoingHttpHeaders, session: SessionHeaders): OutgoingHttpHeaders {
  const merged: OutgoingHttpHeaders = { ...given };
  for (const [name, value] of Object.entries(given)) {
    const header = name.toLowerCase();
    if (header === "set-cookie" && session.cookies.length > 0) {
      const cookies = cookieList(value);
      merged[name] = [...cookies, ...session.cookies.filter((cookie) => !cookies.includes(cookie))];
    } else if (header === "cache-control" && session.cookies.length > 0) {
      merged[name] = "no-store";
    } else if (header === "vary" && session.varies) {
      merged[name] = varyWithCookie(headerText(value));
    }
  }
  return merged;
}

/**
 * The same for writeHead's flat `[name, value, name, value…]` list. Once any header was set,
 * Node applies the list with `setHeader`, so a second `Set-Cookie` entry would replace the
 * first: one entry carries every cookie (the application's, then the session's).
 */
function withSessionHeaderList(given: readonly unknown[], session: SessionHeaders): unknown[] {
  const merged: unknown[] = [];
  let cookies: string[] | undefined;
  for (let index = 0; index + 1 < given.length; index += 2) {
    const header = String(given[index]).toLowerCase();
    let value = given[index + 1];
    if (header === "set-cookie") {
      if (cookies !== undefined) {
        cookies.push(...cookieList(value as OutgoingHttpHeader));
        continue;
      }
      cookies = cookieList(value as OutgoingHttpHeader);
      value = cookies;
    } else if (header === "cache-control" && session.cookies.length > 0) {
      value = "no-store";
    } else if (header === "vary" && session.varies) {
      value = varyWithCookie(headerText(value as OutgoingHttpHeader));
    }
    merged.push(given[index], value);
  }
  if (given.length % 2 === 1) merged.push(given[given.length - 1]);
  if (cookies !== undefined) for (const cookie of session.cookies) if (!cookies.includes(cookie)) cookies.push(cookie);
  return merged;
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
