export { SessionManager, type SessionManagerOptions, type RequestInfo, type UserSession } from "./core/manager.js";
export { Session, type SessionData, type SessionInfo, type SessionStatus, type ResponseHeaders } from "./core/session.js";
export type { CookieOptions } from "./core/cookie.js";
export type { SessionEvent, SessionEventListener } from "./core/events.js";
export {
  SessionError,
  SessionConfigError,
  StoreUnavailableError,
  SessionValueError,
  SessionConflictError,
  SessionStateError,
} from "./core/errors.js";
export type {
  SessionStore,
  StoredSession,
  SessionMeta,
  SessionChange,
  LoadOptions,
  CompareAndSetResult,
  UserSessionEntry,
} from "./core/store.js";
