// One server under test, in its own process: `node bench/server.mjs <name>`.
// Environment: BENCH_REDIS_URL (the private redis-server), BENCH_DIR (a temporary folder).
// Prints `BENCH_LISTENING <port>` once it listens on 127.0.0.1. Exits on SIGTERM/SIGINT or
// when its stdin closes (the runner died), through process.exit so that --cpu-prof writes
// its profile.
//
// Stats over stdin/stdout, for the runner's fixed-rate and high-concurrency measurements:
//   `stats-start\n` resets and starts the event-loop delay histogram and the RSS sampler;
//   `stats-stop\n`  stops them and answers one line `BENCH_STATS {json}` (see statsLine).
// Nothing is sampled outside such a window, so the saturation measurements pay nothing for it.
import { monitorEventLoopDelay } from "node:perf_hooks";
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

/** The histogram's timer fires every RESOLUTION_MS: it records the interval, so the delay is the interval minus this. */
const RESOLUTION_MS = 1;
const RSS_EVERY_MS = 100;
let histogram;
let sampler;
let rssMax = 0;

function statsStart() {
  histogram?.disable();
  histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  rssMax = process.memoryUsage.rss();
  clearInterval(sampler);
  sampler = setInterval(() => {
    rssMax = Math.max(rssMax, process.memoryUsage.rss());
  }, RSS_EVERY_MS);
}

/** Milliseconds of event-loop delay at percentile `p` (interval minus resolution, never below 0). */
const delayAt = (p) => Math.max(0, histogram.percentile(p) / 1e6 - RESOLUTION_MS);

function statsLine() {
  const memory = process.memoryUsage();
  clearInterval(sampler);
  histogram?.disable();
  const stats = {
    rss: Math.max(rssMax, memory.rss),
    rssEnd: memory.rss,
    heapTotal: memory.heapTotal,
    heapUsed: memory.heapUsed,
    external: memory.external,
    eldP50: histogram === undefined ? undefined : delayAt(50),
    eldP99: histogram === undefined ? undefined : delayAt(99),
    eldMax: histogram === undefined ? undefined : Math.max(0, histogram.max / 1e6 - RESOLUTION_MS),
    eldSamples: histogram?.count,
  };
  histogram = undefined;
  rssMax = 0;
  return `BENCH_STATS ${JSON.stringify(stats)}\n`;
}

let input = "";
process.stdin.setEncoding("utf8").on("data", (chunk) => {
  input += chunk;
  for (let newline = input.indexOf("\n"); newline !== -1; newline = input.indexOf("\n")) {
    const command = input.slice(0, newline).trim();
    input = input.slice(newline + 1);
    if (command === "stats-start") statsStart();
    else if (command === "stats-stop") process.stdout.write(statsLine());
  }
});

process.stdout.write(`BENCH_LISTENING ${started.port}\n`);
