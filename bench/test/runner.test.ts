/**
 * The benchmark's command line and its server process, run for real: `--list` and `--help`
 * answer without starting anything, a wrong option is refused, and `bench/server.mjs` answers
 * the stats protocol the equal-load and high-concurrency measurements read RSS and event-loop
 * delay through. No throughput is measured here.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { SERVERS } from "../servers.mjs";

const root = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);
const runner = (...args: string[]) => run(process.execPath, ["bench/run.mjs", ...args], { cwd: root, timeout: 20_000 });

describe("bench/run.mjs", () => {
  it("--list names every server with its label, and starts nothing", async () => {
    const { stdout } = await runner("--list");
    const lines = stdout.trim().split("\n");
    expect(lines).toHaveLength(SERVERS.length);
    for (const [i, entry] of (SERVERS as { name: string; label: string }[]).entries()) {
      expect(lines[i]).toMatch(new RegExp(`^${entry.name}\\s+${entry.label.replace(/[+()]/g, "\\$&")}`));
    }
  });

  it("--help lists the options, the new measurements' included", async () => {
    const { stdout } = await runner("--help");
    for (const option of ["--full", "--only", "--fixed-rate", "--hc-connections", "--no-hc", "--no-fixed-rate", "--cpu-prof", "--list"]) {
      expect(stdout).toContain(option);
    }
  });

  it("refuses an unknown option and a number that is not positive, pointing at --help", async () => {
    await expect(runner("--no-such-option")).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("--help") });
    await expect(runner("--fixed-rate", "0", "--list")).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--fixed-rate must be a positive number"),
    });
  });
});

describe("bench/server.mjs", () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
    child = undefined;
  });

  /** The rest of the next stdout line that starts with `prefix`. */
  const line = (proc: ChildProcess, prefix: string) =>
    new Promise<string>((resolve, reject) => {
      let buffer = "";
      const onData = (chunk: Buffer) => {
        buffer += chunk.toString("utf8");
        const found = buffer.split("\n").find((text) => text.startsWith(prefix));
        if (found !== undefined) {
          proc.stdout?.off("data", onData);
          resolve(found.slice(prefix.length));
        }
      };
      proc.stdout?.on("data", onData);
      proc.once("exit", (code) => reject(new Error(`server.mjs exited (${code}) before printing ${prefix}`)));
    });

  const get = (port: number) =>
    new Promise<number>((resolve, reject) => {
      request({ host: "127.0.0.1", port, path: "/" }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      })
        .on("error", reject)
        .end();
    });

  it("answers stats-stop with RSS, heap and event-loop delay measured since stats-start, and exits when stdin closes", async () => {
    const server = spawn(process.execPath, ["bench/server.mjs", "bare"], { cwd: root, stdio: ["pipe", "pipe", "pipe"] });
    child = server;
    const port = Number(await line(server, "BENCH_LISTENING "));
    expect(port).toBeGreaterThan(0);

    server.stdin?.write("stats-start\n");
    for (let i = 0; i < 20; i++) expect(await get(port)).toBe(200);
    // Let the 1 ms histogram collect samples over a few hundred milliseconds.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const reply = line(server, "BENCH_STATS ");
    server.stdin?.write("stats-stop\n");
    const stats = JSON.parse(await reply);
    expect(stats.rss).toBeGreaterThan(10 * 2 ** 20);
    expect(stats.rss).toBeGreaterThanOrEqual(stats.rssEnd);
    expect(stats.heapUsed).toBeGreaterThan(0);
    expect(stats.heapTotal).toBeGreaterThanOrEqual(stats.heapUsed);
    expect(stats.eldSamples).toBeGreaterThan(10);
    expect(stats.eldP99).toBeGreaterThanOrEqual(0);
    expect(stats.eldMax).toBeGreaterThanOrEqual(stats.eldP99);

    // A second window starts afresh: without stats-start there is no histogram to report.
    const again = line(server, "BENCH_STATS ");
    server.stdin?.write("stats-stop\n");
    const empty = JSON.parse(await again);
    expect(empty.eldP99).toBeUndefined();
    expect(empty.rss).toBeGreaterThan(0);

    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.stdin?.end();
    expect(await exited).toBe(0);
  });
});
