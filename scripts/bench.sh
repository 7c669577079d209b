#!/usr/bin/env bash
# Runs the point-query benchmark on compiled JavaScript (never tsx): makes sure
# a MariaDB server binary exists, builds dist/, then runs the harness, which
# starts its own private MariaDB and the gateway as a separate process.
# Settings: BENCH_SECONDS, BENCH_RUNS, BENCH_WARMUP_SECONDS, BENCH_POOL_SIZE,
# BENCH_ROWS, BENCH_CALLERS (see bench/point-query.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-mysql.sh
npm run --silent build
exec node dist/bench/point-query.js "$@"
