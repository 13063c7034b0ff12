/**
 * The thread that owns `SqliteStore`'s connection, so that nothing SQLite does (waiting for
 * another process's write lock, a long sweep, a sync to disk) runs on the application's
 * event loop. See `scheduler.ts` for how it runs what it is asked.
 * @module
 */
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type Database from "better-sqlite3";
import { jobFor, Operations } from "./operations.js";
import type { Reply, Request, WorkerSettings } from "./protocol.js";
import { Scheduler } from "./scheduler.js";
import { openConnection } from "./schema.js";

if (parentPort === null) throw new Error("atomic-session: stores/sqlite/worker.js runs only as SqliteStore's worker thread");
const port = parentPort;
const settings = workerData as WorkerSettings;

const { db, operations } = open();

function open(): { db: Database.Database; operations: Operations } {
  let db: Database.Database | undefined;
  try {
    db = openConnection(settings.path, settings);
    // The scheduler waits for a busy write lock itself, between other work: SQLite must not sleep on this thread.
    db.pragma("busy_timeout = 0");
    // 16 MiB of page cache (SQLite's default is 2): the b-tree's inner pages and the hot rows stay
    // in memory, and a purge spills fewer dirty pages before its commit.
    db.pragma("cache_size = -16384");
    // A checkpoint every 10,000 WAL pages (about 40 MB) rather than 1,000: new sessions land on
    // random pages, and each checkpoint copies and syncs them; ten times fewer of them made
    // 100,000 session inserts about 30% faster here. The WAL file grows that large.
    db.pragma("wal_autocheckpoint = 10000");
    return { db, operations: new Operations(db) };
  } catch (error) {
    db?.close();
    // better-sqlite3's errors lose their message on the way to the main thread's "error" event; a plain Error keeps it.
    const code = (error as { code?: unknown }).code;
    throw new Error(`${error instanceof Error ? error.message : String(error)}${typeof code === "string" ? ` (${code})` : ""}`);
  }
}

const scheduler = new Scheduler(
  db,
  settings.busyTimeoutMs,
  () => {
    for (let message = receiveMessageOnPort(port); message !== undefined; message = receiveMessageOnPort(port)) {
      accept(message.message as Request[]);
    }
  },
  (replies) => port.postMessage(replies),
);

function accept(requests: Request[]): void {
  for (const { id, deadline, operation } of requests) {
    if (operation.op === "close") scheduler.close(() => close(id));
    else scheduler.enqueue(id, deadline, jobFor(operation, operations));
  }
}

function close(id: number): void {
  clearInterval(sweeper);
  db.close();
  const reply: Reply = { id, ok: true, value: undefined };
  port.postMessage([reply]);
  // Nothing is left to keep the thread alive: it ends.
  port.close();
}

port.on("message", (requests: Request[]) => {
  accept(requests);
  scheduler.run();
});

const sweeper = setInterval(
  () => scheduler.sweep(() => jobFor({ op: "purgeExpired", now: Date.now() }, operations)),
  settings.sweepIntervalMs,
);
