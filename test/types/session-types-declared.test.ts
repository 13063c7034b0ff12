import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));

/**
 * An application that declares its session data with `SessionTypes` and uses every adapter.
 * A declaration merges into the whole program it is part of, so this one is type-checked
 * as a program of its own, not with the repository's tests. `SRC` is the path to src/.
 */
const application = `
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { expectTypeOf } from "vitest";
import { sessionMiddleware as expressSessions } from "SRC/adapters/express.js";
import { sessionPlugin } from "SRC/adapters/fastify.js";
import { sessionMiddleware as honoSessions } from "SRC/adapters/hono.js";
import { withSessions } from "SRC/adapters/node.js";
import { SessionManager } from "SRC/index.js";
import { MemoryStore } from "SRC/stores/memory.js";

declare module "SRC/index.js" {
  interface SessionTypes {
    data: { visitCount: number; user?: string };
  }
}

// No type argument: the manager takes the declared data.
const manager = new SessionManager({ store: new MemoryStore() });

withSessions(manager, async (_req, res, session) => {
  expectTypeOf(session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
  // @ts-expect-error: "visits" is not declared
  await session.get("visits");
  res.end();
});

const expressApp = express();
expressApp.use(expressSessions(manager));
expressApp.get("/", async (req, res) => {
  expectTypeOf(req.session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
  // @ts-expect-error: visitCount holds a number
  await req.session.set("visitCount", "one");
  res.end();
});

const fastifyApp = Fastify();
await fastifyApp.register(sessionPlugin, { manager });
fastifyApp.get("/", async (request) => {
  expectTypeOf(request.session.get("user")).resolves.toEqualTypeOf<string | undefined>();
  // @ts-expect-error: "visits" is not declared
  await request.session.increment("visits");
  return "ok";
});

const honoApp = new Hono().use(honoSessions(manager));
honoApp.get("/", async (c) => {
  expectTypeOf(c.var.session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
  expectTypeOf(c.get("session").get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
  // @ts-expect-error: visitCount holds a number
  await c.get("session").set("visitCount", "one");
  return c.text("ok");
});
// Hono apps that do not list the middleware in their type still read it through ContextVariableMap.
new Hono().get("/", async (c) => c.text(String(await c.get("session").get("visitCount"))));

// A manager for other data does not fit the adapters.
const other = new SessionManager<{ cart: string[] }>({ store: new MemoryStore() });
// @ts-expect-error: the manager's data is not the declared data
expressSessions(other);
// @ts-expect-error: the manager's data is not the declared data
honoSessions(other);
// @ts-expect-error: the manager's data is not the declared data
await Fastify().register(sessionPlugin, { manager: other });
`;

const compilerOptions = {
  target: "ES2022",
  lib: ["ES2023"],
  module: "NodeNext",
  moduleResolution: "NodeNext",
  strict: true,
  noUncheckedIndexedAccess: true,
  verbatimModuleSyntax: true,
  skipLibCheck: true,
  noEmit: true,
  types: ["node"],
};

describe("SessionTypes", () => {
  // Inside node_modules/ so that the program resolves express, fastify, hono and vitest like the repository does.
  const cache = join(root, "node_modules", ".cache", "sessionstore-type-tests");
  let folder: string | undefined;
  afterAll(async () => {
    if (folder !== undefined) await rm(folder, { recursive: true, force: true });
  });

  it("types req.session, request.session, c.get('session') and the manager from one declaration", async () => {
    await mkdir(cache, { recursive: true });
    folder = await mkdtemp(join(cache, "app-"));
    const src = relative(folder, join(root, "src")).split("\\").join("/");
    await writeFile(join(folder, "app.ts"), application.replaceAll("SRC/", `${src}/`));
    await writeFile(join(folder, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(join(folder, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["app.ts"] }));
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    const outcome = await run(process.execPath, [tsc, "-p", folder], { timeout: 60_000 }).then(
      () => "",
      (error: { stdout?: string; message: string }) => error.stdout || error.message,
    );
    expect(outcome).toBe("");
  });
});
