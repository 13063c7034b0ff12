/**
 * atomic-session: server-side web sessions whose every write is one atomic store operation.
 *
 * This entry point is the framework-agnostic core: the `SessionManager`, the per-request
 * `Session`, the store contract and the errors. Stores (`atomic-session/stores/*`) and
 * framework adapters (`atomic-session/node`, `/express`, `/fastify`, `/hono`) are subpaths,
 * each loading only its own driver or framework.
 * @module
 */
export type {
  LegacyCookieReading,
  LegacyLoadResult,
  LegacySession,
  LegacySessionSource,
  LegacyTakeResult,
} from "./core/adoption.js";
export type { CookieOptions } from "./core/cookie.js";
export {
  InsecureRequestError,
  SessionConfigError,
  SessionConflictError,
  SessionError,
  SessionRotatedError,
  SessionStateError,
  SessionValueError,
  StoreUnavailableError,
} from "./core/errors.js";
export type { SessionEvent, SessionEventListener } from "./core/events.js";
export { type RequestInfo, SessionManager, type SessionManagerOptions, type UserSession } from "./core/manager.js";
export { addToStoredInteger, isTimestamp, mergeMeta, touchMeta } from "./core/record.js";
export type {
  AppSessionData,
  IntegerKey,
  LoginOptions,
  ResponseHeaders,
  Session,
  SessionData,
  SessionInfo,
  SessionKey,
  SessionStatus,
  SessionTypes,
  SessionTypesDataMustBeAnObjectType,
} from "./core/session.js";
export type {
  Absent,
  CompareAndSetResult,
  Rotation,
  SessionChange,
  SessionMeta,
  SessionStore,
  StoredSession,
  TouchOptions,
  UserSessionEntry,
} from "./core/store.js";
