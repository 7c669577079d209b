#!/usr/bin/env bash
# Runs the benchmarks on compiled JavaScript (never tsx): makes sure a MariaDB
# server binary exists, builds dist/, then runs the point-query benchmark, the
# StreamExecute one, the two ingest ones, forwarding, replicas (point
# queries through HAProxy to one and to three replicas), read-replicas
# (point queries on a MariaDB primary vs its GTID replica, and what
# min_position costs) and ingest-jetstream (Write acknowledged COMMITTED,
# BUFFERED on the local log and BUFFERED on NATS JetStream with one server
# and with three, and whether the drain to MySQL keeps up), each of which
# starts its own private MariaDB and the gateway as a separate process.
# BENCH_ONLY=point, stream, ingest-write, ingest-stream, forwarding, replicas,
# read-replicas, ingest-jetstream or changes runs just one of them.
# Other settings: BENCH_SECONDS, BENCH_RUNS, BENCH_WARMUP_SECONDS,
# BENCH_POOL_SIZE, BENCH_ROWS, BENCH_CALLERS (see bench/point-query.ts);
# BENCH_STREAM_ROWS, BENCH_SLOW_FACTOR, BENCH_SLOW_STALL_SECONDS (see
# bench/stream-execute.ts); BENCH_CALLERS, BENCH_SESSIONS, BENCH_DIRECT_POOL,
# BENCH_VARIANTS (see bench/ingest-write.ts); BENCH_STREAMS, BENCH_CHUNK_ROWS,
# BENCH_DIRECT_CONNECTIONS (see bench/ingest-stream.ts); BENCH_SESSIONS (see
# bench/replicas.ts, bench/read-replicas.ts); BENCH_SETTLE_MS (see
# bench/read-replicas.ts); BENCH_ROWS_PER_CALL, BENCH_DRAIN_TIMEOUT_SECONDS,
# BENCH_VARIANTS (see bench/ingest-jetstream.ts). BENCH_CALLERS means a list
# for point-query and one number for ingest-write, replicas, read-replicas
# and ingest-jetstream: set it with BENCH_ONLY.
set -euo pipefail
cd "$(dirname "$0")/.."
only="${BENCH_ONLY:-}"
case "$only" in
  "" | point | stream | ingest-write | ingest-stream | forwarding | replicas | read-replicas | ingest-jetstream | changes) ;;
  *)
    echo "bench: BENCH_ONLY must be point, stream, ingest-write, ingest-stream, forwarding, replicas, read-replicas, ingest-jetstream or changes, not '$only'" >&2
    exit 2
    ;;
esac
run() { [ -z "$only" ] || [ "$only" = "$1" ]; }
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
