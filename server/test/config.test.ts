import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
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

describe("the README's configuration table", () => {
  const root = new URL("../../", import.meta.url);
  const read = (path: string) => readFileSync(new URL(path, root), "utf8");
  /** The variables a source file reads: `env.NAME`, `env["NAME"]`, or a name handed to a parser with the env. */
  const variablesIn = (source: string) =>
    new Set([...source.matchAll(/\benv(?:\.|\[")([A-Z][A-Z0-9_]+)|\(env, "([A-Z][A-Z0-9_]+)"/g)].map((match) => match[1] ?? match[2]));
  const readVariables = variablesIn(read("packages/atomic-session/src/env/index.ts"));
  for (const name of variablesIn(read("server/src/config.ts"))) readVariables.add(name);
  const table = read("README.md").split("### Configuration (environment)")[1]?.split("\n## ")[0] ?? "";
  const listed = new Set([...table.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map((match) => match[1]));

  it("lists every variable the server and atomic-session/env read, and no other", () => {
    expect(readVariables.size).toBeGreaterThan(20);
    expect([...readVariables].filter((name) => !listed.has(name)).sort()).toEqual([]);
    expect([...listed].filter((name) => !readVariables.has(name)).sort()).toEqual([]);
  });
});
