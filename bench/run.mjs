#!/usr/bin/env node
// `npm run bench`: starts each server of bench/servers.mjs as its own process on 127.0.0.1,
// drives it with autocannon against a private redis-server, and prints (and with --full,
// writes to bench/RESULTS.md) throughput, latency, CPU and Redis cost per request, the
// lost-update check, Redis memory per session and p99 at 1k vs 1M sessions.
// See bench/README.md for the options and what each column means.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { formatProfile, summarizeProfile } from "./lib/profile.mjs";
import { BenchRedis, startRedis } from "./lib/redis.mjs";
import { aggregate, evaluateTargets, formatConsole, formatMarkdown } from "./lib/report.mjs";
import { counterIn, cpuMicros, delay, ensureBuilt, get, percentile, ROOT, Samples, USER_AGENT } from "./lib/util.mjs";
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
  --only <a,b,...>       servers to run (bare and express-session are added for the ratios)
  --scenarios <a,b,...>  new, increment, read (default all)
  --big <n>              sessions in Redis for the scale test (default 100000; --full 1000000)
  --scale-rate <n>       offered load (req/s) of the scale test (default: half of ours node:http + Redis
                         increment throughput, between 200 and 5000)
  --no-lost-updates --no-memory --no-scale   skip those checks
  --cpu-prof <server>    only profile <server> (node --cpu-prof) under --scenario (default increment)
                         and print where the time goes
  --write                write bench/RESULTS.md after a short run too (it says it is a smoke run)
  --results <path>       write the Markdown report there instead
  --json <path>          also write the raw measurements as JSON
  --no-build             do not build the library first (tsc -b is a no-op when it is fresh)
  --list                 list the servers and exit`;

const { values: args } = parseArgs({
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
    "no-lost-updates": { type: "boolean", default: false },
    "no-memory": { type: "boolean", default: false },
    "no-scale": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    scenario: { type: "string", default: "increment" },
    write: { type: "boolean", default: false },
    results: { type: "string" },
    json: { type: "string" },
    "no-build": { type: "boolean", default: false },
    list: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

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
const config = {
  full,
  duration: positive("duration", args.duration, full ? 10 : 3),
  warmup: positive("warmup", args.warmup, full ? 2 : 1),
  runs: Math.round(positive("runs", args.runs, full ? 3 : 1)),
  connections: Math.round(positive("connections", args.connections, 50)),
  big: Math.round(positive("big", args.big, full ? 1_000_000 : 100_000)),
  small: 1000,
  scaleRate: args["scale-rate"] === undefined ? undefined : positive("scale-rate", args["scale-rate"]),
  probeRequests: 20,
  lostUpdates: { total: 200, concurrency: 50 },
};

const log = (line) => process.stderr.write(`${line}\n`);

function available(entry) {
  const missing = (entry.requires ?? []).filter((path) => !existsSync(join(ROOT, path)));
  return missing.length === 0 ? undefined : `not built yet (missing ${missing.join(", ")})`;
}

/**
 * Starts one server process and waits for its port.
 * @param {import("./servers.mjs").ServerEntry} entry
 * @param {{ redis?: BenchRedis; cpuProfDir?: string }} options
 */
async function startServer(entry, { redis, cpuProfDir }) {
  const dir = mkdtempSync(join(os.tmpdir(), `sessionstore-bench-${entry.name}-`));
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
  const port = await new Promise((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => reject(new Error(`${entry.name} did not start within 30 s:\n${stderr}`)), 30_000);
    child.stdout.setEncoding("utf8").on("data", (chunk) => {
      stdout += chunk;
      const match = /BENCH_LISTENING (\d+)/.exec(stdout);
      if (match !== null) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${entry.name} exited (${code}) before listening:\n${stderr}`));
    });
  });
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
  return { entry, port, pid: child.pid, stop, stderr: () => stderr };
}

/**
 * autocannon against one route, with exact (sub-millisecond) latencies taken from its
 * `response` events: autocannon's own histogram has 1 ms steps.
 */
async function load(port, { path, cookie, duration, connections, overallRate }) {
  const headers = { "user-agent": USER_AGENT };
  if (cookie !== undefined) headers.cookie = cookie;
  const latencies = new Samples();
  const instance = autocannon({
    url: `http://127.0.0.1:${port}${path}`,
    connections,
    duration,
    headers,
    ...(overallRate === undefined ? {} : { overallRate }),
  });
  instance.on("response", (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
  const result = await instance;
  const sorted = latencies.sorted();
  return {
    requests: result.requests.total,
    rps: result.requests.total / result.duration,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
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
    // Round trips: the commands clients sent (scripts' inner calls excluded), over a few sequential requests,
    // once the requests the load left queued in the server have reached Redis.
    await redis.settle();
    const probeCookie = scenario.cookie ? await freshSession(port, entry) : undefined;
    const sent = await redis.commandsDuring(async () => {
      for (let i = 0; i < config.probeRequests; i++) await get(port, scenario.path, { cookie: probeCookie });
    });
    measurement.rtPerReq = sent.length / config.probeRequests;
    measurement.rtCommands = [...new Set(sent.map((command) => command[0]?.toUpperCase()))];
  }
  return measurement;
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
    const [templateKey] = await redis.keys("sess:*");
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
        await redis.populate("sess:", template, sessions - have, expiresAt, (done) => {
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
  const runDir = mkdtempSync(join(os.tmpdir(), "sessionstore-bench-prof-"));
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
    await benchmark(redis);
  } finally {
    await cleanUp();
  }
}

async function benchmark(redis) {
  const scenarios = args.scenarios.split(",").map((name) => name.trim());
  for (const name of scenarios) {
    if (SCENARIOS[name] === undefined) throw new Error(`unknown scenario ${name}: use ${Object.keys(SCENARIOS).join(", ")}`);
  }
  let selected = SERVERS;
  if (args.only !== undefined) {
    const wanted = new Set(["bare", "express-session", ...args.only.split(",").map((name) => name.trim())]);
    for (const name of wanted) if (!SERVERS.some((entry) => entry.name === name)) throw new Error(`unknown server ${name} (see --list)`);
    selected = SERVERS.filter((entry) => wanted.has(entry.name));
  }
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
    config,
  };
  log(
    `${full ? "full" : "short"} run: ${config.runs} run(s) × ${selected.length} servers × ${scenarios.length} scenarios, ` +
      `${config.duration} s each after ${config.warmup} s warm-up, ${config.connections} connections; ` +
      `load average ${meta.loadAverage.map((value) => value.toFixed(2)).join(" ")} on ${meta.cores} cores`,
  );

  const measurements = [];
  const failures = [];
  const lostUpdates = [];
  const memory = [];
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
        for (const scenario of scenarios) {
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
        if (run === 1 && entry.group !== "baseline" && !args["no-lost-updates"]) {
          const check = await lostUpdateCheck(server, entry.redis ? redis : undefined);
          lostUpdates.push(check);
          log(`[lost updates] ${entry.name}: ${check.applied} of ${check.expected} increments applied`);
        }
        if (run === 1 && entry.redis && !args["no-memory"]) {
          const check = await memoryCheck(server, redis);
          memory.push(check);
          log(
            `[memory] ${entry.name}: ${check.withUA.bytes ?? check.withUA.note} bytes per session` +
              (check.withoutUA === undefined ? "" : ` (${check.withoutUA.bytes} without a User-Agent)`),
          );
        }
      } finally {
        const stderr = server.stderr().trim();
        await server.stop();
        if (stderr !== "") log(`  ${entry.name} stderr: ${stderr.split("\n").slice(0, 5).join("\n  ")}`);
      }
    }
  }

  const table = aggregate(measurements, selected);
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
      scale = await scaleCheck(redis, rate);
    }
  }

  const writeTo = args.results ?? (full || args.write ? join(ROOT, "bench/RESULTS.md") : undefined);
  let profile;
  if (writeTo !== undefined && selected.some((entry) => entry.name === "ours-node-redis")) {
    log("[profile] ours-node-redis, increment, under node --cpu-prof");
    try {
      profile = await profileServer("ours-node-redis", "increment", redis);
    } catch (error) {
      log(`! profiling failed: ${error.message}`);
    }
  }

  const report = { meta, table, measurements, failures, skipped, lostUpdates, memory, scale, profile };
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
