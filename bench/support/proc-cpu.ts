/**
 * CPU time (user + system, all threads) of another process, from
 * /proc/<pid>/stat. Its resolution is one clock tick (10 ms at the usual
 * CLK_TCK of 100), fine for runs of seconds.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (CLK_TCK), the unit of /proc's CPU times. */
export function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    } catch {
      ticksPerSecond = Number.NaN;
    }
    if (!(ticksPerSecond > 0)) ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/** Microseconds of CPU the process `pid` has used so far. */
export function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 (utime) and 15 (stime), counted from 1; fields[0] is field 3.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / clockTicks();
}

/** Microseconds of CPU this process has used so far. */
/** CPU of this process's exited and reaped children (cutime + cstime), microseconds. */
export function childrenCpuMicros(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 16 (cutime) and 17 (cstime), counted from 1; fields[0] is field 3.
  return ((Number(fields[13]) + Number(fields[14])) * 1e6) / clockTicks();
}

export function ownCpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * Busy CPU microseconds of the whole machine, all cores: /proc/stat's first
 * line minus idle and iowait. What other processes use shows as the
 * difference from the processes measured.
 */
export function machineBusyMicros(): number {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return ((user + nice + system + irq + softirq + steal) * 1e6) / clockTicks();
}
