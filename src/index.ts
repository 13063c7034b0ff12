export type { CookieOptions } from "./core/cookie.js";
export {
  SessionConfigError,
  SessionConflictError,
  SessionError,
  SessionStateError,
  SessionValueError,
  StoreUnavailableError,
} from "./core/errors.js";
export type { SessionEvent, SessionEventListener } from "./core/events.js";
export { type RequestInfo, SessionManager, type SessionManagerOptions, type UserSession } from "./core/manager.js";
export {
  type AppSessionData,
  type ResponseHeaders,
  Session,
  type SessionData,
  type SessionInfo,
  type SessionStatus,
  type SessionTypes,
} from "./core/session.js";
export type {
  CompareAndSetResult,
  LoadOptions,
  SessionChange,
  SessionMeta,
  SessionStore,
  StoredSession,
  UserSessionEntry,
} from "./core/store.js";
