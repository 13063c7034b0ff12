/**
 * The admin CLI against SQLite: a file the reference server filled (and keeps serving while the
 * CLI revokes its sessions), and a file the library filled with 10,000+ sessions (pages, progress,
 * purge, hostile user agents). Every command, `--json` parsed, every exit status.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { SessionMeta } from "atomic-session";
import { SqliteStore } from "atomic-session/stores/sqlite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CookieJar, ServerProcess, tempDir } from "../../../../test-support/server-process.js";
import { handleOf, isWellFormedSessionId, storeKeyOf } from "../../src/core/ids.js";
import { handleOfJar, jsonLines, printed, runCli, UNKNOWN_HANDLE } from "./run.js";

const HOUR = 3_600_000;
const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

function newFile(): string {
  const folder = tempDir("cli-sqlite");
  folders.push(folder);
  return join(folder, "sessions.db");
}

/** Raw session IDs and store keys seen in the test: none may ever be printed. */
const secrets = new Set<string>();
function remember(jar: CookieJar): void {
  const id = jar.id;
  if (id === undefined) return;
  secrets.add(id);
  secrets.add(storeKeyOf(id));
}

async function visit(jar: CookieJar, url: string, userAgent: string): Promise<void> {
  const response = await jar.fetch(`${url}/`, { headers: { "user-agent": userAgent } });
  expect(response.status).toBe(200);
  remember(jar);
}

async function login(jar: CookieJar, url: string, user: string, userAgent: string): Promise<void> {
  await visit(jar, url, userAgent);
  expect((await jar.login(url, user, userAgent)).status).toBe(200);
  remember(jar);
}

describe("admin CLI on a SQLite file the reference server fills", () => {
  let server: ServerProcess;
  let env: Record<string, string>;
  const anonymous = new CookieJar();
  const ada1 = new CookieJar();
  const ada2 = new CookieJar();
  const bob = new CookieJar();

  beforeAll(async () => {
    const file = newFile();
    env = { SQLITE_PATH: file };
    server = await ServerProcess.start(env);
    await visit(anonymous, server.url, "agent/anonymous");
    await login(ada1, server.url, "ada", "agent/ada-1");
    await login(ada2, server.url, "ada", "agent/ada-2");
    await login(bob, server.url, "bob", "agent/bob");
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("stats: live sessions, distinct users, signed in and anonymous", async () => {
    const json = await runCli(["stats", "--json"], env);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ store: "sqlite", sessions: 4, users: 2, signedIn: 3, anonymous: 1 });
    const text = await runCli(["stats"], env);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^sessions +4$/m);
    expect(text.stdout).toMatch(/^users +2$/m);
    // stderr is a pipe here: no progress lines.
    expect(text.stderr).toBe("");
  });

  it("list: every session with its public facts, as a table and as JSON lines", async () => {
    const json = await runCli(["list", "--json"], env);
    expect(json.status).toBe(0);
    const entries = jsonLines(json.stdout);
    const byHandle = new Map(entries.map((entry) => [entry.handle, entry]));
    expect(byHandle.size).toBe(4);
    expect(byHandle.get(handleOfJar(anonymous))).toMatchObject({ user: null, userAgent: null });
    expect(byHandle.get(handleOfJar(ada1))).toMatchObject({ user: "ada", userAgent: "agent/ada-1" });
    expect(byHandle.get(handleOfJar(bob))).toMatchObject({ user: "bob", userAgent: "agent/bob" });
    for (const entry of entries) {
      expect(Object.keys(entry).sort()).toEqual([
        "absoluteExpiresAt",
        "createdAt",
        "expiresAt",
        "handle",
        "lastSeenAt",
        "user",
        "userAgent",
      ]);
      for (const time of ["createdAt", "lastSeenAt", "expiresAt", "absoluteExpiresAt"]) {
        expect(entry[time]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      }
      expect(Date.parse(entry.expiresAt as string)).toBeGreaterThan(Date.now() - 1000);
    }

    const table = await runCli(["list"], env);
    expect(table.status).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^HANDLE +USER +CREATED +LAST SEEN +EXPIRES +USER AGENT$/);
    for (const jar of [anonymous, ada1, ada2, bob]) expect(table.stdout).toContain(handleOfJar(jar));
    expect(lines.at(-1)).toBe("(4 sessions)");
  });

  it("list --user: that user's sessions only, newest first, through the index", async () => {
    const result = await runCli(["list", "--user", "ada", "--json"], env);
    expect(result.status).toBe(0);
    expect(jsonLines(result.stdout).map((entry) => entry.handle)).toEqual([handleOfJar(ada2), handleOfJar(ada1)]);
    const nobody = await runCli(["list", "-u", "nobody"], env);
    expect(nobody.status).toBe(0);
    expect(nobody.stdout.trimEnd().split("\n").at(-1)).toBe("(0 sessions)");
  });

  it("show: one session's facts by handle; 1 for an unknown handle, 2 for something that is not a handle", async () => {
    const handle = handleOfJar(ada1);
    const text = await runCli(["show", handle], env);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^handle +${handle}$`, "m"));
    expect(text.stdout).toMatch(/^user +ada$/m);
    expect(text.stdout).toMatch(/^user agent +agent\/ada-1$/m);
    const json = await runCli(["show", handle, "--json"], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ handle, user: "ada", userAgent: "agent/ada-1" });

    const unknown = await runCli(["show", UNKNOWN_HANDLE], env);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain(`no live session has the handle ${UNKNOWN_HANDLE}`);
    expect(unknown.stdout).toBe("");

    const malformed = await runCli(["show", "abc"], env);
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/16 characters/);

    // A raw ID pasted by mistake is refused without being echoed.
    const id = ada1.id as string;
    expect(isWellFormedSessionId(id)).toBe(true);
    // One ID (and handle) in 64 starts with "-": it must not be taken for an option either.
    for (const candidate of [id, `-${id.slice(1)}`]) {
      const pasted = await runCli(["show", candidate], env);
      expect(pasted.status).toBe(2);
      expect(pasted.stderr).toMatch(/looks like a session ID/);
      expect(pasted.stderr).not.toContain(candidate.slice(1, 10));
    }
    const dashedHandle = await runCli(["show", "-AAAAAAAAAAAAAAA", "--json"], env);
    expect(dashedHandle.status).toBe(1);
    expect(dashedHandle.stderr).toContain("no live session has the handle -AAAAAAAAAAAAAAA");
  });

  it("revoke <handle>: that session is gone (its cookie gets 404), the others live on", async () => {
    const handle = handleOfJar(ada1);
    const result = await runCli(["revoke", handle], env);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`revoked session ${handle} of user ada\n`);
    expect((await ada1.fetch(`${server.url}/session`)).status).toBe(404);
    expect((await ada2.fetch(`${server.url}/session`)).status).toBe(200);
    expect((await anonymous.fetch(`${server.url}/session`)).status).toBe(200);

    const again = await runCli(["revoke", handle], env);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`no live session has the handle ${handle}`);
    expect((await runCli(["show", handle], env)).status).toBe(1);
  });

  it("revoke --user: every session of that user is gone; none left is still a success", async () => {
    const result = await runCli(["revoke", "--user", "bob", "--json"], env);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ revoked: 1, user: "bob" });
    expect((await bob.fetch(`${server.url}/session`)).status).toBe(404);
    expect((await ada2.fetch(`${server.url}/session`)).status).toBe(200);

    const none = await runCli(["revoke", "--user", "bob"], env);
    expect(none.status).toBe(0);
    expect(none.stdout).toBe("user bob had no live session\n");
    expect(JSON.parse((await runCli(["stats", "--json"], env)).stdout)).toMatchObject({ sessions: 2, users: 1 });
  });

  it("usage errors exit 2 with a message on stderr; --help and help exit 0", async () => {
    const usage: string[][] = [
      [],
      ["frobnicate"],
      ["list", "--bogus"],
      ["list", "extra"],
      ["stats", "--user", "ada"],
      ["purge", "--progress"],
      ["show"],
      ["revoke"],
      ["revoke", UNKNOWN_HANDLE, "--user", "ada"],
      ["revoke", "--user"],
      ["list", "--user", ""],
    ];
    for (const args of usage) {
      const result = await runCli(args, env);
      expect(result.status, args.join(" ")).toBe(2);
      expect(result.stdout, args.join(" ")).toBe("");
      expect(result.stderr, args.join(" ")).toMatch(/^atomic-session: .+\nRun `atomic-session --help`/);
    }
    for (const args of [["--help"], ["-h"], ["help"], ["list", "--help"]]) {
      const result = await runCli(args, env);
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(/^Usage: atomic-session <command>/);
      for (const command of ["stats", "list", "show", "revoke", "purge"]) expect(result.stdout).toContain(command);
    }
  });

  it("configuration: the memory store and a bad variable exit 2; a missing SQLite file exits 1 and is not created", async () => {
    const memory = await runCli(["stats"], { SESSION_STORE: "memory" });
    expect(memory.status).toBe(2);
    expect(memory.stderr).toMatch(/memory/);
    const bad = await runCli(["stats"], { SESSION_STORE: "mongodb" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/SESSION_STORE/);
    const missing = join(tempDir("cli-missing"), "nope", "sessions.db");
    folders.push(join(missing, "..", ".."));
    const result = await runCli(["stats"], { SQLITE_PATH: missing });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no session database at ${missing}`);
    expect(existsSync(join(missing, ".."))).toBe(false);
  });

  it("never prints a session ID or a store key", () => {
    expect(secrets.size).toBeGreaterThanOrEqual(8);
    const all = printed.join("\n");
    for (const secret of secrets) expect(all).not.toContain(secret);
  });
});

describe("admin CLI on a SQLite file with 10,000+ sessions", () => {
  const file = newFile();
  const env = { SQLITE_PATH: file };
  const hostile = "Evil\u001b[2J\u001b]0;pwned\u0007\u202eagent\u009b";
  let hostileKey: string;
  const LIVE = 10_005;

  beforeAll(async () => {
    const store = new SqliteStore({ path: file });
    const now = Date.now();
    const meta = (overrides: Partial<SessionMeta> = {}): SessionMeta => ({
      createdAt: now,
      lastSeenAt: now,
      absoluteExpiresAt: now + 2 * HOUR,
      expiresAt: now + HOUR,
      ...overrides,
    });
    const key = () => randomBytes(32).toString("base64url");
    for (let i = 0; i < LIVE - 1; i++) {
      await store.create(key(), { meta: meta(i % 2 === 0 ? { userId: `user-${i % 50}` } : {}), fields: new Map([["secret", '"value"']]) });
    }
    hostileKey = key();
    await store.create(hostileKey, { meta: meta({ userId: "mallory\u001b[31m", userAgent: hostile }), fields: new Map() });
    for (let i = 0; i < 3; i++) {
      await store.create(key(), { meta: meta({ createdAt: now - 2 * HOUR, expiresAt: now - 1 }), fields: new Map([["a", "1"]]) });
    }
    await store.dispose();
  });

  it("stats reads every page; progress lines on stderr only with --progress (stderr is not a terminal)", async () => {
    const quiet = await runCli(["stats", "--json"], env);
    expect(quiet.status).toBe(0);
    expect(JSON.parse(quiet.stdout)).toEqual({ store: "sqlite", sessions: LIVE, users: 26, signedIn: 5003, anonymous: 5002 });
    expect(quiet.stderr).toBe("");
    const loud = await runCli(["stats", "--progress"], env);
    expect(loud.status).toBe(0);
    expect(loud.stderr).toBe("atomic-session: scanned 10,000 sessions…\n");
    expect(loud.stdout).toMatch(new RegExp(`^sessions +${LIVE}$`, "m"));
  });

  it("lists every session once; a hostile user agent reaches neither the table nor the JSON as control characters", async () => {
    const json = await runCli(["list", "--json"], env);
    expect(json.status).toBe(0);
    const entries = jsonLines(json.stdout);
    expect(entries).toHaveLength(LIVE);
    expect(new Set(entries.map((entry) => entry.handle)).size).toBe(LIVE);
    // Escaped, yet lossless: the JSON decodes to the stored text.
    expect(entries.find((entry) => entry.user === "mallory\u001b[31m")?.userAgent).toBe(hostile);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for control characters.
    const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;
    expect(json.stdout).not.toMatch(control);

    const table = await runCli(["list"], env);
    expect(table.status).toBe(0);
    expect(table.stdout.split("\n")).toHaveLength(LIVE + 3);
    expect(table.stdout).not.toMatch(control);
    expect(table.stdout).toContain("mallory\ufffd[31m");

    const show = await runCli(["show", handleOf(hostileKey)], env);
    expect(show.status).toBe(0);
    expect(show.stdout).not.toMatch(control);
    expect(show.stdout).toContain("Evil\ufffd[2J\ufffd]0;pwned\ufffd\ufffdagent\ufffd");
  });

  it("stops quietly when the reader goes away (`list | head`)", async () => {
    const child = spawn(process.execPath, ["packages/atomic-session/dist/cli/main.js", "list"], {
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    child.stdout.once("data", () => child.stdout.destroy());
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const status = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    expect(status).toBe(0);
    expect(stderr).toBe("");
  });

  it("purge deletes the expired records now and says how many; then there are none", async () => {
    const first = await runCli(["purge"], env);
    expect(first.status).toBe(0);
    expect(first.stdout).toBe(`purged 3 expired sessions from ${file}\n`);
    const second = await runCli(["purge", "--json"], env);
    expect(JSON.parse(second.stdout)).toEqual({ purged: 0, automatic: false });
    expect(JSON.parse((await runCli(["stats", "--json"], env)).stdout)).toMatchObject({ sessions: LIVE });
  });

  it("revoke <handle> deletes the record: load answers gone", async () => {
    const result = await runCli(["revoke", handleOf(hostileKey), "--json"], env);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ revoked: 1, handle: handleOf(hostileKey), user: "mallory\u001b[31m" });
    const store = new SqliteStore({ path: file });
    try {
      expect(await store.load(hostileKey, { now: Date.now(), idleTimeoutMs: HOUR, touchIntervalMs: HOUR })).toBe("gone");
    } finally {
      await store.dispose();
    }
  });

  it("never prints a store key", () => {
    const all = printed.join("\n");
    expect(all).not.toContain(hostileKey);
    expect(all).not.toContain('"value"');
  });
});
