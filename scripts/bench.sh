#!/usr/bin/env bash
# Runs the benchmarks on compiled JavaScript (never tsx): makes sure a MariaDB
# server binary (and h2load, other servers as needed) exists, builds dist/,
# runs the benchmarks, each of which starts its own private MariaDB and the
# gateway as a separate process, and writes bench/RESULTS.md and
# bench/results.svg from their outputs (bench/report.ts).
#
# Without BENCH_ONLY: the report's benchmarks (point, ingest-write,
# ingest-stream, stream), about 8 minutes on 2 cores. BENCH_ONLY=all adds
# forwarding, replicas (HAProxy), read-replicas, ingest-jetstream (NATS) and
# changes. BENCH_ONLY=<one of those names> runs just that one (RESULTS.md is
# then rewritten from whatever bench/out/ holds).
# Each benchmark's settings (BENCH_SECONDS, BENCH_RUNS, BENCH_CALLERS, ...)
# are described at the top of its file in bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
only="${BENCH_ONLY:-}"
case "$only" in
  "" | all | point | stream | ingest-write | ingest-stream | forwarding | replicas | read-replicas | ingest-jetstream | changes) ;;
  *)
    echo "bench: BENCH_ONLY must be all, point, stream, ingest-write, ingest-stream, forwarding, replicas, read-replicas, ingest-jetstream or changes, not '$only'" >&2
    exit 2
    ;;
esac
report_set=" point ingest-write ingest-stream stream "
run() {
  case "$only" in
    "") [[ "$report_set" == *" $1 "* ]] ;;
    all) true ;;
    *) [ "$only" = "$1" ] ;;
  esac
}
export BENCH_STARTED="${BENCH_STARTED:-$(date +%s)}"
scripts/ensure-mysql.sh
if run point || run ingest-write; then scripts/ensure-h2load.sh; fi
if run replicas; then scripts/ensure-haproxy.sh; fi
if run ingest-jetstream; then scripts/ensure-nats.sh; fi
npm run --silent build
if run point; then node dist/bench/point-query.js "$@"; fi
if run stream; then node dist/bench/stream-execute.js "$@"; fi
if run ingest-write; then node dist/bench/ingest-write.js "$@"; fi
if run ingest-stream; then node dist/bench/ingest-stream.js "$@"; fi
if run forwarding; then node dist/bench/forwarding.js "$@"; fi
if run replicas; then node dist/bench/replicas.js "$@"; fi
if run read-replicas; then node dist/bench/read-replicas.js "$@"; fi
if run ingest-jetstream; then node dist/bench/ingest-jetstream.js "$@"; fi
if run changes; then node dist/bench/changes.js "$@"; fi
# RESULTS.md covers the report's benchmarks: rewritten when one of them ran.
if run point || run ingest-write || run ingest-stream || run stream; then node dist/bench/report.js; fi
