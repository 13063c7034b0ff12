import type { StoreUnavailableError } from "./errors.js";

/**
 * What the session manager reports, for security logs and metrics. Events carry handles
 * (non-secret fingerprints), never session IDs.
 */
export type SessionEvent =
  | { type: "created"; handle: string; userId: string | undefined }
  | { type: "rotated"; handle: string; previousHandle: string; userId: string | undefined }
  /** Logout, revocation, or (`reason: "maxSessionsPerUser"`) a login past the user's cap. */
  | { type: "destroyed"; handle: string; userId: string | undefined; reason?: string }
  /** A cookie named a session that is not live (expired, destroyed, rotated, unknown), or it vanished mid-request. */
  | { type: "expired"; handle: string; reason?: string }
  | { type: "invalid-cookie"; reason: string }
  /** A record that could not be decoded; it was removed and counted as absent. */
  | { type: "corrupted-record"; handle: string }
  /** `update()` lost a compare-and-set race and is retrying. */
  | { type: "conflict"; handle: string; key: string }
  /** A store call failed or missed the deadline (the request gets 503). */
  | { type: "store-error"; operation: string; error: StoreUnavailableError }
  /** Once per manager: a plain-HTTP request could not get the `Secure` cookie `cookie.secure: true` demands. */
  | { type: "insecure-request"; reason: string }
  /** A legacy session (the manager's `adopt` option) became the session `handle`; a `created` event comes with it. */
  | { type: "adopted"; handle: string; userId: string | undefined; source: string }
  /** A legacy session could not become one of ours (a key, value, size or schema the manager refuses); it was left as it was. */
  | { type: "adoption-refused"; source: string; reason: string };

export type SessionEventListener = (event: SessionEvent) => void;
