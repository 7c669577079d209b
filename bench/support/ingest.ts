/**
 * What the ingest benchmarks share: the telemetry table, IngestService
 * clients spread over several HTTP/2 sessions, MariaDB's statement counters
 * (the gateway's batches show there as INSERTs and COMMITs), CPU snapshots of
 * the three processes, and the gateway's ingest settings.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Pool, RowDataPacket } from "mysql2/promise";
import { IngestService } from "../../gen/sqlgate/v1/ingest_pb.js";
import { log, onCleanup } from "./harness.js";
import {
  childrenCpuMicros,
  machineBusyMicros,
  ownCpuMicros,
  processCpuMicros,
} from "./proc-cpu.js";

/** A device fleet's readings: the table both paths write to. */
export const telemetryTable = "telemetry";
export const telemetryColumns: readonly string[] = ["device", "ts", "value", "note"];
export const telemetryDdl =
  "CREATE TABLE telemetry (id BIGINT AUTO_INCREMENT PRIMARY KEY, device INT NOT NULL, " +
  "ts DATETIME(6) NOT NULL, value DOUBLE NOT NULL, note VARCHAR(32))";

/** `ms` since the epoch as DATETIME(6) text, `2024-01-01 00:00:00.123000`. */
export function datetimeText(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000`;
}

/**
 * `sessions` IngestService clients (Connect, binary, h2c), each on its own
 * HTTP/2 session: one session is one TCP connection, so its framing runs on
 * one socket and one stream of events in both processes.
 */
export function ingestClients(baseUrl: string, sessions: number): Client<typeof IngestService>[] {
  return Array.from({ length: sessions }, () => {
    const sessionManager = new Http2SessionManager(baseUrl);
    onCleanup(async () => sessionManager.abort());
    return createClient(
      IngestService,
      createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sessionManager }),
    );
  });
}

/** Server-wide statement counters from MariaDB's GLOBAL_STATUS. */
export interface StatusCounters {
  readonly comInsert: number;
  readonly comCommit: number;
  readonly handlerCommit: number;
}

export async function statusCounters(pool: Pool): Promise<StatusCounters> {
  const [rows] = await pool.query<RowDataPacket[]>(
    "SELECT variable_name AS name, variable_value AS value FROM information_schema.GLOBAL_STATUS " +
      "WHERE variable_name IN ('COM_INSERT', 'COM_COMMIT', 'HANDLER_COMMIT')",
  );
  const value = (name: string) =>
    Number(rows.find((r) => String(r.name).toUpperCase() === name)?.value ?? Number.NaN);
  return {
    comInsert: value("COM_INSERT"),
    comCommit: value("COM_COMMIT"),
    handlerCommit: value("HANDLER_COMMIT"),
  };
}

export function countersSince(before: StatusCounters, after: StatusCounters): StatusCounters {
  return {
    comInsert: after.comInsert - before.comInsert,
    comCommit: after.comCommit - before.comCommit,
    handlerCommit: after.handlerCommit - before.handlerCommit,
  };
}

export async function countRows(pool: Pool, table = telemetryTable): Promise<number> {
  const [rows] = await pool.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${table}`);
  return Number(rows[0]?.n);
}

/**
 * Waits until `table` holds at least `rows` rows (BUFFERED writes reach MySQL
 * after their acknowledgement); returns the seconds it took, or throws after
 * `timeoutMs`.
 */
export async function waitForRows(
  pool: Pool,
  rows: number,
  timeoutMs = 120_000,
  table = telemetryTable,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    const n = await countRows(pool, table);
    if (n >= rows) return (performance.now() - started) / 1000;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`${table} holds ${n} rows after ${timeoutMs} ms, expected ${rows}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * CPU microseconds used so far by this process (the load), the gateway,
 * MariaDB and the whole machine (all cores, from /proc/stat).
 */
export interface CpuSnapshot {
  readonly client: number;
  readonly gateway: number;
  readonly mysql: number;
  readonly machine: number;
  readonly atMs: number;
}

export function cpuSnapshot(gatewayPid: number, mysqlPid: number): CpuSnapshot {
  return {
    // The load generator: this process, and h2load once it has exited.
    client: ownCpuMicros() + childrenCpuMicros(),
    gateway: processCpuMicros(gatewayPid),
    mysql: processCpuMicros(mysqlPid),
    machine: machineBusyMicros(),
    atMs: performance.now(),
  };
}

interface PerProcess {
  readonly client: number;
  readonly gateway: number;
  readonly mysql: number;
}

/**
 * CPU used between two snapshots: per unit of work (us) and as % of one core;
 * `otherPercent` is what the rest of the machine used meanwhile (another
 * workload on the same cores makes a run's figures unreliable).
 */
export interface CpuUse {
  readonly perUnitUs: PerProcess;
  readonly percent: PerProcess;
  readonly otherPercent: number;
}

export function cpuUse(before: CpuSnapshot, after: CpuSnapshot, units: number): CpuUse {
  const wallUs = (after.atMs - before.atMs) * 1000;
  const used = {
    client: after.client - before.client,
    gateway: after.gateway - before.gateway,
    mysql: after.mysql - before.mysql,
  };
  const machine = after.machine - before.machine;
  return {
    perUnitUs: {
      client: used.client / units,
      gateway: used.gateway / units,
      mysql: used.mysql / units,
    },
    percent: {
      client: (100 * used.client) / wallUs,
      gateway: (100 * used.gateway) / wallUs,
      mysql: (100 * used.mysql) / wallUs,
    },
    otherPercent: Math.max(0, (100 * (machine - used.client - used.gateway - used.mysql)) / wallUs),
  };
}

/**
 * The gateway's SQLGATE_INGEST_* settings for a benchmark: `chosen` values
 * unless the same variable is set in this process's environment (the gateway
 * inherits that), so a run can try other settings without a code change.
 */
export function ingestSettings(
  chosen: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  const settings: Record<string, string> = {};
  for (const [name, value] of Object.entries(chosen)) settings[name] = process.env[name] || value;
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith("SQLGATE_INGEST_") && value) settings[name] = value;
  }
  log(`gateway ingest settings: ${describeSettings(settings)}`);
  return settings;
}

export function describeSettings(settings: Readonly<Record<string, string>>): string {
  return Object.entries(settings)
    .map(([name, value]) => `${name}=${value}`)
    .join(", ");
}

/** Counts failed calls and keeps the first few messages, for the report. */
export interface ErrorTally {
  count: number;
  readonly first: string[];
}

export function recordError(tally: ErrorTally, err: unknown): void {
  tally.count++;
  if (tally.first.length < 3) {
    const message = err instanceof Error ? err.message : String(err);
    tally.first.push(message);
    log(`call failed: ${message}`);
  }
}

/** Other processes' CPU (% of one core) above which a run is reported as disturbed. */
export const disturbedPercent = 20;

export const fmt = {
  rate: (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-"),
  ms: (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-"),
  us: (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-"),
  pct: (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-"),
  ratio: (n: number) => (Number.isFinite(n) ? n.toFixed(3) : "-"),
};
