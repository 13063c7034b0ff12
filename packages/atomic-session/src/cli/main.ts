#!/usr/bin/env node
/**
 * `atomic-session`: the admin CLI. It opens the store the environment names, exactly as
 * `atomic-session/env` does for an application, and uses only the library's public API. It
 * prints only public facts: handles, users, times, user agents; never a session ID, a store
 * key or session data.
 *
 * Exit status: 0 done; 1 failed (store unreachable, no such session); 2 usage or configuration error.
 * @module
 */
import { once } from "node:events";
import { existsSync } from "node:fs";
import { SessionConfigError, SessionManager, type SessionStore, StoreUnavailableError } from "atomic-session";
import { managerOptionsFromEnv, openStore, type StoreEnv, storeEnv } from "atomic-session/env";
import { type Command, parseCommandLine, USAGE, UsageError } from "./args.js";
import { details, safeJson, safeText, tableHeader, tableRow, viewOf } from "./format.js";

const OK = 0;
const FAILED = 1;
const USAGE_STATUS = 2;
/** Default deadline on each store step; `STORE_TIMEOUT_MS` overrides it, as for an application. */
const DEFAULT_TIMEOUT_MS = 5_000;
/** A purge is as many short batches as there are expired records: the whole gets this long. */
const PURGE_TIMEOUT_MS = 60_000;
/** Most time `dispose()` may take before the process exits anyway (a stalled Redis). */
const DISPOSE_TIMEOUT_MS = 3_000;
/** Progress of long scans every this many sessions. */
const PROGRESS_EVERY = 10_000;

/** A session or user the command names does not exist, or the store lacks an ability (exit status 1). */
class Failure extends Error {
  override name = "Failure";
}

async function write(text: string): Promise<void> {
  if (!process.stdout.write(`${text}\n`)) await once(process.stdout, "drain");
}

function warn(text: string): void {
  process.stderr.write(`atomic-session: ${text}\n`);
}

/** Resolves `work`, or rejects with a `Failure` once `timeoutMs` has passed. */
async function within<T>(what: string, timeoutMs: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`no answer to ${what} within ${timeoutMs} ms`)), timeoutMs);
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function run(command: Exclude<Command, { name: "help" }>, manager: SessionManager, config: StoreEnv, progress: boolean) {
  const kind = manager.store.kind;
  let scanned = 0;
  const sessions = async function* () {
    for await (const info of manager.listSessions()) {
      yield info;
      if (++scanned % PROGRESS_EVERY === 0 && progress) warn(`scanned ${scanned.toLocaleString("en-US")} sessions…`);
    }
  };
  switch (command.name) {
    case "stats": {
      let total = 0;
      let signedIn = 0;
      const users = new Set<string>();
      for await (const info of sessions()) {
        total++;
        if (info.userId !== undefined) {
          signedIn++;
          users.add(info.userId);
        }
      }
      const stats = { sessions: total, users: users.size, signedIn, anonymous: total - signedIn };
      if (command.json) return write(safeJson({ store: kind, ...stats }));
      await write(`store       ${kind} ${safeText(config.where)}`);
      await write(`sessions    ${stats.sessions}`);
      await write(`users       ${stats.users}`);
      await write(`signed in   ${stats.signedIn}`);
      await write(`anonymous   ${stats.anonymous}`);
      return;
    }
    case "list": {
      const entries = command.user === undefined ? sessions() : await manager.listUserSessions(command.user);
      let count = 0;
      if (!command.json) await write(tableHeader());
      for await (const info of entries) {
        count++;
        const view = viewOf(info);
        await write(command.json ? safeJson(view) : tableRow(view));
      }
      if (!command.json) await write(`(${count} session${count === 1 ? "" : "s"})`);
      return;
    }
    case "show": {
      const info = await manager.findSession(command.handle);
      if (info === undefined) throw new Failure(`no live session has the handle ${command.handle}`);
      const view = viewOf(info);
      return write(command.json ? safeJson(view) : details(view));
    }
    case "revoke": {
      if ("user" in command.target) {
        const { user } = command.target;
        const revoked = await manager.revokeUserSessions(user);
        if (command.json) return write(safeJson({ revoked, user }));
        if (revoked === 0) return write(`user ${safeText(user)} had no live session`);
        return write(`revoked ${revoked} session${revoked === 1 ? "" : "s"} of user ${safeText(user)}`);
      }
      const { handle } = command.target;
      const info = await manager.revokeSession(handle);
      if (info === undefined) throw new Failure(`no live session has the handle ${handle}`);
      const user = info.userId ?? null;
      if (command.json) return write(safeJson({ revoked: 1, handle, user }));
      return write(`revoked session ${handle}${user === null ? " (anonymous)" : ` of user ${safeText(user)}`}`);
    }
    case "purge": {
      const purged = await within("purge", PURGE_TIMEOUT_MS, manager.purgeExpired());
      if (command.json) return write(safeJson(purged === undefined ? { purged: 0, automatic: true } : { purged, automatic: false }));
      if (purged === undefined) return write(`nothing to purge: the ${kind} store expires sessions by itself`);
      return write(`purged ${purged} expired session${purged === 1 ? "" : "s"} from ${safeText(config.where)}`);
    }
  }
}

/** What went wrong, in one line: a store failure's detail, else the message. */
function reason(error: unknown): string {
  if (error instanceof StoreUnavailableError) return error.detail;
  return error instanceof Error ? error.message : String(error);
}

async function main(argv: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    warn(`${error.message}\nRun \`atomic-session --help\` for the commands and options.`);
    return USAGE_STATUS;
  }
  if (command.name === "help") {
    await write(USAGE);
    return OK;
  }

  let config: StoreEnv;
  let manager: SessionManager;
  let store: SessionStore;
  try {
    config = storeEnv(process.env);
    if (config.kind === "memory") {
      throw new SessionConfigError(
        "SESSION_STORE=memory keeps sessions inside the application's process, where no other process can reach them: point the CLI at its SQLite file, Redis or PostgreSQL",
      );
    }
    // Opening a missing file would create an empty database and report "no sessions": a wrong path must say so.
    if (config.kind === "sqlite" && !existsSync(config.path)) {
      warn(
        `no session database at ${config.path}: set SQLITE_PATH to the application's file (default ./data/sessions.db, relative to the current folder)`,
      );
      return FAILED;
    }
    const options = managerOptionsFromEnv(process.env);
    store = await openStore(config);
    manager = new SessionManager({
      store,
      storeTimeoutMs: options.storeTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(options.cookie?.persistent === undefined ? {} : { cookie: { persistent: options.cookie.persistent } }),
    });
  } catch (error) {
    if (error instanceof SessionConfigError) {
      warn(`configuration: ${error.message}`);
      return USAGE_STATUS;
    }
    warn(`cannot open the session store: ${reason(error)}`);
    return FAILED;
  }

  const progress = "progress" in command && (command.progress || process.stderr.isTTY === true);
  try {
    try {
      await manager.checkHealth();
    } catch (error) {
      warn(`the ${store.kind} store at ${safeText(config.where)} is unreachable: ${reason(error)}`);
      return FAILED;
    }
    await run(command, manager, config, progress);
    return OK;
  } catch (error) {
    if (error instanceof StoreUnavailableError) warn(`the ${store.kind} store at ${safeText(config.where)}: ${reason(error)}`);
    else warn(reason(error));
    return FAILED;
  } finally {
    await within("dispose", DISPOSE_TIMEOUT_MS, Promise.resolve(store.dispose?.())).catch(() => undefined);
  }
}

// `atomic-session list | head`: the reader went away; stop quietly.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(OK);
  throw error;
});

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error: unknown) => {
    warn(`failed: ${reason(error)}`);
    process.exit(FAILED);
  },
);
