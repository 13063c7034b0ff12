/**
 * Requests without HTTP, for tests: a session opened on a manager with the cookie a browser
 * would send, and what the core put on the response.
 * @module
 */
import { SessionManager, type SessionManagerOptions } from "../core/manager.js";
import type { Session } from "../core/session.js";
import type { SessionStore } from "../core/store.js";

/** A response as the core sees it: the Set-Cookie it was given, whether it varies by cookie, and whether headers went out. */
export interface FakeResponse {
  cookie: string | undefined;
  /** The Set-Cookies appended beside the session's (clearing a legacy cookie). */
  appended: string[];
  varies: boolean;
  headersSent: boolean;
}

/** A request's session against `manager`, with the cookie a browser would send, and what it answers. */
export function openSession(
  manager: SessionManager,
  cookie?: string,
  userAgent = "vitest",
  encrypted = false,
): { session: Session; response: FakeResponse } {
  const response: FakeResponse = { cookie: undefined, appended: [], varies: false, headersSent: false };
  let issued: string | undefined;
  const session = manager.open(
    { cookieHeader: cookie, encrypted, forwardedProto: undefined, userAgent },
    {
      setCookie: (value) => {
        issued = value;
        response.cookie = value;
        response.varies = true;
      },
      withdrawCookie: () => {
        if (response.cookie === issued) response.cookie = undefined;
      },
      appendCookie: (value) => {
        response.appended.push(value);
        response.varies = true;
      },
      varyOnCookie: () => {
        response.varies = true;
      },
      headersSent: () => response.headersSent,
    },
  );
  return { session, response };
}

/** The `name=value` pair a browser would send back for a `Set-Cookie` value. */
export function cookiePair(setCookie: string | undefined): string {
  if (setCookie === undefined) throw new Error("expected a Set-Cookie, got none");
  return setCookie.split(";", 1)[0] as string;
}

/** The cookie's value (the session ID, possibly signed). */
export function cookieValue(setCookie: string | undefined): string {
  return cookiePair(setCookie).split("=", 2)[1] as string;
}

/** A store wrapper that counts the calls made to each operation: one call is one round trip for every store we ship. */
export function countingStore(store: SessionStore): { store: SessionStore; calls: Map<string, number>; total(): number; reset(): void } {
  const calls = new Map<string, number>();
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.set(String(property), (calls.get(String(property)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    store: counted,
    calls,
    total: () => [...calls.values()].reduce((sum, n) => sum + n, 0),
    reset: () => calls.clear(),
  };
}

/** A manager on `store` with `options`. */
export function managerFor(store: SessionStore, options: Partial<SessionManagerOptions> = {}): SessionManager {
  return new SessionManager({ store, ...options });
}
