import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../../../", import.meta.url));

/**
 * Applications that declare their session data with `SessionTypes`. A declaration merges into
 * the whole program it is part of, so each is type-checked as a program of its own, importing
 * `atomic-session` by name as an application does.
 */
const declaredWithAnInterface = `
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import { expectTypeOf } from "vitest";
import { SessionManager, type Session } from "atomic-session";
import { sessionMiddleware as expressSessions } from "atomic-session/express";
import { sessionPlugin } from "atomic-session/fastify";
import { sessionMiddleware as honoSessions } from "atomic-session/hono";
import { withSessions } from "atomic-session/node";
import { MemoryStore } from "atomic-session/stores/memory";

interface Profile { theme: "dark" | "light" }
interface AppData {
  visitCount: number;
  cartItems?: number;
  user?: string;
  profile?: Profile;
  level: 1 | 2 | 3;
}
declare module "atomic-session" {
  interface SessionTypes {
    data: AppData;
  }
}

const manager = new SessionManager({ store: new MemoryStore() });

async function use(session: Session) {
  expectTypeOf(session.get("visitCount")).resolves.toEqualTypeOf<number | undefined>();
  expectTypeOf(session.get("profile")).resolves.toEqualTypeOf<Profile | undefined>();
  expectTypeOf(session.all()).resolves.toEqualTypeOf<Partial<AppData>>();
  expectTypeOf(session.update("visitCount", (count) => (count ?? 0) + 1)).resolves.toEqualTypeOf<number | undefined>();
  expectTypeOf(session.increment("visitCount")).resolves.toEqualTypeOf<number>();
  await session.increment("cartItems", 2);
  // @ts-expect-error: "visits" is not declared
  await session.get("visits");
  // @ts-expect-error: visitCount holds a number
  await session.set("visitCount", "one");
  // @ts-expect-error: the values object is checked too
  await session.set({ visitCount: 1, admin: true });
  // @ts-expect-error: update() must return the key's type
  await session.update("user", () => 42);
  // @ts-expect-error: only keys declared as numbers can be incremented: user is a string
  await session.increment("user");
  // @ts-expect-error: a union of literals is not a number an increment may produce
  await session.increment("level");
  // @ts-expect-error: only declared keys can be incremented
  await session.increment("visits");
}

withSessions(manager, async (_req, res, session) => {
  await use(session);
  res.end();
});

const expressApp = express();
expressApp.use(expressSessions(manager));
expressApp.get("/", async (req, res) => {
  await use(req.session);
  res.end();
});

const fastifyApp = Fastify();
await fastifyApp.register(sessionPlugin, { manager });
fastifyApp.get("/", async (request) => {
  await use(request.session);
  return "ok";
});

const honoApp = new Hono().use(honoSessions(manager));
honoApp.get("/", async (c) => {
  await use(c.var.session);
  await use(c.get("session"));
  return c.text("ok");
});
// Hono apps that do not list the middleware in their type still read it through ContextVariableMap.
new Hono().get("/", async (c) => c.text(String(await c.get("session").get("visitCount"))));
`;

const undeclared = `
import { SessionManager } from "atomic-session";
import { withSessions } from "atomic-session/node";
import { MemoryStore } from "atomic-session/stores/memory";
import { expectTypeOf } from "vitest";

withSessions(new SessionManager({ store: new MemoryStore() }), async (_req, res, session) => {
  expectTypeOf(session.get("anything")).resolves.toEqualTypeOf<unknown>();
  await session.increment("anything");
  await session.set({ a: 1, b: "two" });
  res.end();
});
`;

const declaredWrongly = `
import { SessionManager } from "atomic-session";
import { withSessions } from "atomic-session/node";
import { MemoryStore } from "atomic-session/stores/memory";

declare module "atomic-session" {
  interface SessionTypes {
    data: string;
  }
}

withSessions(new SessionManager({ store: new MemoryStore() }), async (_req, res, session) => {
  await session.get("length");
  res.end();
});
`;

const compilerOptions = {
  target: "ES2022",
  lib: ["ES2023", "DOM"],
  module: "NodeNext",
  moduleResolution: "NodeNext",
  strict: true,
  noUncheckedIndexedAccess: true,
  verbatimModuleSyntax: true,
  skipLibCheck: true,
  noEmit: true,
  types: ["node"],
};

/** Type-checks `source` as a program of its own; resolves tsc's output ("" when it compiles). */
async function typecheck(folder: string, source: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, "app.ts"), source);
  await writeFile(join(folder, "package.json"), JSON.stringify({ type: "module" }));
  await writeFile(join(folder, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["app.ts"] }));
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  return run(process.execPath, [tsc, "-p", folder], { timeout: 60_000 }).then(
    () => "",
    (error: { stdout?: string; message: string }) => error.stdout || error.message,
  );
}

describe("SessionTypes: one declaration types the session in every adapter", () => {
  // Inside the repository so that the programs resolve atomic-session, express, fastify, hono and vitest as an app would.
  const cache = join(root, "node_modules", ".cache", "atomic-session-type-tests");
  let folder: string | undefined;
  afterAll(async () => {
    if (folder !== undefined) await rm(folder, { recursive: true, force: true });
  });

  it("an interface works: typed get, set, update, all; increment only on keys declared as numbers", async () => {
    await mkdir(cache, { recursive: true });
    folder = await mkdtemp(join(cache, "app-"));
    expect(await typecheck(join(folder, "interface"), declaredWithAnInterface)).toBe("");
  });

  it("nothing declared: any key, unknown values", async () => {
    await mkdir(cache, { recursive: true });
    folder ??= await mkdtemp(join(cache, "app-"));
    expect(await typecheck(join(folder, "undeclared"), undeclared)).toBe("");
  });

  it("data that is not an object type fails to compile, with a message naming the mistake", async () => {
    await mkdir(cache, { recursive: true });
    folder ??= await mkdtemp(join(cache, "app-"));
    const output = await typecheck(join(folder, "wrong"), declaredWrongly);
    expect(output).toContain("SessionTypes.data must be an object type");
  });
});
