/**
 * The benchmark's report logic on small synthetic tables: the per-run ratios, the verdict of
 * every target of the performance issue, and the measured reason printed for each one not met.
 * Nothing here is timed: the figures are fixed, so the verdicts and the reasons are exact.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { aggregate, aggregateLoads, evaluateTargets, formatConsole, formatMarkdown } from "../lib/report.mjs";

const MiB = 2 ** 20;
const SCENARIOS = ["new", "increment", "read"] as const;
type Scenario = (typeof SCENARIOS)[number];

const SERVERS = [
  { name: "bare", label: "bare node:http (no session)", group: "baseline", redis: false },
  {
    name: "bare-busy",
    label: "bare node:http + 20 µs of CPU per request (no session)",
    group: "baseline",
    redis: false,
    highConcurrencyOnly: true,
  },
  { name: "express-session", label: "express + express-session + connect-redis", group: "anchor", redis: true },
  { name: "fastify-session", label: "fastify + @fastify/session + connect-redis", group: "anchor", redis: true },
  { name: "ours-node-memory", label: "ours node:http + memory", group: "ours", redis: false },
  { name: "ours-node-sqlite", label: "ours node:http + SQLite", group: "ours", redis: false },
  { name: "ours-node-redis", label: "ours node:http + Redis", group: "ours", redis: true },
  { name: "ours-express-redis", label: "ours Express + Redis", group: "ours", redis: true },
  { name: "ours-fastify-redis", label: "ours Fastify + Redis", group: "ours", redis: true },
  { name: "ours-hono-redis", label: "ours Hono + Redis", group: "ours", redis: true },
  { name: "ours-node-postgres", label: "ours node:http + PostgreSQL", group: "ours", redis: false },
];

interface Figures {
  rps: number;
  cpuUs?: number;
  redisCpuUs?: number;
  redisExecUs?: number;
  rtPerReq?: number;
  rtCommands?: string[];
  redisCommands?: Record<string, { perRequest: number; usPerCall: number }>;
}

/** Every target met: the shape of a good run (ratios just above each threshold). */
const MET: Record<string, Figures> = {
  bare: { rps: 80_000, cpuUs: 11 },
  "express-session": {
    rps: 6000,
    cpuUs: 150,
    redisCpuUs: 5,
    redisExecUs: 2,
    rtPerReq: 2,
    rtCommands: ["GET", "SET"],
    redisCommands: { get: { perRequest: 1, usPerCall: 0.5 }, set: { perRequest: 1, usPerCall: 1.5 } },
  },
  "fastify-session": { rps: 20_000, cpuUs: 48, redisCpuUs: 5, redisExecUs: 2, rtPerReq: 2, rtCommands: ["GET", "SET"] },
  "ours-node-redis": { rps: 44_000, cpuUs: 22, redisCpuUs: 4, redisExecUs: 2, rtPerReq: 1, rtCommands: ["EVALSHA"] },
  "ours-express-redis": { rps: 8000, cpuUs: 110, redisCpuUs: 4, rtPerReq: 1, rtCommands: ["EVALSHA"] },
  "ours-fastify-redis": { rps: 25_000, cpuUs: 40, redisCpuUs: 4, rtPerReq: 1, rtCommands: ["EVALSHA"] },
  "ours-hono-redis": { rps: 23_000, cpuUs: 43, redisCpuUs: 4, rtPerReq: 1, rtCommands: ["EVALSHA"] },
  "ours-node-memory": { rps: 54_000, cpuUs: 18 },
  "ours-node-sqlite": { rps: 25_000, cpuUs: 40 },
};

type Overrides = Record<string, Partial<Figures> | Partial<Record<Scenario, Partial<Figures>>>>;

/** Measurements of one run: MET with `overrides` (per server, or per server and scenario) applied; `null` leaves a server out. */
function measurements(overrides: Overrides = {}, omit: string[] = [], run = 1) {
  return Object.entries(MET)
    .filter(([server]) => !omit.includes(server))
    .flatMap(([server, base]) =>
      SCENARIOS.map((scenario) => {
        const override = overrides[server] ?? {};
        const perScenario = (override as Record<string, Partial<Figures> | undefined>)[scenario];
        const figures = { ...base, ...(SCENARIOS.some((name) => name in override) ? (perScenario ?? {}) : override) };
        return { server, scenario, run, requests: figures.rps * 3, p50: 1, p99: 2, non2xx: 0, errors: 0, timeouts: 0, ...figures };
      }),
    );
}

interface Load {
  rps?: number;
  rss?: number;
  heapTotal?: number;
  heapUsed?: number;
  eldP99?: number;
  cpuUs?: number;
  p99?: number;
  requests?: number;
  errors?: number;
  timeouts?: number;
  non2xx?: number;
  statusCodes?: Record<string, number>;
  errorCodes?: Record<string, number>;
}

const RESIDENT: Record<string, Load> = {
  bare: { rss: 50 * MiB, heapTotal: 10 * MiB, eldP99: 0.3 },
  "express-session": { rss: 100 * MiB, heapTotal: 40 * MiB, eldP99: 1.5, cpuUs: 150 },
  "fastify-session": { rss: 95 * MiB, heapTotal: 40 * MiB, eldP99: 1.5, cpuUs: 150 },
  "ours-node-memory": { rss: 60 * MiB, heapTotal: 20 * MiB, eldP99: 0.6 },
  "ours-node-sqlite": { rss: 70 * MiB, heapTotal: 20 * MiB, eldP99: 0.9 },
  "ours-node-redis": { rss: 70 * MiB, heapTotal: 25 * MiB, eldP99: 0.5, cpuUs: 120 },
  "ours-express-redis": { rss: 80 * MiB, heapTotal: 30 * MiB, eldP99: 0.9 },
  "ours-fastify-redis": { rss: 85 * MiB, heapTotal: 30 * MiB, eldP99: 0.8 },
  "ours-hono-redis": { rss: 75 * MiB, heapTotal: 28 * MiB, eldP99: 0.7 },
};

/** The fixed-rate and high-concurrency runs of every server in RESIDENT, with overrides. */
function loads({ fixed = {}, hc = {} }: { fixed?: Record<string, Load>; hc?: Record<string, Load> } = {}) {
  return Object.entries(RESIDENT).flatMap(([server, base]) => {
    const shared = { server, run: 1, scenario: "increment", p50: 1, non2xx: 0, errors: 0, timeouts: 0 };
    const stats = (load: Load) => ({ rss: load.rss, heapTotal: load.heapTotal, heapUsed: (load.heapTotal ?? 0) / 2, eldP99: load.eldP99 });
    const f = { rps: 2000, p99: 3, requests: 6000, ...base, ...fixed[server] };
    const h = { rps: 10_000, p99: 400, requests: 30_000, ...base, ...hc[server] };
    return [
      { kind: "fixed", connections: 10, rate: 2000, ...shared, ...f, stats: stats(f) },
      { kind: "hc", connections: 2500, ...shared, ...h, stats: stats(h) },
    ];
  });
}

const META = {
  date: "2026-12-01T00:00:00.000Z",
  cpu: "test CPU",
  cores: 2,
  memoryGiB: 8,
  loadAverage: [1.2, 1.1, 1.0],
  node: "v20.0.0",
  redis: "7.0.15",
  platform: "Linux",
  clockTicks: 100,
  config: { full: true, duration: 10, warmup: 2, runs: 1, connections: 50, fixedRate: 2000, hcConnections: 2500, hcTimeout: 4 },
  fd: { soft: 20_000, hard: 20_000, needed: 3524 },
};

interface Target {
  id: string;
  met: boolean | undefined;
  detail: string;
  reason?: string;
  info?: boolean;
  group?: string;
}

function report(runs: Record<string, unknown>[], loadRuns: Record<string, unknown>[] = loads(), extra: Record<string, unknown> = {}) {
  const table = aggregate(runs, SERVERS);
  const { fixedRate, highConcurrency } = aggregateLoads(loadRuns, SERVERS);
  const built: Record<string, unknown> = {
    meta: META,
    table,
    fixedRate,
    highConcurrency,
    failures: [],
    skipped: [],
    lostUpdates: [],
    memory: [],
    ...extra,
  };
  built.targets = evaluateTargets(built);
  return built as { targets: Target[] } & Record<string, unknown>;
}

function target(built: { targets: Target[] }, id: string): Target {
  const found = built.targets.find((t) => t.id === id);
  if (found === undefined) throw new Error(`no target ${id}: ${built.targets.map((t) => t.id).join(", ")}`);
  return found;
}

const ISSUE_TARGETS = [
  "node-redis-vs-bare",
  "fastify-vs-plugin",
  "express-vs-plugin",
  "hono-vs-fastify",
  "memory-vs-redis",
  "sqlite-vs-bare",
  "redis-cpu",
  "round-trips",
  "high-concurrency",
  "rss-eld",
];

describe("aggregate", () => {
  it("takes each ratio within its run, then the median of the runs' ratios (not the ratio of the medians)", () => {
    const pair = (run: number, bare: number, ours: number) => [
      { server: "bare", scenario: "read", run, rps: bare, non2xx: 0, errors: 0 },
      { server: "ours-node-redis", scenario: "read", run, rps: ours, non2xx: 0, errors: 0 },
    ];
    const table = aggregate([...pair(1, 100, 60), ...pair(2, 200, 80), ...pair(3, 100, 45)], SERVERS);
    const ours = table.find((row: { server: string }) => row.server === "ours-node-redis");
    if (ours === undefined) throw new Error("ours-node-redis was not aggregated");
    // Per run: 0.6, 0.4, 0.45 → 0.45; the medians' ratio would be 60 / 100 = 0.6.
    expect(ours.xBare).toBeCloseTo(0.45, 10);
    expect(ours.rps).toBe(60);
    expect([ours.rpsMin, ours.rpsMax]).toEqual([45, 80]);
    expect(ours.ratios["express-session"]).toBeUndefined();
    expect(table.find((row: { server: string }) => row.server === "bare")?.xBare).toBe(1);
  });

  it("adds up errors and timeouts over the runs and keeps the median Redis figures per command", () => {
    const row = (run: number, usPerCall: number, errors: number) => ({
      server: "ours-node-redis",
      scenario: "new",
      run,
      rps: 1000,
      non2xx: 1,
      errors,
      timeouts: 1,
      redisCommands: { evalsha: { perRequest: 1, usPerCall } },
    });
    const [aggregated] = aggregate([row(1, 5, 2), row(2, 9, 3), row(3, 6, 1)], SERVERS);
    expect(aggregated).toMatchObject({ runs: 3, non2xx: 3, errors: 6, timeouts: 3 });
    expect(aggregated?.redisCommands).toEqual({ evalsha: { perRequest: 1, usPerCall: 6 } });
  });
});

describe("aggregateLoads", () => {
  it("keeps medians per server, the share of the offered rate reached, and merges status and error codes", () => {
    const run = (n: number, rps: number, rss: number, status503: number) => ({
      kind: "fixed",
      server: "ours-node-redis",
      run: n,
      scenario: "increment",
      connections: 10,
      rate: 2000,
      rps,
      requests: rps * 3,
      non2xx: status503,
      errors: 0,
      timeouts: 0,
      statusCodes: { 200: rps * 3 - status503, 503: status503 },
      stats: { rss, eldP99: n },
    });
    const { fixedRate, highConcurrency } = aggregateLoads([run(1, 2000, 70, 1), run(2, 1000, 90, 0), run(3, 1900, 80, 2)], SERVERS);
    expect(highConcurrency).toEqual([]);
    expect(fixedRate).toHaveLength(1);
    expect(fixedRate[0]).toMatchObject({ rps: 1900, reached: 0.95, rss: 80, eldP99: 2, non2xx: 3, runs: 3 });
    expect(fixedRate[0]?.statusCodes).toEqual({ 200: 14_697, 503: 3 });
  });
});

describe("targets: a run that meets every one", () => {
  const built = report(measurements());

  it.each(ISSUE_TARGETS)("%s is met, with no reason", (id) => {
    expect(target(built, id).met).toBe(true);
    expect(target(built, id).reason).toBeUndefined();
  });

  it("prints the ratios each verdict rests on", () => {
    expect(target(built, "node-redis-vs-bare").detail).toBe("new 0.55×, increment 0.55×, read 0.55×");
    expect(target(built, "fastify-vs-plugin").detail).toBe("new 1.25×, increment 1.25×, read 1.25×");
    expect(target(built, "express-vs-plugin").detail).toBe("new 1.33×, increment 1.33×, read 1.33×");
    expect(target(built, "hono-vs-fastify").detail).toBe("new 0.92×, increment 0.92×, read 0.92×");
    expect(target(built, "memory-vs-redis").detail).toBe("new 1.23×, increment 1.23×, read 1.23×");
    expect(target(built, "sqlite-vs-bare").detail).toBe("new 0.31×, increment 0.31×, read 0.31×");
    expect(target(built, "redis-cpu").detail).toContain("new 4 µs vs 5 µs (express-session), 5 µs (fastify-session)");
    expect(target(built, "high-concurrency").detail).toContain("p99 ours-node-memory 400.00 ms");
    expect(target(built, "high-concurrency").detail).toContain("without our code bare 400.00 ms, express-session 400.00 ms");
    expect(target(built, "rss-eld").detail).toContain("ours-node-redis 70.0 MiB, 0.50 ms");
  });

  it("keeps the earlier issue's checks apart, and prints no PostgreSQL line without its row", () => {
    expect(built.targets.filter((t) => t.group === "earlier").map((t) => t.id)).toEqual(["lost-updates", "scale", "redis-memory"]);
    expect(built.targets.some((t) => t.id === "postgres")).toBe(false);
  });
});

describe("targets not met, with the measured reason and what it would take", () => {
  it("ours node:http + Redis vs bare: the CPU budget, the session's share, Redis on the same cores", () => {
    const t = target(report(measurements({ "ours-node-redis": { rps: 32_000, cpuUs: 29, redisCpuUs: 8 } })), "node-redis-vs-bare");
    expect(t.met).toBe(false);
    expect(t.detail).toBe("new 0.40×, increment 0.40×, read 0.40×");
    expect(t.reason).toContain(
      "increment 0.40×: 29 µs of server CPU per request against 11 µs, so 0.5× needs at most 22 µs, 7 µs (24%) less",
    );
    expect(t.reason).toContain("bare's exchange 11 µs + the session 18 µs (`--cpu-prof ours-node-redis --scenario increment` shows where)");
    expect(t.reason).toContain("Redis 8 µs more on the same cores");
    // 32,000 req/s × 29 µs = 93% busy: CPU explains it, so there is no waiting note.
    expect(t.reason).not.toContain("computed only");
    expect(t.reason?.split("\n")).toHaveLength(4);
  });

  it("names the profile's areas when the report has a profile of that scenario", () => {
    const profile = {
      server: "ours-node-redis",
      scenario: "increment",
      rps: 30_000,
      summary: {
        areas: [
          { area: "node http", share: 36 },
          { area: "node net/streams", share: 7 },
          { area: "node-redis (@redis/client)", share: 16 },
          { area: "atomic-session core/manager", share: 6 },
          { area: "atomic-session stores/redis/index", share: 4 },
          { area: "GC", share: 12 },
          { area: "node crypto", share: 5 },
        ],
        functions: [],
      },
    };
    const t = target(report(measurements({ "ours-node-redis": { rps: 32_000, cpuUs: 29 } }), loads(), { profile }), "node-redis-vs-bare");
    expect(t.reason).toContain("(profile: node http and sockets 43%, node-redis 16%, atomic-session 10%, node crypto 5%, GC 12%)");
  });

  it("memory vs Redis: the two profiles of the scenario say where the memory store's server spends its time", () => {
    const summary = (busyMs: number, areas: { area: string; share: number }[], httpWrites: number) => ({
      totalMs: 5000,
      busyMs,
      areas,
      functions: [{ name: "writev", where: "native, for node http", area: "node http", share: httpWrites }],
    });
    // 4,500 ms busy of 5,000 at 6,000 req/s: 150 µs per request; 4,000 of 5,000 at 8,000 req/s: 100 µs.
    const memoryProfile = {
      server: "ours-node-memory",
      scenario: "increment",
      rps: 6000,
      summary: summary(
        4500,
        [
          { area: "node http", share: 47 },
          { area: "atomic-session stores/memory", share: 2 },
          { area: "atomic-session core/session", share: 8 },
        ],
        36,
      ),
    };
    const profile = {
      server: "ours-node-redis",
      scenario: "increment",
      rps: 8000,
      summary: summary(
        4000,
        [
          { area: "node-redis (@redis/client)", share: 15 },
          { area: "atomic-session core/session", share: 10 },
        ],
        20,
      ),
    };
    const slowMemory = measurements({ "ours-node-memory": { rps: 30_000, cpuUs: 150 }, "ours-node-redis": { rps: 40_000, cpuUs: 100 } });
    const t = target(report(slowMemory, loads(), { profile, memoryProfile }), "memory-vs-redis");
    const increment = t.reason?.split("\n").find((line) => line.includes("increment"));
    expect(increment).toContain(
      "ours on the memory store spent 150 µs per request: the memory store's code 3 µs, all of atomic-session 15 µs, the socket writes of the HTTP answers 54 µs; ours on Redis 100 µs: atomic-session 10 µs, node-redis 15 µs, the HTTP answers' writes 20 µs",
    );
    expect(increment).toContain("Writing the same answer costs the server on the memory store 34 µs more");
    const read = t.reason?.split("\n").find((line) => line.includes("read"));
    expect(read).not.toContain("Profiled in this scenario");
  });

  it("ours Fastify vs @fastify/session: Fastify's own cost, our session's, the plugin's, and the session budget", () => {
    const t = target(
      report(measurements({ "ours-fastify-redis": { rps: 22_000, cpuUs: 55 }, "ours-node-redis": { cpuUs: 29 } })),
      "fastify-vs-plugin",
    );
    expect(t.met).toBe(false);
    expect(t.detail).toBe("new 1.10×, increment 1.10×, read 1.10×");
    expect(t.reason).toContain("new 1.10×: 55 µs of server CPU per request against 48 µs, so 1.2× needs at most 40 µs, 15 µs (27%) less");
    expect(t.reason).toContain(
      "Fastify and our adapter 26 µs (ours on Fastify − ours on node:http) + our session 18 µs (ours on node:http − bare) + bare 11 µs",
    );
    expect(t.reason).toContain("fastify + @fastify/session + connect-redis spends about 11 µs on its session");
    expect(t.reason).toContain("our session would have to fall from 18 µs to 3 µs");

    // Our path through Fastify alone costing more than the plugin's whole request: said so, no negative share.
    const adapter = target(
      report(measurements({ "ours-fastify-redis": { rps: 22_000, cpuUs: 90 }, "ours-node-redis": { cpuUs: 29 } })),
      "fastify-vs-plugin",
    );
    expect(adapter.reason).toContain(
      "fastify + @fastify/session + connect-redis's whole request (48 µs) costs less than bare + Fastify and our adapter alone, so our adapter's path through Fastify, more than the session, is what costs",
    );
    expect(adapter.reason).not.toMatch(/-\d+ µs/);

    // Ours on Fastify cheaper than ours on node:http: no negative framework cost, both sides compared beyond bare instead.
    const cheaper = target(
      report(measurements({ "ours-fastify-redis": { rps: 22_000, cpuUs: 45 }, "ours-node-redis": { cpuUs: 50 } })),
      "fastify-vs-plugin",
    );
    expect(cheaper.reason).toContain(
      "ours on Fastify took 5 µs less CPU per request than ours on node:http, so Fastify's own cost cannot be split from our session's; beyond bare node:http, ours on Fastify spends",
    );
    expect(cheaper.reason).not.toMatch(/-\d+ µs/);
  });

  it("ours Express vs express-session: a session budget left, or none when Express alone is over it", () => {
    const some = target(
      report(
        measurements({
          "express-session": { rps: 7700, cpuUs: 142 },
          "ours-express-redis": { rps: 8400, cpuUs: 125 },
          "ours-node-redis": { cpuUs: 29 },
        }),
      ),
      "express-vs-plugin",
    );
    expect(some.met).toBe(false);
    expect(some.reason).toContain(
      "read 1.09×: 125 µs of server CPU per request against 142 µs, so 1.3× needs at most 109 µs, 16 µs (13%) less",
    );
    expect(some.reason).toContain("Express and our adapter 96 µs");
    expect(some.reason).toContain("our session would have to fall from 18 µs to 2 µs");

    const none = target(
      report(
        measurements({
          "express-session": { rps: 7700, cpuUs: 142 },
          "ours-express-redis": { rps: 8400, cpuUs: 140 },
          "ours-node-redis": { cpuUs: 29 },
        }),
      ),
      "express-vs-plugin",
    );
    expect(none.reason).toContain(
      "so no session is cheap enough: Express and our adapter alone (111 µs, + bare 11 µs) are over the budget",
    );
  });

  it("ours Hono vs ours Fastify: each framework's share beyond ours on node:http", () => {
    const t = target(
      report(
        measurements({
          "ours-fastify-redis": { rps: 26_000, cpuUs: 40 },
          "ours-hono-redis": { rps: 20_000, cpuUs: 52 },
          "ours-node-redis": { cpuUs: 29 },
        }),
      ),
      "hono-vs-fastify",
    );
    expect(t.met).toBe(false);
    expect(t.detail).toBe("new 0.77×, increment 0.77×, read 0.77×");
    expect(t.reason).toContain("0.9× needs at most 44 µs, 8 µs (15%) less");
    expect(t.reason).toContain(
      "Hono on @hono/node-server and our middleware cost 23 µs beyond ours on node:http, Fastify and our plugin 11 µs",
    );
    expect(t.reason).toContain("within 10% needs Hono's share at most 15 µs");

    // Ours on Fastify cheaper than ours on node:http: Hono measured against Fastify, no negative share.
    const againstFastify = target(
      report(
        measurements({
          "ours-fastify-redis": { rps: 26_000, cpuUs: 30 },
          "ours-hono-redis": { rps: 20_000, cpuUs: 40 },
          "ours-node-redis": { cpuUs: 33 },
        }),
      ),
      "hono-vs-fastify",
    ).reason;
    expect(againstFastify).toContain(
      "ours on Fastify took less CPU per request than ours on node:http, so the frameworks' own costs cannot be split from ours; ours on Hono spends 10 µs more than ours on Fastify, and within 10% allows 3 µs more",
    );
    expect(againstFastify).not.toMatch(/-\d+ µs/);
  });

  it("a faster Hono is within the target", () => {
    expect(target(report(measurements({ "ours-hono-redis": { rps: 40_000 } })), "hono-vs-fastify").met).toBe(true);
  });

  it("memory vs Redis: what the Redis round trip costs the server over the memory store, and what would have to shrink", () => {
    const t = target(
      report(
        measurements({
          "ours-node-redis": { rps: 34_000, cpuUs: 29 },
          "ours-node-memory": { new: { rps: 36_000, cpuUs: 27 }, increment: { rps: 36_000, cpuUs: 31 }, read: { rps: 45_000, cpuUs: 20 } },
        }),
      ),
      "memory-vs-redis",
    );
    expect(t.met).toBe(false);
    expect(t.detail).toBe("new 1.06×, increment 1.06×, read 1.32×");
    expect(t.reason).toContain("new 1.06×: 27 µs of server CPU per request against 29 µs, so 1.2× needs at most 24 µs, 3 µs (10%) less");
    expect(t.reason).toContain("the Redis round trip costs the server only 2 µs more than the memory store's work");
    expect(t.reason).toContain("the shared session code (16 µs beyond bare) would have to shrink by 3 µs");
    expect(t.reason).toContain("increment 1.06×: 31 µs");
    expect(t.reason).toContain("the server on the memory store spends 2 µs more than the one waiting on Redis");
    expect(t.reason).not.toContain("read 1.32×");
  });

  it("SQLite vs bare: SQLite's own share, and a note when the server waited rather than computed", () => {
    const runs = measurements({ "ours-node-sqlite": { rps: 16_000, cpuUs: 50 }, "ours-node-memory": { cpuUs: 24 } });
    const t = target(report(runs), "sqlite-vs-bare");
    expect(t.met).toBe(false);
    expect(t.reason).toContain("0.20×: 50 µs of server CPU per request against 11 µs, so 0.3× needs at most 37 µs, 13 µs (27%) less");
    expect(t.reason).toContain("SQLite's statements cost 26 µs per request beyond the same server on the memory store (24 µs)");
    expect(t.reason).toContain("the server computed only 80% of the time (req/s × CPU per request): it waited, on SQLite's file writes,");
    expect(t.reason).not.toContain("load average");

    const crowded = report(runs, loads(), { meta: { ...META, loadAverage: [5.9, 4, 3] } });
    expect(target(crowded, "sqlite-vs-bare").reason).toContain("or for a core (the load average was 5.9 on 2 cores)");
  });

  it("says CPU does not explain a ratio when the server's CPU is within the budget", () => {
    const t = target(report(measurements({ "ours-node-sqlite": { rps: 16_000, cpuUs: 30 } })), "sqlite-vs-bare");
    expect(t.met).toBe(false);
    expect(t.reason).toContain(
      "new 0.20×: 30 µs of server CPU per request against 11 µs is within the 37 µs that 0.3× allows, so CPU does not explain the gap",
    );
    expect(t.reason).toContain("computed only 48% of the time");
  });

  it("Redis CPU: execution from INFO commandstats vs I/O, against the cheaper anchor", () => {
    const anchors = {
      "express-session": { redisCpuUs: 3, redisExecUs: 1.2 },
      "fastify-session": { redisCpuUs: 4, redisExecUs: 1.2 },
    };
    const script = {
      rtCommands: ["EVALSHA"],
      redisCommands: { evalsha: { perRequest: 1, usPerCall: 7 }, hincrby: { perRequest: 1, usPerCall: 1 } },
    };
    const t = target(report(measurements({ ...anchors, "ours-node-redis": { redisCpuUs: 9, redisExecUs: 7, ...script } })), "redis-cpu");
    expect(t.met).toBe(false);
    expect(t.detail).toContain("increment 9 µs vs 3 µs (express-session), 4 µs (fastify-session)");
    expect(t.reason).toContain(
      "new: ours 9 µs (1.00 round trips EVALSHA; executing 7 µs: EVALSHA 7.0 µs per call; I/O 2 µs) against express-session 3 µs (2.00 round trips GET+SET; executing 1 µs: GET 0.5 µs per call, SET 1.5 µs per call; I/O 2 µs)",
    );
    expect(t.reason).toContain("ours would have to execute in 1 µs instead of 7 µs");
    // 18,000 requests of express-session: one 10 ms tick is 0.6 µs per request, worth saying.
    expect(t.reason).toContain("(The process CPU clock counts ticks of 10000 µs, 0.6 µs per request over this run");

    const io = target(report(measurements({ ...anchors, "ours-node-redis": { redisCpuUs: 9, redisExecUs: 5, ...script } })), "redis-cpu");
    expect(io.reason).toContain("even free commands would not match it: ours' I/O alone is 4 µs");
  });

  it("round trips: which commands were sent on their own", () => {
    const t = target(
      report(measurements({ "ours-express-redis": { increment: { rtPerReq: 2, rtCommands: ["EVALSHA", "PEXPIRE"] } } })),
      "round-trips",
    );
    expect(t.met).toBe(false);
    expect(t.detail).toContain("ours-express-redis increment 2.00");
    expect(t.reason).toBe(
      "Round trips counted with MONITOR over 20 sequential requests after each measured run:\n" +
        "ours Express + Redis increment: 2.00 round trips per request (EVALSHA, PEXPIRE): every command sent on its own waits for its reply, so one round trip needs them in one script or one pipeline.",
    );
  });

  it("high concurrency: timeouts, 503s and connection errors, each with what it points at", () => {
    const hc = {
      "ours-fastify-redis": {
        requests: 30_000,
        errors: 3,
        timeouts: 3,
        non2xx: 12,
        statusCodes: { 200: 29_985, 503: 12 },
        errorCodes: { timeout: 3 },
      },
      "ours-hono-redis": { requests: 20_000, errors: 40, errorCodes: { EMFILE: 40 } },
    };
    const built = report(measurements(), loads({ hc }), { meta: { ...META, fd: { soft: 1024, hard: 4096, needed: 3524 } } });
    const t = target(built, "high-concurrency");
    expect(t.met).toBe(false);
    expect(t.detail).toContain(
      "errors ours-node-memory 0, ours-node-sqlite 0, ours-node-redis 0, ours-express-redis 0, ours-fastify-redis 15, ours-hono-redis 40",
    );
    const [header, fastify, hono] = t.reason?.split("\n") ?? [];
    expect(header).toBe("Each of ours with errors at 2,500 connections, and what the errors point at:");
    expect(fastify).toContain("ours Fastify + Redis: 15 errors (30,000 responses in the window)");
    expect(fastify).toContain("3 timed out (no answer within 4 s, while at 10000 req/s a connection waits about 0.25 s per request");
    expect(fastify).toContain("503 ×12 answered (503 + Retry-After is StoreUnavailableError");
    expect(hono).toContain(
      "ours Hono + Redis: 40 errors (20,000 responses in the window) — 40 connection errors (EMFILE ×40): out of file descriptors (the limit was 1024",
    );
  });

  it("high concurrency: timeouts that bare node:http has too are put down to the machine", () => {
    const hc = {
      bare: { timeouts: 7, errors: 7 },
      "ours-node-redis": { timeouts: 20, errors: 20 },
    };
    const onlyTimeouts = target(report(measurements(), loads({ hc })), "high-concurrency");
    expect(onlyTimeouts.met).toBe(false);
    const last = onlyTimeouts.reason?.split("\n").at(-1);
    expect(last).toContain("The same measurement timed out without our code too: bare node:http (no session) 7.");
    expect(last).toContain("none of ours refused a request");
    const refusing = { ...hc, "ours-node-redis": { timeouts: 20, errors: 20, non2xx: 5, statusCodes: { 200: 29_975, 503: 5 } } };
    const withRefusals = target(report(measurements(), loads({ hc: refusing })), "high-concurrency");
    expect(withRefusals.reason?.split("\n").at(-1)).toContain(
      "refused requests (non-2xx or connection errors) are ours alone: ours node:http + Redis.",
    );
    const withoutBareTimeouts = target(
      report(measurements(), loads({ hc: { "ours-node-redis": hc["ours-node-redis"] } })),
      "high-concurrency",
    );
    expect(withoutBareTimeouts.reason).not.toContain("without our code too");
  });

  it("high concurrency: the control, a server as slow as ours with no session code, says what a timeout measures", () => {
    const hc = { "express-session": { timeouts: 9, errors: 9 }, "ours-node-redis": { timeouts: 20, errors: 20 } };
    const control = {
      kind: "hc",
      server: "bare-busy",
      run: 1,
      scenario: "increment",
      connections: 2500,
      rps: 20_000,
      p50: 1,
      p99: 300,
      requests: 60_000,
      non2xx: 0,
      errors: 12,
      timeouts: 12,
      stats: { rss: 50 * MiB, heapTotal: 10 * MiB, heapUsed: 5 * MiB, eldP99: 5 },
    };
    const last = target(report(measurements(), [...loads({ hc }), control]), "high-concurrency")
      .reason?.split("\n")
      .at(-1);
    expect(last).toContain(
      "The same measurement timed out without our code too: bare node:http + 20 µs of CPU per request (no session) 12, express + express-session + connect-redis 9 while bare node:http, which answers as fast as the load generator asks, had none",
    );
    expect(last).toContain("The control (bare node:http + 20 µs of CPU per request (no session)) runs no session code at all");
    expect(last).toContain("Meeting this target needs a machine where the control has none");
  });

  it("RSS and event-loop delay: against the framework's own plugin, split into heap and the rest", () => {
    const fixed = {
      "ours-express-redis": { rss: 130 * MiB, heapTotal: 60 * MiB },
      "ours-node-redis": { eldP99: 2.5 },
    };
    const t = target(report(measurements(), loads({ fixed })), "rss-eld");
    expect(t.met).toBe(false);
    const lines = t.reason?.split("\n") ?? [];
    expect(lines[0]).toBe("At 2,000 req/s offered to every server:");
    expect(lines).toContain(
      "ours Express + Redis vs express + express-session + connect-redis: RSS 130.0 MiB vs 100.0 MiB (ours: JS heap 60.0 MiB (30.0 MiB used), the rest 70.0 MiB; theirs: JS heap 40.0 MiB (20.0 MiB used), the rest 60.0 MiB): 30.0 MiB less would take it under, mostly JS heap (20.0 MiB more: objects ours keeps or allocates per request, and the heap V8 keeps for them).",
    );
    // ours node:http is held to both anchors; ours Express only to express-session.
    expect(lines.filter((line) => line.startsWith("ours node:http + Redis vs"))).toHaveLength(2);
    expect(lines.filter((line) => line.startsWith("ours Express + Redis vs"))).toHaveLength(1);
    expect(lines.find((line) => line.includes("fastify + @fastify/session") && line.includes("event-loop"))).toContain(
      "p99 event-loop delay 2.50 ms vs 1.50 ms at 2000 vs 2000 req/s, with 120 µs vs 150 µs of CPU per request (busy 24% vs 30%)",
    );
  });

  it("RSS and event-loop delay are not compared with a server that did not reach the offered rate", () => {
    const t = target(report(measurements(), loads({ fixed: { "express-session": { rps: 1320 } } })), "rss-eld");
    expect(t.met).toBeUndefined();
    expect(t.detail).toContain("(not compared: express-session reached 66% of the offered rate)");
  });
});

describe("targets not evaluated", () => {
  it("says which server is missing instead of passing or failing", () => {
    const built = report(measurements({}, ["ours-fastify-redis", "express-session"]), []);
    expect(target(built, "fastify-vs-plugin")).toMatchObject({ met: undefined, detail: "ours-fastify-redis was not measured" });
    expect(target(built, "express-vs-plugin")).toMatchObject({
      met: undefined,
      detail: "express-session was not measured in the same run",
    });
    expect(target(built, "hono-vs-fastify")).toMatchObject({
      met: undefined,
      detail: "ours-fastify-redis was not measured in the same run",
    });
    expect(target(built, "high-concurrency").met).toBeUndefined();
    expect(target(built, "rss-eld").met).toBeUndefined();
    // One anchor left: Redis CPU cannot be judged against both.
    expect(target(built, "redis-cpu").met).toBeUndefined();
  });

  it("does not call a target met when not every scenario ran, but fails it when one that ran fails", () => {
    const onlyRead = measurements().filter((m) => m.scenario === "read");
    expect(target(report(onlyRead), "node-redis-vs-bare")).toMatchObject({
      met: undefined,
      detail: "read 0.55× (not every scenario was measured)",
    });
    const slowRead = measurements({ "ours-node-redis": { rps: 20_000 } }).filter((m) => m.scenario === "read");
    expect(target(report(slowRead), "node-redis-vs-bare").met).toBe(false);
  });

  it("gives the reason the high-concurrency run was skipped", () => {
    const skipped = "the open-files limit is 1024 (hard 1024), below the 3524 that 2500 connections need";
    const built = report(measurements(), [], { meta: { ...META, hcSkipped: skipped } });
    expect(target(built, "high-concurrency")).toMatchObject({ met: undefined, detail: skipped });
  });
});

describe("the PostgreSQL row", () => {
  it("is printed as figures with no target, and its errors fail no target", () => {
    const runs = [
      ...measurements(),
      ...SCENARIOS.map((scenario) => ({ server: "ours-node-postgres", scenario, run: 1, rps: 20_000, cpuUs: 45, non2xx: 0, errors: 0 })),
    ];
    const loadRuns = [
      ...loads(),
      {
        kind: "hc",
        server: "ours-node-postgres",
        run: 1,
        scenario: "increment",
        connections: 2500,
        rps: 5000,
        p99: 900,
        requests: 15_000,
        errors: 7,
        timeouts: 7,
        non2xx: 0,
        stats: {},
      },
      {
        kind: "fixed",
        server: "ours-node-postgres",
        run: 1,
        scenario: "increment",
        connections: 10,
        rate: 2000,
        rps: 2000,
        requests: 6000,
        errors: 0,
        timeouts: 0,
        non2xx: 0,
        stats: { rss: 90 * MiB, eldP99: 9 },
      },
    ];
    const built = report(runs, loadRuns);
    const t = target(built, "postgres");
    expect(t).toMatchObject({ met: undefined, info: true });
    expect(t.detail).toBe(
      "× bare new 0.25×, increment 0.25×, read 0.25×; server CPU new 45 µs, increment 45 µs, read 45 µs; 2,500 connections: 7 errors, p99 900.00 ms; at 2,000 req/s: RSS 90.0 MiB, p99 event-loop delay 9.00 ms",
    );
    expect(target(built, "high-concurrency").met).toBe(true);
    expect(target(built, "rss-eld").met).toBe(true);
  });
});

describe("the printed reports", () => {
  const built = report(measurements({ "ours-node-redis": { rps: 32_000, cpuUs: 29 } }), loads(), {
    lostUpdates: [{ server: "ours-node-redis", expected: 200, applied: 200, failed: 0 }],
    memory: [],
  });

  it("the console report marks each verdict and lists the reason under the target not met", () => {
    const text = formatConsole(built);
    expect(text).toContain("[NOT MET] ours node:http + Redis ≥ 0.5× bare node:http in every scenario: new 0.40×");
    expect(text).toContain("[met]     ours Fastify + Redis ≥ 1.2× @fastify/session + connect-redis in every scenario");
    expect(text).toContain("    · new 0.40×: 29 µs of server CPU per request against 11 µs");
    expect(text).toContain("RSS and event-loop delay at an equal load: 2,000 req/s offered to every server");
    expect(text).toContain(
      "2,500 connections, scenario (increment), as fast as each server answers, a request unanswered after 4 s counted as a timeout",
    );
    expect(text).toContain("Open files: limit 20000 (hard 20000); 3524 needed");
  });

  it("the Markdown report has the same verdicts, reasons as nested items, and the new tables", () => {
    const text = formatMarkdown(built);
    expect(text).toContain("- ❌ **not met** — ours node:http + Redis ≥ 0.5× bare node:http in every scenario: new 0.40×");
    expect(text).toContain("  - new 0.40×: 29 µs of server CPU per request against 11 µs");
    expect(text).toContain("| server | offered req/s | req/s | p99 ms | CPU µs/req | RSS MiB |");
    expect(text).toContain("| server | req/s | p50 ms | p99 ms | RSS MiB | loop delay p99 ms | errors |");
    expect(text).toContain("## Checks kept from the earlier issue");
  });
});

describe("npm run bench -- --report-from", () => {
  it("judges saved measurements against the targets again and writes the same Markdown, whatever verdicts were saved", async () => {
    const built = report(measurements({ "ours-node-redis": { rps: 30_000, cpuUs: 29 } }));
    const saved = { ...built, targets: built.targets.map((t) => ({ ...t, met: true, reason: undefined })) };
    const dir = mkdtempSync(join(tmpdir(), "bench-report-from-"));
    try {
      writeFileSync(join(dir, "saved.json"), JSON.stringify(saved));
      const root = fileURLToPath(new URL("../../", import.meta.url));
      await promisify(execFile)(
        process.execPath,
        ["bench/run.mjs", "--report-from", join(dir, "saved.json"), "--results", join(dir, "RESULTS.md")],
        { cwd: root, timeout: 20_000 },
      );
      const written = readFileSync(join(dir, "RESULTS.md"), "utf8");
      expect(written).toBe(formatMarkdown(built));
      expect(target(built, "node-redis-vs-bare").met).toBe(false);
      expect(written).toContain("❌ **not met** — ours node:http + Redis ≥ 0.5× bare node:http");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
