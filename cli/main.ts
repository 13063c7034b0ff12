#!/usr/bin/env node
/**
 * `sessionstore`: the admin CLI. It builds its store exactly as the reference server does
 * (`server/config.ts` + `server/store.ts`, from the same environment) and prints only public
 * facts: handles, users, times, user agents; never a session ID, a store key or session data.
 *
 * Exit status: 0 done; 1 failed (store unreachable, no such session); 2 usage or configuration error.
 * @module
 */
import { once } from "node:events";
import { existsSync } from "node:fs";
import { readConfig, type ServerConfig, ServerConfigError } from "../server/config.js";
import { createStore, describeStore } from "../server/store.js";
import { SessionConfigError } from "../src/core/errors.js";
import type { SessionStore } from "../src/core/store.js";
import { Admin, rootCause, StoreFailure, Unsupported } from "./admin.js";
import { type Command, parseCommandLine, USAGE, UsageError } from "./args.js";
import { details, safeJson, safeText, tableHeader, tableRow, viewOf } from "./format.js";

const OK = 0;
const FAILED = 1;
const USAGE_STATUS = 2;
/** Default deadline on each store step; `STORE_TIMEOUT_MS` overrides it, as for the server. */
const DEFAULT_TIMEOUT_MS = 5_000;
/** Most time `dispose()` may take before the process exits anyway (a stalled Redis). */
const DISPOSE_TIMEOUT_MS = 3_000;

/** A session or user the command names does not exist (exit status 1). */
class NotFound extends Error {
  override name = "NotFound";
}

/** The configuration cannot work for this tool (exit status 2). */
class ConfigurationError extends Error {
  override name = "ConfigurationError";
}

async function write(text: string): Promise<void> {
  if (!process.stdout.write(`${text}\n`)) await once(process.stdout, "drain");
}

function warn(text: string): void {
  process.stderr.write(`sessionstore: ${text}\n`);
}

function openStore(config: ServerConfig): SessionStore {
  if (config.store === "memory") {
    throw new ConfigurationError(
      "SESSION_STORE=memory keeps sessions inside the server process, where no other process can reach them: point the CLI at the server's SQLite file or Redis",
    );
  }
  // Opening a missing file would create an empty database and report "no sessions": a wrong path must say so.
  if (config.store === "sqlite" && !existsSync(config.sqlitePath)) {
    throw new NotFound(
      `no session database at ${config.sqlitePath}: set SQLITE_PATH to the server's file (default ./data/sessions.db, relative to the current folder)`,
    );
  }
  return createStore(config);
}

async function run(command: Exclude<Command, { name: "help" }>, admin: Admin, where: string): Promise<void> {
  const kind = admin.store.kind;
  switch (command.name) {
    case "stats": {
      const stats = await admin.stats();
      if (command.json) {
        await write(safeJson({ store: kind, ...stats }));
        return;
      }
      await write(`store       ${kind} ${safeText(where)}`);
      await write(`sessions    ${stats.sessions}`);
      if (stats.users !== null) {
        await write(`users       ${stats.users}`);
        await write(`signed in   ${stats.signedIn}`);
        await write(`anonymous   ${stats.anonymous}`);
      }
      return;
    }
    case "list": {
      const entries = command.user === undefined ? admin.scan() : await admin.listUser(command.user);
      let count = 0;
      if (!command.json) await write(tableHeader());
      for await (const entry of entries) {
        count++;
        const view = viewOf(entry);
        await write(command.json ? safeJson(view) : tableRow(view));
      }
      if (!command.json) await write(`(${count} session${count === 1 ? "" : "s"})`);
      return;
    }
    case "show": {
      const entry = await admin.find(command.handle);
      if (entry === undefined) throw new NotFound(`no live session has the handle ${command.handle}`);
      const view = viewOf(entry);
      await write(command.json ? safeJson(view) : details(view));
      return;
    }
    case "revoke": {
      if ("user" in command.target) {
        const { user } = command.target;
        const revoked = await admin.destroyUser(user);
        if (command.json) await write(safeJson({ revoked, user }));
        else if (revoked === 0) await write(`user ${safeText(user)} had no live session`);
        else await write(`revoked ${revoked} session${revoked === 1 ? "" : "s"} of user ${safeText(user)}`);
        return;
      }
      const { handle } = command.target;
      const entry = await admin.find(handle);
      if (entry === undefined) throw new NotFound(`no live session has the handle ${handle}`);
      await admin.destroy(entry);
      const user = entry.meta.userId ?? null;
      if (command.json) await write(safeJson({ revoked: 1, handle, user }));
      else await write(`revoked session ${handle}${user === null ? " (anonymous)" : ` of user ${safeText(user)}`}`);
      return;
    }
    case "purge": {
      const purged = await admin.purge();
      if (command.json) await write(safeJson(purged === undefined ? { purged: 0, automatic: true } : { purged, automatic: false }));
      else if (purged === undefined) await write(`nothing to purge: the ${kind} store expires sessions by itself`);
      else await write(`purged ${purged} expired session${purged === 1 ? "" : "s"} from ${safeText(where)}`);
      return;
    }
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    warn(`${error.message}\nRun \`sessionstore --help\` for the commands and options.`);
    return USAGE_STATUS;
  }
  if (command.name === "help") {
    await write(USAGE);
    return OK;
  }

  let config: ServerConfig;
  let store: SessionStore;
  let where = "";
  try {
    config = readConfig(process.env);
    store = openStore(config);
    where = describeStore(config);
  } catch (error) {
    if (error instanceof NotFound) {
      warn(error.message);
      return FAILED;
    }
    if (error instanceof ServerConfigError || error instanceof SessionConfigError || error instanceof ConfigurationError) {
      warn(`configuration: ${error.message}`);
      return USAGE_STATUS;
    }
    warn(`cannot open the session store: ${rootCause(error)}`);
    return FAILED;
  }

  const wantProgress = "progress" in command && (command.progress || process.stderr.isTTY === true);
  const admin = new Admin(store, {
    timeoutMs: config.storeTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    progress: wantProgress ? (scanned) => warn(`scanned ${scanned.toLocaleString("en-US")} sessions…`) : undefined,
  });
  try {
    try {
      await admin.ping();
    } catch (error) {
      warn(`the ${store.kind} store at ${safeText(where)} is unreachable: ${(error as Error).message}`);
      return FAILED;
    }
    await run(command, admin, where);
    return OK;
  } catch (error) {
    if (error instanceof NotFound || error instanceof Unsupported) warn(error.message);
    else if (error instanceof StoreFailure) warn(`the ${store.kind} store at ${safeText(where)}: ${error.message}`);
    else warn(`failed: ${rootCause(error)}`);
    return FAILED;
  } finally {
    await closeStore(store);
  }
}

async function closeStore(store: SessionStore): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, DISPOSE_TIMEOUT_MS);
  });
  await Promise.race([Promise.resolve(store.dispose?.()).catch(() => undefined), timedOut]);
  clearTimeout(timer);
}

// `sessionstore list | head`: the reader went away; stop quietly.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(OK);
  throw error;
});

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error: unknown) => {
    warn(`failed: ${rootCause(error)}`);
    process.exit(FAILED);
  },
);
