// Turns measurements into the table, the targets and the Markdown report.
import { shareOf } from "./profile.mjs";
import { fixed, median } from "./util.mjs";

const SCENARIO_TITLES = {
  new: "(a) new session on every request — GET /, no cookie",
  increment: "(b) existing session, changed — GET / with a cookie (counter + 1)",
  read: "(c) existing session, only read — GET /count with a cookie",
};

/**
 * Medians over the runs of each server × scenario; ratios are taken within each run
 * (against bare node:http and express-session measured in that same run), then their median.
 * @param {Record<string, any>[]} measurements
 * @param {{ name: string; label: string; group: string; redis: boolean }[]} servers
 */
export function aggregate(measurements, servers) {
  const rows = [];
  for (const scenario of Object.keys(SCENARIO_TITLES)) {
    for (const entry of servers) {
      const runs = measurements.filter((m) => m.server === entry.name && m.scenario === scenario);
      if (runs.length === 0) continue;
      const ratioTo = (anchor) =>
        median(
          runs.map((m) => {
            const same = measurements.find((other) => other.server === anchor && other.scenario === scenario && other.run === m.run);
            return same === undefined || same.rps === 0 ? Number.NaN : m.rps / same.rps;
          }),
        );
      const pick = (key) => median(runs.map((m) => m[key]).filter((value) => value !== undefined));
      rows.push({
        server: entry.name,
        label: entry.label,
        group: entry.group,
        redis: entry.redis,
        scenario,
        runs: runs.length,
        rps: pick("rps"),
        rpsMin: Math.min(...runs.map((m) => m.rps)),
        rpsMax: Math.max(...runs.map((m) => m.rps)),
        xBare: entry.name === "bare" ? 1 : ratioTo("bare"),
        xExpress: entry.name === "express-session" ? 1 : ratioTo("express-session"),
        p50: pick("p50"),
        p99: pick("p99"),
        cpuUs: pick("cpuUs"),
        redisCpuUs: pick("redisCpuUs"),
        rtPerReq: pick("rtPerReq"),
        cmdsPerReq: pick("cmdsPerReq"),
        rtCommands: [...new Set(runs.flatMap((m) => m.rtCommands ?? []))],
        non2xx: runs.reduce((sum, m) => sum + m.non2xx, 0),
        errors: runs.reduce((sum, m) => sum + m.errors, 0),
      });
    }
  }
  return rows;
}

const ratio = (value) => (value === undefined ? "—" : `${value.toFixed(2)}×`);

/**
 * The targets of issue 6, each met (true), not met (false) or not evaluated (undefined).
 * @returns {{ target: string; met: boolean | undefined; detail: string }[]}
 */
export function evaluateTargets({ table, lostUpdates, memory, scale }) {
  const targets = [];
  const rowsOf = (server) => table.filter((row) => row.server === server);
  const everyScenario = (server, key, minimum, target) => {
    const rows = rowsOf(server);
    if (rows.length === 0) return targets.push({ target, met: undefined, detail: `${server} was not measured` });
    const met = rows.length === 3 && rows.every((row) => row[key] !== undefined && row[key] >= minimum);
    const detail =
      rows.map((row) => `${row.scenario} ${ratio(row[key])}`).join(", ") + (rows.length < 3 ? " (not every scenario ran)" : "");
    targets.push({ target, met: rows.length < 3 && met ? undefined : met, detail });
  };
  everyScenario("ours-node-redis", "xBare", 0.5, "ours node:http + Redis ≥ 0.5× bare node:http in every scenario");
  everyScenario("ours-node-memory", "xBare", 0.7, "ours node:http + memory store ≥ 0.7× bare node:http in every scenario");
  everyScenario("ours-express-redis", "xExpress", 1.3, "ours Express + Redis ≥ 1.3× express-session + connect-redis in every scenario");

  const oursRedis = table.filter((row) => row.group === "ours" && row.redis && row.rtPerReq !== undefined);
  if (oursRedis.length === 0) {
    targets.push({ target: "Redis round trips (ours): new 1, read 1, increment ≤ 2", met: undefined, detail: "not measured" });
  } else {
    const limits = { new: (rt) => rt === 1, read: (rt) => rt === 1, increment: (rt) => rt <= 2 };
    const met = oursRedis.every((row) => limits[row.scenario](row.rtPerReq));
    targets.push({
      target: "Redis round trips (ours): new 1, read 1, increment ≤ 2",
      met,
      detail: oursRedis.map((row) => `${row.server} ${row.scenario} ${fixed(row.rtPerReq, 2)}`).join(", "),
    });
  }

  const oursLost = lostUpdates.filter((check) => check.server.startsWith("ours-"));
  targets.push({
    target: "no lost updates (ours): 200 of 200 concurrent increments applied",
    met: oursLost.length === 0 ? undefined : oursLost.every((check) => check.applied === check.expected && check.failed === 0),
    detail:
      oursLost.length === 0
        ? "not measured"
        : oursLost
            .map((check) => `${check.server} ${check.applied}/${check.expected}${check.failed ? ` (${check.failed} failed)` : ""}`)
            .join(", "),
  });

  if (scale === undefined) {
    targets.push({ target: "p99 at 1,000,000 sessions within 10% of p99 at 1,000", met: undefined, detail: "not measured" });
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
    targets.push({
      target: "p99 at 1,000,000 sessions within 10% of p99 at 1,000",
      met: scale.evaluated ? parts.every((part) => part.ok) : undefined,
      detail: scale.evaluated
        ? detail
        : `not evaluated: this run used ${big.sessions.toLocaleString("en")} sessions (${detail}); run --full`,
    });
  }

  const oursMemory = memory.find((check) => check.server === "ours-node-redis");
  const theirs = memory.find((check) => check.server === "express-session");
  if (oursMemory?.withUA.bytes === undefined || theirs?.withUA.bytes === undefined) {
    targets.push({ target: "Redis memory per session not above connect-redis'", met: undefined, detail: "not measured" });
  } else {
    targets.push({
      target: "Redis memory per session not above connect-redis'",
      met: oursMemory.withUA.bytes <= theirs.withUA.bytes,
      detail: `ours ${oursMemory.withUA.bytes} B with a browser User-Agent (${oursMemory.withoutUA?.bytes ?? "—"} B without), connect-redis ${theirs.withUA.bytes} B`,
    });
  }
  return targets;
}

const COLUMNS = [
  ["server", (row) => row.label],
  ["req/s", (row) => (row.runs > 1 ? `${fixed(row.rps)} (${fixed(row.rpsMin)}–${fixed(row.rpsMax)})` : fixed(row.rps))],
  ["× bare", (row) => ratio(row.xBare)],
  ["× express-session", (row) => ratio(row.xExpress)],
  ["p50 ms", (row) => fixed(row.p50, 2)],
  ["p99 ms", (row) => fixed(row.p99, 2)],
  ["CPU µs/req", (row) => fixed(row.cpuUs)],
  ["Redis CPU µs/req", (row) => fixed(row.redisCpuUs)],
  ["round trips/req", (row) => (row.rtPerReq === undefined ? "—" : `${fixed(row.rtPerReq, 2)} ${row.rtCommands.join("+")}`)],
  ["Redis calls/req", (row) => fixed(row.cmdsPerReq, 2)],
  ["errors", (row) => (row.non2xx + row.errors === 0 ? "0" : `${row.non2xx} non-2xx, ${row.errors} errors`)],
];

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

function sections(report, markdown) {
  const out = [];
  const heading = (level, text) => out.push(markdown ? `${"#".repeat(level)} ${text}\n` : `\n${text}\n${"=".repeat(text.length)}`);
  for (const [scenario, title] of Object.entries(SCENARIO_TITLES)) {
    const rows = report.table.filter((row) => row.scenario === scenario);
    if (rows.length === 0) continue;
    heading(3, title);
    out.push(
      renderTable(
        COLUMNS.map(([name]) => name),
        rows.map((row) => COLUMNS.map(([, cell]) => cell(row))),
        markdown,
      ),
    );
    if (markdown) out.push("");
  }

  heading(2, "Targets");
  for (const { target, met, detail } of report.targets) {
    const mark =
      met === true
        ? markdown
          ? "✅ met"
          : "[met]    "
        : met === false
          ? markdown
            ? "❌ **not met**"
            : "[NOT MET]"
          : markdown
            ? "⏸ not evaluated"
            : "[n/a]    ";
    out.push(markdown ? `- ${mark} — ${target}: ${detail}` : `${mark} ${target}: ${detail}`);
  }
  if (markdown) out.push("");

  const reasons = whyNotMet(report);
  if (reasons.length > 0) {
    heading(2, "Why a target is not met (from the CPU cost per request measured above)");
    for (const reason of reasons) out.push(markdown ? `- ${reason}` : `- ${reason}`);
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

/**
 * For each throughput target not met, what the measured CPU per request says about why:
 * the server's own cost, the share a framework takes before any session code runs, and the
 * Redis server that shares the machine's cores.
 */
function whyNotMet(report) {
  const cpu = (server, scenario) => report.table.find((row) => row.server === server && row.scenario === scenario)?.cpuUs;
  const redisCpu = (server, scenario) => report.table.find((row) => row.server === server && row.scenario === scenario)?.redisCpuUs;
  const unmet = (pattern) => report.targets.some(({ target, met }) => met === false && pattern.test(target));
  const scenarios = ["new", "increment", "read"].filter((scenario) => cpu("bare", scenario) !== undefined);
  const list = (make) => scenarios.map((scenario) => `${scenario} ${make(scenario)}`).join(", ");
  const us = (value) => (value === undefined ? "—" : `${value.toFixed(0)} µs`);
  const reasons = [];
  if (unmet(/node:http \+ Redis/) && cpu("ours-node-redis", "increment") !== undefined) {
    reasons.push(
      `ours node:http + Redis: the server spends ${list((sc) => us(cpu("ours-node-redis", sc)))} of CPU per request against bare node:http's ${list((sc) => us(cpu("bare", sc)))}, and the Redis server, on the same two cores as the server and the load generator, adds ${list((sc) => us(redisCpu("ours-node-redis", sc)))}. Reaching 0.5× would need the whole session (cookie check, SHA-256, one node-redis round trip, the Lua script) to cost no more than the bare HTTP exchange itself; node-redis encoding, writing and parsing one command is most of that budget on its own.`,
    );
  }
  if (unmet(/memory store/) && cpu("ours-node-memory", "read") !== undefined) {
    reasons.push(
      `ours node:http + memory: ${list((sc) => us(cpu("ours-node-memory", sc)))} per request against bare's ${list((sc) => us(cpu("bare", sc)))}. A new session pays for a CSPRNG ID, two SHA-256 (store key, handle), an HMAC-signed Set-Cookie with Cache-Control and Vary; a read pays for the cookie's HMAC check, SHA-256 and JSON decoding. 0.7× leaves about 4 µs for all of it.`,
    );
  }
  if (unmet(/Express \+ Redis/) && cpu("ours-express-redis", "read") !== undefined && cpu("ours-node-redis", "read") !== undefined) {
    const expressOwn = (sc) => (cpu("ours-express-redis", sc) ?? 0) - (cpu("ours-node-redis", sc) ?? 0);
    reasons.push(
      `ours Express + Redis: Express itself costs about ${list((sc) => us(expressOwn(sc)))} per request here (ours on Express minus ours on node:http), before any session code runs, and both Express servers pay it. express-session costs ${list((sc) => us(cpu("express-session", sc)))} in all, so 1.3× needs ours on Express to cost at most ${list((sc) => us((cpu("express-session", sc) ?? 0) / 1.3))}: a session share of ${list((sc) => us((cpu("express-session", sc) ?? 0) / 1.3 - expressOwn(sc) - (cpu("bare", sc) ?? 0)))} beyond the bare HTTP exchange, against the ${list((sc) => us((cpu("ours-node-redis", sc) ?? 0) - (cpu("bare", sc) ?? 0)))} it costs on node:http.`,
    );
  }
  return reasons;
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
    .filter((entry) => entry.area.startsWith("sessionstore"))
    .slice(0, 4)
    .map((entry) => `\`${entry.name}\` (${entry.where.replace(/^dist\/src\//, "")}, ${entry.share.toFixed(1)}%)`);
  return [
    `While ours (node:http + Redis) served the increment scenario under \`node --cpu-prof\` (${profile.rps.toFixed(0)} req/s),`,
    `${pct((area) => area === "node http" || area === "node net/streams")} of the server's busy CPU time went to Node's HTTP and socket layers`,
    `and ${pct((area) => area.startsWith("node-redis"))} to node-redis (encoding commands, writing them, parsing replies);`,
    `the socket writes themselves (\`writev\` system calls, where loopback delivery is charged) are ${writes("node http").toFixed(0)}% for the HTTP answers`,
    `and ${writes("node-redis").toFixed(0)}% for the Redis commands, so every round trip saved is worth several percent.`,
    `sessionstore's own code took ${pct((area) => area.startsWith("sessionstore"))}${oursTop.length > 0 ? ` (mostly ${oursTop.join(", ")})` : ""},`,
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
