import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createConnection, type Socket } from "node:net";
import { createClient } from "redis";

/** One argument of a MONITOR line: `"…"` with Redis's escapes (`\"`, `\\`, `\n`, `\xHH`, …). */
const QUOTED = /"((?:\\.|[^"\\])*)"/g;
const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", b: "\b", a: "\x07" };

function unquote(text: string): string {
  return text.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, sequence: string) =>
    sequence.length === 3 ? String.fromCharCode(Number.parseInt(sequence.slice(1), 16)) : (ESCAPES[sequence] ?? sequence),
  );
}

/**
 * Counts the commands clients send (not those scripts run) between two markers, with MONITOR on
 * a raw socket: a MONITOR line is `+<time> [<db> <client>] "command" "arg" …`, or `[<db> lua]`
 * for what a script ran. (A client library's MONITOR mode can mistake its first lines for
 * replies: ioredis's did, "Command queue state error".)
 */
export class CommandCounter {
  #lines: { args: string[]; source: string }[] = [];
  #waiters: (() => void)[] = [];
  #pending = "";

  private constructor(
    private readonly socket: Socket,
    private readonly marker: ReturnType<typeof createClient>,
  ) {
    socket.setEncoding("utf8").on("data", (chunk: string) => this.#read(chunk));
  }

  static async open(url: string): Promise<CommandCounter> {
    const { hostname, port } = new URL(url);
    const socket = createConnection({ host: hostname, port: Number(port) });
    socket.on("error", () => {});
    await once(socket, "connect");
    socket.write("MONITOR\r\n");
    const marker = createClient({ url });
    marker.on("error", () => {});
    await marker.connect();
    const counter = new CommandCounter(socket, marker);
    // MONITOR answers +OK before it streams: marks sent after that are seen.
    await counter.#mark(`open-${randomBytes(8).toString("hex")}`);
    return counter;
  }

  /** The commands `action` sent to the server, scripts' own calls excluded. */
  async during(action: () => Promise<unknown>): Promise<string[][]> {
    const start = `start-${randomBytes(8).toString("hex")}`;
    const end = `end-${randomBytes(8).toString("hex")}`;
    await this.#mark(start);
    await action();
    await this.#mark(end);
    const from = this.#lines.findIndex((line) => line.args[1] === start);
    const to = this.#lines.findIndex((line) => line.args[1] === end);
    return this.#lines
      .slice(from + 1, to)
      .filter((line) => line.source !== "lua")
      .map((line) => line.args);
  }

  #read(chunk: string): void {
    this.#pending += chunk;
    let end = this.#pending.indexOf("\r\n");
    while (end !== -1) {
      const line = this.#pending.slice(0, end);
      this.#pending = this.#pending.slice(end + 2);
      const header = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] /.exec(line);
      if (header !== null) {
        const args = [...line.slice(header[0].length).matchAll(QUOTED)].map((match) => unquote(match[1] as string));
        this.#lines.push({ args, source: header[1] as string });
      }
      end = this.#pending.indexOf("\r\n");
    }
    for (const wake of this.#waiters.splice(0)) wake();
  }

  async #mark(text: string): Promise<void> {
    await this.marker.sendCommand(["ECHO", text]);
    while (!this.#lines.some((line) => line.args[0]?.toLowerCase() === "echo" && line.args[1] === text)) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async close(): Promise<void> {
    this.socket.destroy();
    this.marker.destroy();
  }
}
