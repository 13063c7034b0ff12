/** Every error sessionstore throws on purpose extends this class. */
export class SessionError extends Error {
  override name = "SessionError";
}

/** Bad configuration, thrown when the session manager (or a store) is created. */
export class SessionConfigError extends SessionError {
  override name = "SessionConfigError";
}

/**
 * The store failed or did not answer within the deadline. Frameworks that read
 * `status` / `headers` from errors (Express, Fastify) answer 503 with `Retry-After`; the Hono adapter maps it.
 */
export class StoreUnavailableError extends SessionError {
  override name = "StoreUnavailableError";
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
  readonly headers: Record<string, string>;

  constructor(
    message: string,
    readonly operation: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.headers = { "Retry-After": String(options?.retryAfterSeconds ?? 1) };
  }
}

/** A value cannot be stored: not JSON-serialisable, too large, or not an integer for `increment`. */
export class SessionValueError extends SessionError {
  override name = "SessionValueError";
}

/** `session.update()` kept losing the compare-and-set race and gave up. */
export class SessionConflictError extends SessionError {
  override name = "SessionConflictError";
  readonly status = 409;
  readonly statusCode = 409;
}

/** The session was used in a way its lifecycle does not allow, such as a write after the response headers went out. */
export class SessionStateError extends SessionError {
  override name = "SessionStateError";
}
