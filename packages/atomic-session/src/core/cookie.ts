import { createHmac, timingSafeEqual } from "node:crypto";
import { serialize } from "cookie";
import { SessionConfigError } from "./errors.js";
import { isWellFormedSessionId } from "./ids.js";

export interface CookieOptions {
  /**
   * Default `sessionID`. A `__Host-` name (recommended over HTTPS: the browser then refuses
   * the cookie from a sibling subdomain or a plain-HTTP page) requires `secure: true`,
   * `path: "/"` and no `domain`; a `__Secure-` name requires `secure: true`.
   */
  name?: string;
  /** Default `/`. Must start with `/`. */
  path?: string;
  /** Default none: the cookie goes back only to the host that set it. */
  domain?: string;
  /** Default `lax`. `none` requires `secure: true`. */
  sameSite?: "lax" | "strict" | "none";
  /** Default `true`. */
  httpOnly?: boolean;
  /**
   * `"auto"` (default): `Secure` when the request came over HTTPS (see `trustProxy`). `true`:
   * always `Secure`; a plain-HTTP request then gets no session (`InsecureRequestError`, 403).
   */
  secure?: boolean | "auto";
  /**
   * Default `true`: the cookie carries `Expires` = the session's absolute deadline, so it
   * survives a browser restart. `false`: a browser-session cookie. `login(user, { persistent })`
   * chooses per session ("remember me"). Either way the server enforces the timeouts.
   */
  persistent?: boolean;
  /** `Partitioned` (CHIPS): a cookie of an embedded third-party context, kept per top-level site. Requires `secure: true`. Default `false`. */
  partitioned?: boolean;
  /** `Priority` (Chrome): which cookies the browser evicts last when a site has too many. Default none. */
  priority?: "low" | "medium" | "high";
}

export interface ResolvedCookieOptions {
  name: string;
  path: string;
  domain: string | undefined;
  sameSite: "lax" | "strict" | "none";
  httpOnly: boolean;
  secure: boolean | "auto";
  persistent: boolean;
  partitioned: boolean;
  priority: "low" | "medium" | "high" | undefined;
}

const MIN_SECRET_LENGTH = 32;
const COOKIE_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 6265 path-value (printable ASCII but ";"), less "<", which the `cookie` package's serialize() also refuses. */
const PATH_PATTERN = /^\/[\u0020-\u003a\u003d-\u007e]*$/;
/** A host name, optionally with a leading dot (RFC 6265 domain-value). */
const DOMAIN_PATTERN = /^\.?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/**
 * Most valid-looking cookies of our name tried from one header, in order: each costs a store
 * lookup. Planted cookies beyond it hide the real one; a `__Host-` name keeps them out.
 */
const MAX_CANDIDATES = 16;

export function resolveCookieOptions(options: CookieOptions = {}): ResolvedCookieOptions {
  if (typeof options !== "object" || options === null) throw new SessionConfigError("cookie must be an object of cookie options");
  const resolved: ResolvedCookieOptions = {
    name: options.name ?? "sessionID",
    path: options.path ?? "/",
    domain: options.domain,
    sameSite: options.sameSite ?? "lax",
    httpOnly: options.httpOnly ?? true,
    secure: options.secure ?? "auto",
    persistent: options.persistent ?? true,
    partitioned: options.partitioned ?? false,
    priority: options.priority,
  };
  const fail = (message: string): never => {
    throw new SessionConfigError(message);
  };
  if (typeof resolved.name !== "string" || !COOKIE_NAME_PATTERN.test(resolved.name)) {
    fail(`cookie.name ${JSON.stringify(resolved.name)} is not a valid cookie name: use letters, digits and !#$%&'*+-.^_\`|~`);
  }
  if (typeof resolved.path !== "string" || !PATH_PATTERN.test(resolved.path)) {
    fail(`cookie.path ${JSON.stringify(resolved.path)} must start with "/" and hold only printable ASCII other than ";" and "<"`);
  }
  if (resolved.domain !== undefined && (typeof resolved.domain !== "string" || !DOMAIN_PATTERN.test(resolved.domain))) {
    fail(
      `cookie.domain ${JSON.stringify(resolved.domain)} is not a host name such as "example.com"; leave it out to send the cookie to this host only`,
    );
  }
  if (!["lax", "strict", "none"].includes(resolved.sameSite)) {
    fail(`cookie.sameSite must be "lax", "strict" or "none", not ${JSON.stringify(resolved.sameSite)}`);
  }
  for (const flag of ["httpOnly", "persistent", "partitioned"] as const) {
    if (typeof resolved[flag] !== "boolean") fail(`cookie.${flag} must be true or false`);
  }
  if (resolved.secure !== "auto" && typeof resolved.secure !== "boolean") fail('cookie.secure must be true, false or "auto"');
  if (resolved.priority !== undefined && !["low", "medium", "high"].includes(resolved.priority)) {
    fail(`cookie.priority must be "low", "medium" or "high", not ${JSON.stringify(resolved.priority)}`);
  }
  if (resolved.sameSite === "none" && resolved.secure !== true) {
    fail('cookie.sameSite "none" requires cookie.secure: true (browsers drop SameSite=None cookies without Secure)');
  }
  if (resolved.partitioned && resolved.secure !== true)
    fail("cookie.partitioned requires cookie.secure: true (browsers drop it otherwise)");
  if (resolved.name.startsWith("__Host-") && (resolved.secure !== true || resolved.path !== "/" || resolved.domain !== undefined)) {
    fail('a "__Host-" cookie requires cookie.secure: true, cookie.path "/" and no cookie.domain');
  }
  if (resolved.name.startsWith("__Secure-") && resolved.secure !== true) fail('a "__Secure-" cookie requires cookie.secure: true');
  return resolved;
}

export function validateSecrets(secrets: readonly string[] | undefined): readonly string[] {
  if (secrets === undefined) return [];
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new SessionConfigError("secrets must be a non-empty array of strings (the first signs, all verify), or left out");
  }
  for (const [index, secret] of secrets.entries()) {
    if (typeof secret !== "string" || secret.length < MIN_SECRET_LENGTH) {
      throw new SessionConfigError(
        `secrets[${index}] is shorter than ${MIN_SECRET_LENGTH} characters: use a random secret, e.g. \`openssl rand -base64 48\``,
      );
    }
  }
  return secrets;
}

/**
 * What the request's cookies say, after shape and signature checks and before any store
 * access. `ids` holds every distinct valid session ID the header carried under our name, in
 * order (a sibling subdomain can plant a second cookie of the same name): the first that
 * names a live session is the request's.
 */
export type CookieReading =
  | { kind: "absent" }
  | { kind: "invalid"; reason: string }
  | { kind: "valid"; ids: readonly string[]; signedWithOldSecret: boolean };

const ABSENT: CookieReading = { kind: "absent" };

function sign(id: string, secret: string): Buffer {
  return createHmac("sha256", secret).update(id).digest();
}

/**
 * The raw values of every cookie named `name` in a `Cookie` header. Not the `cookie`
 * package's `parse`: it keeps only the first of duplicate names, and a planted first cookie
 * would then hide the real one. Values are taken as they are (no quotes, no percent-decoding):
 * a session cookie is base64url, so anything else is invalid anyway.
 */
function valuesNamed(header: string, name: string): string[] {
  const values: string[] = [];
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(";", start);
    if (end === -1) end = header.length;
    const eq = header.indexOf("=", start);
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name) values.push(header.slice(eq + 1, end).trim());
    start = end + 1;
  }
  return values;
}

export class SessionCookie {
  readonly #secrets: readonly Buffer[];
  readonly #signingSecret: string | undefined;
  /** The serialized attributes, computed once per `Secure` choice: every issued cookie shares them. */
  readonly #attributes = new Map<boolean, string>();
  #lastDate = { second: Number.NaN, text: "" };

  constructor(
    readonly options: ResolvedCookieOptions,
    secrets: readonly string[],
  ) {
    this.#signingSecret = secrets[0];
    this.#secrets = secrets.map((secret) => Buffer.from(secret, "utf8"));
    // serialize() throws on what it cannot encode: let that happen now, not on the first request.
    try {
      this.issue("A".repeat(43), Date.now(), true);
      this.clear(false);
    } catch (error) {
      throw new SessionConfigError(`cookie options cannot be serialized: ${(error as Error).message}`);
    }
  }

  read(cookieHeader: string | undefined): CookieReading {
    if (cookieHeader === undefined || cookieHeader === "") return ABSENT;
    const values = valuesNamed(cookieHeader, this.options.name);
    if (values.length === 0) return ABSENT;
    const ids: string[] = [];
    let signedWithOldSecret = false;
    let reason = "";
    for (const value of values) {
      if (ids.length === MAX_CANDIDATES) break;
      const verdict = this.#verify(value);
      if (typeof verdict === "string") {
        reason = verdict;
        continue;
      }
      if (ids.includes(verdict.id)) continue;
      ids.push(verdict.id);
      signedWithOldSecret ||= verdict.old;
    }
    return ids.length === 0 ? { kind: "invalid", reason } : { kind: "valid", ids, signedWithOldSecret };
  }

  /** The ID a cookie value carries, or why it carries none. */
  #verify(value: string): { id: string; old: boolean } | string {
    if (this.#secrets.length === 0) return isWellFormedSessionId(value) ? { id: value, old: false } : "malformed session ID";
    const dot = value.indexOf(".");
    const id = dot === -1 ? value : value.slice(0, dot);
    const signature = dot === -1 ? "" : value.slice(dot + 1);
    if (!isWellFormedSessionId(id) || !isWellFormedSessionId(signature)) {
      return "malformed signed session cookie";
    }
    // A signature has the shape of an ID: 43 base64url characters, exactly the 32 bytes of an
    // HMAC-SHA256. The last character carries 2 unused bits: only the canonical spelling counts,
    // so that a cookie has exactly one signed form.
    const given = Buffer.from(signature, "base64url");
    if (given.toString("base64url") !== signature) return "malformed signed session cookie";
    for (const [index, secret] of this.#secrets.entries()) {
      const expected = createHmac("sha256", secret).update(id).digest();
      if (given.length === expected.length && timingSafeEqual(given, expected)) return { id, old: index > 0 };
    }
    return "bad signature";
  }

  /** The `Set-Cookie` value that hands `id` to the client; `expiresAt` undefined: a browser-session cookie. */
  issue(id: string, expiresAt: number | undefined, secure: boolean): string {
    const secret = this.#signingSecret;
    const value = secret === undefined ? id : `${id}.${sign(id, secret).toString("base64url")}`;
    const expires = expiresAt === undefined ? "" : `; Expires=${this.#httpDate(expiresAt)}`;
    return `${this.options.name}=${value}${expires}${this.#attributesFor(secure)}`;
  }

  /** An HTTP date, to the second; the last one is kept (sessions created in the same second share it). */
  #httpDate(at: number): string {
    const second = Math.floor(at / 1000);
    if (second !== this.#lastDate.second) this.#lastDate = { second, text: new Date(second * 1000).toUTCString() };
    return this.#lastDate.text;
  }

  /** The `Set-Cookie` value that removes the cookie from the client. */
  clear(secure: boolean): string {
    return serialize(this.options.name, "", { ...this.#attributeOptions(secure), maxAge: 0, expires: new Date(0) });
  }

  /** `; Path=/; HttpOnly; …` as `cookie.serialize` writes them, cached: the value is base64url and needs no encoding. */
  #attributesFor(requestSecure: boolean): string {
    const secure = this.options.secure === "auto" ? requestSecure : this.options.secure;
    let attributes = this.#attributes.get(secure);
    if (attributes === undefined) {
      const serialized = serialize(this.options.name, "v", this.#attributeOptions(requestSecure));
      attributes = serialized.slice(serialized.indexOf(";"));
      this.#attributes.set(secure, attributes);
    }
    return attributes;
  }

  #attributeOptions(requestSecure: boolean) {
    const { path, httpOnly, sameSite, domain, partitioned, priority } = this.options;
    return {
      path,
      httpOnly,
      sameSite,
      secure: this.options.secure === "auto" ? requestSecure : this.options.secure,
      ...(domain === undefined ? {} : { domain }),
      ...(partitioned ? { partitioned } : {}),
      ...(priority === undefined ? {} : { priority }),
    } as const;
  }
}
