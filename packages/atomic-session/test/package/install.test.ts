/**
 * atomic-session as a new user gets it: the packed tarball installed into a fresh application
 * with only the drivers it uses. The tarball is self-contained (every relative import resolves
 * inside it, LICENSE, README, bin); the library brings at most 3 packages of its own; a strict
 * TypeScript app with typed session data on Express + Redis compiles on TypeScript 5.9 and the
 * newest (no skipLibCheck), runs against a real redis-server, and `npx atomic-session` works there.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, spawnTracked, type TrackedChild, tempDir, waitForExit } from "../../../../test-support/processes.js";
import { type RedisServer, startRedisServer } from "../../../../test-support/redis-server.js";
import { CookieJar } from "../../../../test-support/server-process.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../../../", import.meta.url));
const INSTALL_TIMEOUT_MS = 400_000;

async function npm(args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run("npm", [...args, "--no-audit", "--no-fund", "--prefer-offline"], {
    cwd,
    env: { ...process.env, ...env },
    timeout: INSTALL_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/** Relative module specifiers of a JavaScript or declaration file. */
function relativeImports(source: string): string[] {
  const found: string[] = [];
  const patterns = [/\bfrom\s+["'](\.[^"']*)["']/g, /\bimport\s*\(\s*["'](\.[^"']*)["']\s*\)/g, /^\s*import\s+["'](\.[^"']*)["']/gm];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1] as string);
  return found;
}

function filesUnder(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name), `${prefix}${entry.name}/`) : [`${prefix}${entry.name}`],
  );
}

/** The application a new user writes: typed session data, Express, the Redis store. */
const APP = `
import express from "express";
import { SessionManager, StoreUnavailableError } from "atomic-session";
import { sessionMiddleware } from "atomic-session/express";
import { RedisStore } from "atomic-session/stores/redis";

interface AppSession {
  visits: number;
  theme?: "dark" | "light";
}
declare module "atomic-session" {
  interface SessionTypes {
    data: AppSession;
  }
}

const url = process.env.REDIS_URL;
if (url === undefined) throw new Error("REDIS_URL is required");
const sessions = new SessionManager({ store: new RedisStore({ url }), secrets: ["a-secret-of-at-least-thirty-two-characters"] });

const app = express();
app.use(express.json());
app.use(sessionMiddleware(sessions));
app.get("/", async (req, res) => {
  const visits: number = await req.session.increment("visits");
  // @ts-expect-error: theme is not a number, so it cannot be incremented
  if (visits < 0) await req.session.increment("theme");
  res.type("text/plain").send(\`visit \${visits}\`);
});
app.post("/login", async (req, res) => {
  await req.session.login(String((req.body as { user?: unknown }).user));
  res.json({ ok: true });
});
app.get("/me", async (req, res) => {
  const info = await req.session.info();
  if (info?.userId === undefined) {
    res.status(401).json({ user: null });
    return;
  }
  res.json({ user: info.userId, visits: (await req.session.get("visits")) ?? 0 });
});
app.post("/logout", async (req, res) => {
  await req.session.destroy();
  res.status(204).end();
});
app.use((error: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
  if (error instanceof StoreUnavailableError) res.status(503).json({ error: error.message });
  else next(error);
});
const server = app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => {
  server.close();
  void sessions.store.dispose?.();
});
`;

/** A program that imports only the core and the Redis store, with no @types/node in its types (TypeScript 7's default). */
const REDIS_ONLY = `
import { SessionManager } from "atomic-session";
import { RedisStore } from "atomic-session/stores/redis";
export const manager = new SessionManager({ store: new RedisStore({ url: "redis://127.0.0.1:6379/0" }) });
`;

const compilerOptions = {
  target: "ES2022",
  module: "NodeNext",
  moduleResolution: "NodeNext",
  strict: true,
  noUncheckedIndexedAccess: true,
  verbatimModuleSyntax: true,
};

describe("the packed library, installed into a fresh application", () => {
  let tarball: string;
  let contents: string;
  let app: string;
  let redis: RedisServer | undefined;
  let server: TrackedChild | undefined;
  let origin = "";

  beforeAll(async () => {
    const packed = tempDir("pack");
    const [report] = JSON.parse(
      await npm(["pack", "--workspace", "packages/atomic-session", "--pack-destination", packed, "--json"], root),
    ) as {
      filename: string;
    }[];
    tarball = join(packed, report?.filename ?? "");
    contents = tempDir("tarball");
    await run("tar", ["-xzf", tarball, "-C", contents]);
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    if (server !== undefined) {
      server.child.kill("SIGTERM");
      await waitForExit(server.child, 5_000);
    }
    await redis?.stop();
  });

  it("ships LICENSE, README, the bin and every file its exports name; every relative import resolves inside the tarball", () => {
    const pkg = join(contents, "package");
    const files = new Set(filesUnder(pkg));
    for (const file of ["LICENSE", "README.md", "package.json"]) expect(files.has(file), file).toBe(true);
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
      exports: Record<string, string | { types: string; default: string }>;
      bin: Record<string, string>;
      private?: boolean;
      scripts?: Record<string, string>;
    };
    expect(manifest.private).toBeUndefined();
    for (const script of ["prepare", "prestart", "postinstall", "install", "preinstall"])
      expect(manifest.scripts?.[script]).toBeUndefined();
    const targets = Object.values(manifest.exports).flatMap((target) =>
      typeof target === "string" ? [target] : [target.types, target.default],
    );
    for (const target of [...targets, ...Object.values(manifest.bin)]) expect(files.has(normalize(target)), target).toBe(true);
    expect(readFileSync(join(pkg, manifest.bin["atomic-session"] as string), "utf8").startsWith("#!/usr/bin/env node")).toBe(true);
    const missing: string[] = [];
    for (const file of files) {
      if (!file.endsWith(".js") && !file.endsWith(".d.ts")) continue;
      for (const specifier of relativeImports(readFileSync(join(pkg, file), "utf8"))) {
        const target = normalize(join(dirname(file), specifier));
        const candidates = file.endsWith(".d.ts") ? [target, target.replace(/\.js$/, ".d.ts")] : [target];
        if (!candidates.some((candidate) => files.has(candidate))) missing.push(`${file} → ${specifier}`);
      }
    }
    expect(missing).toEqual([]);
    expect([...files].filter((file) => file.endsWith(".tsbuildinfo") || file.includes("/test/"))).toEqual([]);
  });

  it(
    "brings at most 3 packages of its own (peers aside)",
    async () => {
      const bare = tempDir("bare-install");
      await writeFile(join(bare, "package.json"), JSON.stringify({ name: "bare", version: "1.0.0", private: true }));
      await npm(["install", tarball, "--omit=peer", "--legacy-peer-deps"], bare);
      const installed = readdirSync(join(bare, "node_modules"))
        .filter((name) => !name.startsWith("."))
        .flatMap((name) =>
          name.startsWith("@") ? readdirSync(join(bare, "node_modules", name)).map((inner) => `${name}/${inner}`) : [name],
        )
        .filter((name) => name !== "atomic-session");
      expect(installed.length, installed.join(", ")).toBeLessThanOrEqual(3);
      expect(installed).not.toContain("better-sqlite3");
      expect(installed).not.toContain("redis");
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "a strict Express + Redis app with typed session data compiles on TypeScript 5.9 and the newest, without better-sqlite3",
    async () => {
      app = tempDir("app");
      await writeFile(
        join(app, "package.json"),
        JSON.stringify({
          name: "fresh-app",
          version: "1.0.0",
          private: true,
          type: "module",
          allowScripts: { "better-sqlite3": true },
          dependencies: { "atomic-session": `file:${tarball}`, express: "^5.1.0", redis: "^5.0.0" },
          devDependencies: {
            "@types/express": "^5.0.0",
            "@types/node": "^20.0.0",
            ts5: "npm:typescript@~5.9.0",
            ts7: "npm:typescript@latest",
          },
        }),
      );
      await npm(["install"], app);
      expect(existsSync(join(app, "node_modules/better-sqlite3"))).toBe(false);
      expect(existsSync(join(app, "node_modules/@types/better-sqlite3"))).toBe(false);
      await mkdir(join(app, "src"), { recursive: true });
      await writeFile(join(app, "src/app.ts"), APP);
      await mkdir(join(app, "redis-only"), { recursive: true });
      await writeFile(join(app, "redis-only/index.ts"), REDIS_ONLY);
      await writeFile(
        join(app, "tsconfig.json"),
        JSON.stringify({ compilerOptions: { ...compilerOptions, rootDir: "src", outDir: "dist", types: ["node"] }, include: ["src"] }),
      );
      await writeFile(
        join(app, "tsconfig.redis-only.json"),
        JSON.stringify({ compilerOptions: { ...compilerOptions, noEmit: true, types: [] }, include: ["redis-only"] }),
      );
      const ts7 = JSON.parse(readFileSync(join(app, "node_modules/ts7/package.json"), "utf8")) as { version: string };
      expect(Number(ts7.version.split(".")[0])).toBeGreaterThanOrEqual(7);
      for (const compiler of ["ts5", "ts7"]) {
        for (const project of ["tsconfig.redis-only.json", "tsconfig.json"]) {
          const tsc = join(app, "node_modules", compiler, "bin", "tsc");
          const outcome = await run(process.execPath, [tsc, "-p", project], { cwd: app, timeout: 120_000 }).then(
            () => "",
            (error: { stdout?: string; message: string }) => error.stdout || error.message,
          );
          expect(outcome, `${compiler} -p ${project}`).toBe("");
        }
      }
    },
    INSTALL_TIMEOUT_MS,
  );

  it("runs against a real redis-server: the counter counts, login and logout work over HTTP", async () => {
    redis = await startRedisServer();
    const port = await freePort();
    server = spawnTracked(process.execPath, ["dist/app.js"], app, { REDIS_URL: redis.url, PORT: String(port) });
    origin = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && !server.output.includes("listening"); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.output).toContain("listening");
    const jar = new CookieJar();
    expect(await jar.text(`${origin}/`)).toBe("visit 1");
    expect(await jar.text(`${origin}/`)).toBe("visit 2");
    const anonymous = jar.cookie;
    expect((await jar.login(origin, "ada")).status).toBe(200);
    expect(jar.cookie).not.toBe(anonymous);
    expect(await (await jar.fetch(`${origin}/me`)).json()).toEqual({ user: "ada", visits: 2 });
    expect((await jar.fetch(`${origin}/logout`, { method: "POST" })).status).toBe(204);
    expect(jar.cookie).toBeUndefined();
    expect((await jar.fetch(`${origin}/me`)).status).toBe(401);
  });

  it(
    "npx atomic-session works there: --help, stats against the app's Redis, and on SQLite once better-sqlite3@12 is installed",
    async () => {
      // One live anonymous session in the app's Redis for stats to find.
      expect(await new CookieJar().text(`${origin}/`)).toBe("visit 1");
      const help = await run("npx", ["atomic-session", "--help"], { cwd: app, timeout: 60_000 });
      expect(help.stdout).toMatch(/^Usage: atomic-session <command>/);
      const redisStats = await run("npx", ["atomic-session", "stats", "--json"], {
        cwd: app,
        timeout: 60_000,
        env: { ...process.env, REDIS_URL: redis?.url },
      });
      expect(JSON.parse(redisStats.stdout)).toMatchObject({ store: "redis", sessions: 1, users: 0, anonymous: 1 });

      await npm(["install", "better-sqlite3@12"], app);
      const file = join(app, "sessions.db");
      // Two sessions written by the app's own copy of the library: one logged in, one anonymous.
      const seed = `
      import { SessionManager } from "atomic-session";
      import { SqliteStore } from "atomic-session/stores/sqlite";
      const store = new SqliteStore({ path: ${JSON.stringify(file)} });
      const manager = new SessionManager({ store });
      const request = () => ({ cookieHeader: undefined, encrypted: false, forwardedProto: undefined, userAgent: "seed" });
      const response = () => ({ setCookie() {}, withdrawCookie() {}, varyOnCookie() {}, headersSent: () => false });
      await manager.open(request(), response()).login("grace");
      await manager.open(request(), response()).increment("visits");
      await store.dispose();
    `;
      await writeFile(join(app, "seed.mjs"), seed);
      await run(process.execPath, ["seed.mjs"], { cwd: app, timeout: 60_000 });
      const sqliteStats = await run("npx", ["atomic-session", "stats", "--json"], {
        cwd: app,
        timeout: 60_000,
        env: { ...process.env, SESSION_STORE: "sqlite", SQLITE_PATH: file },
      });
      expect(JSON.parse(sqliteStats.stdout)).toEqual({ store: "sqlite", sessions: 2, users: 1, signedIn: 1, anonymous: 1 });
    },
    INSTALL_TIMEOUT_MS,
  );
});
