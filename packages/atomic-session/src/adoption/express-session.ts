/**
 * Moving from express-session + connect-redis without logging anyone out: the sessions
 * connect-redis keeps in Redis, read for the manager's `adopt` option.
 *
 * ```ts
 * const manager = new SessionManager({
 *   store: new RedisStore({ client }),
 *   adopt: expressSessionAdoption({ client, secrets: [process.env.OLD_SESSION_SECRET], userField: "user" }),
 * });
 * ```
 *
 * What it reads, as express-session and connect-redis 9 write them:
 * - the cookie (default `connect.sid`): `s:<id>.<signature>`, percent-encoded (`s%3A…`), the
 *   signature being cookie-signature's: HMAC-SHA256 of the ID, base64 without `=` padding.
 *   It is checked against each secret in constant time; an unsigned or tampered cookie is never adopted;
 * - the record: `SET <prefix><id> <JSON> EX <ttl>`, the JSON being `{"cookie":{…}, …data}`.
 *
 * Taking a record replaces it, in one Lua script, by a marker that holds express-session's
 * shape (so that an express-session instance still running sees an empty session rather than
 * failing) and expires when the core says. Every command touches one key: Redis Cluster works.
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { parse } from "cookie";
import type { LegacyCookieReading, LegacyLoadResult, LegacySession, LegacySessionSource, LegacyTakeResult } from "../core/adoption.js";
import { resolveCookieOptions, SessionCookie } from "../core/cookie.js";
import { SessionConfigError } from "../core/errors.js";
import { isWellFormed } from "../core/values.js";
import { type AnyRedisClient, detectClient, type RedisConnection, wrapClient } from "../stores/redis/client.js";
import type { LuaScript } from "../stores/redis/scripts.js";

export interface ExpressSessionAdoptionOptions {
  /**
   * A client on the Redis connect-redis used, connected by the application, which owns it:
   * node-redis v5 (`createClient()`, `createCluster()`, `createSentinel()`) or ioredis v5
   * (the one given to `RedisStore` will do).
   */
  client: AnyRedisClient;
  /** express-session's `secret`: every secret that signed cookies still in browsers. */
  secrets: string | readonly string[];
  /** express-session's `name`. Default `"connect.sid"`. */
  cookieName?: string;
  /** express-session's `cookie.path`, so that the clearing `Set-Cookie` reaches the browser's cookie. Default `"/"`. */
  cookiePath?: string;
  /** express-session's `cookie.domain`, for the same reason. Default none. */
  cookieDomain?: string;
  /** connect-redis's `prefix`. Default `"sess:"`. */
  prefix?: string;
  /**
   * Where the session data holds the logged-in user: a key (`"user"` for
   * `req.session.user = "alice"`) whose string (or integer) becomes the session's user, as
   * `login()` binds it; or a function that picks it out, such as `(data) => data.user?.id`.
   * Sessions without it are adopted anonymous. Default: none (every session anonymous).
   */
  userField?: string | ((data: Readonly<Record<string, unknown>>) => unknown);
}

const DEFAULT_COOKIE_NAME = "connect.sid";
const DEFAULT_PREFIX = "sess:";
const MAX_PREFIX_LENGTH = 256;
/** Longest legacy ID read (express-session's own are 32 characters; `genid` may make others). */
const MAX_ID_LENGTH = 256;
/** cookie-signature's signature: the 32 bytes of an HMAC-SHA256 in base64, less its one `=`. */
const SIGNATURE = /^[A-Za-z0-9+/]{43}$/;
/** The field that tells an adoption marker from a session. */
const MARKER_FIELD = "atomic-session:adopted";

/**
 * take. KEYS[1] the legacy key. ARGV: the record as `load` read it, the marker, when the
 * marker expires (ms since the epoch, decimal text). Replaces the record by the marker only
 * if it is still the one read. A refused write (OOM) fails before anything changed.
 */
const TAKE_SOURCE = `
local current = redis.call('GET', KEYS[1])
if not current then return 'gone' end
if current == ARGV[2] then return 'adopted' end
if current ~= ARGV[1] then return 'changed' end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 'taken'
`;
const TAKE: LuaScript = {
  name: "express-session take",
  source: TAKE_SOURCE,
  sha1: createHash("sha1").update(TAKE_SOURCE).digest("hex"),
};
const TAKE_RESULTS = new Set<unknown>(["taken", "changed", "adopted", "gone"]);

/** The legacy session source for `SessionManager`'s `adopt` option; see the module comment. */
export function expressSessionAdoption(options: ExpressSessionAdoptionOptions): LegacySessionSource {
  return new ExpressSessionAdoption(options);
}

class ExpressSessionAdoption implements LegacySessionSource {
  readonly kind = "express-session";
  readonly cookieName: string;
  readonly #redis: RedisConnection;
  readonly #secrets: readonly string[];
  readonly #prefix: string;
  readonly #userField: ExpressSessionAdoptionOptions["userField"];
  readonly #cookie: SessionCookie;
  readonly #marker: string;

  constructor(options: ExpressSessionAdoptionOptions) {
    const fail = (message: string): never => {
      throw new SessionConfigError(`expressSessionAdoption: ${message}`);
    };
    if (typeof options !== "object" || options === null) fail("needs options: { client, secrets }");
    const {
      client,
      secrets,
      cookieName = DEFAULT_COOKIE_NAME,
      cookiePath = "/",
      cookieDomain,
      prefix = DEFAULT_PREFIX,
      userField,
    } = options;
    const detected = detectClient(client);
    if (typeof detected === "string") fail(detected);
    const secretList = typeof secrets === "string" ? [secrets] : secrets;
    if (
      !Array.isArray(secretList) ||
      secretList.length === 0 ||
      !secretList.every((secret) => typeof secret === "string" && secret !== "")
    ) {
      fail("secrets must be express-session's secret: a non-empty string, or an array of them");
    }
    if (typeof prefix !== "string" || prefix.length > MAX_PREFIX_LENGTH)
      fail(`prefix must be a string of at most ${MAX_PREFIX_LENGTH} characters`);
    if (userField !== undefined && typeof userField !== "function" && (typeof userField !== "string" || userField === "")) {
      fail('userField must be the key that holds the user (such as "user") or a function that returns it');
    }
    try {
      // The clearing cookie is the legacy cookie's name, path and domain with no value: the core's cookie serialises it.
      this.#cookie = new SessionCookie(resolveCookieOptions({ name: cookieName, path: cookiePath, domain: cookieDomain }), []);
    } catch (error) {
      throw new SessionConfigError(
        `expressSessionAdoption: ${(error as Error).message.replace(/\bcookie\.(name|path|domain)\b/, (_, part: string) => `cookie${part[0]?.toUpperCase()}${part.slice(1)}`)}`,
      );
    }
    this.cookieName = cookieName;
    this.#redis = wrapClient(detected as Exclude<typeof detected, string>);
    this.#secrets = secretList as readonly string[];
    this.#prefix = prefix;
    this.#userField = userField;
    this.#marker = JSON.stringify({
      cookie: { originalMaxAge: null, expires: null, httpOnly: true, path: cookiePath },
      [MARKER_FIELD]: true,
    });
  }

  readCookie(cookieHeader: string | undefined): LegacyCookieReading {
    if (cookieHeader === undefined || cookieHeader === "") return { kind: "absent" };
    // As express-session reads it: the `cookie` package's parse (the first of a name, percent-decoded).
    const value = parse(cookieHeader)[this.cookieName];
    if (value === undefined || value === "") return { kind: "absent" };
    if (!value.startsWith("s:")) return { kind: "invalid", reason: "unsigned" };
    const dot = value.lastIndexOf(".");
    const id = value.slice(2, dot);
    const signature = value.slice(dot + 1);
    if (dot < 3 || id.length > MAX_ID_LENGTH || !isWellFormed(id) || !SIGNATURE.test(signature)) {
      return { kind: "invalid", reason: "malformed signed cookie" };
    }
    const given = Buffer.from(signature, "latin1");
    for (const secret of this.#secrets) {
      const expected = Buffer.from(createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, ""), "latin1");
      if (given.length === expected.length && timingSafeEqual(given, expected)) return { kind: "valid", id };
    }
    return { kind: "invalid", reason: "bad signature" };
  }

  async load(id: string): Promise<LegacyLoadResult> {
    const key = this.#prefix + id;
    const version = await this.#redis.command(key, ["GET", key]);
    if (typeof version !== "string") return "gone";
    let record: unknown;
    try {
      record = JSON.parse(version);
    } catch {
      return { refused: "its record is not JSON (a connect-redis serializer other than JSON?)" };
    }
    if (typeof record !== "object" || record === null || Array.isArray(record)) return { refused: "its record is not a JSON object" };
    const fields = record as Record<string, unknown>;
    if (Object.hasOwn(fields, MARKER_FIELD)) return "adopted";
    const data = new Map(Object.entries(fields).filter(([name]) => name !== "cookie"));
    const userField = this.#userField;
    const user = typeof userField === "function" ? userField(fields) : userField === undefined ? undefined : data.get(userField);
    let userId: string | undefined;
    if (typeof user === "string") userId = user;
    else if (Number.isSafeInteger(user)) userId = String(user);
    else if (user !== undefined && user !== null) {
      const held = Array.isArray(user) ? "an array" : typeof user === "object" ? "an object" : `a ${typeof user}`;
      return { refused: `its user field holds ${held}, not a user ID: give userField as a function that returns the ID` };
    }
    const expires = (fields.cookie as { expires?: unknown } | undefined)?.expires;
    const persistent = typeof expires === "string" ? true : expires === null ? false : undefined;
    const session: LegacySession = { data, userId, persistent, version };
    return session;
  }

  async take(id: string, session: LegacySession, markerExpiresAt: number): Promise<LegacyTakeResult> {
    const key = this.#prefix + id;
    const reply = await this.#redis.runScript(TAKE, [key], [session.version, this.#marker, String(Math.ceil(markerExpiresAt))]);
    if (!TAKE_RESULTS.has(reply)) throw new Error(`Redis answered the express-session take script with ${JSON.stringify(reply)}`);
    return reply as LegacyTakeResult;
  }

  clearCookie(secure: boolean): string {
    return this.#cookie.clear(secure);
  }
}
