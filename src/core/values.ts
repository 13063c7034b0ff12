import { SessionValueError } from "./errors.js";

/** Encodes one session value as JSON text, the form every store keeps it in. */
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
