// Small helpers shared by the benchmark runner: process CPU time, a keep-alive HTTP client,
// statistics, the build check.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";

/** The repository root (bench/lib/../..). */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** A browser User-Agent sent on every request: real browsers send one, and our store keeps it (truncated) in the session. */
export const USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

let clockTicks;
/** Kernel clock ticks per second (the unit of utime/stime in /proc/<pid>/stat). */
export function clockTicksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU time (user + system) a process has used so far, in microseconds, from /proc/<pid>/stat.
 * `undefined` when /proc is not there (not Linux) or the process is gone.
 * @param {number | undefined} pid
 * @returns {number | undefined}
 */
export function cpuMicros(pid) {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state is field 3, so utime (14) and stime (15) sit at indexes 11 and 12.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / clockTicksPerSecond();
  } catch {
    return undefined;
  }
}

/** A keep-alive agent for the harness's own requests (probes, lost-update check), bounded to 64 sockets. */
export const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One GET to 127.0.0.1. Resolves status, body and the `name=value` of the first Set-Cookie.
 * @param {number} port
 * @param {string} path
 * @param {{ cookie?: string; userAgent?: string | null; timeoutMs?: number }} [options]
 * @returns {Promise<{ status: number; body: string; cookie: string | undefined }>}
 */
export function get(port, path, { cookie, userAgent = USER_AGENT, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    /** @type {Record<string, string>} */
    const headers = {};
    if (cookie !== undefined) headers.cookie = cookie;
    if (userAgent !== null) headers["user-agent"] = userAgent;
    const req = request({ host: "127.0.0.1", port, path, method: "GET", headers, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => {
        const setCookie = res.headers["set-cookie"]?.[0];
        resolve({ status: res.statusCode ?? 0, body, cookie: setCookie?.split(";", 1)[0] });
      });
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** The counter in a `Hello World #N` or `visits N` body, or `undefined`. */
export function counterIn(body) {
  const match = /(?:#|visits )(\d+)/.exec(body);
  return match === null ? undefined : Number(match[1]);
}

/** @param {number[]} values */
export function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * The `p`-th percentile (0–100) of a sorted Float64Array, nearest-rank.
 * @param {Float64Array} sorted
 * @param {number} p
 */
export function percentile(sorted, p) {
  if (sorted.length === 0) return undefined;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** A growable list of float samples (latencies in ms), cheap to append to in a hot event handler. */
export class Samples {
  #data = new Float64Array(1 << 16);
  #length = 0;
  /** @param {number} value */
  push(value) {
    if (this.#length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#length++] = value;
  }
  get length() {
    return this.#length;
  }
  sorted() {
    return this.#data.slice(0, this.#length).sort();
  }
}

export const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Builds the library (tsc -b packages/atomic-session: incremental, a no-op when the build is
 * fresh). Type errors (work in progress) are reported but do not stop the benchmark as long as
 * what it needs was emitted.
 * @param {{ force?: boolean; log: (line: string) => void }} options
 */
export function ensureBuilt({ force = false, log }) {
  try {
    execFileSync(
      process.execPath,
      [join(ROOT, "node_modules/typescript/bin/tsc"), "-b", ...(force ? ["--force"] : []), "packages/atomic-session"],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" },
    );
  } catch (error) {
    const output = `${error.stdout ?? ""}${error.stderr ?? ""}`.trim();
    log(`warning: tsc reported errors (dist/ was still emitted; servers whose code does not load will fail to start):\n${output}`);
  }
}

/** @param {number | undefined} value @param {number} [digits] */
export function fixed(value, digits = 0) {
  return value === undefined || !Number.isFinite(value) ? "—" : value.toFixed(digits);
}
