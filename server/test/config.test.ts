import { spawnSync } from "node:child_process";
import { EnvConfigError } from "atomic-session/env";
import { describe, expect, it } from "vitest";
import { readServerConfig } from "../src/config.js";

describe("reference server configuration", () => {
  it("defaults to 127.0.0.1:5000, info logs and a 3 s shutdown", () => {
    expect(readServerConfig({})).toEqual({ host: "127.0.0.1", port: 5000, logLevel: "info", shutdownTimeoutMs: 3000 });
  });

  it.each([
    [{ PORT: "70000" }, /PORT/],
    [{ PORT: "50x" }, /PORT/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL/],
    [{ SHUTDOWN_TIMEOUT_MS: "-1" }, /SHUTDOWN_TIMEOUT_MS/],
  ])("rejects %j with a message naming the variable", (env, message) => {
    expect(() => readServerConfig(env)).toThrow(EnvConfigError);
    expect(() => readServerConfig(env)).toThrow(message);
  });

  it.each([
    [{ SESSION_SECRET: "too-short" }, /secrets\[0\] is shorter than 32 characters/],
    [{ SESSION_COOKIE_DOMAIN: "bad domain" }, /cookie.domain "bad domain" is not a host name/],
    [{ SESSION_COOKIE_PATH: "relative" }, /cookie.path "relative" must start with "\/"/],
    [{ SESSION_STORE: "redis" }, /needs REDIS_URL/],
  ])("refuses to start on %j, saying why", (env, message) => {
    const result = spawnSync(process.execPath, ["server/dist/main.js"], {
      env: { PATH: process.env.PATH ?? "", SESSION_STORE: "memory", PORT: "0", ...env },
      encoding: "utf8",
      timeout: 10_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(message);
  });
});
