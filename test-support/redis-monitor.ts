import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";

/** Counts the commands clients send (not those scripts run) between two markers, with MONITOR. */
export class CommandCounter {
  #lines: { args: string[]; source: string }[] = [];
  #waiters: (() => void)[] = [];
  private constructor(
    private readonly monitor: Redis,
    private readonly marker: Redis,
    /** The client `monitor()` was called on: ioredis opens the monitor as a second connection beside it. */
    private readonly source: Redis,
  ) {}

  static async open(url: string): Promise<CommandCounter> {
    // No ready check (an INFO) on the MONITOR connection ioredis derives from it: its reply could
    // race the first monitored lines ("Command queue state error").
    const source = new Redis(url, { enableReadyCheck: false });
    const marker = new Redis(url);
    for (const client of [source, marker]) client.on("error", () => {});
    const monitor = await source.monitor();
    monitor.on("error", () => {});
    const counter = new CommandCounter(monitor, marker, source);
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      counter.#lines.push({ args, source });
      for (const wake of counter.#waiters.splice(0)) wake();
    });
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

  async #mark(text: string): Promise<void> {
    await this.marker.echo(text);
    while (!this.#lines.some((line) => line.args[0]?.toLowerCase() === "echo" && line.args[1] === text)) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async close(): Promise<void> {
    this.monitor.disconnect();
    this.source.disconnect();
    await this.marker.quit();
  }
}
