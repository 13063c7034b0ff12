// Reads a V8 .cpuprofile (node --cpu-prof) and tells where the time went: self time per
// function and per area (our code, each package, node core by module, GC, V8/native).
import { readFileSync } from "node:fs";

/**
 * The area a profile node belongs to, from its script URL.
 * @param {{ functionName: string; url: string }} frame
 */
export function areaOf({ functionName, url }) {
  if (url === "") {
    if (functionName === "(idle)") return "(idle)";
    if (functionName === "(garbage collector)") return "GC";
    if (functionName === "(program)") return "V8/native (program)";
    return "native";
  }
  const source = decodeURIComponent(url.replace(/^file:\/\//, ""));
  // The library's built files: packages/atomic-session/dist/… (the workspace link resolves to it) or an installed copy.
  const ours = /\/atomic-session\/dist\/(.+)\.js$/.exec(source);
  if (ours !== null) return `atomic-session ${ours[1]}`;
  const packagePath = source.lastIndexOf("/node_modules/");
  if (packagePath !== -1) {
    const parts = source.slice(packagePath + "/node_modules/".length).split("/");
    const name = parts[0]?.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
    return name === "@redis/client" ? "node-redis (@redis/client)" : `pkg ${name}`;
  }
  if (source.startsWith("node:")) {
    const module = source.slice("node:".length).replace(/^internal\//, "");
    const first = module.split("/")[0];
    if (/^_?http|^http/.test(first)) return "node http";
    if (first === "net" || first === "stream_base_commons" || first === "streams" || first === "stream") return "node net/streams";
    if (first === "crypto") return "node crypto";
    if (first === "timers" || first === "process") return "node timers/ticks";
    return `node ${first}`;
  }
  if (/\/bench\//.test(source)) return "bench server code";
  return source;
}

/** Areas that only carry bytes or callbacks for someone else: native time is charged past them, to who asked. */
const PLUMBING = new Set(["native", "node net/streams", "node timers/ticks", "node buffer", "node events", "node stream"]);
const SPECIAL = new Set(["(idle)", "(garbage collector)", "(program)", "(root)"]);
const NO_CALLER = "native, no JS caller (microtask queue, …)";

/**
 * Self time per function and per area. Native frames (no script: `writev`, bindings) are
 * charged to the area of their nearest caller that is not plumbing, so that socket writes
 * show up as "node http" or "node-redis" rather than one big "native" bucket.
 * `window` (CLOCK_MONOTONIC microseconds, the clock of both V8's profile timestamps and
 * `process.hrtime` on Linux) keeps only the samples of the measured run: no start-up,
 * warm-up or shutdown. When no sample falls in it (another clock), every sample counts.
 * @param {string} path a .cpuprofile file
 * @param {{ startUs: number; endUs: number }} [window]
 */
export function summarizeProfile(path, window) {
  const profile = JSON.parse(readFileSync(path, "utf8"));
  /** @type {Map<number, { frame: { functionName: string; url: string; lineNumber: number }; parent: number | undefined }>} */
  const nodes = new Map();
  for (const node of profile.nodes) nodes.set(node.id, { frame: node.callFrame, parent: undefined });
  for (const node of profile.nodes) for (const child of node.children ?? []) nodes.get(child).parent = node.id;
  /** The area native time at `id` is charged to. */
  const ownerArea = (id) => {
    for (let current = nodes.get(id)?.parent; current !== undefined; current = nodes.get(current)?.parent) {
      const { frame } = nodes.get(current);
      if (SPECIAL.has(frame.functionName) && frame.url === "") break;
      const area = areaOf(frame);
      if (!PLUMBING.has(area)) return area;
    }
    return NO_CALLER;
  };
  /** @type {Map<number, number>} */
  const selfByNode = new Map();
  const { samples, timeDeltas } = profile;
  const times = new Float64Array(samples.length);
  for (let i = 0, at = profile.startTime; i < samples.length; i++) {
    at += timeDeltas[i];
    times[i] = at;
  }
  const inWindow = (i) => window === undefined || (times[i] >= window.startUs && times[i] <= window.endUs);
  const windowed = window !== undefined && samples.some((_, i) => inWindow(i));
  for (let i = 0; i < samples.length; i++) {
    if (windowed && !inWindow(i)) continue;
    // timeDeltas[i + 1] is the time from sample i to the next one: the time sample i stands for.
    const micros = timeDeltas[i + 1] ?? 0;
    selfByNode.set(samples[i], (selfByNode.get(samples[i]) ?? 0) + micros);
  }
  let total = 0;
  let idle = 0;
  const functions = new Map();
  const areas = new Map();
  for (const [id, micros] of selfByNode) {
    const node = nodes.get(id);
    if (node === undefined) continue;
    const { frame } = node;
    total += micros;
    let area = areaOf(frame);
    if (area === "(idle)") {
      idle += micros;
      continue;
    }
    let where;
    if (area === "native" || area === "node net/streams") {
      // Who the bytes were written for (or the binding called by).
      const owner = ownerArea(id);
      const kind = area === "native" ? "native" : frame.url.replace(/^node:/, "");
      where = owner === NO_CALLER ? kind : `${kind}, for ${owner}`;
      if (area === "native") area = owner;
    } else {
      where =
        frame.url === ""
          ? ""
          : `${frame.url.replace(/^.*\/(node_modules|dist)\//, "$1/").replace(/^file:\/\/.*\/bench\//, "bench/")}:${frame.lineNumber + 1}`;
    }
    const name = frame.functionName || "(anonymous)";
    const key = `${name} ${where}`;
    const entry = functions.get(key) ?? { name, where, area, micros: 0 };
    entry.micros += micros;
    functions.set(key, entry);
    areas.set(area, (areas.get(area) ?? 0) + micros);
  }
  const busy = total - idle;
  const share = (micros) => (busy === 0 ? 0 : (100 * micros) / busy);
  return {
    path,
    windowed,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    idleShare: total === 0 ? 0 : (100 * idle) / total,
    functions: [...functions.values()]
      .sort((a, b) => b.micros - a.micros)
      .slice(0, 100)
      .map((entry) => ({ ...entry, ms: entry.micros / 1000, share: share(entry.micros) })),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, micros]) => ({ area, ms: micros / 1000, share: share(micros) })),
  };
}

/** Plain-text report of a summary: areas, then the top functions by self time. */
export function formatProfile(summary, top = 15) {
  const lines = [
    `profile ${summary.path}: ${summary.busyMs.toFixed(0)} ms busy of ${summary.totalMs.toFixed(0)} ms sampled (${summary.idleShare.toFixed(0)}% idle)` +
      (summary.windowed ? ", measured run only" : ", whole process (start-up included)"),
    "",
    "self time by area (% of busy time):",
  ];
  for (const { area, share } of summary.areas.slice(0, 14)) lines.push(`  ${share.toFixed(1).padStart(5)}%  ${area}`);
  lines.push("", `top ${top} functions by self time:`);
  for (const entry of summary.functions.slice(0, top)) {
    lines.push(`  ${entry.share.toFixed(1).padStart(5)}%  ${entry.name.padEnd(28)} ${entry.where}`);
  }
  return lines.join("\n");
}

/** Sum of the shares of the areas whose name satisfies `test`. */
export function shareOf(summary, test) {
  return summary.areas.filter(({ area }) => test(area)).reduce((sum, { share }) => sum + share, 0);
}
