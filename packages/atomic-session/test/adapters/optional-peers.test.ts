import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
const hooks = new URL("./refuse-optional-peers.mjs", import.meta.url).href;

/**
 * Imports one compiled module in a fresh node process where resolving a framework or an
 * optional peer throws (ESM imports, through the hooks) and where none may sit in the
 * CommonJS module cache afterwards (require() calls, which Node 20 hooks do not see).
 * Resolves the child's verdict: "clean", or what it reported.
 */
async function importAlone(modulePath: string): Promise<string> {
  const register = `import { register } from "node:module"; register(${JSON.stringify(hooks)});`;
  const check = `
    await import(${JSON.stringify(new URL(modulePath, `file://${root}`).href)});
    const { createRequire } = await import("node:module");
    const cached = Object.keys(createRequire(process.cwd() + "/").cache);
    const peers = cached.filter((path) => /[\\\\/]node_modules[\\\\/](express|fastify|fastify-plugin|hono|@hono[\\\\/]node-server|ioredis)[\\\\/]/.test(path));
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

describe("frameworks are optional peer dependencies", () => {
  it.each(["dist/src/index.js", "dist/src/stores/memory.js", "dist/src/stores/redis/index.js", "dist/src/adapters/node.js"])(
    "importing %s loads none of express, fastify, hono, @hono/node-server, ioredis",
    async (modulePath) => {
      expect(await importAlone(modulePath)).toBe("clean");
    },
  );

  // The Express adapter needs express only for types; these show that both checks catch a load.
  it.each([
    ["dist/src/adapters/fastify.js", "fastify-plugin was imported"],
    ["dist/src/adapters/hono.js", "hono was imported"],
    ["node_modules/express/index.js", "required: "],
  ])("the check has teeth: importing %s is reported (%s)", async (modulePath, verdict) => {
    expect(await importAlone(modulePath)).toContain(verdict);
  });
});
