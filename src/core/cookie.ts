import { createHmac, timingSafeEqual } from "node:crypto";
import { parse, serialize } from "cookie";
import { SessionConfigError } from "./errors.js";
import { isWellFormedSessionId } from "./ids.js";

export interface CookieOptions {
  /** Default `sessionID`. A `__Host-` name requires `secure: true`, `path: "/"` and no `domain`. */
  name?: string;
  /** Default `/`. */
  path?: string;
  /** Default none: the cookie goes back only to the host that set it. */
  domain?: string;
  /** Default `lax`. `none` requires `secure: true`. */
  sameSite?: "lax" | "strict" | "none";
  /** Default `true`. */
  httpOnly?: boolean;
  /** `"auto"` (default): `Secure` when the request came over HTTPS (see `trustProxy`). */
  secure?: boolean | "auto";
  /**
   * Default `true`: the cookie carries `Expires` = the session's absolute deadline, so it
   * survives a browser restart. `false`: a browser-session cookie. Either way the server
   * enforces the timeouts; the cookie's expiry is only a hint to the browser.
   */
  persistent?: boolean;
}

export interface ResolvedCookieOptions {
  name: string;
  path: string;
  domain: string | undefined;
  sameSite: "lax" | "strict" | "none";
  httpOnly: boolean;
  secure: boolean | "auto";
  persistent: boolean;
}

const MIN_SECRET_LENGTH = 32;
const SIGNATURE_LENGTH = 43;
const COOKIE_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function resolveCookieOptions(options: CookieOptions = {}): ResolvedCookieOptions {
  const resolved: ResolvedCookieOptions = {
    name: options.name ?? "sessionID",
    path: options.path ?? "/",
    domain: options.domain,
    sameSite: options.sameSite ?? "lax",
    httpOnly: options.httpOnly ?? true,
    secure: options.secure ?? "auto",
    persistent: options.persistent ?? true,
  };
  if (!COOKIE_NAME_PATTERN.test(resolved.name)) {
    throw new SessionConfigError(
      `cookie.name ${JSON.stringify(resolved.name)} is not a valid cookie name: use letters, digits and !#$%&'*+-.^_\`|~`,
    );
  }
  if (!["lax", "strict", "none"].includes(resolved.sameSite)) {
    throw new SessionConfigError(`cookie.sameSite must be "lax", "strict" or "none", not ${JSON.stringify(resolved.sameSite)}`);
  }
  if (resolved.sameSite === "none" && resolved.secure !== true) {
    throw new SessionConfigError(
      'cookie.sameSite "none" requires cookie.secure: true (browsers drop SameSite=None cookies without Secure)',
    );
  }
  if (resolved.name.startsWith("__Host-") && (resolved.secure !== true || resolved.path !== "/" || resolved.domain !== undefined)) {
    throw new SessionConfigError('a "__Host-" cookie requires cookie.secure: true, cookie.path "/" and no cookie.domain');
  }
  if (resolved.name.startsWith("__Secure-") && resolved.secure !== true) {
    throw new SessionConfigError('a "__Secure-" cookie requires cookie.secure: true');
  }
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

/** What the request's cookie says, after shape and signature checks and before any store access. */
export type CookieReading =
  | { kind: "absent" }
  | { kind: "invalid"; reason: string }
  | { kind: "valid"; id: string; signedWithOldSecret: boolean };

function sign(id: string, secret: string): string {
  return createHmac("sha256", secret).update(id).digest("base64url");
}

function equalInConstantTime(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  // timingSafeEqual throws on unequal lengths; the length of a signature is not a secret.
  return left.length === right.length && timingSafeEqual(left, right);
}

export class SessionCookie {
  constructor(
    readonly options: ResolvedCookieOptions,
    private readonly secrets: readonly string[],
  ) {}

  read(cookieHeader: string | undefined): CookieReading {
    if (cookieHeader === undefined || cookieHeader === "") return { kind: "absent" };
    let value: string | undefined;
    try {
      value = parse(cookieHeader)[this.options.name];
    } catch {
      return { kind: "invalid", reason: "unparseable Cookie header" };
    }
    if (value === undefined) return { kind: "absent" };
    if (this.secrets.length === 0) {
      return isWellFormedSessionId(value)
        ? { kind: "valid", id: value, signedWithOldSecret: false }
        : { kind: "invalid", reason: "malformed session ID" };
    }
    const dot = value.indexOf(".");
    const id = dot === -1 ? value : value.slice(0, dot);
    const signature = dot === -1 ? "" : value.slice(dot + 1);
    if (!isWellFormedSessionId(id) || signature.length !== SIGNATURE_LENGTH) {
      return { kind: "invalid", reason: "malformed signed session cookie" };
    }
    for (const [index, secret] of this.secrets.entries()) {
      if (equalInConstantTime(signature, sign(id, secret))) {
        return { kind: "valid", id, signedWithOldSecret: index > 0 };
      }
    }
    return { kind: "invalid", reason: "bad signature" };
  }

  /** The `Set-Cookie` value that hands `id` to the client. */
  issue(id: string, expiresAt: number, secure: boolean): string {
    const [newestSecret] = this.secrets;
    const value = newestSecret === undefined ? id : `${id}.${sign(id, newestSecret)}`;
    return serialize(this.options.name, value, {
      ...this.attributes(secure),
      ...(this.options.persistent ? { expires: new Date(expiresAt) } : {}),
    });
  }

  /** The `Set-Cookie` value that removes the cookie from the client. */
  clear(secure: boolean): string {
    return serialize(this.options.name, "", { ...this.attributes(secure), maxAge: 0, expires: new Date(0) });
  }

  private attributes(secure: boolean) {
    return {
      path: this.options.path,
      httpOnly: this.options.httpOnly,
      sameSite: this.options.sameSite,
      secure: this.options.secure === "auto" ? secure : this.options.secure,
      ...(this.options.domain === undefined ? {} : { domain: this.options.domain }),
    } as const;
  }
}
