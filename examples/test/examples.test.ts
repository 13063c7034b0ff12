/** Every example runs as its header says, and counts: `node examples/dist/<name>.js`, then `curl -c jar -b jar`. */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { freePort, spawnTracked, tempDir, waitForExit } from "../../test-support/processes.js";
import { CookieJar } from "../../test-support/server-process.js";

const folder = fileURLToPath(new URL("../", import.meta.url));
const examples = readdirSync(folder).filter((file) => file.endsWith(".ts") && file !== "session-data.ts");

describe("examples", () => {
  it("there is one per adapter", () => {
    expect(examples.sort()).toEqual(["express.ts", "fastify.ts", "hono.ts", "node-http.ts"]);
  });

  for (const example of examples) {
    it(`${example}: the visit counter counts`, async () => {
      const port = await freePort();
      // Examples keep SQLite files under ./data: run each in a folder of its own.
      const started = spawnTracked(process.execPath, [join(folder, "dist", example.replace(/\.ts$/, ".js"))], tempDir("example"), {
        PORT: String(port),
      });
      try {
        const origin = `http://127.0.0.1:${port}`;
        const jar = new CookieJar();
        let first: string | undefined;
        for (let i = 0; i < 100 && first === undefined; i++) {
          first = await jar.text(`${origin}/`).catch(() => undefined);
          if (first === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
        }
        expect(first, started.output).toBe("Hello World #0\n");
        expect(await jar.text(`${origin}/`)).toBe("Hello World #1\n");
        expect(await jar.text(`${origin}/`)).toBe("Hello World #2\n");
      } finally {
        started.child.kill("SIGTERM");
        await waitForExit(started.child, 5_000);
      }
    });
  }
});
