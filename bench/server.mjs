// One server under test, in its own process: `node bench/server.mjs <name>`.
// Environment: BENCH_REDIS_URL (the private redis-server), BENCH_DIR (a temporary folder).
// Prints `BENCH_LISTENING <port>` once it listens on 127.0.0.1. Exits on SIGTERM/SIGINT or
// when its stdin closes (the runner died), through process.exit so that --cpu-prof writes
// its profile.
import { SERVERS } from "./servers.mjs";

const name = process.argv[2];
const entry = SERVERS.find((server) => server.name === name);
if (entry === undefined) {
  console.error(`unknown server ${JSON.stringify(name)}; known: ${SERVERS.map((server) => server.name).join(", ")}`);
  process.exit(2);
}

let started;
try {
  started = await entry.start({ redisUrl: process.env.BENCH_REDIS_URL, dir: process.env.BENCH_DIR ?? process.cwd() });
} catch (error) {
  console.error(`${name} failed to start: ${error?.stack ?? error}`);
  process.exit(1);
}

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // Never wait long: a profile is only written when the process exits.
  setTimeout(() => process.exit(0), 2000).unref();
  started
    .close()
    .catch(() => undefined)
    .finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();

process.stdout.write(`BENCH_LISTENING ${started.port}\n`);
