/**
 * The binlog reader: one per gateway, it follows a MariaDB server's binlog
 * like a replica and hands over every committed transaction's row changes,
 * in commit order, each with the GTID position after it, so a change stream
 * can be resumed exactly where a consumer left off.
 *
 * Built on `@vlasky/zongji` (the one npm binlog reader that understands
 * MariaDB GTIDs), which decodes events but leaves the rest to its user;
 * measured facts behind each choice are in shared/scale-notes.md:
 * - Events come per transaction as `MariadbGtid` -> `TableMap` -> rows ->
 *   `Xid` (or a `COMMIT` query for non-transactional tables); DDL and other
 *   statements come as a standalone `MariadbGtid` group with one `Query`.
 *   The reader assembles them and keeps its own position: zongji's
 *   `gtidSet` lags one transaction behind after a DDL.
 * - Zongji does not reconnect. The reader restarts it after any error that
 *   is not fatal (see BinlogReaderError), or after silence, from the position after the last transaction it queued,
 *   with a backoff (200 ms doubling to 5 s). MariaDB resumes from a GTID
 *   strictly after it (`@slave_connect_state`), and a transaction already
 *   covered by the reader's position is dropped, so none arrives twice and
 *   none is skipped; a transaction cut off by the disconnect is sent again
 *   whole.
 * - Zongji does not ask for server heartbeats, so a connection that drops
 *   silently (a NAT, a frozen server) would go unnoticed. The reader sets
 *   `@master_heartbeat_period` (nanoseconds, read by the server's dump
 *   thread) on the binlog connection before the dump starts, and restarts
 *   when neither an event nor a heartbeat came for three periods.
 * - Values are exact: the binlog connection uses `dateStrings` (without it
 *   microseconds are cut to milliseconds), `jsonStrings` and `timezone: 'Z'`
 *   (a TIMESTAMP is seconds since the epoch in the binlog; it is spelled in
 *   UTC). See BinlogChange for each type.
 * - Column names and types come from the binlog's own row metadata
 *   (`binlog_row_metadata=FULL`, see binlog-settings.ts), so a row written
 *   before a column was renamed keeps the old name. Exception, from zongji:
 *   a table with pre-MariaDB-10.1 TIME/DATETIME/TIMESTAMP columns
 *   (`mysql56_temporal_format=OFF`) is described from INFORMATION_SCHEMA,
 *   that is today's table.
 * - A slow consumer does not make the reader buffer without bound: when the
 *   queued changes pass `maxQueuedChanges`, reading from the binlog
 *   connection pauses (TCP holds the server back) until half are delivered.
 *   Zongji pauses the same connection while it reads a table's metadata from
 *   INFORMATION_SCHEMA (tables with pre-10.1 temporal columns only), so
 *   pauses are counted: the connection reads again only when neither holds
 *   it, and no row event is read before its table's metadata. A server that
 *   drops a connection held past its `net_write_timeout` is reconnected to,
 *   like any other drop.
 * - Two readers with the same `serverId` on one server knock each other off
 *   (the server keeps one dump per server id): give each reader its own,
 *   different from every server's `server_id` too.
 * - A transaction is held whole in memory until its commit event.
 * - Two-phase XA transactions are not delivered: MariaDB logs their rows at
 *   `XA PREPARE` and their commit later as a separate statement; the reader
 *   reports each prepared one through `onError` (not fatal) and moves on.
 *   `XA COMMIT ... ONE PHASE` is logged, and delivered, as any transaction.
 */
import ZongJi, {
  type AnyBinlogEvent,
  type BinlogEventByTypeName,
  type BinlogEventTypeName,
  type MariadbGtidEvent,
  MariadbGtidPosition,
  type RowData,
  type TableMapEntry,
} from "@vlasky/zongji";
import type { Connection, ConnectionOptions } from "mysql2";
import mysql from "mysql2/promise";

/**
 * Where the binlog is read from. The user needs `REPLICATION SLAVE`,
 * `BINLOG MONITOR`, `REPLICATION SLAVE ADMIN` (MariaDB 10.11 names) and
 * `SELECT`; zongji connects through mysql2, which speaks
 * `mysql_native_password` but not MariaDB's `ed25519`.
 */
export type BinlogConnectionOptions = Pick<
  ConnectionOptions,
  "host" | "port" | "user" | "password" | "socketPath" | "ssl" | "connectTimeout"
>;

/** One column's type as the binlog describes it, enough to encode its values losslessly. */
export interface BinlogColumnType {
  /**
   * The binlog type code (`enum_field_types`): 1 TINY, 2 SHORT, 3 LONG,
   * 4 FLOAT, 5 DOUBLE, 8 LONGLONG, 9 INT24, 10 DATE, 13 YEAR, 15 VARCHAR,
   * 16 BIT, 17 TIMESTAMP2, 18 DATETIME2, 19 TIME2, 246 NEWDECIMAL,
   * 247 ENUM, 248 SET, 252 BLOB (also TEXT and MariaDB's JSON), 254 STRING
   * (CHAR/BINARY), 255 GEOMETRY.
   */
  readonly code: number;
  /**
   * The SQL type rebuilt from the metadata: `bigint unsigned`,
   * `decimal(65,30)`, `time(6)`, `varbinary(300)`, `enum('a','b')`, `longtext`
   * (MariaDB's JSON). Character widths are approximate (the binlog has bytes).
   */
  readonly sqlType: string;
  /** For numeric columns: whether UNSIGNED. */
  readonly unsigned?: boolean;
  /** The character set of a text column; null for binary and non-text columns. */
  readonly charset: string | null;
  /**
   * The binlog's per-type metadata: `precision`/`decimals` (DECIMAL),
   * `decimals` (temporal fractions), `bits` (BIT), `max_length` (CHAR and
   * VARCHAR, in bytes), `length_size` (BLOB/TEXT: 1 tiny ... 4 long), `size`.
   */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** ENUM members, in order. */
  readonly enumValues?: readonly string[];
  /** SET members, in order. */
  readonly setValues?: readonly string[];
}

/**
 * One row changed by a transaction. Values are in column order, null for
 * NULL, and exact:
 * - integers as numbers, except BIGINT (signed or not) as a decimal string;
 * - DECIMAL as its decimal string; FLOAT as the stored single-precision
 *   value widened to a double (`Math.fround` of the text a query gives);
 *   DOUBLE as a number;
 * - DATE, DATETIME, TIMESTAMP (in UTC) and TIME as strings with every stored
 *   fractional digit (`'-838:59:59.000000'`), YEAR as a number (0 for 0000);
 * - CHAR/VARCHAR/TEXT, ENUM and SET (`'x,z'`) as strings; BINARY, VARBINARY,
 *   BLOB and BIT as Buffers (BINARY padded to its width);
 * - JSON as the stored text (MariaDB's JSON is LONGTEXT), never parsed, so
 *   big numbers stay exact.
 */
export interface BinlogChange {
  readonly database: string;
  readonly table: string;
  readonly op: "insert" | "update" | "delete";
  /** Column names as the binlog recorded them when the row was written. */
  readonly columns: readonly string[];
  readonly columnTypes: readonly BinlogColumnType[];
  /** The row before an update or delete. */
  readonly before?: readonly unknown[] | undefined;
  /** The row after an insert or update. */
  readonly after?: readonly unknown[] | undefined;
}

/** A committed transaction's row changes. */
export interface BinlogTransaction {
  /**
   * The server's GTID position after this transaction, spelled as MariaDB's
   * `@@gtid_binlog_pos` (`0-1-43`, one entry per replication domain): start
   * a reader `from` it to get exactly the transactions after this one.
   */
  readonly position: string;
  /** This transaction's own GTID (`0-1-43`). */
  readonly gtid: string;
  /** When the transaction committed, to the second (the binlog's resolution). */
  readonly commitTime: Date;
  readonly changes: readonly BinlogChange[];
}

/**
 * A statement the binlog carries as SQL: DDL (`ALTER TABLE ...`), account
 * statements, and statements inside a transaction that are not row events
 * (`CREATE TABLE ... SELECT` logs its CREATE so).
 */
export interface BinlogDdl {
  /**
   * The position after the statement's group (see BinlogTransaction); for a
   * statement in a group that also changed rows, the position before it.
   */
  readonly position: string;
  readonly gtid: string;
  readonly commitTime: Date;
  /** The default database the statement ran in ('' when none). */
  readonly database: string;
  readonly sql: string;
}

/**
 * Something went wrong while reading. Not fatal: the reader reconnects by
 * itself and reports each attempt's failure. Fatal: the reader stopped
 * reading, because its position is no longer in the binlog (purged, or from
 * another server: take a new snapshot), the server is not MariaDB or has no
 * binlog, or a handler threw; `position()` still tells how far it got.
 */
export class BinlogReaderError extends Error {
  readonly fatal: boolean;
  constructor(message: string, options: { readonly fatal: boolean; readonly cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BinlogReaderError";
    this.fatal = options.fatal;
  }
}

export interface BinlogReaderOptions {
  readonly connection: BinlogConnectionOptions;
  /** This reader's replica id on the server: unique per reader and server. */
  readonly serverId: number;
  /**
   * Where to start: a GTID position (`0-1-42`, as `position()` and
   * BinlogTransaction give), delivering the transactions after it; or `''`
   * for the transactions committed from now on.
   */
  readonly from: string;
  /**
   * Only these tables' row changes (database -> table names, or true for
   * all its tables); zongji skips the others' rows undecoded. Statements
   * (DDL) arrive whatever their table.
   */
  readonly tables?: Readonly<Record<string, readonly string[] | true>>;
  /**
   * Receives each committed transaction that changed rows, once, in commit
   * order. A returned promise holds the next delivery until it settles; a
   * throw or rejection stops the reader (fatal error).
   */
  readonly onTransaction: (transaction: BinlogTransaction) => void | Promise<void>;
  /** Receives statements (DDL), in order with the transactions. */
  readonly onDdl?: (ddl: BinlogDdl) => void | Promise<void>;
  /** Every failure, fatal or not (the reader retries the others itself). */
  readonly onError: (error: BinlogReaderError) => void;
  /** How often an idle server sends a heartbeat (default 5 s); silence for three periods reconnects. */
  readonly heartbeatMs?: number;
  /** Row changes queued for the handlers before reading pauses (default 10 000). */
  readonly maxQueuedChanges?: number;
}

export interface BinlogReader {
  /**
   * The position after the last transaction or statement fully delivered
   * (its handler returned or its promise resolved): what to persist and
   * resume `from`. Starting from `''`, it is `''` until ready() resolves.
   */
  position(): string;
  /**
   * Resolves once the server accepted the start position and streams;
   * rejects when the reader stopped first (a fatal error, or close()).
   */
  ready(): Promise<void>;
  /** Stops reading; resolves after the delivery in progress settled. */
  close(): Promise<void>;
}

const reconnectMinMs = 200;
const reconnectMaxMs = 5000;
const defaultHeartbeatMs = 5000;
const defaultMaxQueuedChanges = 10_000;
/** MYSQL_TYPE_LONGLONG (BIGINT) and MYSQL_TYPE_YEAR. */
const longlong = 8;
const year = 13;

/** A decoded value made exact and of one JS type per column. */
function exact(code: number | undefined, value: unknown): unknown {
  // Zongji gives BIGINT as a number when it is safe and a string when not;
  // always a string, as mysql2's bigNumberStrings gives it.
  if (code === longlong && (typeof value === "number" || typeof value === "bigint")) {
    return String(value);
  }
  // Zongji adds 1900 to YEAR's stored byte, so YEAR 0000 (stored as 0)
  // comes as 1900, a year no YEAR column can hold (1901-2155 and 0).
  if (code === year && value === 1900) return 0;
  return value;
}

/** A delivery that only moves the position (its transaction was filtered out). */
const emptyDelivery = { commitTime: new Date(0), changes: [], statements: [] } as const;

/** A transaction (or statement group) being read. */
interface Group {
  readonly gtid: MariadbGtidEvent;
  /** A group without commit event: DDL and other statements, ended by their query. */
  readonly standalone: boolean;
  /** Already delivered before a reconnect: read to its end, deliver nothing. */
  readonly seen: boolean;
  readonly changes: BinlogChange[];
  readonly statements: { readonly database: string; readonly sql: string }[];
}

/** A committed group waiting for the handlers. */
interface Delivery {
  readonly position: string;
  readonly gtid: string;
  readonly commitTime: Date;
  readonly changes: readonly BinlogChange[];
  readonly statements: readonly { readonly database: string; readonly sql: string }[];
}

/** A table as one TableMap event describes it. */
interface TableShape {
  readonly columns: readonly string[];
  readonly types: readonly BinlogColumnType[];
  /** Each column's type code, for exact() per value. */
  readonly codes: readonly number[];
}

const geometry = 255;
const blob = 252;
/** Columns that were GEOMETRY before keepGeometryRaw made them BLOB. */
const geometryColumns = new WeakSet<object>();

/**
 * Zongji decodes GEOMETRY values into points and arrays, dropping the SRID
 * and which kind of shape it was; read as BLOB they stay the bytes MySQL
 * stores (SRID and WKB), as a query gives them. Runs on each TableMap event,
 * before the rows that use it are read.
 */
function keepGeometryRaw(entry: TableMapEntry | undefined): void {
  for (const column of entry?.columns ?? []) {
    if (column.type !== geometry) continue;
    column.type = blob;
    column.charset = null;
    geometryColumns.add(column);
  }
}

/**
 * Makes `conn`'s pause() and resume() count: it reads again only after as
 * many resumes as pauses, so the reader's pause and zongji's own (while it
 * reads table metadata) never undo each other.
 */
function countPauses(conn: Pick<Connection, "pause" | "resume">): void {
  const pause = conn.pause.bind(conn);
  const resume = conn.resume.bind(conn);
  let holds = 0;
  conn.pause = () => {
    holds += 1;
    if (holds === 1) pause();
  };
  conn.resume = () => {
    if (holds === 0) return;
    holds -= 1;
    if (holds === 0) resume();
  };
}

function isEvent<N extends BinlogEventTypeName>(
  event: AnyBinlogEvent,
  name: N,
): event is BinlogEventByTypeName<N> {
  return event.getTypeName() === name;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The server's binlog position now: where a reader started `from: ''` begins. */
async function binlogPositionNow(connection: BinlogConnectionOptions): Promise<string> {
  const conn = await mysql.createConnection({ ...connection });
  try {
    const [rows] = await conn.query({
      sql: "SELECT @@GLOBAL.gtid_binlog_pos",
      rowsAsArray: true,
    });
    return String((rows as unknown[][])[0]?.[0] ?? "");
  } finally {
    conn.destroy();
  }
}

/**
 * Errors after which reading again from the same position cannot succeed:
 * MariaDB's dump thread refuses the start GTID (ER_MASTER_FATAL_ERROR_READING_BINLOG
 * 1236, "Could not find GTID state ...", "... which is not in the master's
 * binlog"), or has no binlog at all; zongji refuses a MariaDB position for a
 * MySQL server; a MySQL server has no `gtid_binlog_pos` (1193). Other 1236
 * errors (a binlog read cut short by a crash) may pass after a restart.
 */
function isFatal(err: unknown): boolean {
  const { errno } = err as { errno?: unknown };
  const message = messageOf(err);
  if (errno === 1236) return /GTID|binary log is not open/i.test(message);
  if (errno === 1193) return true;
  return /^gtidSet is a /.test(message);
}

/**
 * Starts a binlog reader at `options.from`; it connects (and reconnects) by
 * itself until closed. Throws at once if `from` is not a MariaDB GTID position.
 */
export function createBinlogReader(options: BinlogReaderOptions): BinlogReader {
  const heartbeatMs = options.heartbeatMs ?? defaultHeartbeatMs;
  const silenceMs = heartbeatMs * 3;
  const maxQueuedChanges = options.maxQueuedChanges ?? defaultMaxQueuedChanges;
  const includeSchema =
    options.tables === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(options.tables).map(([db, tables]) => [
            db,
            tables === true ? (true as const) : [...tables],
          ]),
        );

  /** After the last transaction queued for delivery; where a new stream starts. */
  let streamed = options.from === "" ? undefined : MariadbGtidPosition.parse(options.from);
  /** After the last transaction delivered. */
  let delivered = streamed?.toString() ?? "";
  let stream: ZongJi | undefined;
  /** Incremented whenever a stream ends: events and errors of older streams are ignored. */
  let generation = 0;
  let group: Group | undefined;
  let backoffMs = reconnectMinMs;
  let restartTimer: NodeJS.Timeout | undefined;
  let lastEventAt = 0;
  let started = false;
  /** No more reading (closed, or a fatal error); queued deliveries still go out unless closed. */
  let stopped = false;
  let closed = false;
  let failure: BinlogReaderError | undefined;
  let waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  const queue: Delivery[] = [];
  let queuedChanges = 0;
  /** Reading paused because the handlers are behind. */
  let held = false;
  let draining = false;
  let drained: Promise<void> = Promise.resolve();
  /** The last stream's shutdown. */
  let ended: Promise<void> = Promise.resolve();
  const shapes = new WeakMap<TableMapEntry, TableShape>();

  const report = (error: BinlogReaderError) => {
    try {
      options.onError(error);
    } catch {
      // A failing error handler must not break the stream; there is nobody left to tell.
    }
  };

  const settle = (error?: BinlogReaderError) => {
    const pending = waiters;
    waiters = [];
    for (const waiter of pending) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
  };

  const endStream = (): Promise<void> => {
    generation += 1;
    group = undefined;
    const current = stream;
    stream = undefined;
    if (current === undefined) return ended;
    ended = new Promise((resolve) => {
      // zongji emits `stopped` after killing its dump thread (at most ~1 s);
      // the timer only guards against it never coming.
      const timer = setTimeout(resolve, 3000);
      timer.unref();
      current.once("stopped", () => {
        clearTimeout(timer);
        resolve();
      });
      current.stop();
    });
    return ended;
  };

  const halt = (error: BinlogReaderError) => {
    stopped = true;
    if (failure === undefined && !started) failure = error;
    clearTimeout(restartTimer);
    clearInterval(silenceTimer);
    void endStream();
    if (!started) settle(error);
  };

  /** Ends the current stream after `error`; reads again after a backoff unless it is fatal. */
  const interrupt = (error: BinlogReaderError) => {
    if (stopped) return;
    void endStream();
    report(error);
    if (error.fatal) {
      halt(error);
      return;
    }
    clearTimeout(restartTimer);
    restartTimer = setTimeout(connect, backoffMs);
    backoffMs = Math.min(backoffMs * 2, reconnectMaxMs);
  };

  const streamError = (err: unknown) =>
    new BinlogReaderError(
      `reading the binlog after '${streamed?.toString() ?? ""}': ${messageOf(err)}`,
      { fatal: isFatal(err), cause: err },
    );

  const silenceTimer = setInterval(() => {
    if (stream !== undefined && !held && performance.now() - lastEventAt > silenceMs) {
      interrupt(
        new BinlogReaderError(`no binlog event nor heartbeat for ${silenceMs} ms`, {
          fatal: false,
        }),
      );
    }
  }, heartbeatMs);
  silenceTimer.unref();

  /** Starts a stream from `streamed` (finding it first when reading from now). */
  function connect(): void {
    clearTimeout(restartTimer);
    restartTimer = undefined;
    // While held, reading waits; the handlers' catching up connects again.
    if (stopped || held || stream !== undefined) return;
    const mine = ++generation;
    open(mine).catch((err: unknown) => {
      if (mine === generation) interrupt(streamError(err));
    });
  }

  async function open(mine: number): Promise<void> {
    if (streamed === undefined) {
      const now = await binlogPositionNow(options.connection);
      if (mine !== generation || stopped) return;
      streamed = MariadbGtidPosition.parse(now);
      delivered = streamed.toString();
    }
    const current = new ZongJi({
      ...options.connection,
      dateStrings: true,
      jsonStrings: true,
      timezone: "Z",
      supportBigNumbers: true,
      bigNumberStrings: true,
    });
    stream = current;
    lastEventAt = performance.now();
    current.on("binlog", (event) => {
      if (mine === generation) onEvent(event);
    });
    current.on("error", (err) => {
      if (mine === generation) interrupt(streamError(err));
    });
    current.start({
      serverId: options.serverId,
      gtidSet: streamed.toString(),
      ...(includeSchema === undefined ? {} : { includeSchema }),
    });
    if (current.connection !== null) {
      countPauses(current.connection);
    }
    // start() has just created the binlog connection and queues its own
    // queries on it after a round trip on the control connection, so this
    // runs before the dump command: the server reads the period then.
    current.connection?.query(
      `SET @master_heartbeat_period = ${heartbeatMs * 1_000_000}`,
      (err) => {
        if (err !== null && mine === generation) interrupt(streamError(err));
      },
    );
  }

  function onEvent(event: AnyBinlogEvent): void {
    lastEventAt = performance.now();
    if (!started) {
      // The first event (a Rotate naming the file) comes only once the server accepted the position.
      started = true;
      settle();
    }
    if (isEvent(event, "MariadbGtid")) {
      if (group !== undefined) {
        interrupt(
          streamError(new Error(`group ${group.gtid.gtid} has no commit before ${event.gtid}`)),
        );
        return;
      }
      group = {
        gtid: event,
        standalone: event.standalone,
        seen: streamed?.covers(event.gtid) ?? false,
        changes: [],
        statements: [],
      };
    } else if (isEvent(event, "TableMap")) {
      keepGeometryRaw(event.tableMap[event.tableId]);
    } else if (isEvent(event, "WriteRows")) {
      addRows(event, "insert", event.rows);
    } else if (isEvent(event, "DeleteRows")) {
      addRows(event, "delete", event.rows);
    } else if (isEvent(event, "UpdateRows")) {
      addRows(event, "update", event.rows);
    } else if (isEvent(event, "Xid")) {
      commit(event.timestamp);
    } else if (isEvent(event, "Query")) {
      onQuery(event);
    } else if (isEvent(event, "XaPrepare")) {
      if (group === undefined) return;
      if (!group.seen) {
        report(
          new BinlogReaderError(
            `XA transaction ${group.gtid.gtid} is not delivered: XA transactions are not supported`,
            { fatal: false },
          ),
        );
      }
      group.changes.length = 0;
      commit(event.timestamp);
    } else if (isEvent(event, "Heartbeat")) {
      backoffMs = reconnectMinMs;
    }
  }

  function onQuery(event: BinlogEventByTypeName<"Query">): void {
    if (group === undefined) return;
    const keyword = /^\s*(\w+)(?:\s+(\w+))?/.exec(event.query);
    const first = keyword?.[1]?.toUpperCase();
    const second = keyword?.[2]?.toUpperCase();
    const ends =
      first === "COMMIT" ||
      (first === "ROLLBACK" && second !== "TO") ||
      (first === "XA" && (second === "COMMIT" || second === "ROLLBACK"));
    if (ends) {
      // A ROLLBACK ends a group only when it touched non-transactional
      // tables, whose rows stay changed: they are delivered.
      commit(event.timestamp);
      return;
    }
    const control =
      first === "BEGIN" ||
      first === "SAVEPOINT" ||
      first === "XA" ||
      (first === "ROLLBACK" && second === "TO") ||
      (first === "RELEASE" && second === "SAVEPOINT");
    if (!control && !group.seen) {
      group.statements.push({ database: event.schema, sql: event.query });
    }
    if (group.standalone) commit(event.timestamp);
  }

  function shapeOf(entry: TableMapEntry): TableShape | undefined {
    const known = shapes.get(entry);
    if (known !== undefined) return known;
    const columns = entry.columns;
    if (columns === undefined) return undefined;
    const types = columns.map((column, i): BinlogColumnType => {
      const schema = entry.columnSchemas[i];
      return {
        code: geometryColumns.has(column) ? geometry : column.type,
        sqlType: schema?.COLUMN_TYPE ?? "",
        ...(schema?.UNSIGNED === undefined ? {} : { unsigned: schema.UNSIGNED }),
        charset: column.charset,
        metadata: column.metadata ?? {},
        ...(schema?.ENUM_VALUES === undefined ? {} : { enumValues: schema.ENUM_VALUES }),
        ...(schema?.SET_VALUES === undefined ? {} : { setValues: schema.SET_VALUES }),
      };
    });
    const shape = {
      columns: columns.map((column) => column.name),
      types,
      codes: types.map((type) => type.code),
    };
    shapes.set(entry, shape);
    return shape;
  }

  function valuesOf(shape: TableShape, row: RowData): unknown[] {
    const { columns, codes } = shape;
    const values = new Array<unknown>(columns.length);
    for (let i = 0; i < columns.length; i++) {
      values[i] = exact(codes[i], row[columns[i] as string]);
    }
    return values;
  }

  function addRows(
    event: BinlogEventByTypeName<"WriteRows" | "DeleteRows" | "UpdateRows">,
    op: BinlogChange["op"],
    rows: readonly (RowData | { before: RowData; after: RowData })[],
  ): void {
    if (group === undefined) {
      // MariaDB 10+ puts every row event in a GTID group; reading again would not help.
      report(
        new BinlogReaderError(`${op} rows outside a transaction at ${event.nextPosition}`, {
          fatal: false,
        }),
      );
      return;
    }
    if (group.seen) return;
    const entry = event.tableMap[event.tableId];
    const shape = entry === undefined ? undefined : shapeOf(entry);
    if (entry === undefined || shape === undefined) {
      interrupt(streamError(new Error(`rows for table id ${event.tableId} without its table map`)));
      return;
    }
    const database = entry.parentSchema;
    const table = entry.tableName;
    // Every change has the same fields (before or after undefined): one object shape.
    for (const row of rows) {
      let before: unknown[] | undefined;
      let after: unknown[] | undefined;
      if (op === "update") {
        const both = row as { before: RowData; after: RowData };
        before = valuesOf(shape, both.before);
        after = valuesOf(shape, both.after);
      } else if (op === "delete") {
        before = valuesOf(shape, row as RowData);
      } else {
        after = valuesOf(shape, row as RowData);
      }
      group.changes.push({
        database,
        table,
        op,
        columns: shape.columns,
        columnTypes: shape.types,
        before,
        after,
      });
    }
  }

  function commit(timestampMs: number): void {
    const done = group;
    group = undefined;
    if (done === undefined || done.seen || streamed === undefined) return;
    streamed.add(done.gtid);
    backoffMs = reconnectMinMs;
    if (done.changes.length === 0 && done.statements.length === 0) {
      // Nothing for the handlers (all filtered out); the position still moves on.
      if (queue.length === 0 && !draining) delivered = streamed.toString();
      else enqueue({ ...emptyDelivery, position: streamed.toString(), gtid: done.gtid.gtid });
      return;
    }
    enqueue({
      position: streamed.toString(),
      gtid: done.gtid.gtid,
      commitTime: new Date(timestampMs),
      changes: done.changes,
      statements: done.statements,
    });
  }

  function enqueue(delivery: Delivery): void {
    queue.push(delivery);
    queuedChanges += delivery.changes.length;
    if (queuedChanges >= maxQueuedChanges && !held) {
      held = true;
      stream?.connection?.pause();
    }
    drain();
  }

  function drain(): void {
    if (draining || closed) return;
    draining = true;
    drained = deliverQueued();
  }

  async function deliverQueued(): Promise<void> {
    try {
      while (!closed && queue.length > 0) {
        const item = queue[0] as Delivery;
        // Statements of a group that also changed rows (CREATE ... SELECT)
        // carry the position before the group: resuming from it must not
        // skip the group's rows, delivered after them.
        const ddlPosition = item.changes.length > 0 ? delivered : item.position;
        for (const { database, sql } of item.statements) {
          const { gtid, commitTime } = item;
          const ddl = { position: ddlPosition, gtid, commitTime, database, sql };
          const pending = options.onDdl?.(ddl);
          if (pending !== undefined) await pending;
        }
        if (item.changes.length > 0) {
          const { position, gtid, commitTime, changes } = item;
          const pending = options.onTransaction({ position, gtid, commitTime, changes });
          if (pending !== undefined) await pending;
        }
        queue.shift();
        queuedChanges -= item.changes.length;
        delivered = item.position;
        if (held && queuedChanges <= maxQueuedChanges / 2) {
          held = false;
          // Silence while held was ours, not the server's.
          lastEventAt = performance.now();
          if (stream === undefined) connect();
          else stream.connection?.resume();
        }
      }
    } catch (err) {
      const error = new BinlogReaderError(`a change handler failed: ${messageOf(err)}`, {
        fatal: true,
        cause: err,
      });
      closed = true;
      report(error);
      halt(error);
    } finally {
      draining = false;
    }
  }

  connect();

  return {
    position: () => delivered,
    ready() {
      if (started) return Promise.resolve();
      if (failure !== undefined) return Promise.reject(failure);
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async close() {
      if (!closed) {
        closed = true;
        halt(new BinlogReaderError("the binlog reader was closed", { fatal: true }));
      }
      await Promise.all([endStream(), drained]);
    },
  };
}
