/**
 * What the server logs about its store: one line when it cannot be reached (at start or
 * later) and one when it is reachable again; an authentication or configuration failure once,
 * saying what to fix; other failures at most once per interval, counted — never a stack trace
 * per request.
 * @module
 */
import { SessionConfigError, type SessionManager, StoreUnavailableError } from "atomic-session";
import type { Logger } from "pino";

/** Failures that no retry fixes: credentials, permissions, a missing database. */
const CONFIGURATION_FAILURES: { pattern: RegExp; fix: string }[] = [
  { pattern: /\b(WRONGPASS|NOAUTH)\b/, fix: "check the user and password in the store's URL (REDIS_URL)" },
  { pattern: /\bNOPERM\b/, fix: "give the store's Redis user the commands and keys it needs (ACL)" },
  { pattern: /password authentication failed|no pg_hba\.conf entry/i, fix: "check the user and password in DATABASE_URL" },
  { pattern: /(role|database) "[^"]*" does not exist/i, fix: "check the user and database names in DATABASE_URL" },
  { pattern: /permission denied/i, fix: "give the store's user the privileges it needs on its tables or file" },
];

/** A store that found its own configuration wrong (a `SessionConfigError` behind the failure): no retry fixes it either. */
function configurationError(error: StoreUnavailableError): string | undefined {
  let current: unknown = error.cause;
  while (current instanceof Error) {
    if (current instanceof SessionConfigError) return current.message;
    current = current.cause;
  }
  return undefined;
}

export interface StoreMonitorOptions {
  /** How the store is named in log lines (never a password). */
  where: string;
  /** Most one line per this interval about ordinary failures. Default 10 s. */
  intervalMs?: number;
  /** How often an unreachable store is probed, to say when it is back. Default 1 s. */
  probeMs?: number;
}

export class StoreMonitor {
  readonly #manager: SessionManager;
  readonly #logger: Logger;
  readonly #where: string;
  readonly #intervalMs: number;
  readonly #probeMs: number;
  readonly #reportedConfiguration = new Set<string>();
  #failing = false;
  /** Whether the current outage was announced (so its end is announced too). */
  #announced = false;
  /** Until when a new failure counts as the same outage (a store that flaps between answering and not). */
  #quietUntil = 0;
  #suppressed = 0;
  #lastLine = 0;
  #probe: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(manager: SessionManager, logger: Logger, options: StoreMonitorOptions) {
    this.#manager = manager;
    this.#logger = logger;
    this.#where = options.where;
    this.#intervalMs = options.intervalMs ?? 10_000;
    this.#probeMs = options.probeMs ?? 1_000;
    manager.on((event) => {
      if (event.type === "store-error") this.#failed(event.error);
    });
  }

  /** Probes the store once now (at start), so that an unreachable one is said at once. */
  async start(): Promise<void> {
    try {
      await this.#manager.checkHealth();
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#probe);
  }

  #failed(error: StoreUnavailableError): void {
    const reason = error.reason;
    const misconfigured = configurationError(error);
    const configuration =
      misconfigured === undefined ? CONFIGURATION_FAILURES.find(({ pattern }) => pattern.test(reason)) : { fix: misconfigured };
    if (configuration !== undefined) {
      if (!this.#reportedConfiguration.has(configuration.fix)) {
        this.#reportedConfiguration.add(configuration.fix);
        this.#logger.error(
          { store: error.store, where: this.#where, reason },
          `session store at ${this.#where} refused the server (${reason}): ${configuration.fix}; every request that needs a session gets 503 until then`,
        );
      }
    } else if (!this.#failing && Date.now() >= this.#quietUntil) {
      this.#logger.error(
        { store: error.store, where: this.#where, operation: error.operation, reason },
        `session store unreachable at ${this.#where} (${reason}): answering 503 until it is back`,
      );
      this.#announced = true;
      this.#lastLine = Date.now();
    } else {
      this.#suppressed++;
      const now = Date.now();
      if (now - this.#lastLine >= this.#intervalMs) {
        this.#logger.warn(
          { store: error.store, where: this.#where, failures: this.#suppressed, reason },
          `session store at ${this.#where}: ${this.#suppressed} more failed calls (latest: ${reason})`,
        );
        this.#suppressed = 0;
        this.#lastLine = now;
      }
    }
    if (!this.#failing) {
      this.#failing = true;
      this.#scheduleProbe();
    }
  }

  #scheduleProbe(): void {
    if (this.#stopped) return;
    this.#probe = setTimeout(() => void this.#check(), this.#probeMs);
    this.#probe.unref();
  }

  async #check(): Promise<void> {
    try {
      await this.#manager.checkHealth();
    } catch {
      this.#scheduleProbe();
      return;
    }
    this.#failing = false;
    this.#reportedConfiguration.clear();
    if (!this.#announced) return;
    this.#announced = false;
    this.#logger.info({ where: this.#where }, `session store reachable again at ${this.#where}`);
    // A ping can succeed while writes still fail (SQLite's write lock held elsewhere): failures in
    // the next interval are counted, not announced as a new outage.
    this.#quietUntil = Date.now() + this.#intervalMs;
    this.#lastLine = Date.now();
  }
}
