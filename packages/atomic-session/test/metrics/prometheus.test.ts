import { execFileSync } from "node:child_process";
import type { SessionManagerOptions, SessionStore } from "atomic-session";
import { SessionConfigError, StoreUnavailableError } from "atomic-session";
import { measureStore, sessionMetrics } from "atomic-session/metrics";
import { MemoryStore } from "atomic-session/stores/memory";
import { cookiePair, managerFor, openSession } from "atomic-session/testing";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

const stores: MemoryStore[] = [];
function memory(): MemoryStore {
  const store = new MemoryStore();
  stores.push(store);
  return store;
}
afterEach(async () => {
  for (const store of stores.splice(0)) await store.dispose();
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A manager on a measured memory store, with its metrics in a fresh registry. */
function measured(options: Partial<SessionManagerOptions> = {}, store: SessionStore = memory()) {
  const manager = managerFor(measureStore(store), options);
  const registry = new Registry();
  const metrics = sessionMetrics(manager, { registry });
  return { manager, registry, metrics };
}

/** The value of one sample: `metric` as registered, `sample` as exposed (`_count`, `_sum`…), summed over matching labels. */
async function sample(registry: Registry, metric: string, labels: Record<string, string> = {}, sampleName = metric): Promise<number> {
  const found = registry.getSingleMetric(metric);
  if (found === undefined) throw new Error(`${metric} is not registered`);
  const { values } = await found.get();
  return values
    .filter((value) => ((value as { metricName?: string }).metricName ?? metric) === sampleName)
    .filter((value) => Object.entries(labels).every(([name, expected]) => value.labels[name] === expected))
    .reduce((sum, value) => sum + value.value, 0);
}

const counter = (registry: Registry, name: string, labels?: Record<string, string>) => sample(registry, `atomic_session_${name}`, labels);
const DURATION = "atomic_session_store_operation_duration_seconds";

describe("session counters", () => {
  it("count sessions created, rotated by login and destroyed by logout", async () => {
    const { manager, registry } = measured();
    const first = openSession(manager);
    await first.session.increment("visitCount");
    expect(await counter(registry, "sessions_created_total")).toBe(1);
    expect(await counter(registry, "sessions_rotated_total")).toBe(0);

    const second = openSession(manager, cookiePair(first.response.cookie));
    await second.session.login("ada");
    expect(await counter(registry, "sessions_rotated_total")).toBe(1);
    expect(await counter(registry, "sessions_created_total")).toBe(1);

    const third = openSession(manager, cookiePair(second.response.cookie));
    await third.session.destroy();
    expect(await counter(registry, "sessions_destroyed_total")).toBe(1);

    // A login without a session creates one (bound to the user): created, not rotated.
    await openSession(manager).session.login("grace");
    expect(await counter(registry, "sessions_created_total")).toBe(2);
    expect(await counter(registry, "sessions_rotated_total")).toBe(1);
  });

  it("count a revocation by handle as destroyed", async () => {
    const { manager, registry } = measured();
    const phone = openSession(manager);
    await phone.session.login("ada");
    expect(await manager.revokeUserSession("ada", phone.session.handle as string)).toBe(true);
    expect(await counter(registry, "sessions_destroyed_total")).toBe(1);
  });

  it("count expired sessions: idle timeout, and a cookie replayed after logout", async () => {
    const { manager, registry } = measured({ idleTimeoutMs: 40 });
    const idle = openSession(manager);
    await idle.session.set("a", 1);
    await sleep(80);
    expect(await openSession(manager, cookiePair(idle.response.cookie)).session.exists()).toBe(false);
    expect(await counter(registry, "sessions_expired_total")).toBe(1);

    const replayed = openSession(manager);
    await replayed.session.set("a", 1);
    const cookie = cookiePair(replayed.response.cookie);
    await openSession(manager, cookie).session.destroy();
    expect(await openSession(manager, cookie).session.get("a")).toBeUndefined();
    expect(await counter(registry, "sessions_expired_total")).toBe(2);
  });

  it("count each lost compare-and-set race of update() that was retried", async () => {
    const { manager, registry } = measured();
    const start = openSession(manager);
    await start.session.set("n", 0);
    const cookie = cookiePair(start.response.cookie);
    const one = openSession(manager, cookie).session;
    const two = openSession(manager, cookie).session;
    await one.get("n");
    await two.get("n");
    await one.update("n", (n) => Number(n) + 1);
    expect(await counter(registry, "update_conflicts_total")).toBe(0);
    expect(await two.update("n", (n) => Number(n) + 1)).toBe(2);
    expect(await counter(registry, "update_conflicts_total")).toBe(1);
  });

  it("count store errors by operation and store, and invalid cookies", async () => {
    const broken = new Proxy(memory(), {
      get(target, property, receiver) {
        if (property === "create") return () => Promise.reject(new Error("OOM command not allowed"));
        return Reflect.get(target, property, receiver);
      },
    });
    const { manager, registry } = measured({}, broken);
    await expect(openSession(manager).session.set("a", 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await counter(registry, "store_errors_total", { operation: "create", store: "memory" })).toBe(1);
    // The failed call still took time: it is observed too.
    expect(await sample(registry, DURATION, { operation: "create", store: "memory" }, `${DURATION}_count`)).toBe(1);

    expect(await openSession(manager, "sessionID=not-an-id").session.exists()).toBe(false);
    expect(await counter(registry, "invalid_cookies_total")).toBe(1);
  });

  it("stop() stops counting", async () => {
    const { manager, registry, metrics } = measured();
    metrics.stop();
    await openSession(manager).session.set("a", 1);
    expect(await counter(registry, "sessions_created_total")).toBe(0);
    expect(await sample(registry, DURATION, {}, `${DURATION}_count`)).toBe(0);
  });
});

describe("store latency histogram", () => {
  it("observes every store call, labelled by operation and store", async () => {
    const { manager, registry } = measured();
    const first = openSession(manager);
    await first.session.increment("visitCount");
    const cookie = cookiePair(first.response.cookie);
    await openSession(manager, cookie).session.increment("visitCount");
    await openSession(manager, cookie).session.update("list", (list) => [...((list as number[]) ?? []), 1]);
    await manager.checkHealth();
    const count = (operation: string) => sample(registry, DURATION, { operation, store: "memory" }, `${DURATION}_count`);
    expect(await count("create")).toBe(1);
    // The increment needs no load (the store touches in the same step); the update loads once.
    expect(await count("load")).toBe(1);
    expect(await count("increment")).toBe(1);
    expect(await count("compareAndSet")).toBe(1);
    expect(await count("ping")).toBe(1);
    expect(await sample(registry, DURATION, { operation: "load" }, `${DURATION}_sum`)).toBeGreaterThan(0);
    const text = await registry.metrics();
    expect(text).toMatch(/^atomic_session_store_operation_duration_seconds_bucket\{le="\+Inf",operation="load",store="memory"\} 1$/m);
  });

  it("refuses a manager whose store is not measured, unless store latency is turned off", () => {
    const manager = managerFor(memory());
    expect(() => sessionMetrics(manager, { registry: new Registry() })).toThrow(SessionConfigError);
    expect(() => sessionMetrics(manager, { registry: new Registry() })).toThrow(/measureStore/);
    const registry = new Registry();
    sessionMetrics(manager, { registry, storeLatency: false, prefix: "app_sessions_" });
    expect(registry.getSingleMetric("app_sessions_sessions_created_total")).toBeDefined();
    expect(registry.getSingleMetric("app_sessions_store_operation_duration_seconds")).toBeUndefined();
  });

  it("measureStore keeps the store's results and optional abilities, and wraps only once", async () => {
    const inner = memory();
    const wrapped = measureStore(inner);
    expect(measureStore(wrapped)).toBe(wrapped);
    expect(wrapped.kind).toBe("memory");
    expect(typeof wrapped.listUserSessions).toBe("function");
    const bare: SessionStore = { ...pick(inner), kind: "bare" };
    const measuredBare = measureStore(bare);
    expect(measuredBare.listUserSessions).toBeUndefined();
    expect(measuredBare.revokeUserSessions).toBeUndefined();
    expect(() => managerFor(measuredBare)).not.toThrow();
    const timings: string[] = [];
    wrapped.onTiming(({ operation, ok }) => timings.push(`${operation}:${ok}`));
    wrapped.onTiming(() => {
      throw new Error("a broken listener must not break the store");
    });
    const now = Date.now();
    const meta = { createdAt: now, lastSeenAt: now, absoluteExpiresAt: now + 60_000, expiresAt: now + 60_000, userId: "ada" };
    expect(await wrapped.create("k", { meta, fields: new Map([["a", "1"]]) })).toBe(true);
    const loaded = await wrapped.load("k", { now, idleTimeoutMs: 60_000, touchIntervalMs: 1000 });
    expect(typeof loaded === "string" ? loaded : loaded.fields.get("a")).toBe("1");
    expect((await wrapped.listUserSessions?.("ada", now))?.map((entry) => entry.key)).toEqual(["k"]);
    expect(timings).toEqual(["create:true", "load:true", "listUserSessions:true"]);
  });
});

/** Only the required methods of a store, bound to it. */
function pick(store: SessionStore): Omit<SessionStore, "kind"> {
  return {
    load: store.load.bind(store),
    create: store.create.bind(store),
    apply: store.apply.bind(store),
    increment: store.increment.bind(store),
    compareAndSet: store.compareAndSet.bind(store),
    rotate: store.rotate.bind(store),
    destroy: store.destroy.bind(store),
    ping: store.ping.bind(store),
  };
}

describe("loading", () => {
  it("importing the core, the stores and the adapters never loads prom-client; the metrics module does", () => {
    // dist/ is compiled by the global setup (test-support/build.ts).
    const script = `
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const loaded = () => Object.keys(require.cache).some((path) => path.includes("/node_modules/prom-client/"));
      await import("atomic-session");
      await import("atomic-session/stores/memory");
      await import("atomic-session/stores/sqlite");
      await import("atomic-session/node");
      const before = loaded();
      await import("atomic-session/metrics");
      console.log(JSON.stringify({ before, after: loaded() }));
    `;
    const output = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(JSON.parse(output.trim())).toEqual({ before: false, after: true });
  });
});
