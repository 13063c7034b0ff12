// Turns measurements into the tables, the targets (each with the measured reason when it is
// not met, and what it would take) and the console and Markdown reports.
import { shareOf } from "./profile.mjs";
import { fixed, median } from "./stats.mjs";

export const SCENARIO_NAMES = ["new", "increment", "read"];

const SCENARIO_TITLES = {
  new: "(a) new session on every request — GET /, no cookie",
  increment: "(b) existing session, changed — GET / with a cookie (counter + 1)",
  read: "(c) existing session, only read — GET /count with a cookie",
};

/** The PostgreSQL server's row: its figures are printed, the issue sets it no target. */
export const POSTGRES_LABEL = "ours node:http + PostgreSQL";
const isPrintedOnly = (row) => row.label === POSTGRES_LABEL || /postgres/i.test(row.server);

/**
 * Servers each target compares a server with. `--only` adds them, so that every ratio is
 * taken between servers measured in the same run; the reasons also use them to split the
 * cost (a framework's own cost is ours on it minus ours on node:http).
 */
export const COMPARED_WITH = {
  "ours-node-redis": ["bare", "express-session", "fastify-session"],
  "ours-express-redis": ["bare", "express-session", "ours-node-redis"],
  "ours-fastify-redis": ["bare", "fastify-session", "ours-node-redis"],
  "ours-hono-redis": ["bare", "ours-fastify-redis", "ours-node-redis"],
  "ours-node-memory": ["bare", "ours-node-redis"],
  "ours-node-sqlite": ["bare", "ours-node-memory"],
};

/** The anchors a server of ours must stay under in RSS and event-loop delay: its framework's own plugin, or both. */
const ANCHORS_OF = {
  "ours-express-redis": ["express-session"],
  "ours-fastify-redis": ["fastify-session"],
};
const BOTH_ANCHORS = ["express-session", "fastify-session"];

/** A fixed-rate run counts as "equal load" when it reached this share of the offered rate. */
export const REACHED_SHARE = 0.9;

/**
 * Medians over the runs of each server × scenario; ratios are taken within each run (against
 * every other server measured in that same run and scenario), then their median.
 * @param {Record<string, any>[]} measurements
 * @param {{ name: string; label: string; group: string; redis: boolean }[]} servers
 */
export function aggregate(measurements, servers) {
  const rows = [];
  for (const scenario of SCENARIO_NAMES) {
    const inScenario = measurements.filter((m) => m.scenario === scenario);
    const names = [...new Set(inScenario.map((m) => m.server))];
    for (const entry of servers) {
      const runs = inScenario.filter((m) => m.server === entry.name);
      if (runs.length === 0) continue;
      /** @type {Record<string, number>} */
      const ratios = {};
      for (const other of names) {
        const value = median(
          runs.map((m) => {
            const same = inScenario.find((o) => o.server === other && o.run === m.run);
            return same === undefined || !(same.rps > 0) ? Number.NaN : m.rps / same.rps;
          }),
        );
        if (value !== undefined) ratios[other] = value;
      }
      const pick = (key) => median(runs.map((m) => m[key]).filter((value) => value !== undefined));
      const sum = (key) => runs.reduce((total, m) => total + (m[key] ?? 0), 0);
      rows.push({
        server: entry.name,
        label: entry.label,
        group: entry.group,
        redis: entry.redis,
        scenario,
        runs: runs.length,
        requests: sum("requests"),
        rps: pick("rps"),
        rpsMin: Math.min(...runs.map((m) => m.rps)),
        rpsMax: Math.max(...runs.map((m) => m.rps)),
        ratios,
        xBare: ratios.bare,
        xExpress: ratios["express-session"],
        xFastify: ratios["fastify-session"],
        p50: pick("p50"),
        p99: pick("p99"),
        cpuUs: pick("cpuUs"),
        redisCpuUs: pick("redisCpuUs"),
        redisExecUs: pick("redisExecUs"),
        redisCommands: mergeCommands(runs),
        rtPerReq: pick("rtPerReq"),
        cmdsPerReq: pick("cmdsPerReq"),
        rtCommands: [...new Set(runs.flatMap((m) => m.rtCommands ?? []))],
        non2xx: sum("non2xx"),
        errors: sum("errors"),
        timeouts: sum("timeouts"),
      });
    }
  }
  return rows;
}

/** Per Redis command, the medians over the runs of calls per request and execution µs per call. */
function mergeCommands(runs) {
  const names = [...new Set(runs.flatMap((m) => Object.keys(m.redisCommands ?? {})))];
  if (names.length === 0) return undefined;
  /** @type {Record<string, { perRequest: number; usPerCall: number }>} */
  const out = {};
  for (const name of names) {
    const seen = runs.map((m) => m.redisCommands?.[name]).filter((value) => value !== undefined);
    out[name] = { perRequest: median(seen.map((c) => c.perRequest)) ?? 0, usPerCall: median(seen.map((c) => c.usPerCall)) ?? 0 };
  }
  return out;
}

/**
 * The fixed-rate (RSS, event-loop delay at equal load) and high-concurrency measurements,
 * medians over the runs per server.
 * @param {Record<string, any>[]} loadRuns  `{ kind: "fixed" | "hc", server, run, ... }`
 * @param {{ name: string; label: string; group: string; redis: boolean }[]} servers
 */
export function aggregateLoads(loadRuns, servers) {
  const rowsOf = (kind) =>
    servers.flatMap((entry) => {
      const runs = loadRuns.filter((m) => m.kind === kind && m.server === entry.name);
      if (runs.length === 0) return [];
      const pick = (get) => median(runs.map(get).filter((value) => value !== undefined));
      const sum = (key) => runs.reduce((total, m) => total + (m[key] ?? 0), 0);
      const counts = (key) => {
        /** @type {Record<string, number>} */
        const out = {};
        for (const m of runs) for (const [code, n] of Object.entries(m[key] ?? {})) out[code] = (out[code] ?? 0) + n;
        return out;
      };
      return [
        {
          server: entry.name,
          label: entry.label,
          group: entry.group,
          redis: entry.redis,
          kind,
          scenario: runs[0].scenario,
          connections: runs[0].connections,
          rate: runs[0].rate,
          runs: runs.length,
          requests: sum("requests"),
          rps: pick((m) => m.rps),
          reached: runs[0].rate === undefined ? undefined : pick((m) => m.rps / m.rate),
          p50: pick((m) => m.p50),
          p99: pick((m) => m.p99),
          cpuUs: pick((m) => m.cpuUs),
          rss: pick((m) => m.stats?.rss),
          heapTotal: pick((m) => m.stats?.heapTotal),
          heapUsed: pick((m) => m.stats?.heapUsed),
          external: pick((m) => m.stats?.external),
          eldP50: pick((m) => m.stats?.eldP50),
          eldP99: pick((m) => m.stats?.eldP99),
          eldMax: pick((m) => m.stats?.eldMax),
          non2xx: sum("non2xx"),
          errors: sum("errors"),
          timeouts: sum("timeouts"),
          statusCodes: counts("statusCodes"),
          errorCodes: counts("errorCodes"),
        },
      ];
    });
  return { fixedRate: rowsOf("fixed"), highConcurrency: rowsOf("hc") };
}

const ratio = (value) => (value === undefined ? "—" : `${value.toFixed(2)}×`);
const us = (value) => (value === undefined || !Number.isFinite(value) ? "—" : `${value.toFixed(0)} µs`);
const mib = (bytes) => (bytes === undefined ? "—" : `${(bytes / 2 ** 20).toFixed(1)} MiB`);
const ms = (value) => (value === undefined ? "—" : `${value.toFixed(2)} ms`);
const count = (n) => n.toLocaleString("en");

/** Lookups into a report's tables, shared by the targets and their reasons. */
function lookups(report) {
  const table = report.table ?? [];
  const fixedRate = report.fixedRate ?? [];
  const highConcurrency = report.highConcurrency ?? [];
  const row = (server, scenario) => table.find((r) => r.server === server && r.scenario === scenario);
  return {
    table,
    fixedRate,
    highConcurrency,
    meta: report.meta,
    row,
    label: (server) => [...table, ...fixedRate, ...highConcurrency].find((r) => r.server === server)?.label ?? server,
    rowsOf: (server) => table.filter((r) => r.server === server),
    cpu: (server, scenario) => row(server, scenario)?.cpuUs,
    redisCpu: (server, scenario) => row(server, scenario)?.redisCpuUs,
    fixedOf: (server) => fixedRate.find((r) => r.server === server),
  };
}

/**
 * When the server computed well under one core's worth of the time (req/s × CPU per request),
 * CPU alone does not explain its req/s: it waited, on its store or for a core. `undefined` otherwise.
 */
function waitNote(at, server, scenario, waitsOn) {
  const r = at.row(server, scenario);
  if (r?.cpuUs === undefined || r.rps === undefined) return undefined;
  const cores = (r.rps * r.cpuUs) / 1e6;
  if (cores >= 0.85) return undefined;
  const load = at.meta?.loadAverage?.[0];
  const crowded = load !== undefined && at.meta?.cores !== undefined && load > at.meta.cores;
  return (
    `the server computed only ${(cores * 100).toFixed(0)}% of the time (req/s × CPU per request): it waited, on ${waitsOn}` +
    (crowded ? ` or for a core (the load average was ${load.toFixed(1)} on ${at.meta.cores} cores)` : "")
  );
}

/**
 * A throughput target "server ≥ min × other in every scenario": the verdict, and for each
 * scenario below it the server CPU budget it would take (with the server's one thread the
 * bottleneck, req/s goes about as 1 ÷ server CPU per request), split by `explain`.
 * `reason` is one line per scenario after a header line.
 */
function ratioTarget(at, { id, target, server, other, min, explain, summary, waitsOn }) {
  const rows = at.rowsOf(server);
  if (rows.length === 0) return { id, target, met: undefined, detail: `${server} was not measured` };
  const values = rows.map((r) => ({ scenario: r.scenario, value: r.ratios?.[other] }));
  if (values.every(({ value }) => value === undefined)) {
    return { id, target, met: undefined, detail: `${other} was not measured in the same run` };
  }
  const failing = values.filter(({ value }) => value !== undefined && value < min);
  const complete = values.length === SCENARIO_NAMES.length && values.every(({ value }) => value !== undefined);
  const detail =
    values.map(({ scenario, value }) => `${scenario} ${ratio(value)}`).join(", ") + (complete ? "" : " (not every scenario was measured)");
  if (failing.length === 0) return { id, target, met: complete ? true : undefined, detail };
  const parts = failing.map(({ scenario, value }) => {
    const a = at.cpu(server, scenario);
    const b = at.cpu(other, scenario);
    if (a === undefined || b === undefined) return `${scenario} ${ratio(value)}: the CPU per request was not measured`;
    const budget = b / min;
    const waited = waitNote(at, server, scenario, waitsOn);
    if (a <= budget) {
      return `${scenario} ${ratio(value)}: ${us(a)} of server CPU per request against ${us(b)} is within the ${us(budget)} that ${min}× allows, so CPU does not explain the gap: ${waited ?? "the server waited rather than computed (on its store, the load generator or a busy machine)"}.`;
    }
    return (
      `${scenario} ${ratio(value)}: ${us(a)} of server CPU per request against ${us(b)}, so ${min}× needs at most ${us(budget)}, ` +
      `${us(a - budget)} (${(((a - budget) / a) * 100).toFixed(0)}%) less; ${explain(scenario, budget)}` +
      `${waited === undefined ? "" : ` — but ${waited}, so CPU does not explain all of the gap`}.`
    );
  });
  const header = `${at.label(server)} vs ${at.label(other)}; req/s goes about as 1 ÷ the server's CPU per request, its one thread being the bottleneck.${summary === undefined ? "" : ` ${summary}`}`;
  return { id, target, met: false, detail, reason: [header, ...parts].join("\n") };
}

/**
 * Ours on a framework took less CPU than ours on node:http, so the framework's own cost cannot
 * be split from our session's: both sides are compared beyond bare node:http instead.
 */
function beyondBare(at, scenario, { ours, other, framework, budget }) {
  const bare = at.cpu("bare", scenario);
  const oursCpu = at.cpu(ours, scenario);
  return (
    `ours on ${framework} took ${us(at.cpu("ours-node-redis", scenario) - oursCpu)} less CPU per request than ours on node:http, so ${framework}'s own cost cannot be split from our session's; ` +
    `beyond bare node:http, ours on ${framework} spends ${us(oursCpu - bare)} and ${at.label(other)} ${us(at.cpu(other, scenario) - bare)}, and the target allows ours ${us(budget - bare)}`
  );
}

/** ours on a framework vs that framework's own session plugin: the framework's own cost, our session's, the plugin's. */
function frameworkExplain(at, { ours, plugin, framework }) {
  return (scenario, budget) => {
    const bare = at.cpu("bare", scenario);
    const node = at.cpu("ours-node-redis", scenario);
    if (bare === undefined || node === undefined) return "ours on node:http or bare was not measured, so the cost cannot be split";
    const own = at.cpu(ours, scenario) - node;
    if (own < 0) return beyondBare(at, scenario, { ours, other: plugin, framework, budget });
    const session = node - bare;
    const pluginCpu = at.cpu(plugin, scenario);
    const pluginSession = pluginCpu - bare - own;
    const sessionBudget = budget - bare - own;
    return (
      `${framework} and our adapter ${us(own)} (ours on ${framework} − ours on node:http) + our session ${us(session)} (ours on node:http − bare) + bare ${us(bare)}; ` +
      (pluginSession >= 0
        ? `${at.label(plugin)} spends about ${us(pluginSession)} on its session (its CPU − bare − ${framework}'s own), `
        : `${at.label(plugin)}'s whole request (${us(pluginCpu)}) costs less than bare + ${framework} and our adapter alone, so our adapter's path through ${framework}, more than the session, is what costs; `) +
      (sessionBudget > 0
        ? `so our session would have to fall from ${us(session)} to ${us(sessionBudget)}, or ${framework}'s own cost through our adapter fall`
        : `so no session is cheap enough: ${framework} and our adapter alone (${us(own)}, + bare ${us(bare)}) are over the budget, which only a cheaper path through ${framework} can meet`)
    );
  };
}

/**
 * The targets of the performance issue, each met (true), not met (false) or not evaluated
 * (undefined), with the figures (`detail`) and, when not met, the measured reason and what
 * it would take (`reason`, lines); then the checks kept from the earlier issue
 * (`group: "earlier"`) and printed-only figures (`info: true`).
 * @returns {{ id: string; target: string; met: boolean | undefined; detail: string; reason?: string; group?: string; info?: boolean }[]}
 */
export function evaluateTargets(report) {
  const at = lookups(report);
  const targets = [];
  targets.push(
    ratioTarget(at, {
      id: "node-redis-vs-bare",
      target: "ours node:http + Redis ≥ 0.5× bare node:http in every scenario",
      server: "ours-node-redis",
      other: "bare",
      min: 0.5,
      waitsOn: "Redis replies",
      summary:
        "The session's server cost is the cookie's HMAC check, SHA-256 of the ID, the store call through node-redis and Set-Cookie: 0.5× needs all of it to cost no more than the bare HTTP exchange itself.",
      explain: (scenario) => {
        const bare = at.cpu("bare", scenario);
        const profile = report.profile;
        const share = (test) => `${shareOf(profile.summary, test).toFixed(0)}%`;
        const where =
          profile?.server === "ours-node-redis" && profile.scenario === scenario && profile.summary !== undefined
            ? ` (profile: node http and sockets ${share((a) => a === "node http" || a === "node net/streams")}, node-redis ${share((a) => a.startsWith("node-redis"))}, atomic-session ${share((a) => a.startsWith("atomic-session"))}, node crypto ${share((a) => a === "node crypto")}, GC ${share((a) => a === "GC")})`
            : ` (\`--cpu-prof ours-node-redis --scenario ${scenario}\` shows where)`;
        return `bare's exchange ${us(bare)} + the session ${us(at.cpu("ours-node-redis", scenario) - bare)}${where}, and Redis ${us(at.redisCpu("ours-node-redis", scenario))} more on the same cores`;
      },
    }),
  );
  targets.push(
    ratioTarget(at, {
      id: "fastify-vs-plugin",
      target: "ours Fastify + Redis ≥ 1.2× @fastify/session + connect-redis in every scenario",
      server: "ours-fastify-redis",
      other: "fastify-session",
      min: 1.2,
      waitsOn: "Redis replies",
      explain: frameworkExplain(at, { ours: "ours-fastify-redis", plugin: "fastify-session", framework: "Fastify" }),
    }),
  );
  targets.push(
    ratioTarget(at, {
      id: "express-vs-plugin",
      target: "ours Express + Redis ≥ 1.3× express-session + connect-redis in every scenario",
      server: "ours-express-redis",
      other: "express-session",
      min: 1.3,
      waitsOn: "Redis replies",
      explain: frameworkExplain(at, { ours: "ours-express-redis", plugin: "express-session", framework: "Express" }),
    }),
  );
  targets.push(
    ratioTarget(at, {
      id: "hono-vs-fastify",
      target: "ours Hono + Redis within 10% of ours Fastify + Redis (≥ 0.9×; faster is fine) in every scenario",
      server: "ours-hono-redis",
      other: "ours-fastify-redis",
      min: 0.9,
      waitsOn: "Redis replies",
      summary: "@hono/node-server turns every node:http request into a web Request and the Response back, which Fastify does not.",
      explain: (scenario, budget) => {
        const node = at.cpu("ours-node-redis", scenario);
        if (node === undefined) return "ours on node:http was not measured, so the frameworks' own costs cannot be split";
        const fastifyOwn = at.cpu("ours-fastify-redis", scenario) - node;
        const honoOwn = at.cpu("ours-hono-redis", scenario) - node;
        if (fastifyOwn < 0 || honoOwn < 0) {
          const fastify = at.cpu("ours-fastify-redis", scenario);
          return (
            `ours on ${fastifyOwn < 0 ? "Fastify" : "Hono"} took less CPU per request than ours on node:http, so the frameworks' own costs cannot be split from ours; ` +
            `ours on Hono spends ${us(at.cpu("ours-hono-redis", scenario) - fastify)} more than ours on Fastify, and within 10% allows ${us(budget - fastify)} more`
          );
        }
        return (
          `Hono on @hono/node-server and our middleware cost ${us(at.cpu("ours-hono-redis", scenario) - node)} beyond ours on node:http, ` +
          `Fastify and our plugin ${us(at.cpu("ours-fastify-redis", scenario) - node)}; within 10% needs Hono's share at most ${us(budget - node)}`
        );
      },
    }),
  );
  targets.push(
    ratioTarget(at, {
      id: "memory-vs-redis",
      target: "ours node:http + memory ≥ 1.2× ours node:http + Redis in every scenario",
      server: "ours-node-memory",
      other: "ours-node-redis",
      min: 1.2,
      waitsOn: "the load generator",
      summary:
        "Both servers run the same session code; the difference is the store: a Redis round trip (node-redis encoding the command, the socket write, parsing the reply) against the memory store's own work per call (a copy of the record, the least-recently-used order).",
      explain: (scenario, budget) => {
        const memoryCpu = at.cpu("ours-node-memory", scenario);
        const gap = at.cpu("ours-node-redis", scenario) - memoryCpu;
        return (
          (gap >= 0
            ? `the Redis round trip costs the server only ${us(gap)} more than the memory store's work`
            : `the server on the memory store spends ${us(-gap)} more than the one waiting on Redis`) +
          `, so the memory store's work and the shared session code (${us(memoryCpu - (at.cpu("bare", scenario) ?? Number.NaN))} beyond bare) would have to shrink by ${us(memoryCpu - budget)}` +
          memoryProfileComparison(report, scenario)
        );
      },
    }),
  );
  targets.push(
    ratioTarget(at, {
      id: "sqlite-vs-bare",
      target: "ours node:http + SQLite ≥ 0.3× bare node:http in every scenario",
      server: "ours-node-sqlite",
      other: "bare",
      min: 0.3,
      waitsOn: "SQLite's file writes",
      summary:
        "SQLite runs on the store's worker thread, one transaction per turn for every request that arrived meanwhile (group commit); the CPU per request counts both threads: the HTTP exchange and the session on the server's, the hand-off (a message each way), the statements and the commit on the worker's. A new session inserts rows into two tables and their indexes, where an increment updates one row.",
      explain: (scenario) => {
        const memoryCpu = at.cpu("ours-node-memory", scenario);
        return memoryCpu === undefined
          ? "ours node:http + memory was not measured, so SQLite's own share cannot be split"
          : `SQLite's statements cost ${us(at.cpu("ours-node-sqlite", scenario) - memoryCpu)} per request beyond the same server on the memory store (${us(memoryCpu)}), which is what fewer or cheaper statements per request would have to save`;
      },
    }),
  );
  targets.push(redisCpuTarget(at));
  targets.push(roundTripTarget(at));
  targets.push(highConcurrencyTarget(at, report));
  targets.push(residentTarget(at, report));
  const postgres = postgresFigures(at);
  if (postgres !== undefined) targets.push(postgres);
  targets.push(...earlierChecks({ lostUpdates: report.lostUpdates ?? [], memory: report.memory ?? [], scale: report.scale }));
  return targets;
}

/** Redis server CPU per request, ours node:http + Redis vs each connect-redis anchor, every scenario. */
function redisCpuTarget(at) {
  const id = "redis-cpu";
  const target =
    "Redis server CPU per request of ours (node:http + Redis) ≤ connect-redis' (express-session, @fastify/session) in every scenario";
  const anchors = BOTH_ANCHORS.filter((anchor) => at.rowsOf(anchor).some((r) => r.redisCpuUs !== undefined));
  const ours = at.rowsOf("ours-node-redis").filter((r) => r.redisCpuUs !== undefined);
  if (ours.length === 0) return { id, target, met: undefined, detail: "ours-node-redis was not measured" };
  if (anchors.length === 0) return { id, target, met: undefined, detail: "no connect-redis anchor was measured" };
  const failing = [];
  const detail = ours
    .map((r) => {
      const theirs = anchors.map((anchor) => ({ anchor, value: at.redisCpu(anchor, r.scenario) }));
      for (const { anchor, value } of theirs)
        if (value !== undefined && r.redisCpuUs > value) failing.push({ scenario: r.scenario, anchor });
      return `${r.scenario} ${us(r.redisCpuUs)} vs ${theirs.map(({ anchor, value }) => `${us(value)} (${anchor})`).join(", ")}`;
    })
    .join("; ");
  const complete = ours.length === SCENARIO_NAMES.length && anchors.length === BOTH_ANCHORS.length;
  if (failing.length === 0) return { id, target, met: complete ? true : undefined, detail };
  // Reading, parsing and answering: the process's CPU minus execution (never below 0: the two clocks differ).
  const io = (r) => (r.redisExecUs === undefined ? undefined : Math.max(0, r.redisCpuUs - r.redisExecUs));
  const side = (r) =>
    `${us(r.redisCpuUs)} (${fixed(r.rtPerReq, 2)} round trips ${r.rtCommands.join("+") || "—"}; executing ${us(r.redisExecUs)}${commandList(r)}; I/O ${us(io(r))})`;
  const parts = [...new Set(failing.map((f) => f.scenario))].map((scenario) => {
    const mine = at.row("ours-node-redis", scenario);
    const [cheapest] = failing
      .filter((f) => f.scenario === scenario)
      .map((f) => at.row(f.anchor, scenario))
      .sort((a, b) => a.redisCpuUs - b.redisCpuUs);
    const execBudget = io(mine) === undefined ? undefined : cheapest.redisCpuUs - io(mine);
    const tick = Math.max(tickUs(at, mine), tickUs(at, cheapest));
    return (
      `${scenario}: ours ${side(mine)} against ${cheapest.server} ${side(cheapest)}: ` +
      (execBudget === undefined
        ? "INFO commandstats did not split it."
        : execBudget > 0
          ? `ours would have to execute in ${us(execBudget)} instead of ${us(mine.redisExecUs)} — fewer redis.call per script, or a plain command where the operation needs no script.`
          : io(mine) > 0
            ? `even free commands would not match it: ours' I/O alone is ${us(io(mine))}.`
            : "the figures are too small for the process CPU clock to split.") +
      (tick >= 0.5
        ? ` (The process CPU clock counts ticks of ${(1e6 / (at.meta?.clockTicks ?? 100)).toFixed(0)} µs, ${tick.toFixed(1)} µs per request over this run: a longer --duration gives finer figures.)`
        : "")
    );
  });
  const header =
    "Redis CPU per request is the redis-server process's CPU over the measured run ÷ responses; INFO commandstats gives the time spent executing the commands sent (a script's includes the commands it runs), the rest is I/O: reading, parsing and answering the round trips.";
  return { id, target, met: false, detail, reason: [header, ...parts].join("\n") };
}

/** One tick of the process CPU clock (/proc utime + stime), in µs per request of a row's measured runs. */
function tickUs(at, r) {
  if (!(r.requests > 0)) return 0;
  return 1e6 / (at.meta?.clockTicks ?? 100) / (r.requests / r.runs);
}

/** `: EVALSHA 6.1 µs per call` for the commands sent, from INFO commandstats. */
function commandList(r) {
  if (r.redisCommands === undefined) return "";
  const sent = new Set(r.rtCommands.map((c) => c.toLowerCase()));
  const shown = Object.entries(r.redisCommands)
    .filter(([name]) => sent.has(name))
    .map(([name, c]) => `${name.toUpperCase()} ${c.usPerCall.toFixed(1)} µs per call`);
  return shown.length === 0 ? "" : `: ${shown.join(", ")}`;
}

/** Redis round trips: every one of our servers on Redis, new 1, read 1, increment 1. */
function roundTripTarget(at) {
  const id = "round-trips";
  const target = "Redis round trips per request (every one of ours on Redis): new 1, read 1, increment 1";
  const rows = at.table.filter((r) => r.group === "ours" && r.redis && r.rtPerReq !== undefined);
  if (rows.length === 0) return { id, target, met: undefined, detail: "not measured" };
  const failing = rows.filter((r) => r.rtPerReq !== 1);
  const detail = rows.map((r) => `${r.server} ${r.scenario} ${fixed(r.rtPerReq, 2)}`).join(", ");
  if (failing.length === 0) return { id, target, met: true, detail };
  const lines = failing.map(
    (r) =>
      `${r.label} ${r.scenario}: ${fixed(r.rtPerReq, 2)} round trips per request (${r.rtCommands.join(", ") || "no command"})` +
      (r.rtPerReq > 1
        ? ": every command sent on its own waits for its reply, so one round trip needs them in one script or one pipeline."
        : ": fewer than one means some requests did not reach Redis at all — check that the scenario exercised the store."),
  );
  const header = "Round trips counted with MONITOR over 20 sequential requests after each measured run:";
  return { id, target, met: false, detail, reason: [header, ...lines].join("\n") };
}

/** A profile's busy CPU per request, in µs, for the areas or functions `test` picks out. */
function profiledMicros(profile, share) {
  const { summary } = profile;
  if (summary.totalMs === 0 || !(profile.rps > 0)) return Number.NaN;
  return (((summary.busyMs / summary.totalMs) * 1e6) / profile.rps) * (share / 100);
}

/** The HTTP answers' socket writes (writev and the stream code around it), as a share of busy time. */
function httpWriteShare(summary) {
  return summary.functions
    .filter((entry) => /^writev?(Generic)?$/.test(entry.name) && entry.where.includes("node http"))
    .reduce((sum, entry) => sum + entry.share, 0);
}

/**
 * Where the memory store's server spends its time against the one on Redis, from the two
 * profiles of the same scenario: the store's own code, our code in all, and the writes of the
 * HTTP answers (the kernel's loopback delivery, charged to the writer).
 */
function memoryProfileComparison(report, scenario) {
  const memory = report.memoryProfile;
  const redis = report.profile;
  if (memory?.scenario !== scenario || redis?.scenario !== scenario || memory.summary === undefined || redis.summary === undefined) {
    return "";
  }
  const part = (profile, test) => profiledMicros(profile, shareOf(profile.summary, test));
  const writes = (profile) => profiledMicros(profile, httpWriteShare(profile.summary));
  const ours = (area) => area.startsWith("atomic-session");
  const writesGap = writes(memory) - writes(redis);
  return (
    `. Profiled in this scenario, ours on the memory store spent ${us(profiledMicros(memory, 100))} per request: the memory store's code ${us(part(memory, (area) => area === "atomic-session stores/memory"))}, ` +
    `all of atomic-session ${us(part(memory, ours))}, the socket writes of the HTTP answers ${us(writes(memory))}; ours on Redis ${us(profiledMicros(redis, 100))}: atomic-session ${us(part(redis, ours))}, ` +
    `node-redis ${us(part(redis, (area) => area.startsWith("node-redis")))}, the HTTP answers' writes ${us(writes(redis))}` +
    (writesGap > 0
      ? `. Writing the same answer costs the server on the memory store ${us(writesGap)} more: that write is the kernel's loopback delivery, charged to the writer (waking the load generator), which the store's code does not touch; it would take a machine where it costs a server that answers at once no more than one that waits on Redis`
      : "")
  );
}

/** With 2,500 connections: 0 errors for every one of ours, p99 printed beside the anchors'. */
function highConcurrencyTarget(at, report) {
  const connections = report.meta?.config?.hcConnections ?? at.highConcurrency[0]?.connections ?? 2500;
  const id = "high-concurrency";
  const target = `${count(connections)} connections: 0 errors for every one of ours (p99 beside the anchors')`;
  const ours = at.highConcurrency.filter((r) => r.group === "ours" && !isPrintedOnly(r));
  if (ours.length === 0) return { id, target, met: undefined, detail: report.meta?.hcSkipped ?? "not measured" };
  const p99s = (rows) => rows.map((r) => `${r.server} ${ms(r.p99)}`).join(", ");
  const others = at.highConcurrency.filter((r) => r.group !== "ours");
  const detail =
    `errors ${ours.map((r) => `${r.server} ${r.errors + r.non2xx}`).join(", ")}; p99 ${p99s(ours)}` +
    (others.length > 0 ? ` — without our code ${p99s(others)}` : "");
  const failing = ours.filter((r) => r.errors + r.non2xx > 0);
  if (failing.length === 0) return { id, target, met: true, detail };
  const header = `Each of ours with errors at ${count(connections)} connections, and what the errors point at:`;
  const lines = [header, ...failing.map((r) => errorReason(r, report))];
  const timedOutWithoutSession = others.filter((r) => r.timeouts > 0);
  if (timedOutWithoutSession.length > 0) {
    const refused = failing.filter((r) => r.non2xx > 0 || r.errors > r.timeouts).map((r) => r.label);
    const timeout = `${report.meta?.config?.hcTimeout ?? 10} s`;
    const control = others.find((r) => r.server === "bare-busy" && r.timeouts > 0);
    const bare = others.find((r) => r.server === "bare");
    const fasterThanLoad =
      bare !== undefined && bare.timeouts === 0
        ? ` while bare node:http, which answers as fast as the load generator asks, had none: no queue builds up at a server that is not the slower side`
        : "";
    lines.push(
      `The same measurement timed out without our code too: ${timedOutWithoutSession.map((r) => `${r.label} ${count(r.timeouts)}`).join(", ")}${fasterThanLoad}. ` +
        (control !== undefined
          ? `The control (${control.label}) runs no session code at all, only the CPU a session costs: with ${count(connections)} connections and the load generator on the same ${report.meta?.cores ?? "few"} cores, a server slower than the load generator leaves some connections unserved past the ${timeout} timeout whatever its code, so a timeout here measures the machine; `
          : `With ${count(connections)} connections, the load generator and the server on the same ${report.meta?.cores ?? "few"} cores, some requests wait past the ${timeout} timeout whatever the server does, so a timeout here measures the machine; `) +
        (refused.length === 0
          ? `none of ours refused a request (no non-2xx answer, no connection error). Meeting this target needs a machine where ${control !== undefined ? "the control" : "bare node:http"} has none (more cores, or the load generator on another host).`
          : `refused requests (non-2xx or connection errors) are ours alone: ${refused.join(", ")}.`),
    );
  }
  return { id, target, met: false, detail, reason: lines.join("\n") };
}

/** What the errors of one high-concurrency row were, and what they point at. */
function errorReason(r, report) {
  const parts = [];
  if (r.timeouts > 0) {
    const wait = r.rps > 0 ? `${(r.connections / r.rps).toFixed(2)} s` : "—";
    parts.push(
      `${count(r.timeouts)} timed out (no answer within ${report.meta?.config?.hcTimeout ?? 10} s, while at ${fixed(r.rps)} req/s a connection waits about ${wait} per request and p99 was ${ms(r.p99)}: some requests waited far longer than the rest — a stall, or a queue not served in order)`,
    );
  }
  const statuses = Object.entries(r.statusCodes ?? {}).filter(([code]) => !code.startsWith("2"));
  if (statuses.length > 0) {
    parts.push(
      `${statuses.map(([code, n]) => `${code} ×${count(n)}`).join(", ")} answered` +
        (statuses.some(([code]) => code === "503")
          ? " (503 + Retry-After is StoreUnavailableError: the store call failed or outlasted the manager's storeTimeoutMs while that many requests queued on the store's connection; a longer storeTimeoutMs, or a store that answers that queue faster, would remove them)"
          : ""),
    );
  }
  const connectionErrors = r.errors - r.timeouts;
  if (connectionErrors > 0) {
    const codes = Object.entries(r.errorCodes ?? {})
      .filter(([code]) => code !== "timeout")
      .map(([code, n]) => `${code} ×${count(n)}`)
      .join(", ");
    parts.push(
      `${count(connectionErrors)} connection errors (${codes || "no code"})` +
        (/EMFILE|ENFILE/.test(codes)
          ? `: out of file descriptors (the limit was ${report.meta?.fd?.soft ?? "—"}; raise it with ulimit -n)`
          : ""),
    );
  }
  return `${r.label}: ${count(r.errors + r.non2xx)} errors (${count(r.requests)} responses in the window) — ${parts.join("; ") || "no detail"}.`;
}

/** RSS and p99 event-loop delay of ours (on Redis) under the anchors' at the same offered rate. */
function residentTarget(at, report) {
  const rate = report.meta?.config?.fixedRate ?? at.fixedRate[0]?.rate;
  const id = "rss-eld";
  const target = `RSS and p99 event-loop delay of ours (on Redis) under the anchors' at an equal ${rate === undefined ? "fixed rate" : `${count(rate)} req/s`} (Express and Fastify vs their own plugin, node:http and Hono vs both)`;
  const ours = at.fixedRate.filter((r) => r.group === "ours" && r.redis && !isPrintedOnly(r));
  if (ours.length === 0) return { id, target, met: undefined, detail: "not measured" };
  const equal = (r) => r.reached !== undefined && r.reached >= REACHED_SHARE;
  const comparisons = [];
  const unequal = new Set();
  let missing = false;
  for (const mine of ours) {
    for (const anchor of ANCHORS_OF[mine.server] ?? BOTH_ANCHORS) {
      const theirs = at.fixedOf(anchor);
      if (theirs === undefined) {
        missing = true;
        continue;
      }
      const short = [mine, theirs].filter((r) => !equal(r));
      for (const r of short) unequal.add(`${r.server} reached ${fixed((r.reached ?? 0) * 100)}% of the offered rate`);
      if (short.length === 0) comparisons.push({ mine, theirs, rssOk: mine.rss <= theirs.rss, eldOk: mine.eldP99 <= theirs.eldP99 });
    }
  }
  const figures = (r) => `${r.server} ${mib(r.rss)}, ${ms(r.eldP99)}`;
  const anchorsMeasured = BOTH_ANCHORS.map((name) => at.fixedOf(name)).filter((r) => r !== undefined);
  const detail =
    `RSS, p99 loop delay: ${ours.map(figures).join("; ")} — anchors ${anchorsMeasured.map(figures).join("; ") || "not measured"}` +
    (unequal.size > 0 ? ` (not compared: ${[...unequal].join(", ")})` : "");
  const failing = comparisons.filter((c) => !c.rssOk || !c.eldOk);
  if (failing.length === 0) return { id, target, met: comparisons.length > 0 && unequal.size === 0 && !missing ? true : undefined, detail };
  const heap = (r) => `JS heap ${mib(r.heapTotal)} (${mib(r.heapUsed)} used), the rest ${mib(r.rss - r.heapTotal)}`;
  const busy = (r) => (r.cpuUs === undefined || r.rps === undefined ? "—" : `${((r.rps * r.cpuUs) / 1e4).toFixed(0)}%`);
  const lines = failing.flatMap(({ mine, theirs, rssOk, eldOk }) => {
    const out = [];
    if (!rssOk) {
      const heapGap = mine.heapTotal - theirs.heapTotal;
      const restGap = mine.rss - mine.heapTotal - (theirs.rss - theirs.heapTotal);
      out.push(
        `${mine.label} vs ${theirs.label}: RSS ${mib(mine.rss)} vs ${mib(theirs.rss)} (ours: ${heap(mine)}; theirs: ${heap(theirs)}): ` +
          `${mib(mine.rss - theirs.rss)} less would take it under, ` +
          (heapGap > restGap
            ? `mostly JS heap (${mib(heapGap)} more: objects ours keeps or allocates per request, and the heap V8 keeps for them).`
            : `mostly outside the JS heap (${mib(restGap)} more: code of the modules loaded, native buffers and sockets).`),
      );
    }
    if (!eldOk) {
      out.push(
        `${mine.label} vs ${theirs.label}: p99 event-loop delay ${ms(mine.eldP99)} vs ${ms(theirs.eldP99)} at ${fixed(mine.rps)} vs ${fixed(theirs.rps)} req/s, ` +
          `with ${us(mine.cpuUs)} vs ${us(theirs.cpuUs)} of CPU per request (busy ${busy(mine)} vs ${busy(theirs)}): ` +
          `a longer delay at equal load means longer synchronous stretches between I/O (GC pauses, many replies handled in one tick); \`--cpu-prof ${mine.server}\` shows them.`,
      );
    }
    return out;
  });
  return { id, target, met: false, detail, reason: [`At ${count(rate)} req/s offered to every server:`, ...lines].join("\n") };
}

/** The PostgreSQL row, printed with no target. */
function postgresFigures(at) {
  const rows = at.table.filter(isPrintedOnly);
  const fixedRow = at.fixedRate.find(isPrintedOnly);
  const hcRow = at.highConcurrency.find(isPrintedOnly);
  const name = rows[0]?.server ?? fixedRow?.server ?? hcRow?.server;
  if (name === undefined) return undefined;
  const parts = [];
  if (rows.length > 0) {
    parts.push(`× bare ${rows.map((r) => `${r.scenario} ${ratio(r.xBare)}`).join(", ")}`);
    parts.push(`server CPU ${rows.map((r) => `${r.scenario} ${us(r.cpuUs)}`).join(", ")}`);
  }
  if (hcRow !== undefined)
    parts.push(`${count(hcRow.connections)} connections: ${hcRow.errors + hcRow.non2xx} errors, p99 ${ms(hcRow.p99)}`);
  if (fixedRow !== undefined)
    parts.push(`at ${count(fixedRow.rate)} req/s: RSS ${mib(fixedRow.rss)}, p99 event-loop delay ${ms(fixedRow.eldP99)}`);
  return { id: "postgres", target: `${at.label(name)}: figures only, no target`, met: undefined, info: true, detail: parts.join("; ") };
}

/** The checks kept from the earlier issue: no lost updates, p99 at 1M sessions, Redis memory per session. */
function earlierChecks({ lostUpdates, memory, scale }) {
  const out = [];
  const oursLost = lostUpdates.filter((check) => check.server.startsWith("ours-"));
  out.push({
    id: "lost-updates",
    group: "earlier",
    target: "no lost updates (ours): 200 of 200 concurrent increments applied",
    met: oursLost.length === 0 ? undefined : oursLost.every((check) => check.applied === check.expected && check.failed === 0),
    detail:
      oursLost.length === 0
        ? "not measured"
        : oursLost
            .map((check) => `${check.server} ${check.applied}/${check.expected}${check.failed ? ` (${check.failed} failed)` : ""}`)
            .join(", "),
  });

  const scaleTarget = "p99 at 1,000,000 sessions within 10% of p99 at 1,000";
  if (scale === undefined) {
    out.push({ id: "scale", group: "earlier", target: scaleTarget, met: undefined, detail: "not measured" });
  } else {
    const [small, big] = scale.rows;
    const parts = ["increment", "read"].map((scenario) => {
      const a = median(small[scenario]);
      const b = median(big[scenario]);
      return { scenario, a, b, ok: a !== undefined && b !== undefined && b <= a * 1.1 };
    });
    const detail = parts
      .map(({ scenario, a, b }) => `${scenario} ${fixed(a, 2)} → ${fixed(b, 2)} ms (${a ? `${((b / a - 1) * 100).toFixed(0)}%` : "—"})`)
      .join(", ");
    out.push({
      id: "scale",
      group: "earlier",
      target: scaleTarget,
      met: scale.evaluated ? parts.every((part) => part.ok) : undefined,
      detail: scale.evaluated
        ? detail
        : `not evaluated: this run used ${big.sessions.toLocaleString("en")} sessions (${detail}); run --full`,
    });
  }

  const memoryTarget = "Redis memory per session not above connect-redis'";
  const oursMemory = memory.find((check) => check.server === "ours-node-redis");
  const theirs = memory.find((check) => check.server === "express-session");
  if (oursMemory?.withUA.bytes === undefined || theirs?.withUA.bytes === undefined) {
    out.push({ id: "redis-memory", group: "earlier", target: memoryTarget, met: undefined, detail: "not measured" });
  } else {
    out.push({
      id: "redis-memory",
      group: "earlier",
      target: memoryTarget,
      met: oursMemory.withUA.bytes <= theirs.withUA.bytes,
      detail: `ours ${oursMemory.withUA.bytes} B with a browser User-Agent (${oursMemory.withoutUA?.bytes ?? "—"} B without), connect-redis ${theirs.withUA.bytes} B`,
    });
  }
  return out;
}

const COLUMNS = [
  ["server", (row) => row.label],
  ["req/s", (row) => (row.runs > 1 ? `${fixed(row.rps)} (${fixed(row.rpsMin)}–${fixed(row.rpsMax)})` : fixed(row.rps))],
  ["× bare", (row) => ratio(row.xBare)],
  ["× express-session", (row) => ratio(row.xExpress)],
  ["× @fastify/session", (row) => ratio(row.xFastify)],
  ["p50 ms", (row) => fixed(row.p50, 2)],
  ["p99 ms", (row) => fixed(row.p99, 2)],
  ["CPU µs/req", (row) => fixed(row.cpuUs)],
  ["Redis CPU µs/req", (row) => fixed(row.redisCpuUs)],
  ["Redis exec µs/req", (row) => fixed(row.redisExecUs, 1)],
  ["round trips/req", (row) => (row.rtPerReq === undefined ? "—" : `${fixed(row.rtPerReq, 2)} ${row.rtCommands.join("+")}`)],
  ["Redis calls/req", (row) => fixed(row.cmdsPerReq, 2)],
  ["errors", (row) => errorsCell(row)],
];

const FIXED_COLUMNS = [
  ["server", (row) => row.label],
  ["offered req/s", (row) => fixed(row.rate)],
  ["req/s", (row) => `${fixed(row.rps)}${row.reached !== undefined && row.reached < REACHED_SHARE ? " (!)" : ""}`],
  ["p99 ms", (row) => fixed(row.p99, 2)],
  ["CPU µs/req", (row) => fixed(row.cpuUs)],
  ["RSS MiB", (row) => fixed(row.rss === undefined ? undefined : row.rss / 2 ** 20, 1)],
  [
    "heap used/total MiB",
    (row) =>
      `${fixed(row.heapUsed === undefined ? undefined : row.heapUsed / 2 ** 20, 1)} / ${fixed(row.heapTotal === undefined ? undefined : row.heapTotal / 2 ** 20, 1)}`,
  ],
  ["loop delay p50 ms", (row) => fixed(row.eldP50, 2)],
  ["loop delay p99 ms", (row) => fixed(row.eldP99, 2)],
  ["loop delay max ms", (row) => fixed(row.eldMax, 2)],
  ["errors", (row) => errorsCell(row)],
];

const HC_COLUMNS = [
  ["server", (row) => row.label],
  ["req/s", (row) => fixed(row.rps)],
  ["p50 ms", (row) => fixed(row.p50, 2)],
  ["p99 ms", (row) => fixed(row.p99, 2)],
  ["RSS MiB", (row) => fixed(row.rss === undefined ? undefined : row.rss / 2 ** 20, 1)],
  ["loop delay p99 ms", (row) => fixed(row.eldP99, 2)],
  ["errors", (row) => errorsCell(row)],
];

function errorsCell(row) {
  if (row.non2xx + row.errors === 0) return "0";
  const parts = [];
  if (row.non2xx > 0) parts.push(`${row.non2xx} non-2xx`);
  if (row.timeouts > 0) parts.push(`${row.timeouts} timeouts`);
  if (row.errors - (row.timeouts ?? 0) > 0) parts.push(`${row.errors - (row.timeouts ?? 0)} connection errors`);
  return parts.join(", ");
}

/** Rows of cells as an aligned text table or a Markdown table. */
function renderTable(header, rows, markdown) {
  if (markdown) {
    const line = (cells) => `| ${cells.join(" | ")} |`;
    // Right-align the columns that hold numbers (a leading digit, sign or dash), left-align text.
    const numeric = header.map((_, i) => i > 0 && rows.every((row) => /^[-+—\d]/.test(row[i])));
    return [line(header), line(numeric.map((right) => (right ? "---:" : "---"))), ...rows.map(line)].join("\n");
  }
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ");
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n");
}

function verdictMark(target, markdown) {
  if (target.info) return markdown ? "ℹ️ figures" : "[figures]";
  if (target.met === true) return markdown ? "✅ met" : "[met]    ";
  if (target.met === false) return markdown ? "❌ **not met**" : "[NOT MET]";
  return markdown ? "⏸ not evaluated" : "[n/a]    ";
}

function sections(report, markdown) {
  const out = [];
  const heading = (level, text) => out.push(markdown ? `${"#".repeat(level)} ${text}\n` : `\n${text}\n${"=".repeat(text.length)}`);
  const table = (columns, rows) => {
    out.push(
      renderTable(
        columns.map(([name]) => name),
        rows.map((row) => columns.map(([, cell]) => cell(row))),
        markdown,
      ),
    );
    if (markdown) out.push("");
  };
  for (const [scenario, title] of Object.entries(SCENARIO_TITLES)) {
    const rows = report.table.filter((row) => row.scenario === scenario);
    if (rows.length === 0) continue;
    heading(3, title);
    table(COLUMNS, rows);
  }

  const fixedRate = report.fixedRate ?? [];
  if (fixedRate.length > 0) {
    const first = fixedRate[0];
    heading(
      2,
      `RSS and event-loop delay at an equal load: ${count(first.rate)} req/s offered to every server, scenario (${first.scenario}), ${first.connections} connections, fresh server process`,
    );
    table(FIXED_COLUMNS, fixedRate);
    out.push(
      `${markdown ? "" : "  "}RSS: the largest of process.memoryUsage().rss sampled every 100 ms in the server during the measured window; loop delay: perf_hooks.monitorEventLoopDelay (1 ms resolution, the resolution subtracted) over the same window. (!) marks a server that did not reach ${REACHED_SHARE * 100}% of the offered rate: not at equal load, not compared.`,
    );
    if (markdown) out.push("");
  }
  const hc = report.highConcurrency ?? [];
  if (hc.length > 0 || report.meta?.hcSkipped !== undefined) {
    const first = hc[0];
    heading(
      2,
      `${count(first?.connections ?? report.meta?.config?.hcConnections ?? 2500)} connections${first ? `, scenario (${first.scenario}), as fast as each server answers` : ""}${report.meta?.config?.hcTimeout === undefined ? "" : `, a request unanswered after ${report.meta.config.hcTimeout} s counted as a timeout`}`,
    );
    if (hc.length > 0) table(HC_COLUMNS, hc);
    const fd = report.meta?.fd;
    if (fd !== undefined) {
      out.push(
        `${markdown ? "" : "  "}Open files: limit ${fd.soft} (hard ${fd.hard})${fd.raisedFrom === undefined ? "" : `, raised from ${fd.raisedFrom} with ulimit -n by the runner and inherited by every server`}; ${fd.needed} needed (a descriptor per connection in the load generator and in the server, plus a margin).`,
      );
    }
    if (report.meta?.hcSkipped !== undefined) out.push(`${markdown ? "" : "  "}Not measured: ${report.meta.hcSkipped}`);
    if (markdown) out.push("");
  }

  const issue = report.targets.filter((target) => target.group !== "earlier");
  const earlier = report.targets.filter((target) => target.group === "earlier");
  heading(2, "Targets");
  for (const target of issue) {
    const line = `${verdictMark(target, markdown)} ${markdown ? "— " : ""}${target.target}: ${target.detail}`;
    out.push(markdown ? `- ${line}` : line);
  }
  if (markdown) out.push("");
  if (earlier.length > 0) {
    heading(2, "Checks kept from the earlier issue");
    for (const target of earlier) {
      const line = `${verdictMark(target, markdown)} ${markdown ? "— " : ""}${target.target}: ${target.detail}`;
      out.push(markdown ? `- ${line}` : line);
    }
    if (markdown) out.push("");
  }

  const reasons = report.targets.filter((target) => target.met === false && target.reason !== undefined);
  if (reasons.length > 0) {
    heading(2, "Why a target is not met, and what it would take (from the measurements above)");
    for (const { target, reason } of reasons) {
      const [first, ...rest] = reason.split("\n");
      if (markdown) out.push(`- **${target}** — ${first}`, ...rest.map((line) => `  - ${line}`));
      else out.push(`- ${target}:`, `    ${first}`, ...rest.map((line) => `    · ${line}`));
    }
    if (markdown) out.push("");
  }

  if (report.lostUpdates.length > 0) {
    heading(2, "Lost updates: 200 concurrent increments of one session, 50 in flight");
    out.push(
      renderTable(
        ["server", "applied", "lost", "failed requests"],
        report.lostUpdates.map((check) => [
          labelOf(report, check.server),
          `${check.applied} / ${check.expected}`,
          String(check.expected - check.applied),
          String(check.failed),
        ]),
        markdown,
      ),
    );
    if (markdown) out.push("");
  }

  if (report.memory.length > 0) {
    heading(2, "Redis memory per visit-counter session (MEMORY USAGE of the key, SAMPLES 0)");
    out.push(
      renderTable(
        ["server", "bytes (browser User-Agent)", "bytes (no User-Agent)"],
        report.memory.map((check) => [
          labelOf(report, check.server),
          memoryCell(check.withUA),
          check.withoutUA === undefined ? "same (not stored)" : memoryCell(check.withoutUA),
        ]),
        markdown,
      ),
    );
    if (markdown) {
      out.push(
        "",
        "Ours keeps the User-Agent only for sessions bound to a user (for the list of a user's sessions), truncated to 256 characters, so an anonymous visit-counter session has none; connect-redis keeps express-session's cookie object instead, as one JSON string. The encoding is `OBJECT ENCODING`: Redis keeps a small hash as a compact `listpack` only while every value is at most `hash-max-listpack-value` (64) bytes; one longer value (a browser User-Agent is 100–150) turns it into a `hashtable`, several times larger.",
        "",
      );
    }
  }

  if (report.scale !== undefined) {
    const { rate, rows, bytesPerSession } = report.scale;
    heading(2, `p99 of ours (node:http + Redis) vs sessions in Redis, at a fixed ${rate} req/s`);
    out.push(
      renderTable(
        ["sessions in Redis", "increment p99 ms", "read p99 ms"],
        rows.map((row) => [row.sessions.toLocaleString("en"), fixed(median(row.increment), 2), fixed(median(row.read), 2)]),
        markdown,
      ),
    );
    if (bytesPerSession !== undefined) {
      out.push(
        `${markdown ? "\n" : ""}Bulk-loaded sessions (the layout of a real one, HSET + PEXPIREAT) took ${bytesPerSession.toFixed(0)} bytes each of Redis used_memory, keyspace and expiry entries included.`,
      );
    }
    if (markdown) out.push("");
  }

  if (report.failures.length > 0 || report.skipped.length > 0) {
    heading(2, "Failures and skipped servers");
    for (const failure of report.failures) {
      out.push(`- ${failure.server}${failure.scenario ? ` ${failure.scenario}` : ""} (run ${failure.run}): ${failure.error}`);
    }
    for (const skip of report.skipped) out.push(`- ${skip.server}: skipped, ${skip.reason}`);
    if (markdown) out.push("");
  }
  return out;
}

function memoryCell(measured) {
  return measured.bytes === undefined ? measured.note : `${measured.bytes} (${measured.encoding})`;
}

function labelOf(report, server) {
  return report.table.find((row) => row.server === server)?.label ?? server;
}

export function formatConsole(report) {
  return sections(report, false).join("\n");
}

/** A paragraph that says where the time goes, from the profile's areas. */
function whereTheTimeGoes(profile) {
  const { summary } = profile;
  const pct = (test) => `${shareOf(summary, test).toFixed(0)}%`;
  const writes = (owner) =>
    summary.functions
      .filter((entry) => /^writev?(Generic)?$|^write(Utf8|Latin1)String$|^writeBuffer$/.test(entry.name) && entry.where.includes(owner))
      .reduce((sum, entry) => sum + entry.share, 0);
  const oursTop = summary.functions
    .filter((entry) => entry.area.startsWith("atomic-session"))
    .slice(0, 4)
    .map((entry) => `\`${entry.name}\` (${entry.where.replace(/^dist\//, "")}, ${entry.share.toFixed(1)}%)`);
  return [
    `While ours (node:http + Redis) served the ${profile.scenario} scenario under \`node --cpu-prof\` (${profile.rps.toFixed(0)} req/s),`,
    `${pct((area) => area === "node http" || area === "node net/streams")} of the server's busy CPU time went to Node's HTTP and socket layers`,
    `and ${pct((area) => area.startsWith("node-redis"))} to node-redis (encoding commands, writing them, parsing replies);`,
    `the socket writes themselves (\`writev\` system calls, where loopback delivery is charged) are ${writes("node http").toFixed(0)}% for the HTTP answers`,
    `and ${writes("node-redis").toFixed(0)}% for the Redis commands, so every round trip saved is worth several percent.`,
    `atomic-session's own code took ${pct((area) => area.startsWith("atomic-session"))}${oursTop.length > 0 ? ` (mostly ${oursTop.join(", ")})` : ""},`,
    `node:crypto (ID hashing, cookie HMAC) ${pct((area) => area === "node crypto")}, garbage collection ${pct((area) => area === "GC")},`,
    `and the microtask queue and V8 work not attributed to a JavaScript function ${pct((area) => area.startsWith("native") || area.startsWith("V8"))}.`,
  ].join(" ");
}

export function formatMarkdown(report) {
  const { meta } = report;
  const out = ["# Benchmark results", ""];
  if (!meta.config.full) {
    out.push(
      "> **⚠️ SHORT SMOKE RUN ON A LOADED MACHINE — NOT A BENCHMARK.** It only shows that the harness works end to end:",
      `> ${meta.config.duration} s per measurement, ${meta.config.runs} run, while other test suites were running on the same ${meta.cores} cores.`,
      "> Replace this file with `npm run bench -- --full` on a quiet machine before quoting any number.",
      "",
    );
  } else {
    out.push(
      `Full run: ${meta.config.runs} runs interleaved across servers, ${meta.config.duration} s per measurement after a ${meta.config.warmup} s warm-up. Numbers are medians over the runs (req/s also shows the min–max); ratios are taken within each run.`,
      "",
    );
  }
  out.push(
    "| | |",
    "|---|---|",
    `| CPU | ${meta.cpu}, ${meta.cores} cores, ${meta.memoryGiB.toFixed(0)} GiB |`,
    `| system | ${meta.platform} |`,
    `| Node.js | ${meta.node} |`,
    `| Redis | ${meta.redis} (private instance, no persistence) |`,
    `| date | ${meta.date} |`,
    `| load average at start | ${meta.loadAverage.map((value) => value.toFixed(2)).join(", ")} |`,
    `| load | autocannon, ${meta.config.connections} connections, same machine; ${meta.config.duration} s × ${meta.config.runs} run(s) after ${meta.config.warmup} s warm-up |`,
    "",
    "Every server runs the same visit counter in its own process (see `bench/servers.mjs`); our servers and both anchors sign their cookies. Columns are explained in `bench/README.md`.",
    "",
    "## Throughput and cost per request",
    "",
    ...sections(report, true),
  );
  if (report.profile !== undefined) {
    const { summary } = report.profile;
    out.push("## Where the time goes", "", whereTheTimeGoes(report.profile), "");
    out.push(
      renderTable(
        ["area", "% of busy time"],
        summary.areas.slice(0, 10).map(({ area, share }) => [area, `${share.toFixed(1)}%`]),
        true,
      ),
      "",
      renderTable(
        ["top functions by self time", "where", "%"],
        summary.functions.slice(0, 12).map((entry) => [`\`${entry.name}\``, entry.where, `${entry.share.toFixed(1)}%`]),
        true,
      ),
      "",
      `Profile: \`bench/profiles/${report.profile.server}-${report.profile.scenario}.cpuprofile\` (open it in Chrome DevTools › Performance). Reproduce with \`npm run bench -- --cpu-prof ${report.profile.server} --scenario ${report.profile.scenario}\`.`,
      "",
    );
  }
  return `${out
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trimEnd()}\n`;
}
