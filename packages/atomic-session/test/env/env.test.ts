import { SessionManager } from "atomic-session";
import { EnvConfigError, managerOptionsFromEnv, openStore, storeEnv, storeFromEnv } from "atomic-session/env";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";

describe("storeEnv", () => {
  it("defaults to SQLite in ./data/sessions.db", () => {
    expect(storeEnv({})).toEqual({ kind: "sqlite", where: "./data/sessions.db", path: "./data/sessions.db" });
  });

  it("picks Redis when a REDIS_* variable is set and PostgreSQL when DATABASE_URL is, unless SESSION_STORE says otherwise", () => {
    expect(storeEnv({ REDIS_URL: "redis://127.0.0.1:6379/3" })).toMatchObject({
      kind: "redis",
      connection: { url: "redis://127.0.0.1:6379/3" },
    });
    expect(storeEnv({ REDIS_URL: "redis://127.0.0.1:6379/3", SESSION_STORE: "memory" }).kind).toBe("memory");
    expect(storeEnv({ DATABASE_URL: "postgres://app@127.0.0.1:5432/app" }).kind).toBe("postgres");
    expect(storeEnv({ SESSION_STORE: "SQLite", SQLITE_PATH: " /tmp/x.db " })).toMatchObject({ kind: "sqlite", path: "/tmp/x.db" });
  });

  it("parses REDIS_CLUSTER seed nodes and REDIS_SENTINEL", () => {
    expect(storeEnv({ REDIS_CLUSTER: " 127.0.0.1:7000, redis-a.internal:7001,[::1]:7002 " })).toMatchObject({
      kind: "redis",
      connection: { cluster: ["127.0.0.1:7000", "redis-a.internal:7001", "[::1]:7002"] },
    });
    expect(storeEnv({ REDIS_SENTINEL: "mymaster@127.0.0.1:26379, sentinel-b:26380" })).toMatchObject({
      kind: "redis",
      connection: { sentinel: { name: "mymaster", nodes: ["127.0.0.1:26379", "sentinel-b:26380"] } },
    });
  });

  it("never names a password in `where`", () => {
    expect(storeEnv({ REDIS_URL: "redis://user:hunter2@10.0.0.1:6379/2" }).where).not.toContain("hunter2");
    expect(storeEnv({ DATABASE_URL: "postgres://app:hunter2@db:5432/app" }).where).not.toContain("hunter2");
  });

  it.each([
    [{ SESSION_STORE: "mongo" }, /SESSION_STORE must be one of/],
    [{ SESSION_STORE: "redis" }, /needs REDIS_URL/],
    [{ SESSION_STORE: "postgres" }, /needs DATABASE_URL/],
    [{ REDIS_CLUSTER: "127.0.0.1" }, /REDIS_CLUSTER must be comma-separated host:port/],
    [{ REDIS_CLUSTER: "127.0.0.1:7000,127.0.0.1:99999" }, /REDIS_CLUSTER/],
    [{ REDIS_CLUSTER: "127.0.0.1:7000,," }, /REDIS_CLUSTER/],
    [{ REDIS_CLUSTER: "redis://127.0.0.1:7000" }, /REDIS_CLUSTER/],
    [{ REDIS_CLUSTER: "127.0.0.1:7000", REDIS_URL: "redis://127.0.0.1:6379/0" }, /not REDIS_URL and REDIS_CLUSTER/],
    [{ REDIS_SENTINEL: "127.0.0.1:26379" }, /REDIS_SENTINEL must be mastername@host:port/],
    [{ REDIS_SENTINEL: "@127.0.0.1:26379" }, /REDIS_SENTINEL must be mastername@host:port/],
    [{ REDIS_SENTINEL: "my master@127.0.0.1:26379" }, /REDIS_SENTINEL/],
    [{ REDIS_SENTINEL: "mymaster@127.0.0.1" }, /REDIS_SENTINEL must be comma-separated host:port/],
    [{ REDIS_SENTINEL: "mymaster@127.0.0.1:26379", REDIS_CLUSTER: "127.0.0.1:7000" }, /not REDIS_CLUSTER and REDIS_SENTINEL/],
    [{ REDIS_URL: "not a url" }, /REDIS_URL is not a valid URL/],
    [{ MEMORY_MAX_ENTRIES: "0", SESSION_STORE: "memory" }, /MEMORY_MAX_ENTRIES/],
  ])("rejects %j with EnvConfigError naming the variable", (env, message) => {
    expect(() => storeEnv(env)).toThrow(EnvConfigError);
    expect(() => storeEnv(env)).toThrow(message);
  });
});

describe("managerOptionsFromEnv", () => {
  it("leaves every default alone when nothing is set", () => {
    expect(managerOptionsFromEnv({})).toEqual({ cookie: {} });
  });

  it("reads secrets as a comma-separated list, timeouts in seconds, and every cookie attribute", () => {
    const options = managerOptionsFromEnv({
      SESSION_SECRET: " one , two ,",
      SESSION_IDLE_TIMEOUT: "60",
      SESSION_ABSOLUTE_TIMEOUT: "3600",
      SESSION_TOUCH_INTERVAL: "0",
      STORE_TIMEOUT_MS: "250",
      SESSION_MAX_SIZE_BYTES: "1024",
      SESSION_MAX_PER_USER: "5",
      TRUST_PROXY: "true",
      SESSION_COOKIE_NAME: "__Host-sid",
      SESSION_COOKIE_SECURE: "true",
      SESSION_COOKIE_SAMESITE: "Strict",
      SESSION_COOKIE_PERSISTENT: "false",
      SESSION_COOKIE_PARTITIONED: "1",
      SESSION_COOKIE_PRIORITY: "high",
      SESSION_COOKIE_PATH: "/",
    });
    expect(options).toEqual({
      secrets: ["one", "two"],
      idleTimeoutMs: 60_000,
      absoluteTimeoutMs: 3_600_000,
      touchIntervalMs: 0,
      storeTimeoutMs: 250,
      maxSizeBytes: 1024,
      maxSessionsPerUser: 5,
      trustProxy: true,
      cookie: { name: "__Host-sid", secure: true, sameSite: "strict", persistent: false, partitioned: true, priority: "high", path: "/" },
    });
    expect(managerOptionsFromEnv({ SESSION_MAX_PER_USER: "0" }).maxSessionsPerUser).toBe(Number.POSITIVE_INFINITY);
    expect(managerOptionsFromEnv({ SESSION_COOKIE_SECURE: "auto" }).cookie?.secure).toBe("auto");
  });

  it.each([
    [{ SESSION_IDLE_TIMEOUT: "-5" }, /SESSION_IDLE_TIMEOUT/],
    [{ SESSION_IDLE_TIMEOUT: "1.5" }, /SESSION_IDLE_TIMEOUT/],
    [{ STORE_TIMEOUT_MS: "0" }, /STORE_TIMEOUT_MS/],
    [{ TRUST_PROXY: "maybe" }, /TRUST_PROXY/],
    [{ SESSION_COOKIE_SAMESITE: "lenient" }, /SESSION_COOKIE_SAMESITE must be one of lax, strict, none/],
    [{ SESSION_COOKIE_PRIORITY: "urgent" }, /SESSION_COOKIE_PRIORITY/],
  ])("rejects %j with EnvConfigError naming the variable", (env, message) => {
    expect(() => managerOptionsFromEnv(env)).toThrow(EnvConfigError);
    expect(() => managerOptionsFromEnv(env)).toThrow(message);
  });

  it("gives options the manager checks in turn: an unsafe combination fails when the manager is created", async () => {
    const store = await storeFromEnv({ SESSION_STORE: "memory" });
    expect(() => new SessionManager({ ...managerOptionsFromEnv({ SESSION_COOKIE_SAMESITE: "none" }), store })).toThrow(
      /requires cookie.secure/,
    );
    expect(() => new SessionManager({ ...managerOptionsFromEnv({ SESSION_SECRET: "short" }), store })).toThrow(/shorter than 32/);
    await store.dispose?.();
  });
});

describe("openStore", () => {
  it("builds the store the environment names, and only loads that store's module", async () => {
    const path = `${tempDir("env")}/sessions.db`;
    const store = await openStore(storeEnv({ SQLITE_PATH: path }));
    expect(store.kind).toBe("sqlite");
    await store.dispose?.();
    const memory = await storeFromEnv({ SESSION_STORE: "memory", MEMORY_MAX_ENTRIES: "10" });
    expect(memory.kind).toBe("memory");
    await memory.dispose?.();
  });
});
