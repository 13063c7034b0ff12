/**
 * The README's `npm start`, as an operator runs it: it does not rebuild a fresh build, and
 * SIGTERM or SIGINT to the npm process stops the server gracefully — it stops accepting, lets
 * the request in flight finish, disposes the store — within a few seconds.
 */
import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { freePort, tempDir, waitForExit } from "../../test-support/processes.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const outputs = ["server/dist/main.js", "packages/atomic-session/dist/index.js", "packages/atomic-session/dist/core/session.js"];

function mtimes(): number[] {
  return outputs.map((file) => statSync(join(root, file)).mtimeMs);
}

async function startNpm(port: number, sqlitePath: string) {
  const child = spawn("npm", ["start", "--silent"], {
    cwd: root,
    env: { ...process.env, PORT: String(port), HOST: "127.0.0.1", SQLITE_PATH: sqlitePath, LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const started = Date.now();
  while (!output.includes('"msg":"listening on') && Date.now() - started < 30_000 && child.exitCode === null) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!output.includes('"msg":"listening on')) throw new Error(`npm start did not listen:\n${output}`);
  return { child, output: () => output };
}

/** A POST /login whose headers are sent but whose body is held back: a request in flight. */
function requestInFlight(port: number): { finish(): Promise<string> } {
  const body = JSON.stringify({ user: "in-flight" });
  const socket = connect(port, "127.0.0.1");
  let answer = "";
  socket.setEncoding("utf8").on("data", (chunk: string) => {
    answer += chunk;
  });
  const closed = new Promise<string>((resolve) => socket.once("close", () => resolve(answer)));
  socket.write(
    `POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
  );
  return {
    // write, not end: a client that half-closes its connection gets its request aborted by node:http.
    finish: () => {
      socket.write(body);
      return closed;
    },
  };
}

describe("npm start", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`does not rebuild a fresh build, and ${signal} stops it gracefully within a few seconds`, async () => {
      const before = mtimes();
      const port = await freePort();
      const { child, output } = await startNpm(port, join(tempDir("npm-start"), "sessions.db"));
      expect(mtimes()).toEqual(before);
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("Hello World #0\n");

      const inFlight = requestInFlight(port);
      // Time for the server to read the headers, so that the request is in flight (not an idle connection).
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const stopping = Date.now();
      child.kill(signal);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Stopped accepting: a new connection is refused while the request in flight is still open.
      await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
      const answer = await inFlight.finish();
      expect(answer, output()).toMatch(/^HTTP\/1\.1 200 /);
      expect(await waitForExit(child, 8_000)).toBe(true);
      expect(Date.now() - stopping).toBeLessThan(6_000);
      expect(output()).toContain('"msg":"shutting down"');
      expect(output()).toContain('"msg":"stopped"');
    });
  }
});
