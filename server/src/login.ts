import { type Session, SessionValueError } from "atomic-session";

/** The reference server's user names: 1 to 64 characters (UTF-16 code units, as `String.length` counts). */
export const MAX_USER_LENGTH = 64;

/**
 * The one login code path of the reference server (`POST /login` and the account page's
 * form): binds the session to the user name and rotates the ID, keeping the data. `remember`
 * chooses a persistent cookie (`true`) or a browser-session one (`false`); left out, the
 * server's `SESSION_COOKIE_PERSISTENT` decides. Resolves the user, or `undefined`, having
 * changed nothing, for a bad name: not a string of 1 to 64 characters, or text the library
 * refuses (a lone surrogate, NUL), which is then a 400 rather than an error.
 */
export async function logIn(session: Session, candidate: unknown, remember?: boolean): Promise<string | undefined> {
  if (typeof candidate !== "string" || candidate.length < 1 || candidate.length > MAX_USER_LENGTH) return undefined;
  try {
    await session.login(candidate, remember === undefined ? {} : { persistent: remember });
  } catch (error) {
    if (error instanceof SessionValueError) return undefined;
    throw error;
  }
  return candidate;
}
