/**
 * A fresh `npm install` on a clean clone leaves `git status` clean: the lockfile is what npm
 * would write for these manifests, and everything installing and building writes is ignored.
 */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../../../test-support/processes.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../../../", import.meta.url));
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { workspaces: string[] };

/** Every file under `dir`, relative to the repository (skipping node_modules, which is ignored as a whole). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.name === "node_modules") return [];
    return entry.isDirectory() ? filesUnder(path) : [relative(root, path)];
  });
}

describe("a fresh npm install on a clean clone leaves git status clean", () => {
  it("package-lock.json is exactly what npm writes for the manifests", async () => {
    const copy = tempDir("lockfile");
    for (const file of ["package.json", "package-lock.json", ...manifest.workspaces.map((workspace) => `${workspace}/package.json`)]) {
      mkdirSync(join(copy, file, ".."), { recursive: true });
      copyFileSync(join(root, file), join(copy, file));
    }
    await run("npm", ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: copy,
      timeout: 300_000,
    });
    expect(readFileSync(join(copy, "package-lock.json"), "utf8")).toBe(readFileSync(join(root, "package-lock.json"), "utf8"));
  }, 300_000);

  it("what installing and building writes is ignored by git", async () => {
    // The global setup has just built every workspace (tsc -b): these are its outputs.
    const written = [
      "node_modules/.package-lock.json",
      ...manifest.workspaces.flatMap((workspace) => [...filesUnder(join(root, workspace, "dist")), `${workspace}/.tsbuildinfo`]),
    ].filter((file) => existsSync(join(root, file)) && statSync(join(root, file)).isFile());
    expect(written.length).toBeGreaterThan(10);
    const { stdout } = await run("git", ["check-ignore", "--no-index", "--verbose", "--non-matching", ...written], { cwd: root }).catch(
      (error: { stdout: string }) => ({ stdout: error.stdout }),
    );
    const notIgnored = stdout
      .split("\n")
      .filter((line) => line.startsWith("::"))
      .map((line) => line.slice(2).trim());
    expect(notIgnored).toEqual([]);
  });
});
