/**
 * The gateway's configuration: one typed, frozen object read from the
 * environment. `loadConfig` is the only reader of `process.env`; it validates
 * every setting at start-up and reports every problem at once, so an operator
 * fixes a bad deployment in one round trip rather than one error at a time.
 *
 * Every setting is listed in `settings` with its default and meaning; the
 * README's configuration table is checked against this list by a test.
 */

import type { PrincipalLimits } from "./principal.js";

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface MysqlConfig {
  /** A `mysql://user:pass@host:port/db` URL, or undefined for the embedded server. */
  readonly url: string | undefined;
  readonly poolSize: number;
  readonly acquireTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly startupTimeoutMs: number;
}

/** MySQL replicas that reads may go to (see mysql/replication/). */
export interface ReplicasConfig {
  readonly urls: readonly string[];
  /** Where reads go when a call does not say (SQLGATE_READ_FROM). */
  readonly readFrom: "primary" | "replica";
  readonly maxLagMs: number;
  readonly waitMs: number;
  readonly checkIntervalMs: number;
}

/** Change streams from the binlog. */
export interface ChangesConfig {
  readonly heartbeatMs: number;
  /** Messages queued per subscriber before it is ended as too slow. */
  readonly bufferMessages: number;
  /** Publishing every change to JetStream (SQLGATE_CHANGES_SINK); undefined: not done. */
  readonly sink: ChangeSinkConfig | undefined;
}

/** The JetStream stream change events are published to. */
export interface ChangeSinkConfig extends NatsConnectionConfig {
  readonly stream: string;
  /** Which tables: `db.table`, `table` (in the MySQL URL's database), `db.*` or `*`. */
  readonly tables: readonly string[];
  readonly replicas: number;
  readonly duplicateWindowMs: number;
}

export interface LimitsConfig {
  readonly maxBodyBytes: number;
  readonly maxResponseBytes: number;
  readonly maxRows: number;
  readonly maxTimeoutMs: number;
  readonly defaultTimeoutMs: number;
}

export interface TransactionsConfig {
  readonly maxOpen: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  /** Secrets that verify transaction tokens; the first signs. Empty: one random per process. */
  readonly tokenSecrets: readonly string[];
  /** The URL other replicas reach this one at, which its tokens carry. */
  readonly nodeUrl: string | undefined;
  /** The replicas sessions may be forwarded to (SQLGATE_PEERS). */
  readonly peers: readonly string[];
}

export interface IngestConfig {
  /** Batches written at once, each on its own connection. */
  readonly connections: number;
  readonly maxBatchRows: number;
  readonly maxBatchBytes: number;
  readonly maxDelayMs: number;
  readonly bufferBytes: number;
  readonly keyRetentionMs: number;
  readonly logSegmentBytes: number;
  readonly logMaxBytes: number;
  /** Where the gateway's own tables live; undefined: the URL's database, else `sqlgate`. */
  readonly internalDatabase: string | undefined;
  /** The BUFFERED log: this gateway's own, or NATS JetStream shared by every replica. */
  readonly log: { readonly kind: "local" } | ({ readonly kind: "jetstream" } & JetStreamConfig);
}

/** Where NATS is and how to sign in (SQLGATE_NATS_USER, ...). */
export interface NatsConnectionConfig {
  /** `nats://host:port` of each server. */
  readonly servers: readonly string[];
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly token: string | undefined;
  /** A CA file: TLS to NATS, the server checked against it. */
  readonly caFile: string | undefined;
}

/** The shared JetStream log for BUFFERED ingest (SQLGATE_INGEST_LOG=nats://...). */
export interface JetStreamConfig extends NatsConnectionConfig {
  readonly stream: string;
  readonly subject: string;
  readonly consumer: string;
  readonly replicas: number;
  readonly maxBytes: number;
  readonly duplicateWindowMs: number;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
}

/** Limits of PlanetScale's API, with PlanetScale's documented values as defaults. */
export interface PlanetScaleConfig {
  readonly maxRows: number;
  readonly maxResultBytes: number;
  readonly readTimeoutMs: number;
  readonly writeTimeoutMs: number;
  readonly transactionTimeoutMs: number;
}

export interface AuthConfig {
  /** SQLGATE_CREDENTIALS_FILE; undefined: no credentials, loopback only. */
  readonly credentialsFile: string | undefined;
  /** Serve a non-loopback address without credentials (SQLGATE_ALLOW_INSECURE). */
  readonly allowInsecure: boolean;
  /** Each credential's limits unless its entry sets its own. */
  readonly credentialLimits: PrincipalLimits;
}

export interface ConnectionsConfig {
  readonly maxConnectionAgeMs: number;
  readonly maxConnectionAgeGraceMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
}

export interface ShutdownConfig {
  /** How long readiness is red before the gateway stops accepting calls. */
  readonly delayMs: number;
  /** How long in-flight calls may take to finish once shutdown starts. */
  readonly graceMs: number;
}

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /** SQLGATE_TLS_CLIENT_CA: require client certificates from this CA. */
  readonly clientCaFile: string | undefined;
}

export interface LogConfig {
  readonly level: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  readonly pretty: boolean;
  /** Calls slower than this are logged as warnings. */
  readonly slowCallMs: number;
}

export interface Config {
  readonly listen: ListenAddress;
  readonly dataDir: string;
  readonly mysql: MysqlConfig;
  readonly replicas: ReplicasConfig;
  readonly changes: ChangesConfig;
  readonly limits: LimitsConfig;
  readonly transactions: TransactionsConfig;
  readonly ingest: IngestConfig;
  readonly planetscale: PlanetScaleConfig;
  readonly auth: AuthConfig;
  readonly shutdown: ShutdownConfig;
  readonly connections: ConnectionsConfig;
  readonly tls: TlsConfig | undefined;
  readonly log: LogConfig;
  readonly console: ConsoleConfig;
  /** SQLGATE_UNARY_FAST_PATH: Execute, Write (Connect and gRPC) and PlanetScale's Execute on the fast path (transport/unary-fast-path.ts). */
  readonly unaryFastPath: boolean;
}

/** The browser console at `/console` (server/transport/console-route.ts). */
export interface ConsoleConfig {
  /** SQLGATE_CONSOLE: on, off, or auto (on when listening on loopback only). */
  readonly enabled: boolean;
}

/** One documented setting. */
export interface Setting {
  readonly name: string;
  readonly defaultValue: string;
  readonly description: string;
}

/** Every environment variable the gateway reads, in README order. */
export const settings: readonly Setting[] = [
  {
    name: "SQLGATE_LISTEN",
    defaultValue: "127.0.0.1:8080",
    description:
      "Address and port to listen on (HTTP/1.1 and HTTP/2 on one port). Use `0.0.0.0:8080` to accept remote clients (which needs SQLGATE_CREDENTIALS_FILE).",
  },
  {
    name: "SQLGATE_MYSQL_URL",
    defaultValue: "(unset: embedded MariaDB)",
    description:
      "`mysql://user:password@host:port/database` of the MySQL server to use (`?socket=/path` for a Unix socket; TLS: `?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem`, also `REQUIRED`, `VERIFY_CA`, and `ssl-cert`/`ssl-key` for a client certificate). Unset, the gateway starts a private MariaDB/MySQL under `SQLGATE_DATA_DIR`.",
  },
  {
    name: "SQLGATE_DATA_DIR",
    defaultValue: ".sqlgate",
    description:
      "Directory for the gateway's own state: the embedded database's files and the ingest write-ahead log. One gateway per directory.",
  },
  {
    name: "SQLGATE_POOL_SIZE",
    defaultValue: "16",
    description: "MySQL connections in the pool.",
  },
  {
    name: "SQLGATE_POOL_ACQUIRE_TIMEOUT_MS",
    defaultValue: "10000",
    description:
      "Longest wait for a free pooled connection (never past the call's deadline); past it a call fails with `resource_exhausted`.",
  },
  {
    name: "SQLGATE_MYSQL_CONNECT_TIMEOUT_MS",
    defaultValue: "5000",
    description:
      "Timeout for opening one MySQL connection; past it a call fails with `unavailable`. Keep it below `SQLGATE_POOL_ACQUIRE_TIMEOUT_MS`.",
  },
  {
    name: "SQLGATE_POOL_IDLE_TIMEOUT_MS",
    defaultValue: "60000",
    description: "Idle pooled connections are closed after this long.",
  },
  {
    name: "SQLGATE_MYSQL_STARTUP_TIMEOUT_MS",
    defaultValue: "120000",
    description:
      "At start-up, how long to retry (with backoff) until MySQL answers before giving up.",
  },
  {
    name: "SQLGATE_MYSQL_REPLICA_URLS",
    defaultValue: "(unset: no replicas)",
    description:
      "Comma-separated `mysql://` URLs of MySQL/MariaDB replicas (GTID replication) that reads may go to, with the same account and database as SQLGATE_MYSQL_URL unless they name their own. Each gets its own pools, read-only sessions, and a check every SQLGATE_REPLICA_CHECK_INTERVAL_MS. Set, every write's response carries its replication `position`.",
  },
  {
    name: "SQLGATE_READ_FROM",
    defaultValue: "primary",
    description:
      "Where a call that does not set `options.readFrom` runs: `primary`, or `replica` (statements that read go to a replica, others to the primary).",
  },
  {
    name: "SQLGATE_REPLICA_MAX_LAG_MS",
    defaultValue: "5000",
    description:
      "A replica further behind the primary than this (or down) takes no reads until it catches up. With no usable replica, reads go to the primary.",
  },
  {
    name: "SQLGATE_REPLICA_WAIT_MS",
    defaultValue: "500",
    description:
      "How long a read with `minPosition` waits for a replica to apply that write before the primary serves it instead.",
  },
  {
    name: "SQLGATE_REPLICA_CHECK_INTERVAL_MS",
    defaultValue: "1000",
    description: "How often each replica's health, position and lag are checked.",
  },
  {
    name: "SQLGATE_CHANGES_HEARTBEAT_MS",
    defaultValue: "5000",
    description:
      "A change stream with nothing to send gets a heartbeat (with the current position) this often, unless the request asks for another interval.",
  },
  {
    name: "SQLGATE_CHANGES_BUFFER",
    defaultValue: "1000",
    description:
      "Messages queued for one change-stream subscriber; one that falls further behind is ended with `resource_exhausted` naming the position to resume from, so it never holds up the others or the heap.",
  },
  {
    name: "SQLGATE_CHANGES_SINK",
    defaultValue: "(unset: none)",
    description:
      "`nats://host:port[,nats://host:port...]`: publish every committed transaction to NATS JetStream, on `sqlgate.changes.<db>.<table>` (DDL on `sqlgate.schema.<db>`), each message with a `Nats-Msg-Id` from its position. One replica publishes at a time (a MySQL named lock elects it) and keeps its position in MySQL; the others take over when it stops. Signs in with SQLGATE_NATS_USER/PASSWORD/TOKEN/CA.",
  },
  {
    name: "SQLGATE_CHANGES_SINK_STREAM",
    defaultValue: "SQLGATE_CHANGES",
    description:
      "The JetStream stream change events go to (file storage, created if missing with SQLGATE_NATS_REPLICAS replicas and SQLGATE_NATS_DUPLICATE_WINDOW_MS deduplication; an existing one with other settings is reported, never changed).",
  },
  {
    name: "SQLGATE_CHANGES_SINK_TABLES",
    defaultValue: "*",
    description:
      "Comma-separated tables the sink publishes: `db.table`, `table` (in the MySQL URL's database), `db.*`, or `*` for all (the gateway's own tables never).",
  },
  {
    name: "SQLGATE_MAX_BODY_BYTES",
    defaultValue: "8388608",
    description:
      "Largest request message accepted (8 MiB); larger ones fail with `resource_exhausted`.",
  },
  {
    name: "SQLGATE_MAX_RESPONSE_BYTES",
    defaultValue: "67108864",
    description:
      "Largest response message sent (64 MiB); larger results fail with `resource_exhausted` (use StreamExecute).",
  },
  {
    name: "SQLGATE_MAX_ROWS",
    defaultValue: "100000",
    description:
      "Most rows a unary Execute returns; past it the response has `truncated: true` (use StreamExecute for more).",
  },
  {
    name: "SQLGATE_MAX_TIMEOUT_MS",
    defaultValue: "300000",
    description:
      "Upper bound on any call's deadline (`Connect-Timeout-Ms`, `grpc-timeout`, `options.timeoutMs`).",
  },
  {
    name: "SQLGATE_DEFAULT_TIMEOUT_MS",
    defaultValue: "60000",
    description: "Deadline of a statement whose call gives none.",
  },
  {
    name: "SQLGATE_MAX_TRANSACTIONS",
    defaultValue: "256",
    description:
      "Interactive transactions open at once; each pins a MySQL connection of its own (keep MySQL's `max_connections` above this plus `SQLGATE_POOL_SIZE`). Past it BeginTransaction fails with `resource_exhausted`.",
  },
  {
    name: "SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS",
    defaultValue: "30000",
    description:
      "A transaction with no call for this long is rolled back and its connection returned; later calls with its token get `failed_precondition` saying so.",
  },
  {
    name: "SQLGATE_TRANSACTION_MAX_LIFETIME_MS",
    defaultValue: "600000",
    description: "A transaction open this long is rolled back, however busy.",
  },
  {
    name: "SQLGATE_TOKEN_SECRET",
    defaultValue: "(unset: random per process)",
    description:
      "Key that signs transaction tokens (HMAC-SHA256), at least 32 characters. A comma-separated list rotates keys: the first signs, all verify.",
  },
  {
    name: "SQLGATE_NODE_URL",
    defaultValue: "(unset: from SQLGATE_LISTEN, else a random name)",
    description:
      "The URL other replicas reach this one at; its tokens carry it, so that a call reaching another replica is forwarded here. Required with SQLGATE_PEERS when listening on a wildcard address.",
  },
  {
    name: "SQLGATE_PEERS",
    defaultValue: "(unset: no forwarding)",
    description:
      "Comma-separated replicas: URLs (this one may be among them), or a DNS name and port whose addresses are the replicas (a Kubernetes headless Service: `sqlgate-headless:8080`, looked up again as replicas change). A call whose session another replica holds is forwarded to it only if it is one of these; else `failed_precondition`.",
  },
  {
    name: "SQLGATE_INGEST_CONNECTIONS",
    defaultValue: "4",
    description:
      "Ingest batches (group commit) written at once, each on a MySQL connection of its own; the pool holds two more, for the write-ahead log's flusher and upkeep.",
  },
  {
    name: "SQLGATE_INGEST_MAX_BATCH_ROWS",
    defaultValue: "10000",
    description: "Most rows in one ingest batch (one transaction).",
  },
  {
    name: "SQLGATE_INGEST_MAX_BATCH_BYTES",
    defaultValue: "4194304",
    description:
      "Most SQL text in one ingest batch (4 MiB); its INSERTs are also kept under MySQL's `max_allowed_packet`.",
  },
  {
    name: "SQLGATE_INGEST_MAX_DELAY_MS",
    defaultValue: "2",
    description:
      "How long a Write's rows may wait for other calls' rows to share their batch (none when no batch is in flight).",
  },
  {
    name: "SQLGATE_INGEST_BUFFER_BYTES",
    defaultValue: "67108864",
    description:
      "Memory for rows queued or being written (64 MiB). Past it calls wait, and fail with `resource_exhausted` at their deadline.",
  },
  {
    name: "SQLGATE_INGEST_KEY_RETENTION_MS",
    defaultValue: "86400000",
    description:
      "How long an idempotency key is remembered (24 h): a retry within it is acknowledged as a duplicate.",
  },
  {
    name: "SQLGATE_INGEST_LOG_SEGMENT_BYTES",
    defaultValue: "67108864",
    description:
      "Size of one write-ahead log segment file (BUFFERED durability) under `SQLGATE_DATA_DIR/ingest-log`.",
  },
  {
    name: "SQLGATE_INGEST_LOG",
    defaultValue: "local",
    description:
      "Where BUFFERED writes are kept until MySQL has them: `local` (this gateway's write-ahead log under SQLGATE_DATA_DIR) or `nats://host:port[,host:port...]` (a NATS JetStream stream shared by every replica; see SQLGATE_NATS_*).",
  },
  {
    name: "SQLGATE_NATS_USER",
    defaultValue: "(unset)",
    description: "NATS user name (with SQLGATE_NATS_PASSWORD). Never logged.",
  },
  {
    name: "SQLGATE_NATS_PASSWORD",
    defaultValue: "(unset)",
    description: "NATS password. Never logged.",
  },
  {
    name: "SQLGATE_NATS_TOKEN",
    defaultValue: "(unset)",
    description: "NATS authentication token (instead of a user and password). Never logged.",
  },
  {
    name: "SQLGATE_NATS_CA",
    defaultValue: "(unset: no TLS)",
    description: "PEM CA file: connect to NATS over TLS, checking the servers against it.",
  },
  {
    name: "SQLGATE_NATS_STREAM",
    defaultValue: "SQLGATE_INGEST",
    description:
      "The JetStream stream (a work queue, file storage, created by the first replica that starts; an existing one with other settings is reported, never changed).",
  },
  {
    name: "SQLGATE_NATS_SUBJECT",
    defaultValue: "sqlgate.ingest",
    description: "The subject BUFFERED batches are published on (the stream's only subject).",
  },
  {
    name: "SQLGATE_NATS_CONSUMER",
    defaultValue: "sqlgate-flusher",
    description: "The durable pull consumer every replica drains the stream through.",
  },
  {
    name: "SQLGATE_NATS_REPLICAS",
    defaultValue: "1",
    description:
      "Stream replicas: 1 for a single NATS server, 3 for a cluster (survives losing a machine).",
  },
  {
    name: "SQLGATE_NATS_MAX_BYTES",
    defaultValue: "1073741824",
    description:
      "The stream's size cap (1 GiB). When full, BUFFERED calls wait, and fail with `resource_exhausted` at their deadline.",
  },
  {
    name: "SQLGATE_NATS_DUPLICATE_WINDOW_MS",
    defaultValue: "120000",
    description:
      "JetStream drops a batch published again with the same idempotency key within this window (after it, the key in MySQL still makes it a duplicate).",
  },
  {
    name: "SQLGATE_NATS_ACK_WAIT_MS",
    defaultValue: "30000",
    description:
      "A batch taken by a replica and not acknowledged within this is delivered again (to any replica): a replica that died mid-batch delays its rows by this much.",
  },
  {
    name: "SQLGATE_NATS_MAX_DELIVER",
    defaultValue: "5",
    description:
      "Deliveries of a batch MySQL keeps refusing for its data before it goes to the dead-letter table (`sqlgate_ingest_rejected`).",
  },
  {
    name: "SQLGATE_INGEST_LOG_MAX_BYTES",
    defaultValue: "1073741824",
    description:
      "Cap on the write-ahead log (1 GiB). When full, BUFFERED calls wait, and fail with `resource_exhausted` at their deadline.",
  },
  {
    name: "SQLGATE_INTERNAL_DATABASE",
    defaultValue: "(unset: the URL's database, else `sqlgate`)",
    description:
      "Database for the gateway's own tables (idempotency keys, log bookkeeping), created at start-up under a MySQL named lock.",
  },
  {
    name: "SQLGATE_CREDENTIALS_FILE",
    defaultValue: "(unset: no authentication, loopback only)",
    description:
      "YAML or JSON file of named credentials (see Security); every call must then authenticate with HTTP Basic or a Bearer token. Re-read on SIGHUP.",
  },
  {
    name: "SQLGATE_CREDENTIAL_MAX_CALLS",
    defaultValue: "512",
    description:
      "Calls one credential may have in progress at once (a stream counts while it lasts); past it `resource_exhausted`. 0: no limit. A credential's `max_calls` overrides it.",
  },
  {
    name: "SQLGATE_CREDENTIAL_MAX_TRANSACTIONS",
    defaultValue: "64",
    description:
      "Transactions and pinned PlanetScale sessions one credential may hold open at once; past it `resource_exhausted`. 0: only SQLGATE_MAX_TRANSACTIONS. A credential's `max_transactions` overrides it.",
  },
  {
    name: "SQLGATE_CREDENTIAL_CALLS_PER_SECOND",
    defaultValue: "0",
    description:
      "Calls one credential may start per second, bursts up to one second's worth; past it `resource_exhausted`. 0: no limit. A credential's `calls_per_second` overrides it.",
  },
  {
    name: "SQLGATE_ALLOW_INSECURE",
    defaultValue: "false",
    description:
      "Allow SQLGATE_LISTEN on a non-loopback address without SQLGATE_CREDENTIALS_FILE (anyone who can reach the port can use the database).",
  },
  {
    name: "SQLGATE_PSDB_MAX_ROWS",
    defaultValue: "100000",
    description:
      "PlanetScale API: most rows a statement may return; past it the statement fails with `ABORTED` (`Row count exceeded`), as on PlanetScale.",
  },
  {
    name: "SQLGATE_PSDB_MAX_RESULT_BYTES",
    defaultValue: "67108864",
    description: "PlanetScale API: most bytes of values in one result (64 MiB); past it `ABORTED`.",
  },
  {
    name: "SQLGATE_PSDB_READ_TIMEOUT_MS",
    defaultValue: "900000",
    description:
      "PlanetScale API: time limit of a read (SELECT, SHOW, ...); past it the statement is killed (`DEADLINE_EXCEEDED`).",
  },
  {
    name: "SQLGATE_PSDB_WRITE_TIMEOUT_MS",
    defaultValue: "30000",
    description: "PlanetScale API: time limit of any other statement (writes, DDL).",
  },
  {
    name: "SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS",
    defaultValue: "20000",
    description:
      "PlanetScale API: a transaction open this long is rolled back; the session's next call gets `ABORTED`.",
  },
  {
    name: "SQLGATE_TLS_CERT",
    defaultValue: "(unset)",
    description:
      "PEM certificate file. With `SQLGATE_TLS_KEY`, the port serves TLS with ALPN `h2` and `http/1.1`.",
  },
  {
    name: "SQLGATE_TLS_KEY",
    defaultValue: "(unset)",
    description: "PEM private key file for `SQLGATE_TLS_CERT`.",
  },
  {
    name: "SQLGATE_TLS_CLIENT_CA",
    defaultValue: "(unset: no client certificates)",
    description:
      "PEM CA file: TLS clients must present a certificate it signed (mTLS). Without an Authorization header, the certificate's common name names the credential.",
  },
  {
    name: "SQLGATE_LOG_LEVEL",
    defaultValue: "info",
    description: "One of fatal, error, warn, info, debug, trace, silent.",
  },
  {
    name: "SQLGATE_LOG_PRETTY",
    defaultValue: "false",
    description: "Human-readable logs for development instead of JSON lines.",
  },
  {
    name: "SQLGATE_MAX_CONNECTION_AGE_MS",
    defaultValue: "600000",
    description:
      "Client connections older than this (+/-10%) are asked to go: HTTP/2 gets GOAWAY (calls in flight finish), HTTP/1.1 `Connection: close`; clients reconnect and spread over the replicas. 0: never.",
  },
  {
    name: "SQLGATE_MAX_CONNECTION_AGE_GRACE_MS",
    defaultValue: "30000",
    description: "How long an aged HTTP/2 connection's calls get to finish before it is closed.",
  },
  {
    name: "SQLGATE_KEEPALIVE_INTERVAL_MS",
    defaultValue: "30000",
    description:
      "HTTP/2 keepalive PINGs to each client this often; a connection whose PING is not answered within SQLGATE_KEEPALIVE_TIMEOUT_MS is closed. 0: none.",
  },
  {
    name: "SQLGATE_KEEPALIVE_TIMEOUT_MS",
    defaultValue: "20000",
    description: "How long a keepalive PING may go unanswered.",
  },
  {
    name: "SQLGATE_SHUTDOWN_DELAY_MS",
    defaultValue: "0",
    description:
      "On SIGTERM, how long `/readyz` and gRPC health report not serving while calls are still accepted, before the listener closes (behind a load balancer: a few seconds, or a Kubernetes preStop sleep).",
  },
  {
    name: "SQLGATE_SHUTDOWN_GRACE_MS",
    defaultValue: "30000",
    description:
      "On SIGTERM, how long calls in flight may take to finish; then ingest is flushed, open transactions rolled back, pools closed.",
  },
  {
    name: "SQLGATE_SLOW_CALL_MS",
    defaultValue: "1000",
    description:
      "Calls slower than this are logged as warnings (method, code, duration, rows, credential, `x-request-id`); every call is logged at `debug`.",
  },
  {
    name: "SQLGATE_CONSOLE",
    defaultValue: "auto",
    description:
      "The browser SQL console at `/console`: `on`, `off`, or `auto` (on when SQLGATE_LISTEN is a loopback address). It signs in with the gateway's own credentials and makes ordinary API calls.",
  },
  {
    name: "SQLGATE_UNARY_FAST_PATH",
    defaultValue: "true",
    description:
      "Serve unary Execute and Write calls (Connect protocol, binary or JSON; gRPC, binary over HTTP/2) and PlanetScale's Execute on a hand-written path that answers exactly as the Connect router does at about half its CPU per call (a third for gRPC); `false` routes them through Connect like every other call.",
  },
];

/** Thrown by `loadConfig` with every problem found, one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Reads and validates the configuration from `env`. Throws a `ConfigError`
 * listing every invalid setting.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const problems: string[] = [];
  const defaults = new Map(settings.map((s) => [s.name, s.defaultValue]));
  const read = (name: string): string => {
    const value = env[name];
    if (value !== undefined && value !== "") return value;
    return defaults.get(name) ?? "";
  };
  /** Node's timers fire at once past 2^31 - 1 ms, so no duration may exceed it. */
  const maxDurationMs = 2 ** 31 - 1;
  const int = (
    name: string,
    min: number,
    max = name.endsWith("_MS") ? maxDurationMs : Number.MAX_SAFE_INTEGER,
  ): number => {
    const text = read(name);
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name}=${JSON.stringify(text)}: expected an integer from ${min} to ${max}`);
      return min;
    }
    return value;
  };
  const bool = (name: string): boolean => {
    const text = read(name).toLowerCase();
    if (["1", "true", "yes", "on"].includes(text)) return true;
    if (["0", "false", "no", "off"].includes(text)) return false;
    problems.push(`${name}=${JSON.stringify(text)}: expected true or false`);
    return false;
  };

  const listen = parseListen(read("SQLGATE_LISTEN"), problems);
  const url = env.SQLGATE_MYSQL_URL || undefined;
  if (url !== undefined) checkMysqlUrl("SQLGATE_MYSQL_URL", url, problems);
  const replicaUrls = (env.SQLGATE_MYSQL_REPLICA_URLS ?? "")
    .split(",")
    .map((replica) => replica.trim())
    .filter((replica) => replica !== "");
  for (const [i, replica] of replicaUrls.entries()) {
    checkMysqlUrl(`SQLGATE_MYSQL_REPLICA_URLS (URL ${i + 1})`, replica, problems);
  }
  const readFrom = read("SQLGATE_READ_FROM");
  if (readFrom !== "primary" && readFrom !== "replica") {
    problems.push(`SQLGATE_READ_FROM=${JSON.stringify(readFrom)}: expected primary or replica`);
  }

  const certFile = env.SQLGATE_TLS_CERT || undefined;
  const keyFile = env.SQLGATE_TLS_KEY || undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("SQLGATE_TLS_CERT and SQLGATE_TLS_KEY must be set together");
  }
  if (env.SQLGATE_TLS_CLIENT_CA && certFile === undefined) {
    problems.push(
      "SQLGATE_TLS_CLIENT_CA needs SQLGATE_TLS_CERT and SQLGATE_TLS_KEY (client certificates come with TLS)",
    );
  }

  const tokenSecrets = (env.SQLGATE_TOKEN_SECRET ?? "")
    .split(",")
    .map((secret) => secret.trim())
    .filter((secret) => secret !== "");
  if (tokenSecrets.some((secret) => secret.length < 32)) {
    problems.push("SQLGATE_TOKEN_SECRET: every key must be at least 32 characters");
  }

  const consoleMode = read("SQLGATE_CONSOLE").toLowerCase();
  if (!["auto", "on", "off"].includes(consoleMode)) {
    problems.push(`SQLGATE_CONSOLE=${JSON.stringify(consoleMode)}: expected on, off or auto`);
  }

  const level = read("SQLGATE_LOG_LEVEL") as LogConfig["level"];
  if (!logLevels.includes(level)) {
    problems.push(
      `SQLGATE_LOG_LEVEL=${JSON.stringify(level)}: expected one of ${logLevels.join(", ")}`,
    );
  }

  const config: Config = {
    listen,
    dataDir: read("SQLGATE_DATA_DIR"),
    mysql: {
      url,
      poolSize: int("SQLGATE_POOL_SIZE", 1, 10_000),
      acquireTimeoutMs: int("SQLGATE_POOL_ACQUIRE_TIMEOUT_MS", 1),
      connectTimeoutMs: int("SQLGATE_MYSQL_CONNECT_TIMEOUT_MS", 1),
      idleTimeoutMs: int("SQLGATE_POOL_IDLE_TIMEOUT_MS", 1),
      startupTimeoutMs: int("SQLGATE_MYSQL_STARTUP_TIMEOUT_MS", 0),
    },
    changes: {
      heartbeatMs: int("SQLGATE_CHANGES_HEARTBEAT_MS", 100),
      bufferMessages: int("SQLGATE_CHANGES_BUFFER", 1, 1_000_000),
      sink: changeSinkOf(env.SQLGATE_CHANGES_SINK ?? "", env, int, read, problems),
    },
    replicas: {
      urls: replicaUrls,
      readFrom: readFrom === "replica" ? "replica" : "primary",
      maxLagMs: int("SQLGATE_REPLICA_MAX_LAG_MS", 0),
      waitMs: int("SQLGATE_REPLICA_WAIT_MS", 0),
      checkIntervalMs: int("SQLGATE_REPLICA_CHECK_INTERVAL_MS", 50),
    },
    limits: {
      maxBodyBytes: int("SQLGATE_MAX_BODY_BYTES", 1024, 2 ** 31 - 1),
      maxResponseBytes: int("SQLGATE_MAX_RESPONSE_BYTES", 1024, 2 ** 31 - 1),
      maxRows: int("SQLGATE_MAX_ROWS", 1),
      maxTimeoutMs: int("SQLGATE_MAX_TIMEOUT_MS", 1),
      defaultTimeoutMs: int("SQLGATE_DEFAULT_TIMEOUT_MS", 1),
    },
    transactions: {
      maxOpen: int("SQLGATE_MAX_TRANSACTIONS", 1, 100_000),
      idleTimeoutMs: int("SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS", 1),
      maxLifetimeMs: int("SQLGATE_TRANSACTION_MAX_LIFETIME_MS", 1),
      tokenSecrets,
      nodeUrl: nodeUrlOf(env.SQLGATE_NODE_URL, listen, certFile !== undefined),
      peers: (env.SQLGATE_PEERS ?? "")
        .split(",")
        .map((peer) => peer.trim().replace(/\/$/, ""))
        .filter((peer) => peer !== ""),
    },
    ingest: {
      connections: int("SQLGATE_INGEST_CONNECTIONS", 1, 1000),
      maxBatchRows: int("SQLGATE_INGEST_MAX_BATCH_ROWS", 1),
      maxBatchBytes: int("SQLGATE_INGEST_MAX_BATCH_BYTES", 1024, 2 ** 30),
      maxDelayMs: int("SQLGATE_INGEST_MAX_DELAY_MS", 0, 60_000),
      bufferBytes: int("SQLGATE_INGEST_BUFFER_BYTES", 1024),
      keyRetentionMs: int("SQLGATE_INGEST_KEY_RETENTION_MS", 1000),
      logSegmentBytes: int("SQLGATE_INGEST_LOG_SEGMENT_BYTES", 4096, 2 ** 31 - 1),
      logMaxBytes: int("SQLGATE_INGEST_LOG_MAX_BYTES", 4096),
      internalDatabase: env.SQLGATE_INTERNAL_DATABASE || undefined,
      log: ingestLogOf(read("SQLGATE_INGEST_LOG"), env, int, read, problems),
    },
    auth: {
      credentialsFile: env.SQLGATE_CREDENTIALS_FILE || undefined,
      allowInsecure: bool("SQLGATE_ALLOW_INSECURE"),
      credentialLimits: {
        maxCalls: int("SQLGATE_CREDENTIAL_MAX_CALLS", 0),
        maxTransactions: int("SQLGATE_CREDENTIAL_MAX_TRANSACTIONS", 0),
        callsPerSecond: int("SQLGATE_CREDENTIAL_CALLS_PER_SECOND", 0),
      },
    },
    planetscale: {
      maxRows: int("SQLGATE_PSDB_MAX_ROWS", 1),
      maxResultBytes: int("SQLGATE_PSDB_MAX_RESULT_BYTES", 1024, 2 ** 31 - 1),
      readTimeoutMs: int("SQLGATE_PSDB_READ_TIMEOUT_MS", 1),
      writeTimeoutMs: int("SQLGATE_PSDB_WRITE_TIMEOUT_MS", 1),
      transactionTimeoutMs: int("SQLGATE_PSDB_TRANSACTION_TIMEOUT_MS", 1),
    },
    connections: {
      maxConnectionAgeMs: int("SQLGATE_MAX_CONNECTION_AGE_MS", 0),
      maxConnectionAgeGraceMs: int("SQLGATE_MAX_CONNECTION_AGE_GRACE_MS", 0),
      keepaliveIntervalMs: int("SQLGATE_KEEPALIVE_INTERVAL_MS", 0),
      keepaliveTimeoutMs: int("SQLGATE_KEEPALIVE_TIMEOUT_MS", 1),
    },
    shutdown: {
      delayMs: int("SQLGATE_SHUTDOWN_DELAY_MS", 0),
      graceMs: int("SQLGATE_SHUTDOWN_GRACE_MS", 0),
    },
    tls:
      certFile !== undefined && keyFile !== undefined
        ? { certFile, keyFile, clientCaFile: env.SQLGATE_TLS_CLIENT_CA || undefined }
        : undefined,
    log: {
      level,
      pretty: bool("SQLGATE_LOG_PRETTY"),
      slowCallMs: int("SQLGATE_SLOW_CALL_MS", 0),
    },
    console: {
      enabled: consoleMode === "on" || (consoleMode === "auto" && isLoopback(listen.host)),
    },
    unaryFastPath: bool("SQLGATE_UNARY_FAST_PATH"),
  };
  if (config.mysql.connectTimeoutMs >= config.mysql.acquireTimeoutMs) {
    problems.push(
      "SQLGATE_MYSQL_CONNECT_TIMEOUT_MS must be below SQLGATE_POOL_ACQUIRE_TIMEOUT_MS, or an unreachable MySQL looks like a full pool",
    );
  }
  if (config.limits.defaultTimeoutMs > config.limits.maxTimeoutMs) {
    problems.push("SQLGATE_DEFAULT_TIMEOUT_MS must not exceed SQLGATE_MAX_TIMEOUT_MS");
  }
  if (
    config.auth.credentialsFile === undefined &&
    !config.auth.allowInsecure &&
    !isLoopback(config.listen.host)
  ) {
    problems.push(
      `SQLGATE_LISTEN=${config.listen.host}:${config.listen.port} is not a loopback address, and no SQLGATE_CREDENTIALS_FILE is set: anyone who can reach it could use the database. Set SQLGATE_CREDENTIALS_FILE (see \`sqlgate credential create\`), or SQLGATE_ALLOW_INSECURE=true if a proxy in front authenticates`,
    );
  }
  if (config.transactions.peers.length > 0 && config.transactions.nodeUrl === undefined) {
    problems.push(
      "SQLGATE_PEERS is set but this replica has no URL: set SQLGATE_NODE_URL (required when listening on a wildcard address or port 0)",
    );
  }
  for (const peer of config.transactions.peers) {
    if (!/^https?:\/\/[^/]+$/.test(peer) && !/^[A-Za-z0-9.-]+:\d+$/.test(peer)) {
      problems.push(
        `SQLGATE_PEERS: ${peer} is neither a replica URL (http://host:port) nor a DNS name and port (name:port)`,
      );
    }
  }
  if (config.ingest.logMaxBytes < config.ingest.logSegmentBytes) {
    problems.push("SQLGATE_INGEST_LOG_MAX_BYTES must be at least SQLGATE_INGEST_LOG_SEGMENT_BYTES");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

/**
 * This replica's URL: SQLGATE_NODE_URL, else the listen address (a wildcard
 * or port 0 names no reachable URL: then undefined, a random name).
 */
function nodeUrlOf(
  given: string | undefined,
  listen: ListenAddress,
  tls: boolean,
): string | undefined {
  if (given) return given.replace(/\/$/, "");
  if (listen.port === 0 || listen.host === "0.0.0.0" || listen.host === "::") return undefined;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return `${tls ? "https" : "http"}://${host}:${listen.port}`;
}

/** Whether `host` names this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function parseListen(text: string, problems: string[]): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    problems.push(
      `SQLGATE_LISTEN=${JSON.stringify(text)}: expected host:port, e.g. 127.0.0.1:8080`,
    );
    return { host: "127.0.0.1", port: 8080 };
  }
  return { host: match[1] ?? match[2] ?? "127.0.0.1", port };
}

function checkMysqlUrl(name: string, text: string, problems: string[]): void {
  let url: URL;
  try {
    url = new URL(text);
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    // The URL may hold a password: never echo it.
    problems.push(
      `${name}: not a valid URL (expected mysql://user:pass@host:port/db, with % in the password written %25)`,
    );
    return;
  }
  if (url.protocol !== "mysql:" && url.protocol !== "mariadb:") {
    problems.push(`${name}: scheme must be mysql://, not ${url.protocol}//`);
  }
  const sslMode = url.searchParams.get("ssl-mode");
  if (
    sslMode !== null &&
    !["DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"].includes(sslMode.toUpperCase())
  ) {
    problems.push(`${name}: ssl-mode must be DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY`);
  }
  if ((sslMode ?? "").toUpperCase().startsWith("VERIFY") && !url.searchParams.has("ssl-ca")) {
    problems.push(`${name}: ssl-mode=${sslMode} needs ssl-ca=/path/to/ca.pem`);
  }
  if (url.hostname === "" && !url.searchParams.has("socket")) {
    problems.push(`${name}: no host (or ?socket=/path) given`);
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** SQLGATE_INGEST_LOG and the SQLGATE_NATS_* settings. */
function ingestLogOf(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  int: (name: string, min: number, max?: number) => number,
  read: (name: string) => string,
  problems: string[],
): IngestConfig["log"] {
  if (text === "local") return { kind: "local" };
  const servers = natsServersOf(text, "SQLGATE_INGEST_LOG", "local or ", problems);
  const name = (setting: string, pattern: RegExp) => {
    const value = read(setting);
    if (!pattern.test(value))
      problems.push(`${setting}=${JSON.stringify(value)}: not a valid name`);
    return value;
  };
  return {
    kind: "jetstream",
    ...natsConnectionOf(servers, env),
    stream: name("SQLGATE_NATS_STREAM", /^[A-Za-z0-9_-]+$/),
    subject: name("SQLGATE_NATS_SUBJECT", /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/),
    consumer: name("SQLGATE_NATS_CONSUMER", /^[A-Za-z0-9_-]+$/),
    replicas: int("SQLGATE_NATS_REPLICAS", 1, 5),
    maxBytes: int("SQLGATE_NATS_MAX_BYTES", 1024 * 1024),
    duplicateWindowMs: int("SQLGATE_NATS_DUPLICATE_WINDOW_MS", 1000),
    ackWaitMs: int("SQLGATE_NATS_ACK_WAIT_MS", 1000),
    maxDeliver: int("SQLGATE_NATS_MAX_DELIVER", 1, 1000),
  };
}

/** The servers of a `nats://host:port[,...]` setting. */
function natsServersOf(
  text: string,
  setting: string,
  alternatives: string,
  problems: string[],
): string[] {
  const servers = text
    .split(",")
    .map((server) => server.trim())
    .filter((server) => server !== "");
  const bad = servers.filter((server) => !/^(nats|tls):\/\/[^/\s]+:\d+$/.test(server));
  if (servers.length === 0 || bad.length > 0) {
    problems.push(
      `${setting}=${JSON.stringify(text)}: expected ${alternatives}nats://host:port[,nats://host:port...]`,
    );
  }
  return servers;
}

function natsConnectionOf(
  servers: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): NatsConnectionConfig {
  return {
    servers,
    user: env.SQLGATE_NATS_USER || undefined,
    password: env.SQLGATE_NATS_PASSWORD || undefined,
    token: env.SQLGATE_NATS_TOKEN || undefined,
    caFile: env.SQLGATE_NATS_CA || undefined,
  };
}

/** SQLGATE_CHANGES_SINK and its stream. */
function changeSinkOf(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  int: (name: string, min: number, max?: number) => number,
  read: (name: string) => string,
  problems: string[],
): ChangeSinkConfig | undefined {
  if (text === "") return undefined;
  const stream = read("SQLGATE_CHANGES_SINK_STREAM");
  if (!/^[A-Za-z0-9_-]+$/.test(stream)) {
    problems.push(`SQLGATE_CHANGES_SINK_STREAM=${JSON.stringify(stream)}: not a valid name`);
  }
  return {
    ...natsConnectionOf(natsServersOf(text, "SQLGATE_CHANGES_SINK", "", problems), env),
    stream,
    tables: read("SQLGATE_CHANGES_SINK_TABLES")
      .split(",")
      .map((table) => table.trim())
      .filter((table) => table !== ""),
    replicas: int("SQLGATE_NATS_REPLICAS", 1, 5),
    duplicateWindowMs: int("SQLGATE_NATS_DUPLICATE_WINDOW_MS", 1000),
  };
}
