import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { freePort } from "./processes.js";

// Re-exported: tests take these from here.
export { freePort, tempDir } from "./processes.js";

/** The reference server (server/dist/main.js) as a child process, with its JSON log lines. */
export class ServerProcess {
  readonly logs: string[] = [];
  #child: ChildProcess | undefined;
  #stopped = false;

  private constructor(
    readonly port: number,
    readonly env: Record<string, string>,
  ) {}

  static async start(env: Record<string, string>): Promise<ServerProcess> {
    const port = await freePort();
    const server = new ServerProcess(port, { ...env, PORT: String(port), HOST: "127.0.0.1" });
    await server.restart();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process (again) and waits for its "listening" line. */
  async restart(): Promise<void> {
    await this.stop();
    this.#stopped = false;
    const child = spawn(process.execPath, ["server/dist/main.js"], {
      env: { PATH: process.env.PATH ?? "", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    let buffered = "";
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${this.logs.join("\n")}`)), 15_000);
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        for (const line of lines) {
          this.logs.push(line);
          if (line.includes('"msg":"listening on')) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => this.logs.push(chunk));
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code} before listening:\n${this.logs.join("\n")}`));
      });
    });
    await listening;
  }

  /** Stops the process with SIGTERM (or `signal`) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (child === undefined || this.#stopped || child.exitCode !== null) return;
    this.#stopped = true;
    const exited = once(child, "exit");
    child.kill(signal);
    await exited;
  }

  /** Parsed JSON log lines. */
  jsonLogs(): Record<string, unknown>[] {
    return this.logs.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }
}

/** A one-cookie jar, like curl's `-c`/`-b`: remembers the session cookie the server sets and sends it back. */
export class CookieJar {
  cookie: string | undefined;
  readonly setCookies: string[] = [];

  constructor(private readonly name = "sessionID") {}

  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookie !== undefined) headers.set("cookie", this.cookie);
    const response = await fetch(url, { ...init, headers });
    for (const value of response.headers.getSetCookie()) {
      this.setCookies.push(value);
      const pair = value.split(";", 1)[0] ?? "";
      if (!pair.startsWith(`${this.name}=`)) continue;
      const cleared = /max-age=0/i.test(value) || pair === `${this.name}=`;
      this.cookie = cleared ? undefined : pair;
    }
    return response;
  }

  async text(url: string, init?: RequestInit): Promise<string> {
    return (await this.fetch(url, init)).text();
  }

  /** `POST /login` as the reference server expects it: JSON `{"user"}`. */
  login(origin: string, user: string, userAgent = "test-agent"): Promise<Response> {
    return this.fetch(`${origin}/login`, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": userAgent },
      body: JSON.stringify({ user }),
    });
  }

  /** The raw session ID in the jar (for asserting it appears nowhere else). */
  get id(): string | undefined {
    return this.cookie?.split("=", 2)[1]?.split(".", 1)[0];
  }
}
