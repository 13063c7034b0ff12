import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { readConfig, ServerConfigError } from "../../server/config.js";

describe("reference server configuration", () => {
  it("defaults to 127.0.0.1:5000 on SQLite in ./data/sessions.db", () => {
    const config = readConfig({});
    expect(config).toMatchObject({ host: "127.0.0.1", port: 5000, store: "sqlite", sqlitePath: "./data/sessions.db" });
    expect(config.secrets).toBeUndefined();
    expect(config.idleTimeoutMs).toBeUndefined();
  });

  it("picks Redis when REDIS_URL is set, unless SESSION_STORE says otherwise", () => {
    expect(readConfig({ REDIS_URL: "redis://127.0.0.1:6379/3" }).store).toBe("redis");
    expect(readConfig({ REDIS_URL: "redis://127.0.0.1:6379/3", SESSION_STORE: "memory" }).store).toBe("memory");
  });

  it("reads secrets as a comma-separated list and timeouts in seconds", () => {
    const config = readConfig({
      SESSION_SECRET: " one , two ,",
      SESSION_IDLE_TIMEOUT: "60",
      SESSION_ABSOLUTE_TIMEOUT: "3600",
      STORE_TIMEOUT_MS: "250",
    });
    expect(config.secrets).toEqual(["one", "two"]);
    expect(config.idleTimeoutMs).toBe(60_000);
    expect(config.absoluteTimeoutMs).toBe(3_600_000);
    expect(config.storeTimeoutMs).toBe(250);
  });

  it.each([
    [{ SESSION_STORE: "mongo" }, /SESSION_STORE must be one of/],
    [{ SESSION_STORE: "redis" }, /needs REDIS_URL/],
    [{ PORT: "70000" }, /PORT/],
    [{ PORT: "50x" }, /PORT/],
    [{ SESSION_IDLE_TIMEOUT: "-5" }, /SESSION_IDLE_TIMEOUT/],
    [{ STORE_TIMEOUT_MS: "0" }, /STORE_TIMEOUT_MS/],
    [{ TRUST_PROXY: "maybe" }, /TRUST_PROXY/],
  ])("rejects %j with a message naming the variable", (env, message) => {
    expect(() => readConfig(env)).toThrow(ServerConfigError);
    expect(() => readConfig(env)).toThrow(message);
  });

  it("refuses to start on a secret shorter than 32 characters, saying why", () => {
    const result = spawnSync(process.execPath, ["dist/server/main.js"], {
      env: { PATH: process.env.PATH ?? "", SESSION_STORE: "memory", PORT: "0", SESSION_SECRET: "too-short" },
      encoding: "utf8",
      timeout: 10_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/secrets\[0\] is shorter than 32 characters/);
  });
});
