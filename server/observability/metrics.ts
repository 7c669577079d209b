/**
 * Prometheus metrics, served at `GET /metrics`. Each gateway has its own
 * registry (no prom-client globals), so that several gateways can live in one
 * process (tests). Gauges read the core's counters when scraped, so the hot
 * path pays nothing for them.
 */
import { Counter, Gauge, Registry } from "prom-client";

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
}

export interface MetricsSources {
  readonly ingest: { stats(): IngestCounters };
}

export function createMetrics(sources: MetricsSources): Registry {
  const registry = new Registry();
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
  const counter = (name: string, help: string, read: (s: IngestCounters) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        // The core keeps the running total; the counter shows it as is.
        this.reset();
        this.inc(read(ingest()));
      },
    });
  counter("sqlgate_ingest_batches_total", "Group-commit transactions committed.", (s) => s.batches);
  counter(
    "sqlgate_ingest_rows_total",
    "Rows committed by group commit (COMMITTED durability).",
    (s) => s.rows,
  );
  counter(
    "sqlgate_ingest_log_rejected_records_total",
    "Write-ahead log records MySQL refused, kept in sqlgate_ingest_rejected.",
    (s) => s.rejectedRecords,
  );
  gauge(
    "sqlgate_ingest_buffer_bytes",
    "Bytes of rows queued or being written by group commit.",
    (s) => s.bufferedBytes,
  );
  gauge("sqlgate_ingest_queued_calls", "Calls whose rows wait for a batch.", (s) => s.queuedParts);
  gauge(
    "sqlgate_ingest_log_bytes",
    "Bytes of the write-ahead log on disk (BUFFERED durability).",
    (s) => s.logBytes,
  );
  gauge(
    "sqlgate_ingest_log_records",
    "Write-ahead log records not yet in MySQL (log depth).",
    (s) => s.logRecords,
  );
  gauge(
    "sqlgate_ingest_log_flush_lag_seconds",
    "Age of the oldest write-ahead log record not yet in MySQL (0 when none).",
    (s) => s.logLagSeconds,
  );
  return registry;
}
