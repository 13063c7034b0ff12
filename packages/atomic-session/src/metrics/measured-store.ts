import type { SessionStore } from "../core/store.js";

/** One store call, as a measured store reports it. */
export interface StoreTiming {
  /** The store method: `load`, `create`, `apply`, `increment`, `compareAndSet`, `rotate`, `destroy`, `ping`, … */
  operation: string;
  /** The store's `kind`, such as `"sqlite"`. */
  store: string;
  /** From the call to the moment its promise settled. */
  seconds: number;
  /** Whether the call resolved (`false`: it rejected). */
  ok: boolean;
}

export type StoreTimingListener = (timing: StoreTiming) => void;

/** A store that times each of its calls and reports the timings to its listeners. */
export interface MeasuredStore extends SessionStore {
  /** Subscribes to timings; returns the unsubscribe function. A listener that throws is ignored. */
  onTiming(listener: StoreTimingListener): () => void;
}

const MEASURED = Symbol.for("atomic-session.measuredStore");

/** Whether `store` was made by {@link measureStore}. */
export function isMeasuredStore(store: SessionStore): store is MeasuredStore {
  return (store as Partial<Record<typeof MEASURED, true>>)[MEASURED] === true;
}

/**
 * Wraps a store so that every call is timed: give the wrapper to the `SessionManager`, and
 * `sessionMetrics()` turns the timings into a latency histogram. The wrapper adds nothing
 * else: same results, same errors, same optional abilities. A call that never settles (a
 * stalled store past the manager's deadline) is never observed; the manager reports it as
 * a `store-error` event instead.
 *
 * ```ts
 * const manager = new SessionManager({ store: measureStore(new SqliteStore()) });
 * ```
 */
export function measureStore(store: SessionStore): MeasuredStore {
  if (isMeasuredStore(store)) return store;
  const kind = store.kind;
  const listeners = new Set<StoreTimingListener>();
  const report = (timing: StoreTiming) => {
    for (const listener of listeners) {
      try {
        listener(timing);
      } catch {
        // Metrics must never break a store call.
      }
    }
  };
  const timed =
    <A extends unknown[], R>(operation: string, method: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now();
      let ok = false;
      try {
        const result = await method.apply(store, args);
        ok = true;
        return result;
      } finally {
        report({ operation, store: kind, seconds: (performance.now() - started) / 1000, ok });
      }
    };
  const optional = <A extends unknown[], R>(operation: string, method: ((...args: A) => Promise<R>) | undefined) =>
    method === undefined ? undefined : timed(operation, method);
  const measured: MeasuredStore & Record<typeof MEASURED, true> = {
    [MEASURED]: true,
    kind,
    load: timed("load", store.load),
    create: timed("create", store.create),
    apply: timed("apply", store.apply),
    increment: timed("increment", store.increment),
    compareAndSet: timed("compareAndSet", store.compareAndSet),
    rotate: timed("rotate", store.rotate),
    destroy: timed("destroy", store.destroy),
    ping: timed("ping", store.ping),
    listUserSessions: optional("listUserSessions", store.listUserSessions),
    revokeUserSessions: optional("revokeUserSessions", store.revokeUserSessions),
    count: optional("count", store.count),
    purgeExpired: optional("purgeExpired", store.purgeExpired),
    // A scan is a stream of batches, not one call: it is passed through untimed.
    scan: store.scan?.bind(store),
    dispose: store.dispose?.bind(store),
    onTiming(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return measured;
}
