// CPU time a process has used, read from /proc (Linux): the cost per request of each server and of Redis.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clockTicks;
/** Kernel clock ticks per second (the unit of utime/stime in /proc/<pid>/stat). */
export function clockTicksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU time (user + system) a process has used so far, in microseconds, from /proc/<pid>/stat.
 * `undefined` when /proc is not there (not Linux) or the process is gone.
 * @param {number | undefined} pid
 * @returns {number | undefined}
 */
export function cpuMicros(pid) {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state is field 3, so utime (14) and stime (15) sit at indexes 11 and 12.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / clockTicksPerSecond();
  } catch {
    return undefined;
  }
}
