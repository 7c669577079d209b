/**
 * Prometheus metrics, served at `GET /metrics`. Each gateway has its own
 * registry (no prom-client globals), so that several gateways can live in one
 * process (tests). Gauges read the core's counters when scraped, so the hot
 * path pays nothing for them.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { PoolStats } from "../mysql/database.js";
import type { ReplicaStatus } from "../mysql/replication/replica-set.js";

/** The ingest counters the metrics read (the ingest core's stats satisfy it). */
export interface IngestCounters {
  readonly bufferedBytes: number;
  readonly queuedParts: number;
  readonly batches: number;
  readonly rows: number;
  readonly logBytes: number;
  readonly logRecords: number;
  readonly logLagSeconds: number;
  readonly rejectedRecords: number;
  readonly logAppended: number;
  readonly logApplied: number;
  readonly logRedelivered: number;
}

export interface MetricsSources {
  readonly ingest: { stats(): IngestCounters };
  /** Every set of pools, each named by its database. */
  pools(): readonly { readonly databaseName: string; poolStats(): PoolStats[] }[];
  /** Open transactions and pinned sessions. */
  readonly sessions: { readonly size: number };
  /** The MySQL replicas reads may go to, as last checked. */
  replicas(): readonly ReplicaStatus[];
  /** The JetStream change sink; undefined without one. */
  changeSink(): ChangeSinkCounters | undefined;
}

export interface ChangeSinkCounters {
  readonly leader: boolean;
  readonly published: number;
  readonly duplicates: number;
}

/** What the call observer records per call (see call-observer.ts). */
export interface CallMetrics {
  /** One finished call: its method (`Service/Method`), code, and duration. */
  record(method: string, code: string, seconds: number): void;
  /** A MySQL error a call ended with. */
  mysqlError(errno: number): void;
  /** A call taken by the unary fast path (transport/unary-fast-path.ts). */
  fastPath(): void;
}

export interface Metrics {
  readonly registry: Registry;
  readonly calls: CallMetrics;
}

/** Latency buckets (seconds): from 0.5 ms, a unary call's floor, to a minute. */
const latencyBuckets = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  const callsTotal = new Counter({
    name: "sqlgate_calls_total",
    help: "Calls finished, by method and Connect code.",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const callSeconds = new Histogram({
    name: "sqlgate_call_duration_seconds",
    help: "Call latency from the first byte handled to the response, by method.",
    labelNames: ["method"] as const,
    buckets: latencyBuckets,
    registers: [registry],
  });
  const fastPathCalls = new Counter({
    name: "sqlgate_unary_fast_path_calls_total",
    help: "Calls answered on the unary fast path rather than through the Connect router (SQLGATE_UNARY_FAST_PATH).",
    registers: [registry],
  });
  const mysqlErrors = new Counter({
    name: "sqlgate_mysql_errors_total",
    help: "MySQL errors calls ended with, by errno.",
    labelNames: ["errno"] as const,
    registers: [registry],
  });
  const poolGauge = (name: string, help: string, read: (p: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["database", "pool"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const db of sources.pools()) {
          for (const stats of db.poolStats()) {
            this.set({ database: db.databaseName, pool: stats.pool }, read(stats));
          }
        }
      },
    });
  poolGauge("sqlgate_pool_connections_limit", "Most connections the pool opens.", (p) => p.limit);
  poolGauge("sqlgate_pool_connections_open", "Connections the pool holds open.", (p) => p.open);
  poolGauge(
    "sqlgate_pool_connections_in_use",
    "Connections leased to calls (open minus idle).",
    (p) => p.open - p.idle,
  );
  poolGauge("sqlgate_pool_waiting_calls", "Calls waiting for a connection.", (p) => p.waiting);
  new Gauge({
    name: "sqlgate_open_sessions",
    help: "Open transactions and pinned PlanetScale sessions (each pins a connection).",
    registers: [registry],
    collect() {
      this.set(sources.sessions.size);
    },
  });
  const replicaGauge = (name: string, help: string, read: (r: ReplicaStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["replica"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const replica of sources.replicas())
          this.set({ replica: replica.name }, read(replica));
      },
    });
  replicaGauge("sqlgate_replica_up", "1 when the replica answered its last check.", (r) =>
    r.up ? 1 : 0,
  );
  replicaGauge(
    "sqlgate_replica_usable",
    "1 when reads may go to the replica: up, and not lagging past SQLGATE_REPLICA_MAX_LAG_MS.",
    (r) => (r.usable ? 1 : 0),
  );
  replicaGauge(
    "sqlgate_replica_lag_seconds",
    "How far the replica is behind the primary (to the check interval); -1 when unknown.",
    (r) => (r.lagMs === undefined ? -1 : r.lagMs / 1000),
  );
  replicaGauge(
    "sqlgate_replica_statements_running",
    "Statements running on the replica now.",
    (r) => r.running,
  );
  /** Label children per method (and code), so that a call does not hash its labels. */
  const byMethod = new Map<string, Histogram.Internal<"method">>();
  const byMethodAndCode = new Map<string, Counter.Internal>();
  const ingest = () => sources.ingest.stats();
  const gauge = (name: string, help: string, read: (s: IngestCounters) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(ingest()));
      },
    });
  /** A counter whose running total the core keeps; scraping shows it as is. */
  const total = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const counter = (name: string, help: string, read: (s: IngestCounters) => number) =>
    total(name, help, () => read(ingest()));
  counter("sqlgate_ingest_batches_total", "Group-commit transactions committed.", (s) => s.batches);
  counter(
    "sqlgate_ingest_rows_total",
    "Rows committed by group commit (COMMITTED durability).",
    (s) => s.rows,
  );
  counter(
    "sqlgate_ingest_log_rejected_records_total",
    "BUFFERED batches MySQL refused for good (dead letters), kept in sqlgate_ingest_rejected.",
    (s) => s.rejectedRecords,
  );
  counter(
    "sqlgate_ingest_log_appended_total",
    "BUFFERED batches this gateway stored in the log (local, or JetStream publishes acknowledged).",
    (s) => s.logAppended,
  );
  counter(
    "sqlgate_ingest_log_applied_total",
    "BUFFERED batches this gateway wrote from the log to MySQL.",
    (s) => s.logApplied,
  );
  counter(
    "sqlgate_ingest_log_redelivered_total",
    "JetStream batches delivered to this gateway again (after a replica or NATS crash, or a refusal).",
    (s) => s.logRedelivered,
  );
  gauge(
    "sqlgate_ingest_buffer_bytes",
    "Bytes of rows queued or being written by group commit.",
    (s) => s.bufferedBytes,
  );
  new Gauge({
    name: "sqlgate_changes_sink_leader",
    help: "1 while this gateway is the one publishing changes to JetStream (SQLGATE_CHANGES_SINK).",
    registers: [registry],
    collect() {
      this.set(sources.changeSink()?.leader ? 1 : 0);
    },
  });
  const sink = () => sources.changeSink() ?? { leader: false, published: 0, duplicates: 0 };
  total(
    "sqlgate_changes_sink_published_total",
    "Change messages JetStream acknowledged from this gateway.",
    () => sink().published,
  );
  total(
    "sqlgate_changes_sink_duplicates_total",
    "Of those, messages JetStream already had (published again after a takeover).",
    () => sink().duplicates,
  );
  gauge("sqlgate_ingest_queued_calls", "Calls whose rows wait for a batch.", (s) => s.queuedParts);
  gauge(
    "sqlgate_ingest_log_bytes",
    "Bytes of the BUFFERED log: the local write-ahead log on disk, or the JetStream stream.",
    (s) => s.logBytes,
  );
  gauge(
    "sqlgate_ingest_log_records",
    "BUFFERED batches not yet in MySQL (log depth; JetStream: the consumer's pending and unacknowledged).",
    (s) => s.logRecords,
  );
  gauge(
    "sqlgate_ingest_log_flush_lag_seconds",
    "Age of the oldest BUFFERED batch not yet in MySQL (0 when none).",
    (s) => s.logLagSeconds,
  );
  return {
    registry,
    calls: {
      record(method, code, seconds) {
        const key = `${method} ${code}`;
        let counter = byMethodAndCode.get(key);
        if (counter === undefined) {
          counter = callsTotal.labels(method, code);
          byMethodAndCode.set(key, counter);
        }
        counter.inc();
        let histogram = byMethod.get(method);
        if (histogram === undefined) {
          histogram = callSeconds.labels(method);
          byMethod.set(method, histogram);
        }
        histogram.observe(seconds);
      },
      mysqlError(errno) {
        mysqlErrors.inc({ errno: String(errno) });
      },
      fastPath() {
        fastPathCalls.inc();
      },
    },
  };
}
