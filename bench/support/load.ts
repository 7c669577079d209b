/**
 * A closed-loop load generator: `callers` concurrent loops, each running `op`
 * back to back until the time is up, recording every call's latency. `op`
 * gets its loop's index (0 to callers - 1), e.g. to pick a connection.
 */

export interface LoadResult {
  /** Completed calls. */
  readonly calls: number;
  /** Wall time from the start until the last call finished. */
  readonly seconds: number;
  /** Calls per second. */
  readonly rate: number;
  /** Latencies in milliseconds, sorted ascending. */
  readonly latenciesMs: Float64Array;
}

export async function runLoad(
  op: (caller: number) => Promise<unknown>,
  callers: number,
  seconds: number,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  const loop = async (caller: number): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await op(caller);
      // One push per call, after the await: no read-modify-write across loops.
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, caller) => loop(caller)));
  const elapsed = (performance.now() - start) / 1000;
  const latenciesMs = Float64Array.from(latencies).sort();
  return {
    calls: latencies.length,
    seconds: elapsed,
    rate: latencies.length / elapsed,
    latenciesMs,
  };
}

/** The `p`-th percentile (0-100) of ascending `sorted` values (nearest rank). */
export function percentile(sorted: Float64Array | readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? Number.NaN;
}

/** The median of unsorted `values`. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? Number.NaN)
    : ((sorted[mid - 1] ?? Number.NaN) + (sorted[mid] ?? Number.NaN)) / 2;
}
