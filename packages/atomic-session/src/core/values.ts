import { SessionValueError } from "./errors.js";

/** A lone UTF-16 surrogate: text no store can keep exactly (UTF-8 has no encoding for it). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether `text` is well-formed Unicode with no NUL: what every store keeps byte for byte.
 * A lone surrogate would be stored as U+FFFD by SQLite, Redis and PostgreSQL (two different
 * user IDs would become one), and PostgreSQL text cannot hold NUL.
 */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text) && !text.includes("\u0000");
}

/** Throws `SessionValueError` naming `what` when `text` is not {@link isWellFormed}. */
export function assertWellFormed(what: string, text: string): void {
  if (!isWellFormed(text)) {
    throw new SessionValueError(
      `${what} must be well-formed Unicode without NUL: ${JSON.stringify(text.slice(0, 64))} holds a lone surrogate or U+0000`,
    );
  }
}

/**
 * Encodes one session value as JSON text, the form every store keeps it in. JSON.stringify
 * escapes lone surrogates and control characters, so the text is always well-formed.
 */
export function encodeValue(key: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new SessionValueError(`session value for ${JSON.stringify(key)} cannot be stored as JSON: ${(error as Error).message}`);
  }
  if (json === undefined) {
    throw new SessionValueError(
      `session value for ${JSON.stringify(key)} cannot be stored as JSON (${typeof value}); use delete() to remove a key`,
    );
  }
  return json;
}

/**
 * Decodes a record's fields. Resolves `undefined` when any field is not valid JSON: the
 * record is corrupted and counts as absent. Keys live in a Map, so a key such as
 * `__proto__` is plain data and never reaches an object prototype.
 */
export function decodeFields(fields: ReadonlyMap<string, string>): Map<string, unknown> | undefined {
  const values = new Map<string, unknown>();
  for (const [key, json] of fields) {
    try {
      values.set(key, JSON.parse(json));
    } catch {
      return undefined;
    }
  }
  return values;
}
