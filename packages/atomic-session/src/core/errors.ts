/** Every error atomic-session throws on purpose extends this class. */
export class SessionError extends Error {
  override name = "SessionError";
}

/** Bad configuration, thrown when the session manager (or a store, or an adapter) is created. */
export class SessionConfigError extends SessionError {
  override name = "SessionConfigError";
}

/**
 * The store failed or did not answer within the deadline: answer 503 with `Retry-After`.
 *
 * Its `message` is what a client may see: it never names the store, the operation or what
 * the backend said, because frameworks put error messages in response bodies. Those are in
 * `store`, `operation` and `cause`, for logs (`detail` has them in one line).
 */
export class StoreUnavailableError extends SessionError {
  override name = "StoreUnavailableError";
  /** For frameworks that read the status from errors (Express, Fastify). */
  readonly status = 503;
  readonly statusCode = 503;
  /** Express and http-errors conventions: the message is safe to show. */
  readonly expose = true;
  readonly headers: Readonly<Record<string, string>>;
  /** The store's `kind`, such as `"redis"`. */
  readonly store: string;
  /** The store operation that failed, such as `"increment"`. */
  readonly operation: string;
  /** Whether the store did not answer within the deadline (the outcome of a write is then unknown). */
  readonly timedOut: boolean;

  constructor(options: { store: string; operation: string; timedOut: boolean; cause?: unknown; retryAfterSeconds?: number }) {
    super(
      "The session store is unavailable; retry the request shortly",
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.store = options.store;
    this.operation = options.operation;
    this.timedOut = options.timedOut;
    this.headers = { "Retry-After": String(options.retryAfterSeconds ?? 1) };
    // Development error pages (Express's) print the stack: its frames would name the operation.
    // Where it failed is in `cause` (with its own stack) and `detail`.
    this.stack = `${this.name}: ${this.message}`;
  }

  /** What went wrong, for logs: the innermost cause's message, or that the store did not answer in time. */
  get reason(): string {
    return this.timedOut ? "no answer within the deadline" : rootMessage(this.cause);
  }

  /** One line for logs: which store, which operation, and what went wrong (the innermost cause). */
  get detail(): string {
    const what = this.timedOut ? "did not answer within the deadline" : `failed: ${this.reason}`;
    return `the ${this.store} store ${what} (operation ${this.operation})`;
  }
}

/** A value cannot be stored: not JSON-serialisable, too large, an ill-formed string, or not an integer for `increment`. */
export class SessionValueError extends SessionError {
  override name = "SessionValueError";
}

/** `session.update()` kept losing the compare-and-set race and gave up: answer 409. */
export class SessionConflictError extends SessionError {
  override name = "SessionConflictError";
  readonly status = 409;
  readonly statusCode = 409;
  readonly expose = true;
}

/**
 * The request's session was rotated (a login, `regenerate()`) by a concurrent request, so
 * this request's write cannot land: answer 409, without a cookie. The browser already holds,
 * or is about to receive, the rotated session's cookie; writing to a new anonymous session
 * instead would log it out. The client may retry the request.
 */
export class SessionRotatedError extends SessionError {
  override name = "SessionRotatedError";
  readonly status = 409;
  readonly statusCode = 409;
  readonly expose = true;

  constructor() {
    super("The session was changed by a concurrent request (a login); retry the request");
  }
}

/** The session was used in a way its lifecycle does not allow, such as a write after the response headers went out. */
export class SessionStateError extends SessionError {
  override name = "SessionStateError";
}

/** The innermost message of an error chain (node's connect errors can be an AggregateError with an empty message). */
export function rootMessage(error: unknown): string {
  let current = error;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  if (current instanceof AggregateError && current.message === "") return current.errors.map((inner) => rootMessage(inner)).join("; ");
  return current instanceof Error ? current.message : String(current);
}

/**
 * The session would need a cookie that this request cannot receive: `cookie.secure` is `true`
 * and the request came over plain HTTP (behind a TLS proxy, set `trustProxy`). Nothing is
 * written: answer 403.
 */
export class InsecureRequestError extends SessionError {
  override name = "InsecureRequestError";
  readonly status = 403;
  readonly statusCode = 403;
  readonly expose = true;

  constructor() {
    super("Sessions on this site need HTTPS");
  }
}
