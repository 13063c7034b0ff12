/** The command line of `atomic-session`: what was asked, checked before any store is opened. */
import { parseArgs } from "node:util";

export const USAGE = `Usage: atomic-session <command> [options]

Administers the sessions of an application's store, configured by the environment the
application reads with atomic-session/env: SESSION_STORE, SQLITE_PATH, REDIS_URL,
REDIS_CLUSTER, REDIS_SENTINEL, REDIS_PREFIX or DATABASE_URL (STORE_TIMEOUT_MS: the deadline
on each store step; default here 5000 ms).

Commands:
  stats               how many live sessions, signed-in users and anonymous sessions
  list [--user U]     sessions: handle, user, created, last seen, expires, user agent
  show <handle>       one session's public facts (never its data)
  revoke <handle>     ends one session
  revoke --user U     ends every session of user U
  purge               deletes expired records now (SQLite; Redis expires keys by itself)
  help                this text

Options:
  --json              machine-readable output: one JSON object (list: one per line)
  -u, --user <U>      the sessions of user U, through the per-user index
  --progress          progress of long scans on stderr (default: only when stderr is a terminal)
  -h, --help          this text

A handle is a session's public 16-character name: the "session" field of the server's log
lines and the "handle" of GET /sessions. Session IDs and store keys are never shown, nor is
session data. stats, list without --user, show and revoke <handle> scan every session,
O(sessions in the store), in short batches that never block the store.

Exit status: 0 done; 1 failed (store unreachable, no such session); 2 usage or configuration error.
`;

export type Command =
  | { name: "help" }
  | { name: "stats"; json: boolean; progress: boolean }
  | { name: "list"; json: boolean; progress: boolean; user: string | undefined }
  | { name: "show"; json: boolean; progress: boolean; handle: string }
  | { name: "revoke"; json: boolean; progress: boolean; target: { handle: string } | { user: string } }
  | { name: "purge"; json: boolean };

/** A mistake in the command line (exit status 2). The message never repeats a value that could be a secret. */
export class UsageError extends Error {
  override name = "UsageError";
}

const HANDLE = /^[A-Za-z0-9_-]{16}$/;
/** Sessions' user IDs are 1 to 64 characters at the reference server; the library allows more. */
const MAX_USER_LENGTH = 1024;

export function parseCommandLine(argv: readonly string[]): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    // node's messages name the option, never its value.
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const [name, ...rest] = positionals;
  if (values.help === true || name === "help") return { name: "help" };
  if (name === undefined) throw new UsageError("no command given");
  const json = values.json === true;
  const progress = values.progress === true;
  const user = values.user === undefined ? undefined : checkUser(values.user);
  const allow = (options: readonly ("user" | "json" | "progress")[], positionalCount: number) => {
    for (const option of ["user", "json", "progress"] as const) {
      if (values[option] !== undefined && !options.includes(option)) throw new UsageError(`${name} takes no --${option}`);
    }
    if (rest.length > positionalCount) throw new UsageError(`${name}: unexpected argument #${positionalCount + 2}`);
  };

  switch (name) {
    case "stats":
      allow(["json", "progress"], 0);
      return { name, json, progress };
    case "list":
      allow(["user", "json", "progress"], 0);
      return { name, json, progress, user };
    case "show": {
      allow(["json", "progress"], 1);
      return { name, json, progress, handle: checkHandle(rest[0]) };
    }
    case "revoke": {
      allow(["user", "json", "progress"], 1);
      if (user !== undefined && rest.length > 0) throw new UsageError("revoke takes a handle or --user, not both");
      if (user !== undefined) return { name, json, progress, target: { user } };
      return { name, json, progress, target: { handle: checkHandle(rest[0]) } };
    }
    case "purge":
      allow(["json"], 0);
      return { name, json };
    default:
      throw new UsageError(`unknown command ${JSON.stringify(name.slice(0, 40))}`);
  }
}

const FLAGS = new Set(["-h", "--help", "--json", "--progress"]);
const WITH_VALUE = new Set(["-u", "--user"]);

/**
 * Puts every argument that is not one of our options after `--`: handles (and IDs pasted by
 * mistake) are base64url, so one in 64 starts with `-`, which parseArgs would take for an
 * unknown option (and echo).
 */
function optionsFirst(argv: readonly string[]): string[] {
  const options: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (FLAGS.has(arg) || arg.startsWith("--user=")) {
      options.push(arg);
    } else if (WITH_VALUE.has(arg)) {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      options.push(`--user=${value}`);
      i++;
    } else {
      positionals.push(arg);
    }
  }
  return [...options, "--", ...positionals];
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: optionsFirst(argv),
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: "boolean", short: "h" },
      json: { type: "boolean" },
      progress: { type: "boolean" },
      user: { type: "string", short: "u" },
    },
  });
}

function checkHandle(value: string | undefined): string {
  if (value === undefined) throw new UsageError("give the session's handle (see `atomic-session list`)");
  if (HANDLE.test(value)) return value;
  // Not echoed: it may be a session ID or a cookie pasted by mistake.
  const secretLike = value.length >= 43 ? "; that looks like a session ID or cookie, which are secrets: never paste one" : "";
  throw new UsageError(`a handle is 16 characters of A-Z a-z 0-9 _ - (see \`atomic-session list\`)${secretLike}`);
}

function checkUser(value: string): string {
  if (value === "" || value.length > MAX_USER_LENGTH) throw new UsageError(`--user takes a user ID of 1 to ${MAX_USER_LENGTH} characters`);
  return value;
}
