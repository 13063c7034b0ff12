import { SessionManager, type SessionManagerOptions } from "../../src/core/manager.js";
import type { Session, SessionData } from "../../src/core/session.js";
import type { SessionStore } from "../../src/core/store.js";

/** A response as the core sees it: the Set-Cookie it was given, and whether headers went out. */
export interface FakeResponse {
  cookie: string | undefined;
  headersSent: boolean;
}

/** A request's session against `manager`, with the cookie a browser would send, and what it answers. */
export function openSession<Data extends SessionData = SessionData>(
  manager: SessionManager<Data>,
  cookie?: string,
  userAgent = "vitest",
): { session: Session<Data>; response: FakeResponse } {
  const response: FakeResponse = { cookie: undefined, headersSent: false };
  const session = manager.open(
    { cookieHeader: cookie, encrypted: false, forwardedProto: undefined, userAgent },
    {
      setCookie: (value) => {
        response.cookie = value;
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

export function managerFor<Data extends SessionData = SessionData>(
  store: SessionStore,
  options: Partial<SessionManagerOptions> = {},
): SessionManager<Data> {
  return new SessionManager<Data>({ store, ...options });
}
