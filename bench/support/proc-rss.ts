/**
 * Resident memory (VmRSS) of another process, from /proc/<pid>/status, and a
 * sampler that keeps the highest value seen per phase of a benchmark.
 */
import { readFileSync } from "node:fs";

/** The process `pid`'s resident set size in bytes (NaN once it has gone). */
export function processRssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match === null ? Number.NaN : Number(match[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

export interface RssSampler {
  /** Samples from now on count towards `phase` (until the next call). */
  phase(name: string): void;
  /** The highest RSS in bytes seen during `phase` (all phases if not given), NaN if none. */
  max(phase?: string): number;
  /** How many samples `phase` got. */
  samples(phase: string): number;
  stop(): void;
}

/** Samples `pid`'s RSS every `intervalMs` until stopped. */
export function sampleRss(pid: number, intervalMs = 100): RssSampler {
  const highest = new Map<string, number>();
  const counts = new Map<string, number>();
  let current = "start";
  const sample = () => {
    const rss = processRssBytes(pid);
    if (Number.isNaN(rss)) return;
    highest.set(current, Math.max(highest.get(current) ?? 0, rss));
    counts.set(current, (counts.get(current) ?? 0) + 1);
  };
  const timer = setInterval(sample, intervalMs);
  sample();
  return {
    phase(name) {
      sample();
      current = name;
      sample();
    },
    max: (phase) =>
      phase === undefined
        ? Math.max(...highest.values(), Number.NEGATIVE_INFINITY)
        : (highest.get(phase) ?? Number.NaN),
    samples: (phase) => counts.get(phase) ?? 0,
    stop() {
      sample();
      clearInterval(timer);
    },
  };
}
