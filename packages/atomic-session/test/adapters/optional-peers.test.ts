import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
const hooks = new URL("./refuse-optional-peers.mjs", import.meta.url).href;

/** Every framework, driver and tool atomic-session can work with: each is an optional peer (fastify-plugin comes with the Fastify adapter). */
const PEERS = [
  "express",
  "fastify",
  "fastify-plugin",
  "hono",
  "@hono/node-server",
  "redis",
  "@redis/",
  "ioredis",
  "better-sqlite3",
  "pg",
  "prom-client",
  "vitest",
  "@vitest/",
] as const;

/** A node_modules path of one of `peers`, as it appears in the CommonJS module cache. */
function cachePattern(peers: readonly string[]): RegExp {
  const names = peers.map((peer) => peer.replace(/\/$/, "[^\\\\/]+").replace(/\//g, "[\\\\/]"));
  return new RegExp(`[\\\\/]node_modules[\\\\/](${names.join("|")})[\\\\/]`);
}

/**
 * Imports `specifier` (by package name, as an application does) in a fresh node process where
 * resolving any peer but `allowed` throws (ESM imports, through the hooks) and where none may sit
 * in the CommonJS module cache afterwards (require() calls, which Node 20's hooks do not see),
 * then runs `then` (code that may use the module as `imported`). Resolves the child's verdict:
 * "clean", or what it reported.
 */
async function importAlone(specifier: string, allowed: readonly string[] = [], then = ""): Promise<string> {
  const refused = PEERS.filter((peer) => !allowed.includes(peer));
  const register = `import { register } from "node:module"; register(${JSON.stringify(hooks)}, { data: { refused: ${JSON.stringify(refused)} } });`;
  const check = `
    const imported = await import(${JSON.stringify(specifier)});
    ${then}
    const { createRequire } = await import("node:module");
    const cached = Object.keys(createRequire(process.cwd() + "/").cache);
    const peers = cached.filter((path) => ${cachePattern(refused)}.test(path));
    console.log(peers.length === 0 ? "clean" : "required: " + peers.join(", "));
  `;
  const argv = ["--import", `data:text/javascript,${encodeURIComponent(register)}`, "--input-type=module", "-e", check];
  try {
    const { stdout } = await run(process.execPath, argv, { cwd: root, timeout: 20_000 });
    return stdout.trim();
  } catch (error) {
    return String((error as { stderr?: string }).stderr ?? error);
  }
}

describe("each public subpath loads only its own driver or framework", () => {
  it.each([
    ["atomic-session", []],
    ["atomic-session/stores/memory", []],
    ["atomic-session/stores/redis", []],
    ["atomic-session/stores/sqlite", ["better-sqlite3"]],
    ["atomic-session/stores/postgres", ["pg"]],
    ["atomic-session/express-session", []],
    ["atomic-session/node", []],
    ["atomic-session/express", ["express"]],
    ["atomic-session/fastify", ["fastify", "fastify-plugin"]],
    ["atomic-session/hono", ["hono"]],
    ["atomic-session/env", []],
    ["atomic-session/testing", ["vitest", "@vitest/"]],
    ["atomic-session/metrics", ["prom-client"]],
  ] as const)("%s loads none of the other peers (allowed: %j)", async (specifier, allowed) => {
    expect(await importAlone(specifier, allowed)).toBe("clean");
  });
});

describe("the check has teeth", () => {
  // (The Express and Hono adapters use their framework only for types: they load nothing.)
  it.each([
    ["atomic-session/fastify", "fastify-plugin was imported"],
    ["atomic-session/stores/sqlite", "better-sqlite3 was imported"],
    ["atomic-session/metrics", "prom-client was imported"],
    ["atomic-session/testing", "vitest was imported"],
  ])("importing %s with its own peer refused is reported (%s)", async (specifier, verdict) => {
    expect(await importAlone(specifier)).toContain(verdict);
  });

  it("a CommonJS require() of a peer, which the hooks do not see, is caught in the module cache", async () => {
    // By file path, so that the hooks let it through and only express's own require() calls load it.
    const expressFile = pathToFileURL(createRequire(import.meta.url).resolve("express")).href;
    expect(await importAlone(expressFile)).toMatch(/^required: .*[\\/]node_modules[\\/]express[\\/]/);
  });

  it("the Redis store loads redis once a url is used", async () => {
    const useUrl = `
      const store = new imported.RedisStore({ url: "redis://127.0.0.1:9/0" });
      console.log(await store.ping().then(() => "answered", (error) => String(error?.message)));
      await store.dispose?.().catch(() => undefined);
    `;
    expect(await importAlone("atomic-session/stores/redis", [], useUrl)).toContain("redis was imported");
  });
});
