import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * CSRF tokens for the account page's forms, derived rather than stored: a token is
 * HMAC-SHA256(key, session handle), where the handle is the session's public fingerprint
 * (a hash of its store key). So a token is bound to one session, changes when the ID
 * rotates (login), dies with the session, and costs no store write. Nobody can compute
 * one without the key, even knowing the handle.
 *
 * The keys come from the server's secrets (`SESSION_SECRET`), separated from cookie
 * signing by a label: the first signs, every one verifies, like the cookie. Without
 * secrets the key is random per process: forms rendered before a restart, or by another
 * process, are refused (403) and the page just has to be loaded again.
 */
export class CsrfTokens {
  readonly #signing: Buffer;
  readonly #verifying: readonly Buffer[];

  constructor(secrets: readonly string[] | undefined) {
    const roots = secrets !== undefined && secrets.length > 0 ? secrets : [randomBytes(32).toString("base64url")];
    const keys = roots.map((secret) => createHmac("sha256", secret).update("atomic-session reference server: csrf v1").digest());
    this.#signing = keys[0] as Buffer;
    this.#verifying = keys;
  }

  /** The token for the session whose handle is `handle`. */
  tokenFor(handle: string): string {
    return mac(this.#signing, handle);
  }

  /** Whether `token` is the token of the session `handle`, compared in constant time. No session: never. */
  verify(handle: string | undefined, token: unknown): boolean {
    if (handle === undefined || typeof token !== "string") return false;
    const given = Buffer.from(token, "utf8");
    let valid = false;
    for (const key of this.#verifying) {
      const expected = Buffer.from(mac(key, handle), "utf8");
      // Lengths are public (every token has 43 characters); contents are compared in constant time.
      if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
    }
    return valid;
  }
}

function mac(key: Buffer, handle: string): string {
  return createHmac("sha256", key).update(handle).digest("base64url");
}
