/**
 * Adoption of legacy sessions: what the core needs from the session library an application
 * used before atomic-session (express-session + connect-redis: `expressSessionAdoption()` from
 * `atomic-session/express-session`), so that switching logs nobody out.
 *
 * A request without a cookie of ours that carries a valid legacy cookie whose record exists
 * is turned, once, into a new atomic-session session: data copied, user bound, new ID. The
 * order makes a refused write harmless and concurrent first requests adopt once:
 * 1. read the legacy record;
 * 2. create the new session (a refusal here leaves the legacy record as it was);
 * 3. take the legacy record only if it is still what step 1 read, leaving an "adopted" marker;
 * 4. if another request took it (or it changed, or vanished), destroy the session of step 2.
 * A request that finds the marker behaves like one racing a login: no session, writes 409.
 * @module
 */
import { newSessionId, storeKeyOf } from "./ids.js";
import type { SessionRuntime } from "./session.js";
import type { SessionMeta, StoredSession } from "./store.js";
import { encodeValue } from "./values.js";

/** What a request's cookies say about a legacy session, checked without any store access. */
export type LegacyCookieReading = { kind: "absent" } | { kind: "invalid"; reason: string } | { kind: "valid"; id: string };

/** A legacy session as read from the legacy store. */
export interface LegacySession {
  /** The application's data, without the legacy library's own bookkeeping (express-session's `cookie`). */
  readonly data: ReadonlyMap<string, unknown>;
  /** The user the session is bound to, or `undefined` for an anonymous one. */
  readonly userId: string | undefined;
  /** Whether the legacy cookie outlived the browser session; `undefined`: the manager's `cookie.persistent` decides. */
  readonly persistent: boolean | undefined;
  /** The record exactly as read, opaque to the core: `take` compares against it. */
  readonly version: string;
}

/**
 * What `load` found under the legacy key: a session; `"adopted"` the marker of an adoption;
 * `"gone"` nothing; `refused` a record that cannot become a session (unreadable, or a user
 * field that holds no user ID), left as it was.
 */
export type LegacyLoadResult = LegacySession | "adopted" | "gone" | { refused: string };

/**
 * What `take` found under the legacy key: `"taken"` it replaced the record by the marker;
 * `"changed"` a write landed since `load`; `"adopted"` another request took it; `"gone"` no record.
 * Anything but `"taken"` writes nothing.
 */
export type LegacyTakeResult = "taken" | "changed" | "adopted" | "gone";

/** A source of legacy sessions (the manager's `adopt` option). */
export interface LegacySessionSource {
  /** For events and messages, such as `"express-session"`. */
  readonly kind: string;
  /** The legacy cookie's name: when it is also the manager's, the new cookie replaces it and it is not cleared. */
  readonly cookieName: string;
  /** The legacy session ID the `Cookie` header carries, its signature verified. No I/O. */
  readCookie(cookieHeader: string | undefined): LegacyCookieReading;
  /** The legacy record under `id` (see {@link LegacyLoadResult}). Writes nothing. */
  load(id: string): Promise<LegacyLoadResult>;
  /**
   * In one atomic step: if the record under `id` is still `session.version`, replaces it by an
   * "adopted" marker expiring at `markerExpiresAt` (ms since the epoch), so that the legacy ID
   * is dead at once. A refused write rejects, leaving the record as it was.
   */
  take(id: string, session: LegacySession, markerExpiresAt: number): Promise<LegacyTakeResult>;
  /** The `Set-Cookie` value that removes the legacy cookie from the browser. */
  clearCookie(secure: boolean): string;
}

/** How an adoption attempt ended. */
export type Adoption =
  | { kind: "adopted"; id: string; key: string; record: StoredSession }
  /** Another request adopted it (or is adopting it) right now: like a request racing a login. */
  | { kind: "taken-elsewhere" }
  /** No legacy record (never was, expired, destroyed, or the marker expired). */
  | { kind: "gone" }
  /** The record cannot become a session (unreadable, or a key, value, size or schema the manager refuses); it is left as it was. */
  | { kind: "refused"; reason: string };

/** What adoption needs from the request's session handle. */
export interface AdoptionContext {
  /** The meta of a new session, as a login (with a user) or a first write (without) makes it. */
  freshMeta(userId: string | undefined, persistent: boolean | undefined): SessionMeta;
  /** Why the manager would refuse this session (its user ID, its keys, the `schema` option), or `undefined`. */
  refusal(legacy: LegacySession): Promise<string | undefined>;
}

/** Most times a legacy record that keeps changing under the adoption is read again. */
const MAX_ATTEMPTS = 3;

/** Adopts the legacy session `legacyId` names: see the module comment for the steps. */
export async function adoptLegacySession(
  runtime: SessionRuntime,
  source: LegacySessionSource,
  legacyId: string,
  context: AdoptionContext,
): Promise<Adoption> {
  const { store, call } = runtime;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const legacy = await call("legacyLoad", () => source.load(legacyId));
    if (legacy === "gone") return { kind: "gone" };
    if (legacy === "adopted") return { kind: "taken-elsewhere" };
    if ("refused" in legacy) return { kind: "refused", reason: legacy.refused };
    const fields = fieldsOf(runtime, legacy);
    if (typeof fields === "string") return { kind: "refused", reason: fields };
    const refusal = await context.refusal(legacy);
    if (refusal !== undefined) return { kind: "refused", reason: refusal };
    const record: StoredSession = { meta: context.freshMeta(legacy.userId, legacy.persistent), fields };
    let id: string;
    let key: string;
    do {
      id = newSessionId();
      key = storeKeyOf(id);
      // A collision of 256-bit random IDs does not happen; if a store says it did, draw again.
    } while (!(await call("create", () => store.create(key, record))));
    let taken: LegacyTakeResult;
    try {
      taken = await call("legacyTake", () => source.take(legacyId, legacy, runtime.now() + runtime.rotationMarkerMs));
    } catch (error) {
      // The legacy record is as it was (or, after a timeout, perhaps taken): the new one must not outlive this request unheld.
      await call("destroy", () => store.destroy(key)).catch(() => undefined);
      throw error;
    }
    if (taken === "taken") return { kind: "adopted", id, key, record };
    await call("destroy", () => store.destroy(key));
    if (taken === "adopted") return { kind: "taken-elsewhere" };
    if (taken === "gone") return { kind: "gone" };
  }
  // Written to by someone else at every attempt (a legacy instance still running): leave it to them for now.
  return { kind: "taken-elsewhere" };
}

/** The legacy data as the new session's fields (JSON text), or why it cannot be stored. */
function fieldsOf(runtime: SessionRuntime, legacy: LegacySession): Map<string, string> | string {
  const fields = new Map<string, string>();
  let size = 0;
  try {
    for (const [key, value] of legacy.data) {
      if (value === undefined) continue;
      const json = encodeValue(key, value);
      fields.set(key, json);
      size += Buffer.byteLength(key) + Buffer.byteLength(json);
    }
  } catch (error) {
    return (error as Error).message;
  }
  if (size > runtime.maxSizeBytes) return `its data is ${size} bytes, over maxSizeBytes (${runtime.maxSizeBytes})`;
  return fields;
}
