/**
 * The applications in this repository — the reference server, the admin CLI, the examples and
 * the benchmark — use the library only through its public subpaths, as any application would:
 * so the public API is proven enough, and nothing they need is left unexported.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const manifest = JSON.parse(readFileSync(join(root, "packages/atomic-session/package.json"), "utf8")) as {
  exports: Record<string, unknown>;
};
const publicSpecifiers = new Set(
  Object.keys(manifest.exports)
    .filter((subpath) => subpath !== "./package.json")
    .map((subpath) => (subpath === "." ? "atomic-session" : `atomic-session/${subpath.slice(2)}`)),
);

/** Every module specifier a source file imports or re-exports, static or dynamic. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [/\bfrom\s+["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, /^\s*import\s+["']([^"']+)["']/gm];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1] as string);
  return found;
}

function sourcesUnder(dir: string, extensions: readonly string[]): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name === "dist" || entry.name === "test" || entry.name === "profiles") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...sourcesUnder(path, extensions));
    else if (extensions.some((extension) => entry.name.endsWith(extension)) && !entry.name.endsWith(".d.ts")) files.push(path);
  }
  return files;
}

/** The applications, each with the folder its relative imports must stay in. */
const applications = [
  { name: "reference server", folder: join(root, "server/src"), extensions: [".ts"] },
  { name: "admin CLI", folder: join(root, "packages/atomic-session/src/cli"), extensions: [".ts"] },
  { name: "examples", folder: join(root, "examples"), extensions: [".ts"] },
  { name: "benchmark", folder: join(root, "bench"), extensions: [".mjs"] },
];

describe("applications import only atomic-session's public subpaths", () => {
  for (const { name, folder, extensions } of applications) {
    it(`${name}: no relative import leaves its folder, and every atomic-session import is a public subpath`, () => {
      const files = sourcesUnder(folder, extensions);
      expect(files.length).toBeGreaterThan(0);
      const violations: string[] = [];
      for (const file of files) {
        for (const specifier of specifiers(readFileSync(file, "utf8"))) {
          const where = `${relative(root, file)}: ${specifier}`;
          if (specifier.startsWith(".")) {
            const target = resolve(dirname(file), specifier);
            if (relative(folder, target).startsWith("..")) violations.push(where);
          } else if (specifier === "atomic-session" || specifier.startsWith("atomic-session/")) {
            if (!publicSpecifiers.has(specifier)) violations.push(where);
          }
        }
      }
      expect(violations).toEqual([]);
    });
  }

  it("the check has teeth: it sees a relative import into the library and an unexported subpath", () => {
    const source = `import { handleOf } from "../src/core/ids.js";\nconst m = await import("atomic-session/core/ids");\nimport "./local.js";`;
    expect(specifiers(source)).toEqual(["../src/core/ids.js", "atomic-session/core/ids", "./local.js"]);
    expect(publicSpecifiers.has("atomic-session/core/ids")).toBe(false);
    expect(publicSpecifiers.has("atomic-session/stores/redis")).toBe(true);
  });
});
