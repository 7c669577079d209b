#!/usr/bin/env bash
# Runs the benchmarks on compiled JavaScript (never tsx): makes sure a MariaDB
# server binary exists, builds dist/, then runs the point-query benchmark and
# the StreamExecute one, each of which starts its own private MariaDB and the
# gateway as a separate process.
# BENCH_ONLY=point or BENCH_ONLY=stream runs just one of them. Other settings:
# BENCH_SECONDS, BENCH_RUNS, BENCH_WARMUP_SECONDS, BENCH_POOL_SIZE, BENCH_ROWS,
# BENCH_CALLERS (see bench/point-query.ts); BENCH_STREAM_ROWS, BENCH_SLOW_FACTOR,
# BENCH_SLOW_STALL_SECONDS (see bench/stream-execute.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
only="${BENCH_ONLY:-}"
case "$only" in
  "" | point | stream) ;;
  *) echo "bench: BENCH_ONLY must be point or stream, not '$only'" >&2; exit 2 ;;
esac
scripts/ensure-mysql.sh
npm run --silent build
if [ "$only" != stream ]; then node dist/bench/point-query.js "$@"; fi
if [ "$only" != point ]; then node dist/bench/stream-execute.js "$@"; fi
