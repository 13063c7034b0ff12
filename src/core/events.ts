/**
 * What the session manager reports, for security logs and metrics. Events carry handles
 * (non-secret fingerprints), never session IDs.
 */
export type SessionEvent =
  | { type: "created"; handle: string; userId: string | undefined }
  | { type: "rotated"; handle: string; previousHandle: string; userId: string | undefined }
  | { type: "destroyed"; handle: string; userId: string | undefined }
  /** A cookie named a session that is not live (expired, destroyed, unknown), or it vanished mid-request. */
  | { type: "expired"; handle: string; reason?: string }
  | { type: "invalid-cookie"; reason: string }
  /** A record that could not be decoded; it was removed and counted as absent. */
  | { type: "corrupted-record"; handle: string }
  /** `update()` lost a compare-and-set race and is retrying. */
  | { type: "conflict"; handle: string; key: string }
  | { type: "store-error"; operation: string; error: Error };

export type SessionEventListener = (event: SessionEvent) => void;
