/** SQLite from outside the store under test: another process holding the file's write lock. */
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { spawnTracked } from "./processes.js";

const repositoryRoot = fileURLToPath(new URL("../", import.meta.url));

/**
 * A child process that takes the write lock on `file` (`BEGIN IMMEDIATE`), resolves once it
 * holds it, and releases it after `ms`; `released` resolves once it has let go and exited.
 */
export async function holdWriteLock(file: string, ms: number): Promise<{ released: Promise<void> }> {
  const script = `
    const [file, ms] = process.argv.slice(1);
    const { default: Database } = await import("better-sqlite3");
    const db = new Database(file);
    db.exec("BEGIN IMMEDIATE");
    process.stdout.write("locked\\n");
    setTimeout(() => { db.exec("COMMIT"); db.close(); process.stdout.write("released\\n"); }, Number(ms));
  `;
  const { child } = spawnTracked(process.execPath, ["--input-type=module", "-e", script, file, String(ms)], repositoryRoot);
  let stdout = "";
  const seen = (line: string) =>
    new Promise<void>((resolve, reject) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString("utf8");
        if (stdout.includes(`${line}\n`)) resolve();
      });
      child.once("exit", (code) => (stdout.includes(`${line}\n`) ? resolve() : reject(new Error(`lock holder exited with ${code}`))));
    });
  const locked = seen("locked");
  const released = seen("released");
  released.catch(() => undefined);
  await locked;
  return { released: released.then(async () => void (child.exitCode === null && (await once(child, "exit")))) };
}
