import type { Session, SessionData } from "../src/core/session.js";

/** The reference server's user names: 1 to 64 characters (UTF-16 code units, as `String.length` counts). */
export const MAX_USER_LENGTH = 64;

/** `value` when it is a valid user name, else `undefined`. */
export function userNameOf(value: unknown): string | undefined {
  return typeof value === "string" && value.length >= 1 && value.length <= MAX_USER_LENGTH ? value : undefined;
}

/**
 * The one login code path of the reference server (`POST /login` and the account page's
 * form): checks the user name, then binds the session to it and rotates the ID, keeping
 * the data. Resolves the user, or `undefined` (and changes nothing) for a bad name.
 */
export async function logIn<Data extends SessionData>(session: Session<Data>, candidate: unknown): Promise<string | undefined> {
  const user = userNameOf(candidate);
  if (user === undefined) return undefined;
  await session.login(user);
  return user;
}
