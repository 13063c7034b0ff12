/**
 * Prometheus metrics for a `SessionManager`, with prom-client. This module is the only one
 * that loads prom-client: importing the core or a store never does.
 *
 * ```ts
 * import { Registry } from "prom-client";
 * import { measureStore, sessionMetrics } from "atomic-session/metrics";
 *
 * const manager = new SessionManager({ store: measureStore(new SqliteStore()) });
 * const registry = new Registry();
 * sessionMetrics(manager, { registry });
 * // GET /metrics: res.setHeader("Content-Type", registry.contentType); res.end(await registry.metrics());
 * ```
 * @module
 */
import { Counter, Histogram, type OpenMetricsContentType, type PrometheusContentType, type Registry, register } from "prom-client";
import { SessionConfigError } from "../core/errors.js";
import type { SessionEvent } from "../core/events.js";
import type { SessionManager } from "../core/manager.js";
import { isMeasuredStore } from "./measured-store.js";

export { isMeasuredStore, type MeasuredStore, measureStore, type StoreTiming, type StoreTimingListener } from "./measured-store.js";

export interface SessionMetricsOptions {
  /** Where the metrics are registered. Default: prom-client's global `register`. */
  registry?: Registry<PrometheusContentType> | Registry<OpenMetricsContentType>;
  /** Put before every metric name. Default `"atomic_session_"`. */
  prefix?: string;
  /** Buckets of the store latency histogram, in seconds. Default 0.5 ms to 2.5 s. */
  buckets?: number[];
  /**
   * Measure store latency, which needs the manager's store wrapped by `measureStore()`.
   * Default `true`: an unwrapped store is a `SessionConfigError`, not a silently empty histogram.
   */
  storeLatency?: boolean;
}

export interface SessionMetrics {
  readonly registry: Registry<PrometheusContentType> | Registry<OpenMetricsContentType>;
  /** Stops counting (the metrics stay registered, with the values they have). */
  stop(): void;
}

const DEFAULT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * Registers the session metrics for `manager` and keeps them up to date from its events
 * and its store's timings (names shown with the default prefix `atomic_session_`):
 *
 * | metric | type | labels |
 * | --- | --- | --- |
 * | `atomic_session_sessions_created_total` | counter | |
 * | `atomic_session_sessions_rotated_total` | counter | (login, `regenerate()`) |
 * | `atomic_session_sessions_destroyed_total` | counter | (logout, revocation) |
 * | `atomic_session_sessions_expired_total` | counter | (a cookie naming a session no longer live, or one that vanished mid-request) |
 * | `atomic_session_update_conflicts_total` | counter | (`update()` lost a compare-and-set race and retried) |
 * | `atomic_session_store_errors_total` | counter | `operation`, `store` |
 * | `atomic_session_invalid_cookies_total` | counter | |
 * | `atomic_session_corrupted_records_total` | counter | |
 * | `atomic_session_store_operation_duration_seconds` | histogram | `operation`, `store` |
 */
export function sessionMetrics(manager: SessionManager, options: SessionMetricsOptions = {}): SessionMetrics {
  const registry = options.registry ?? register;
  const prefix = options.prefix ?? "atomic_session_";
  const store = manager.store;
  const measureLatency = options.storeLatency ?? true;
  if (measureLatency && !isMeasuredStore(store)) {
    throw new SessionConfigError(
      "sessionMetrics: the manager's store is not measured; create the manager with { store: measureStore(yourStore) } " +
        "to get the store latency histogram, or pass { storeLatency: false }",
    );
  }
  const registers = [registry];
  const counter = (name: string, help: string) => new Counter({ name: `${prefix}${name}`, help, registers });
  const created = counter("sessions_created_total", "Sessions created (first write of a visitor, or a login without a session).");
  const rotated = counter("sessions_rotated_total", "Session IDs rotated (login, regenerate).");
  const destroyed = counter("sessions_destroyed_total", "Sessions destroyed (logout, revocation of one session).");
  const expired = counter(
    "sessions_expired_total",
    "Requests whose cookie named a session that is no longer live, or whose session vanished mid-request.",
  );
  const conflicts = counter("update_conflicts_total", "update() compare-and-set conflicts, each retried.");
  const invalidCookies = counter("invalid_cookies_total", "Session cookies rejected before any store access (malformed, bad signature).");
  const corrupted = counter("corrupted_records_total", "Stored sessions that could not be decoded and were removed.");
  const storeErrors = new Counter({
    name: `${prefix}store_errors_total`,
    help: "Store calls that failed or missed the deadline (each answered 503).",
    labelNames: ["operation", "store"] as const,
    registers,
  });
  const latency = measureLatency
    ? new Histogram({
        name: `${prefix}store_operation_duration_seconds`,
        help: "Time the store took to settle each call, by operation.",
        labelNames: ["operation", "store"] as const,
        buckets: options.buckets ?? DEFAULT_BUCKETS,
        registers,
      })
    : undefined;

  const onEvent = (event: SessionEvent) => {
    switch (event.type) {
      case "created":
        return created.inc();
      case "rotated":
        return rotated.inc();
      case "destroyed":
        return destroyed.inc();
      case "expired":
        return expired.inc();
      case "conflict":
        return conflicts.inc();
      case "invalid-cookie":
        return invalidCookies.inc();
      case "corrupted-record":
        return corrupted.inc();
      case "store-error":
        return storeErrors.inc({ operation: event.operation, store: store.kind });
    }
  };
  const stopEvents = manager.on((event) => {
    try {
      onEvent(event);
    } catch {
      // A listener must not throw: metrics never break a request.
    }
  });
  const stopTimings =
    latency !== undefined && isMeasuredStore(store)
      ? store.onTiming(({ operation, store: kind, seconds }) => latency.observe({ operation, store: kind }, seconds))
      : () => undefined;
  return {
    registry,
    stop() {
      stopEvents();
      stopTimings();
    },
  };
}
