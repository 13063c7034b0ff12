#!/usr/bin/env node
// `npm run bench`: starts each server of bench/servers.mjs as its own process on 127.0.0.1,
// drives it with autocannon against a private redis-server, and prints (and with --full,
// writes to bench/RESULTS.md) throughput, latency, CPU and Redis cost per request, RSS and
// event-loop delay at an equal offered rate, errors and p99 with 2,500 connections, the
// lost-update check, Redis memory per session and p99 at 1k vs 1M sessions, then the targets
// with the measured reason of each one not met.
// See bench/README.md for the options and what each column means.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { ensureBuilt, ROOT } from "./lib/build.mjs";
import { counterIn, get, USER_AGENT } from "./lib/http-probe.mjs";
import { clockTicksPerSecond, cpuMicros } from "./lib/process-cpu.mjs";
import { formatProfile, summarizeProfile } from "./lib/profile.mjs";
import { BenchRedis, startRedis } from "./lib/redis.mjs";
import { aggregate, aggregateLoads, COMPARED_WITH, evaluateTargets, formatConsole, formatMarkdown } from "./lib/report.mjs";
import { percentile, Samples } from "./lib/stats.mjs";
import { SERVERS } from "./servers.mjs";

export const SCENARIOS = {
  new: { path: "/", cookie: false, title: "(a) new session on every request (GET /, no cookie)" },
  increment: { path: "/", cookie: true, title: "(b) existing session, changed (GET /, counter + 1)" },
  read: { path: "/count", cookie: true, title: "(c) existing session, only read (GET /count)" },
};

const HELP = `npm run bench [-- options]

  --full                 10 s per measurement after a 2 s warm-up, 3 runs interleaved across servers,
                         1,000,000-session scale test, CPU profile; writes bench/RESULTS.md
  --duration <s>         seconds per measurement (default 3; --full 10)
  --warmup <s>           warm-up seconds before each measurement (default 1; --full 2)
  --runs <n>             runs, interleaved across servers (default 1; --full 3)
  --connections <n>      autocannon connections (default 50)
  --only <a,b,...>       servers to run (bare, express-session and the servers their targets compare
                         them with are added, so that every ratio is taken in the same run)
  --scenarios <a,b,...>  new, increment, read (default all)
  --big <n>              sessions in Redis for the scale test (default 100000; --full 1000000)
  --scale-rate <n>       offered load (req/s) of the scale test (default: half of ours node:http + Redis
                         increment throughput, between 200 and 5000)
  --fixed-rate <n>       req/s offered to every server for the equal-load measurement of RSS and
                         event-loop delay (default 2000; scenario increment, 10 connections)
  --hc-connections <n>   connections of the high-concurrency measurement (default 2500; raises the
                         file descriptor limit with ulimit -n when it has to and can)
  --no-fixed-rate --no-hc --no-lost-updates --no-memory --no-scale   skip those measurements
  --cpu-prof <server>    only profile <server> (node --cpu-prof) under --scenario (default increment)
                         and print where the time goes
  --write                write bench/RESULTS.md after a short run too (it says it is a smoke run)
  --results <path>       write the Markdown report there instead
  --json <path>          also write the raw measurements as JSON
  --report-from <path>   measure nothing: judge the measurements a --json run saved against today's
                         targets, print them and write the Markdown report (bench/RESULTS.md or --results)
  --no-build             do not build the library first (tsc -b is a no-op when it is fresh)
  --list                 list the servers and exit`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      full: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string" },
      runs: { type: "string" },
      connections: { type: "string", default: "50" },
      only: { type: "string" },
      scenarios: { type: "string", default: "new,increment,read" },
      big: { type: "string" },
      "scale-rate": { type: "string" },
      "fixed-rate": { type: "string" },
      "hc-connections": { type: "string" },
      "no-fixed-rate": { type: "boolean", default: false },
      "no-hc": { type: "boolean", default: false },
      "no-lost-updates": { type: "boolean", default: false },
      "no-memory": { type: "boolean", default: false },
      "no-scale": { type: "boolean", default: false },
      "cpu-prof": { type: "string" },
      scenario: { type: "string", default: "increment" },
      write: { type: "boolean", default: false },
      results: { type: "string" },
      json: { type: "string" },
      "report-from": { type: "string" },
      "no-build": { type: "boolean", default: false },
      list: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
} catch (error) {
  console.error(`${error.message}\nSee npm run bench -- --help`);
  process.exit(2);
}
const args = parsed.values;

const positive = (name, text, fallback) => {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`--${name} must be a positive number, got ${text}`);
    process.exit(2);
  }
  return value;
};

const full = args.full;
const duration = positive("duration", args.duration, full ? 10 : 3);
const config = {
  full,
  duration,
  warmup: positive("warmup", args.warmup, full ? 2 : 1),
  runs: Math.round(positive("runs", args.runs, full ? 3 : 1)),
  connections: Math.round(positive("connections", args.connections, 50)),
  big: Math.round(positive("big", args.big, full ? 1_000_000 : 100_000)),
  small: 1000,
  scaleRate: args["scale-rate"] === undefined ? undefined : positive("scale-rate", args["scale-rate"]),
  probeRequests: 20,
  lostUpdates: { total: 200, concurrency: 50 },
  // The equal-load (RSS, event-loop delay) and high-concurrency measurements: one scenario, at most 5 s each.
  loadScenario: "increment",
  loadDuration: Math.min(5, duration),
  fixedRate: args["no-fixed-rate"] ? undefined : Math.round(positive("fixed-rate", args["fixed-rate"], 2000)),
  fixedConnections: 10,
  hcConnections: args["no-hc"] ? undefined : Math.round(positive("hc-connections", args["hc-connections"], 2500)),
  // autocannon's own 10 s timeout could never fire within a window this short: a request unanswered for this long is an error.
  hcTimeout: Math.max(1, Math.min(5, duration) - 1),
};

/** Descriptors beyond one per connection: the runner's own sockets, Redis connections, files, node internals. */
const FD_MARGIN = 1024;

const log = (line) => process.stderr.write(`${line}\n`);

/** The open-files limit of this process (soft, hard), from /proc; `undefined` where there is no /proc. */
function fdLimits() {
  try {
    const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (match === null) return undefined;
    const value = (text) => (text === "unlimited" ? Number.POSITIVE_INFINITY : Number(text));
    return { soft: value(match[1]), hard: value(match[2]) };
  } catch {
    return undefined;
  }
}

/**
 * The high-concurrency measurement needs a descriptor per connection in the runner (autocannon)
 * and in the server. Node raises its soft open-files limit to the hard one at start-up, so only a
 * hard limit below what is needed matters: then, when `ulimit -n` may raise it (root with
 * CAP_SYS_RESOURCE), the runner runs itself again under it (the servers and redis-server inherit
 * it) and resolves its exit code; otherwise it resolves why the measurement is skipped.
 * @returns {Promise<{ exitCode: number } | { fd?: Record<string, number>; hcSkipped?: string }>}
 */
async function checkFdLimit() {
  if (config.hcConnections === undefined) return {};
  const limits = fdLimits();
  if (limits === undefined) return {};
  const needed = config.hcConnections + FD_MARGIN;
  const raisedFrom = process.env.BENCH_FD_RAISED === undefined ? undefined : Number(process.env.BENCH_FD_RAISED);
  const fd = { soft: limits.soft, hard: limits.hard, needed, ...(raisedFrom === undefined ? {} : { raisedFrom }) };
  if (limits.soft >= needed) return { fd };
  const raise = `ulimit -n ${needed}`;
  const allowed = raisedFrom === undefined && spawnSync("/bin/sh", ["-c", raise], { stdio: "ignore" }).status === 0;
  if (allowed) {
    log(
      `raising the open-files limit from ${limits.soft} to ${needed} for ${config.hcConnections} connections: running again under ${raise}`,
    );
    const child = spawn(
      "/bin/sh",
      ["-c", `${raise} && exec "$0" "$@"`, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
      { stdio: "inherit", env: { ...process.env, BENCH_FD_RAISED: String(limits.soft) } },
    );
    // Ctrl-C reaches the child too (same process group): let it clean up and report its exit.
    process.on("SIGINT", () => undefined);
    const exitCode = await new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal === null ? 0 : 1))));
    return { exitCode };
  }
  return {
    fd,
    hcSkipped: `the open-files limit is ${limits.soft} (hard ${limits.hard}; Node already raises its soft limit to the hard one), below the ${needed} that ${config.hcConnections} connections need, and \`${raise}\` is not permitted here: raise the hard limit (limits.conf, systemd LimitNOFILE, docker --ulimit nofile) or pass --hc-connections`,
  };
}

function available(entry) {
  const missing = (entry.requires ?? []).filter((path) => !existsSync(join(ROOT, path)));
  return missing.length === 0 ? undefined : `not built yet (missing ${missing.join(", ")})`;
}

/**
 * Starts one server process and waits for its port. The process answers `stats-start` /
 * `stats-stop` on its stdin with a `BENCH_STATS {json}` line (RSS, event-loop delay): see server.mjs.
 * @param {import("./servers.mjs").ServerEntry} entry
 * @param {{ redis?: BenchRedis; cpuProfDir?: string }} options
 */
async function startServer(entry, { redis, cpuProfDir }) {
  const dir = mkdtempSync(join(os.tmpdir(), `atomic-session-bench-${entry.name}-`));
  const nodeArgs = cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", cpuProfDir];
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, "bench/server.mjs"), entry.name], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: "production", BENCH_REDIS_URL: redis?.url ?? "", BENCH_DIR: dir },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  /** @type {{ prefix: string; resolve: (rest: string) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }[]} */
  const waiting = [];
  let buffer = "";
  child.stdout.setEncoding("utf8").on("data", (chunk) => {
    buffer += chunk;
    for (let newline = buffer.indexOf("\n"); newline !== -1; newline = buffer.indexOf("\n")) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      const index = waiting.findIndex((waiter) => line.startsWith(waiter.prefix));
      if (index === -1) continue;
      const [waiter] = waiting.splice(index, 1);
      clearTimeout(waiter.timer);
      waiter.resolve(line.slice(waiter.prefix.length));
    }
  });
  child.once("exit", (code, signal) => {
    for (const waiter of waiting.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`${entry.name} exited (${code ?? signal}):\n${stderr}`));
    }
  });
  /** The rest of the next stdout line that starts with `prefix`. */
  const nextLine = (prefix, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const waiter = {
        prefix,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiting.splice(waiting.indexOf(waiter), 1);
          reject(new Error(`${entry.name} did not ${what} within ${timeoutMs / 1000} s:\n${stderr}`));
        }, timeoutMs),
      };
      waiting.push(waiter);
    });
  let port;
  try {
    port = Number(await nextLine("BENCH_LISTENING ", 30_000, "start"));
  } catch (error) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const statsStart = () => {
    child.stdin.write("stats-start\n");
  };
  const statsStop = async () => {
    const reply = nextLine("BENCH_STATS ", 15_000, "answer stats-stop");
    child.stdin.write("stats-stop\n");
    return JSON.parse(await reply);
  };
  return { entry, port, pid: child.pid, stop, statsStart, statsStop, stderr: () => stderr };
}

/**
 * autocannon against one route, with exact (sub-millisecond) latencies taken from its
 * `response` events: autocannon's own histogram has 1 ms steps. `errors` counts every failed
 * request, timeouts included (autocannon counts a timeout in both).
 */
async function load(port, { path, cookie, duration, connections, overallRate, timeout }) {
  const headers = { "user-agent": USER_AGENT };
  if (cookie !== undefined) headers.cookie = cookie;
  const latencies = new Samples();
  /** @type {Record<string, number>} */
  const errorCodes = {};
  const instance = autocannon({
    url: `http://127.0.0.1:${port}${path}`,
    connections,
    duration,
    headers,
    ...(overallRate === undefined ? {} : { overallRate }),
    ...(timeout === undefined ? {} : { timeout }),
  });
  instance.on("response", (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
  instance.on("reqError", (error) => {
    const code = error?.code ?? (/timed out/.test(error?.message ?? "") ? "timeout" : (error?.message ?? "error"));
    errorCodes[code] = (errorCodes[code] ?? 0) + 1;
  });
  const result = await instance;
  const sorted = latencies.sorted();
  /** @type {Record<string, number>} */
  const statusCodes = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count;
  return {
    requests: result.requests.total,
    rps: result.requests.total / result.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    errorCodes,
  };
}

/** A fresh session (one GET /), checked: resolves its cookie. */
async function freshSession(port, entry) {
  const first = await get(port, "/");
  if (first.status !== 200 || first.cookie === undefined) {
    throw new Error(`${entry.name}: GET / answered ${first.status} ${first.body.trim()} without a session cookie`);
  }
  return first.cookie;
}

/** Before loading a server: the visit counter works and a cookie brings the session back. */
async function smokeCheck(server) {
  const { entry, port } = server;
  if (entry.group === "baseline") {
    const answer = await get(port, "/");
    if (answer.status !== 200 || counterIn(answer.body) === undefined) throw new Error(`bare server answered ${answer.status}`);
    return;
  }
  const cookie = await freshSession(port, entry);
  const second = await get(port, "/", { cookie });
  const count = await get(port, "/count", { cookie });
  if (counterIn(second.body) !== 1 || counterIn(count.body) !== 2) {
    throw new Error(`${entry.name}: the counter does not count (second visit: ${second.body.trim()}, /count: ${count.body.trim()})`);
  }
}

/** One measured run of one scenario on one server. */
async function measure(server, scenarioName, redis, run) {
  const scenario = SCENARIOS[scenarioName];
  const { entry, port, pid } = server;
  if (redis !== undefined) await redis.flush();
  const cookie = scenario.cookie && entry.group !== "baseline" ? await freshSession(port, entry) : undefined;
  const options = { path: scenario.path, cookie, connections: config.connections };
  await load(port, { ...options, duration: config.warmup });
  const cpuBefore = cpuMicros(pid);
  const redisCpuBefore = entry.redis ? cpuMicros(redis?.pid) : undefined;
  const statsBefore = entry.redis ? await redis.commandStats() : undefined;
  const result = await load(port, { ...options, duration: config.duration });
  const cpuAfter = cpuMicros(pid);
  const redisCpuAfter = entry.redis ? cpuMicros(redis?.pid) : undefined;
  const statsAfter = entry.redis ? await redis.commandStats() : undefined;
  const perRequest = (before, after) =>
    before === undefined || after === undefined || result.requests === 0 ? undefined : (after - before) / result.requests;
  /** @type {Record<string, unknown>} */
  const measurement = {
    server: entry.name,
    scenario: scenarioName,
    run,
    ...result,
    cpuUs: perRequest(cpuBefore, cpuAfter),
    redisCpuUs: perRequest(redisCpuBefore, redisCpuAfter),
    cmdsPerReq:
      statsBefore === undefined || result.requests === 0 ? undefined : BenchRedis.callsBetween(statsBefore, statsAfter) / result.requests,
  };
  if (entry.redis) {
    const commands = BenchRedis.commandsBetween(statsBefore, statsAfter);
    if (result.requests > 0) {
      measurement.redisCommands = Object.fromEntries(
        Object.entries(commands).map(([name, { calls, usec }]) => [name, { perRequest: calls / result.requests, usPerCall: usec / calls }]),
      );
    }
    // Round trips: the commands clients sent (scripts' inner calls excluded), over a few sequential requests,
    // once the requests the load left queued in the server have reached Redis.
    await redis.settle();
    const probeCookie = scenario.cookie ? await freshSession(port, entry) : undefined;
    const sent = await redis.commandsDuring(async () => {
      for (let i = 0; i < config.probeRequests; i++) await get(port, scenario.path, { cookie: probeCookie });
    });
    measurement.rtPerReq = sent.length / config.probeRequests;
    measurement.rtCommands = [...new Set(sent.map((command) => command[0]?.toUpperCase()))];
    // Execution time of the commands the server sends: a script's time includes the commands it runs, so only the sent ones count.
    if (result.requests > 0) {
      const sentNames = new Set(measurement.rtCommands.map((name) => name?.toLowerCase()));
      let usec = 0;
      for (const [name, stats] of Object.entries(commands)) if (sentNames.has(name)) usec += stats.usec;
      measurement.redisExecUs = usec / result.requests;
    }
  }
  return measurement;
}

/**
 * RSS and event-loop delay at a fixed offered rate, the same for every server, in the freshly
 * started server process (after a warm-up at that rate): equal load, so the figures compare.
 */
async function fixedRateCheck(server, redis, run) {
  const scenario = SCENARIOS[config.loadScenario];
  const { entry, port, pid } = server;
  if (redis !== undefined) await redis.flush();
  const cookie = scenario.cookie && entry.group !== "baseline" ? await freshSession(port, entry) : undefined;
  const options = { path: scenario.path, cookie, connections: config.fixedConnections, overallRate: config.fixedRate };
  await load(port, { ...options, duration: config.warmup });
  server.statsStart();
  const cpuBefore = cpuMicros(pid);
  const result = await load(port, { ...options, duration: config.loadDuration });
  const cpuAfter = cpuMicros(pid);
  const stats = await server.statsStop();
  return {
    kind: "fixed",
    server: entry.name,
    run,
    scenario: config.loadScenario,
    connections: config.fixedConnections,
    rate: config.fixedRate,
    ...result,
    cpuUs:
      cpuBefore === undefined || cpuAfter === undefined || result.requests === 0 ? undefined : (cpuAfter - cpuBefore) / result.requests,
    stats,
  };
}

/**
 * config.hcConnections connections as fast as the server answers, after the scenarios (the
 * process is warm): errors, p99, and RSS and event-loop delay over that window.
 */
async function highConcurrencyCheck(server, redis, run) {
  const scenario = SCENARIOS[config.loadScenario];
  const { entry, port } = server;
  if (redis !== undefined) await redis.flush();
  const cookie = scenario.cookie && entry.group !== "baseline" ? await freshSession(port, entry) : undefined;
  server.statsStart();
  const result = await load(port, {
    path: scenario.path,
    cookie,
    connections: config.hcConnections,
    duration: config.loadDuration,
    timeout: config.hcTimeout,
  });
  const stats = await server.statsStop();
  return { kind: "hc", server: entry.name, run, scenario: config.loadScenario, connections: config.hcConnections, ...result, stats };
}

/** 200 increments of one session, 50 in flight at a time: how many did the store keep? */
async function lostUpdateCheck(server, redis) {
  const { entry, port } = server;
  if (redis !== undefined) await redis.flush();
  const cookie = await freshSession(port, entry);
  const before = counterIn((await get(port, "/count", { cookie })).body) ?? 0;
  const { total, concurrency } = config.lostUpdates;
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const answer = await get(port, "/", { cookie });
      if (answer.status !== 200) failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const after = counterIn((await get(port, "/count", { cookie })).body) ?? 0;
  return { server: entry.name, expected: total, applied: after - before, failed };
}

/** MEMORY USAGE of one visit-counter session key (visited twice), with and without a User-Agent. */
async function memoryCheck(server, redis) {
  const { entry, port } = server;
  const measureOne = async (userAgent) => {
    await redis.flush();
    const first = await get(port, "/", { userAgent });
    await get(port, "/", { cookie: first.cookie, userAgent });
    const keys = await redis.keys("*");
    if (keys.length !== 1) return { bytes: undefined, note: `expected one key, found ${keys.length}` };
    const encoding = String(await redis.admin.call("OBJECT", "ENCODING", keys[0]));
    return { bytes: await redis.memoryUsage(keys[0]), encoding };
  };
  const withUA = await measureOne(USER_AGENT);
  const withoutUA = entry.group === "ours" ? await measureOne(null) : undefined;
  return { server: entry.name, withUA, withoutUA };
}

/** p99 of ours (node:http + Redis) with 1,000 and with `big` sessions in Redis, at a fixed offered load. */
async function scaleCheck(redis, rate) {
  const entry = SERVERS.find((server) => server.name === "ours-node-redis");
  if (entry === undefined) return undefined;
  const server = await startServer(entry, { redis });
  try {
    await redis.flush();
    const cookie = await freshSession(server.port, entry);
    // The one session just created (whatever the store's prefix): the template of the bulk-loaded ones.
    const keys = await redis.keys("*");
    if (keys.length !== 1) throw new Error(`expected the one session just created in Redis, found ${keys.length} keys`);
    const [templateKey] = keys;
    const template = await redis.admin.hgetall(templateKey);
    const expiresAt = Number(template.e);
    // Warm the fresh server up at full speed first, so that the first size measured does not pay for JIT compilation.
    await load(server.port, { path: "/", cookie, connections: config.connections, duration: 2 * config.warmup });
    const sizes = [config.small, config.big];
    /** @type {{ sessions: number; increment: number[]; read: number[] }[]} */
    const rows = [];
    let bytesPerSession;
    for (const sessions of sizes) {
      const have = await redis.dbSize();
      if (sessions > have) {
        const memoryBefore = await redis.usedMemory();
        const started = Date.now();
        await redis.populate(templateKey, template, sessions - have, expiresAt, (done) => {
          if (sessions - have >= 100_000) log(`  populating: ${done.toLocaleString("en")} / ${(sessions - have).toLocaleString("en")}`);
        });
        if (sessions - have >= 10_000) {
          bytesPerSession = ((await redis.usedMemory()) - memoryBefore) / (sessions - have);
          log(`  populated ${(sessions - have).toLocaleString("en")} sessions in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        }
        await delay(1000);
      }
      const row = { sessions: await redis.dbSize(), increment: [], read: [] };
      for (let run = 0; run < config.runs; run++) {
        for (const scenarioName of ["increment", "read"]) {
          const { path } = SCENARIOS[scenarioName];
          const options = { path, cookie, connections: 10, overallRate: rate };
          await load(server.port, { ...options, duration: config.warmup });
          const result = await load(server.port, { ...options, duration: config.duration });
          row[scenarioName].push(result.p99);
          log(
            `  ${row.sessions.toLocaleString("en")} sessions, ${scenarioName}: p99 ${result.p99?.toFixed(2)} ms at ${result.rps.toFixed(0)} req/s`,
          );
        }
      }
      rows.push(row);
    }
    return { rate, rows, bytesPerSession, evaluated: config.big >= 1_000_000 };
  } finally {
    await server.stop();
    await redis.flush();
  }
}

/** Runs one server under node --cpu-prof and summarises the profile. */
async function profileServer(name, scenarioName, redis) {
  const entry = SERVERS.find((server) => server.name === name);
  if (entry === undefined) throw new Error(`unknown server ${name}`);
  if (SCENARIOS[scenarioName] === undefined) throw new Error(`unknown scenario ${scenarioName}`);
  const profileDir = join(ROOT, "bench/profiles");
  mkdirSync(profileDir, { recursive: true });
  const runDir = mkdtempSync(join(os.tmpdir(), "atomic-session-bench-prof-"));
  const server = await startServer(entry, { redis: entry.redis ? redis : undefined, cpuProfDir: runDir });
  let result;
  let window;
  try {
    const { path, cookie: needsCookie } = SCENARIOS[scenarioName];
    if (entry.redis) await redis.flush();
    const cookie = needsCookie && entry.group !== "baseline" ? await freshSession(server.port, entry) : undefined;
    const options = { path, cookie, connections: config.connections };
    await load(server.port, { ...options, duration: config.warmup });
    const startUs = Number(process.hrtime.bigint() / 1000n);
    result = await load(server.port, { ...options, duration: Math.min(config.duration, 5) });
    window = { startUs, endUs: Number(process.hrtime.bigint() / 1000n) };
  } finally {
    await server.stop();
  }
  const file = readdirSync(runDir).find((name_) => name_.endsWith(".cpuprofile"));
  if (file === undefined) throw new Error("the server wrote no .cpuprofile");
  const target = join(profileDir, `${name}-${scenarioName}.cpuprofile`);
  writeFileSync(target, readFileSync(join(runDir, file)));
  rmSync(runDir, { recursive: true, force: true });
  return { server: name, scenario: scenarioName, rps: result.rps, summary: summarizeProfile(target, window) };
}

async function main() {
  if (args.help) {
    console.log(HELP);
    return;
  }
  if (args.list) {
    for (const entry of SERVERS) console.log(`${entry.name.padEnd(20)} ${entry.label}${available(entry) ? `  [${available(entry)}]` : ""}`);
    return;
  }
  if (args["report-from"] !== undefined) {
    const { targets: _saved, ...measured } = JSON.parse(readFileSync(args["report-from"], "utf8"));
    const report = { ...measured, targets: evaluateTargets(measured) };
    console.log(formatConsole(report));
    const writeTo = args.results ?? join(ROOT, "bench/RESULTS.md");
    writeFileSync(writeTo, formatMarkdown(report));
    log(`wrote ${writeTo} from ${args["report-from"]}`);
    return;
  }
  const limit = args["cpu-prof"] === undefined ? await checkFdLimit() : {};
  if ("exitCode" in limit) {
    process.exitCode = limit.exitCode;
    return;
  }
  if (!args["no-build"]) ensureBuilt({ log });
  const redis = await startRedis();
  const cleanUp = () => redis.stop().catch(() => undefined);
  try {
    if (args["cpu-prof"] !== undefined) {
      log(`profiling ${args["cpu-prof"]} (${args.scenario}) for ${Math.min(config.duration, 5)} s after ${config.warmup} s warm-up`);
      const profile = await profileServer(args["cpu-prof"], args.scenario, redis);
      console.log(`${profile.server}, ${profile.scenario}: ${profile.rps.toFixed(0)} req/s while profiled\n`);
      console.log(formatProfile(profile.summary, 20));
      return;
    }
    await benchmark(redis, limit);
  } finally {
    await cleanUp();
  }
}

/** The servers to run: all, or `--only` plus bare, express-session and the servers their targets compare them with. */
function selectServers() {
  if (args.only === undefined) return SERVERS;
  const named = args.only.split(",").map((name) => name.trim());
  for (const name of named) if (!SERVERS.some((entry) => entry.name === name)) throw new Error(`unknown server ${name} (see --list)`);
  const wanted = new Set(["bare", "bare-busy", "express-session", ...named, ...named.flatMap((name) => COMPARED_WITH[name] ?? [])]);
  return SERVERS.filter((entry) => wanted.has(entry.name));
}

async function benchmark(redis, { fd, hcSkipped }) {
  const startedAt = Date.now();
  const scenarios = args.scenarios.split(",").map((name) => name.trim());
  for (const name of scenarios) {
    if (SCENARIOS[name] === undefined) throw new Error(`unknown scenario ${name}: use ${Object.keys(SCENARIOS).join(", ")}`);
  }
  let selected = selectServers();
  const skipped = [];
  selected = selected.filter((entry) => {
    const reason = available(entry);
    if (reason !== undefined) skipped.push({ server: entry.name, reason });
    return reason === undefined;
  });
  for (const { server, reason } of skipped) log(`skipping ${server}: ${reason}`);

  const meta = {
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    memoryGiB: os.totalmem() / 2 ** 30,
    loadAverage: os.loadavg(),
    node: process.version,
    redis: await redis.version(),
    platform: `${os.type()} ${os.release()}`,
    clockTicks: clockTicksPerSecond(),
    config,
    ...(fd === undefined ? {} : { fd }),
    ...(hcSkipped === undefined ? {} : { hcSkipped }),
  };
  if (hcSkipped !== undefined) log(`! not measuring ${config.hcConnections} connections: ${hcSkipped}`);
  const measureHc = config.hcConnections !== undefined && hcSkipped === undefined;
  // A control measured only with many connections has nothing to do without that measurement.
  if (!measureHc) selected = selected.filter((entry) => !entry.highConcurrencyOnly);
  log(
    `${full ? "full" : "short"} run: ${config.runs} run(s) × ${selected.length} servers × ${scenarios.length} scenarios, ` +
      `${config.duration} s each after ${config.warmup} s warm-up, ${config.connections} connections; ` +
      `load average ${meta.loadAverage.map((value) => value.toFixed(2)).join(" ")} on ${meta.cores} cores` +
      (config.fixedRate === undefined ? "" : `; ${config.fixedRate} req/s offered to each for RSS and event-loop delay`) +
      (measureHc ? `; ${config.hcConnections} connections` : "") +
      (fd?.raisedFrom === undefined ? "" : ` (open-files limit raised from ${fd.raisedFrom} to ${fd.soft})`),
  );

  const measurements = [];
  const failures = [];
  const lostUpdates = [];
  const memory = [];
  const loadRuns = [];
  const tag = (run, name) => `[run ${run}/${config.runs}] ${name.padEnd(19)}`;
  const statsText = (stats) => `RSS ${(stats.rss / 2 ** 20).toFixed(1)} MiB  loop delay p99 ${stats.eldP99?.toFixed(2) ?? "—"} ms`;
  for (let run = 1; run <= config.runs; run++) {
    // Interleave: every server once per run, starting from a different one each run.
    const order = selected.map((_, i) => selected[(i + run - 1) % selected.length]);
    for (const entry of order) {
      let server;
      try {
        server = await startServer(entry, { redis: entry.redis ? redis : undefined });
        await smokeCheck(server);
      } catch (error) {
        const stderr = server?.stderr().trim() ?? "";
        log(
          `! ${entry.name} failed to start: ${error.message}${stderr === "" ? "" : `\n  stderr: ${stderr.split("\n").slice(0, 8).join("\n  ")}`}`,
        );
        failures.push({ server: entry.name, run, error: error.message.split("\n")[0] });
        await server?.stop();
        continue;
      }
      try {
        if (config.fixedRate !== undefined && !entry.highConcurrencyOnly) {
          try {
            const check = await fixedRateCheck(server, entry.redis ? redis : undefined, run);
            loadRuns.push(check);
            log(
              `${tag(run, entry.name)} at ${config.fixedRate} req/s offered: ${check.rps.toFixed(0)} req/s  p99 ${check.p99?.toFixed(2)} ms  ${statsText(check.stats)}` +
                (check.non2xx + check.errors > 0 ? `  ! ${check.non2xx} non-2xx, ${check.errors} errors` : ""),
            );
          } catch (error) {
            log(`! ${entry.name} at a fixed rate: ${error.message}`);
            failures.push({ server: entry.name, scenario: "fixed rate", run, error: error.message.split("\n")[0] });
          }
        }
        for (const scenario of entry.highConcurrencyOnly ? [] : scenarios) {
          try {
            const measurement = await measure(server, scenario, entry.redis ? redis : undefined, run);
            measurements.push(measurement);
            log(
              `[run ${run}/${config.runs}] ${entry.name.padEnd(19)} ${scenario.padEnd(9)} ${measurement.rps.toFixed(0).padStart(6)} req/s` +
                `  p50 ${measurement.p50?.toFixed(2)} ms  p99 ${measurement.p99?.toFixed(2)} ms` +
                `  cpu ${measurement.cpuUs?.toFixed(0) ?? "—"} µs/req` +
                (measurement.rtPerReq === undefined
                  ? ""
                  : `  RT ${measurement.rtPerReq.toFixed(2)} (${measurement.rtCommands.join(" ")})`) +
                (measurement.non2xx + measurement.errors > 0 ? `  ! ${measurement.non2xx} non-2xx, ${measurement.errors} errors` : ""),
            );
          } catch (error) {
            log(`! ${entry.name} ${scenario}: ${error.message}`);
            failures.push({ server: entry.name, scenario, run, error: error.message.split("\n")[0] });
          }
        }
        // A check that fails is recorded as a failure, not the end of the run.
        const attempt = async (what, action) => {
          try {
            await action();
          } catch (error) {
            log(`! ${entry.name} ${what}: ${error.message}`);
            failures.push({ server: entry.name, scenario: what, run, error: error.message.split("\n")[0] });
          }
        };
        if (run === 1 && entry.group !== "baseline" && !args["no-lost-updates"]) {
          await attempt("lost updates", async () => {
            const check = await lostUpdateCheck(server, entry.redis ? redis : undefined);
            lostUpdates.push(check);
            log(`[lost updates] ${entry.name}: ${check.applied} of ${check.expected} increments applied`);
          });
        }
        if (run === 1 && entry.redis && !args["no-memory"]) {
          await attempt("memory per session", async () => {
            const check = await memoryCheck(server, redis);
            memory.push(check);
            log(
              `[memory] ${entry.name}: ${check.withUA.bytes ?? check.withUA.note} bytes per session` +
                (check.withoutUA === undefined ? "" : ` (${check.withoutUA.bytes} without a User-Agent)`),
            );
          });
        }
        // Last in the process: the requests 2,500 connections leave queued die with it instead of writing into the next check.
        if (measureHc) {
          try {
            const check = await highConcurrencyCheck(server, entry.redis ? redis : undefined, run);
            loadRuns.push(check);
            log(
              `${tag(run, entry.name)} ${config.hcConnections} connections: ${check.rps.toFixed(0)} req/s  p99 ${check.p99?.toFixed(2)} ms  ${statsText(check.stats)}` +
                `  ${check.non2xx + check.errors === 0 ? "0 errors" : `! ${check.non2xx} non-2xx, ${check.errors} errors (${check.timeouts} timeouts)`}`,
            );
          } catch (error) {
            log(`! ${entry.name} with ${config.hcConnections} connections: ${error.message}`);
            failures.push({
              server: entry.name,
              scenario: `${config.hcConnections} connections`,
              run,
              error: error.message.split("\n")[0],
            });
          }
        }
      } finally {
        const stderr = server.stderr().trim();
        await server.stop();
        if (stderr !== "") log(`  ${entry.name} stderr: ${stderr.split("\n").slice(0, 5).join("\n  ")}`);
      }
    }
  }

  const table = aggregate(measurements, selected);
  const { fixedRate, highConcurrency } = aggregateLoads(loadRuns, selected);
  let scale;
  if (!args["no-scale"] && selected.some((entry) => entry.name === "ours-node-redis")) {
    const peak = table.find((row) => row.server === "ours-node-redis" && row.scenario === "increment")?.rps;
    const rate = config.scaleRate ?? Math.round(Math.min(5000, Math.max(200, (peak ?? 2000) / 2)));
    if (config.big >= 1_000_000 && os.freemem() < 2 * 2 ** 30) {
      log(`! skipping the scale test: ${config.big.toLocaleString("en")} sessions need about 1 GiB and less than 2 GiB is free`);
    } else {
      log(
        `[scale] ours-node-redis p99 with ${config.small.toLocaleString("en")} vs ${config.big.toLocaleString("en")} sessions at ${rate} req/s`,
      );
      try {
        scale = await scaleCheck(redis, rate);
      } catch (error) {
        log(`! the scale test failed: ${error.message}`);
        failures.push({ server: "ours-node-redis", scenario: "scale test", run: 1, error: error.message.split("\n")[0] });
      }
    }
  }

  const writeTo = args.results ?? (full || args.write ? join(ROOT, "bench/RESULTS.md") : undefined);
  // Where the time goes (ours on Redis), and what the memory store's server does differently.
  const profileOf = async (name) => {
    if (writeTo === undefined || !selected.some((entry) => entry.name === name)) return undefined;
    log(`[profile] ${name}, increment, under node --cpu-prof`);
    try {
      return await profileServer(name, "increment", redis);
    } catch (error) {
      log(`! profiling ${name} failed: ${error.message}`);
      return undefined;
    }
  };
  const profile = await profileOf("ours-node-redis");
  const memoryProfile = await profileOf("ours-node-memory");

  const report = {
    meta,
    table,
    fixedRate,
    highConcurrency,
    measurements,
    loadRuns,
    failures,
    skipped,
    lostUpdates,
    memory,
    scale,
    profile,
    memoryProfile,
  };
  report.targets = evaluateTargets(report);
  console.log(formatConsole(report));
  if (profile !== undefined) console.log(`\n${formatProfile(profile.summary, 12)}`);
  if (writeTo !== undefined) {
    writeFileSync(writeTo, formatMarkdown(report));
    log(`wrote ${writeTo}`);
  }
  if (args.json !== undefined) {
    writeFileSync(args.json, JSON.stringify(report, null, 2));
    log(`wrote ${args.json}`);
  }
  log(`finished in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
}

main()
  .catch((error) => {
    console.error(error?.stack ?? error);
    process.exitCode = 1;
  })
  .finally(() => {
    // A client left open by a failure must not keep the runner alive.
    setTimeout(() => process.exit(), 3000).unref();
  });
