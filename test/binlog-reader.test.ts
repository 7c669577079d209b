/**
 * The binlog reader against a private MariaDB with the binlog settings
 * change streams need: every golden type arrives exactly as a direct mysql2
 * read gives it, grouped per transaction with its GTID position; a saved
 * position resumes exactly after it; names come from the binlog, not today's
 * table; a frozen server and a restarted one lose and duplicate nothing; and
 * the settings and position checks say what is wrong.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import mysql from "mysql2/promise";
import {
  type BinlogDdl,
  type BinlogReaderError,
  type BinlogReaderOptions,
  type BinlogTransaction,
  createBinlogReader,
} from "../server/changes/binlog-reader.js";
import {
  type BinlogQuery,
  binlogServerArgs,
  checkBinlogPosition,
  checkBinlogSettings,
} from "../server/changes/binlog-settings.js";
import { type EmbeddedMysql, startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { allBytes } from "./support/golden.js";
import { restartEmbedded } from "./support/mysql.js";

const database = "cdc";
const replicationUser = { user: "cdc_reader", password: "cdc-reader-secret" };
let dataDir: string;
let server: EmbeddedMysql;
let root: mysql.Connection;
let nextServerId = 1001;
/** The position before this file wrote anything. */
let firstPosition: string;

/** Root over the socket, reading values exactly as the reader should give them. */
async function connectRoot(): Promise<mysql.Connection> {
  const conn = await mysql.createConnection({
    socketPath: server.socketPath,
    user: "root",
    database,
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // MariaDB's JSON is text; mysql2 would parse it (rounding big numbers).
    jsonStrings: true,
    multipleStatements: true,
  });
  await conn.query("SET time_zone = '+00:00'");
  return conn;
}

function replication() {
  return { host: "127.0.0.1", port: server.port, ...replicationUser };
}

function queryOf(conn: mysql.Connection): BinlogQuery {
  return async (sql) => (await conn.query({ sql, rowsAsArray: true }))[0] as unknown[][];
}

async function binlogPosition(conn = root): Promise<string> {
  const [[row]] = (await conn.query({
    sql: "SELECT @@GLOBAL.gtid_binlog_pos",
    rowsAsArray: true,
  })) as unknown as [[[string]]];
  return row[0];
}

/** The GTID of the session's last transaction. */
async function lastGtid(conn = root): Promise<string> {
  const [[row]] = (await conn.query({
    sql: "SELECT @@last_gtid",
    rowsAsArray: true,
  })) as unknown as [[[string]]];
  return row[0];
}

async function rowsOf(sql: string, conn = root): Promise<unknown[][]> {
  return (await conn.query({ sql, rowsAsArray: true }))[0] as unknown[][];
}

async function until(what: string, done: () => boolean, withinMs = 10_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

type Delivered = { kind: "tx"; tx: BinlogTransaction } | { kind: "ddl"; ddl: BinlogDdl };

/** A reader that records what it delivers, closed when the test ends. */
function read(
  t: { after(fn: () => unknown): void },
  from: string,
  more: Partial<BinlogReaderOptions> = {},
) {
  const delivered: Delivered[] = [];
  const errors: BinlogReaderError[] = [];
  const reader = createBinlogReader({
    connection: replication(),
    serverId: nextServerId++,
    from,
    onTransaction: (tx) => {
      delivered.push({ kind: "tx", tx });
    },
    onDdl: (ddl) => {
      delivered.push({ kind: "ddl", ddl });
    },
    onError: (err) => {
      errors.push(err);
    },
    ...more,
  });
  t.after(() => reader.close());
  const transactions = () =>
    delivered.flatMap((d) =>
      d.kind === "tx" && d.tx.changes[0]?.database === database ? [d.tx] : [],
    );
  return { reader, delivered, errors, transactions };
}

before(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-binlog-"));
  server = await startEmbeddedMysql({ dataDir, database, serverArgs: binlogServerArgs });
  root = await connectRoot();
  // Not in the binlog: the reader's own account is no change to stream.
  await root.query(
    `SET SESSION sql_log_bin = 0;
     CREATE USER '${replicationUser.user}'@'127.0.0.1'
       IDENTIFIED VIA mysql_native_password USING PASSWORD('${replicationUser.password}');
     GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SELECT
       ON *.* TO '${replicationUser.user}'@'127.0.0.1';
     SET SESSION sql_log_bin = 1`,
  );
  firstPosition = await binlogPosition();
});

after(async () => {
  await root?.end().catch(() => {});
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const goldenTable = `CREATE TABLE golden (
  id INT PRIMARY KEY, ti TINYINT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), f FLOAT, d DOUBLE, b64 BIT(64),
  vc VARCHAR(100), bn BINARY(4), vb VARBINARY(300), bl BLOB,
  dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME(6), y YEAR,
  en ENUM('a','b','c'), st SET('x','y','z'), js JSON
) CHARACTER SET utf8mb4`;

const decMax = `${"9".repeat(35)}.${"9".repeat(30)}`;
const goldenRows = [
  [
    "1",
    "-128",
    "4294967295",
    "-9223372036854775808",
    "18446744073709551615",
    `-${decMax}`,
    "0.1",
    "1.7976931348623157e308",
    `b'${"1".repeat(64)}'`,
    "'👩‍👩‍👧‍👦 héllo 中文 \\' \"'",
    "x'01000000'",
    `x'${allBytes.toString("hex")}'`,
    `x'${allBytes.toString("hex")}'`,
    "'1000-01-01'",
    "'9999-12-31 23:59:59.999999'",
    "'2038-01-19 03:14:07.999999'",
    "'-838:59:59.000000'",
    "2155",
    "'c'",
    "'x,z'",
    `'{"big": 12345678901234567890, "a": [1, 2.5, "😀"]}'`,
  ],
  ["2", ...Array.from({ length: 20 }, () => "NULL")],
  [
    "3",
    "0",
    "0",
    "42",
    "1",
    "0.000000000000000000000000000001",
    "-3.5",
    "0.1",
    "b'1010'",
    "''",
    "x'00000000'",
    "x''",
    "x'00'",
    "'2024-02-29'",
    "'2024-02-29 12:34:56.000001'",
    "'1970-01-01 00:00:01.000000'",
    "'25:00:00.500000'",
    "0",
    "'a'",
    "''",
    "'[]'",
  ],
];

/** Direct reading of golden rows by id, FLOAT as the single-precision value the binlog holds. */
async function goldenById(): Promise<Map<number, unknown[]>> {
  const rows = await rowsOf("SELECT * FROM golden ORDER BY id");
  return new Map(
    rows.map((row) => [
      row[0] as number,
      row.map((value, i) => (i === 6 && typeof value === "number" ? Math.fround(value) : value)),
    ]),
  );
}

let afterInsert: string;
let afterUpdate: string;
let afterDelete: string;

test("golden types arrive per transaction, equal to a direct read, with GTID positions", async (t) => {
  await root.query(goldenTable);
  const { reader, errors, transactions } = read(t, "");
  await reader.ready();

  await root.query(
    `INSERT INTO golden VALUES ${goldenRows.map((r) => `(${r.join(",")})`).join(",")}`,
  );
  afterInsert = await lastGtid();
  const inserted = await goldenById();
  await root.query(
    `BEGIN;
     UPDATE golden SET biu = biu - 1, tm = '-00:00:00.000001', vc = 'naïve 🎉', js = '{"n": 1e400}',
       b64 = b'0', st = 'x,y,z', en = NULL WHERE id = 1;
     UPDATE golden SET vb = x'ff', dtm = '2000-01-01 00:00:00.5' WHERE id = 3;
     COMMIT`,
  );
  afterUpdate = await lastGtid();
  const updated = await goldenById();
  await root.query("DELETE FROM golden WHERE id = 2");
  afterDelete = await lastGtid();
  assert.equal(await binlogPosition(), afterDelete);

  await until("three transactions", () => transactions().length >= 3);
  const [insert, update, remove] = transactions() as [
    BinlogTransaction,
    BinlogTransaction,
    BinlogTransaction,
  ];
  assert.deepEqual(
    transactions().map((tx) => [tx.position, tx.gtid]),
    [
      [afterInsert, afterInsert],
      [afterUpdate, afterUpdate],
      [afterDelete, afterDelete],
    ],
  );
  assert.ok(Math.abs(insert.commitTime.getTime() - Date.now()) < 60_000);

  assert.deepEqual(
    insert.changes.map((c) => [c.database, c.table, c.op, c.before, c.after]),
    [1, 2, 3].map((id) => [database, "golden", "insert", undefined, inserted.get(id)]),
  );
  assert.deepEqual(
    update.changes.map((c) => [c.op, c.before, c.after]),
    [1, 3].map((id) => ["update", inserted.get(id), updated.get(id)]),
  );
  assert.deepEqual(
    remove.changes.map((c) => [c.op, c.before, c.after]),
    [["delete", inserted.get(2), undefined]],
  );

  const change = insert.changes[0];
  assert.deepEqual(change?.columns, [
    ..."id ti iu bi biu dec65 f d b64 vc bn vb bl dt dtm ts tm y en st js".split(" "),
  ]);
  const typeOf = (name: string) => change?.columnTypes[change.columns.indexOf(name)];
  assert.deepEqual(
    [typeOf("biu")?.code, typeOf("biu")?.unsigned, typeOf("bi")?.unsigned],
    [8, true, false],
  );
  assert.deepEqual(typeOf("dec65")?.metadata, { precision: 65, decimals: 30 });
  assert.equal(typeOf("dec65")?.sqlType, "decimal(65,30)");
  assert.deepEqual(typeOf("tm")?.metadata, { decimals: 6 });
  assert.deepEqual(typeOf("en")?.enumValues, ["a", "b", "c"]);
  assert.deepEqual(typeOf("st")?.setValues, ["x", "y", "z"]);
  assert.equal(typeOf("vb")?.charset, null);
  assert.equal(typeOf("js")?.charset, "utf8mb4");

  await until("the position", () => reader.position() === afterDelete);
  assert.deepEqual(errors, []);
});

test("a reader started from a saved position delivers exactly the later transactions", async (t) => {
  const { reader, delivered, errors } = read(t, afterInsert);
  await reader.ready();
  await until("two transactions", () => delivered.length >= 2);
  await delay(300);
  assert.deepEqual(
    delivered.map((d) => (d.kind === "tx" ? d.tx.gtid : d.ddl.sql)),
    [afterUpdate, afterDelete],
  );
  assert.equal(reader.position(), afterDelete);
  assert.deepEqual(errors, []);
});

test("a column renamed after a write keeps its old name for that write", async (t) => {
  await root.query("CREATE TABLE renamed (id INT PRIMARY KEY, old_name VARCHAR(10))");
  const from = await binlogPosition();
  await root.query("INSERT INTO renamed VALUES (1, 'before')");
  await root.query("ALTER TABLE renamed RENAME COLUMN old_name TO new_name");
  const alter = await lastGtid();
  await root.query("INSERT INTO renamed VALUES (2, 'after')");

  const { reader, delivered, errors } = read(t, from);
  await reader.ready();
  await until("two transactions and the DDL", () => delivered.length >= 3);
  const [first, ddl, second] = delivered;
  assert.equal(first?.kind, "tx");
  assert.equal(ddl?.kind, "ddl");
  assert.equal(second?.kind, "tx");
  if (first?.kind !== "tx" || ddl?.kind !== "ddl" || second?.kind !== "tx") return;
  assert.deepEqual(first.tx.changes[0]?.columns, ["id", "old_name"]);
  assert.deepEqual(first.tx.changes[0]?.after, [1, "before"]);
  assert.deepEqual(
    [ddl.ddl.database, ddl.ddl.sql, ddl.ddl.gtid, ddl.ddl.position],
    [database, "ALTER TABLE renamed RENAME COLUMN old_name TO new_name", alter, alter],
  );
  assert.deepEqual(second.tx.changes[0]?.columns, ["id", "new_name"]);
  assert.deepEqual(errors, []);
});

test("a frozen and a restarted server lose and duplicate nothing", async (t) => {
  await root.query("CREATE TABLE ticks (id INT PRIMARY KEY, at DATETIME(6))");
  const { reader, errors, transactions } = read(t, await binlogPosition(), { heartbeatMs: 500 });
  await reader.ready();
  // Idle with heartbeats every 500 ms: the 1.5 s silence detector stays quiet.
  await delay(2000);
  assert.deepEqual(
    errors.map((e) => e.message),
    [],
  );

  // One row per transaction, as fast as the server takes them; failures while it is away are fine.
  let writing = true;
  let attempted = 0;
  const pool = mysql.createPool({ socketPath: server.socketPath, user: "root", database });
  pool.on("connection", (conn) => conn.on("error", () => {}));
  const writer = (async () => {
    while (writing) {
      attempted += 1;
      await pool.query("INSERT INTO ticks VALUES (?, NOW(6))", [attempted]).catch(() => delay(50));
    }
  })();

  const received = () => transactions().filter((tx) => tx.changes[0]?.table === "ticks");
  await until("some writes", () => received().length >= 20);
  // Frozen: no heartbeat comes, so the reader notices and reconnects once it thaws.
  process.kill(server.pid, "SIGSTOP");
  await delay(2500);
  process.kill(server.pid, "SIGCONT");
  await until("writes after the freeze", () => attempted > 60 && received().length >= 40);

  // Restarted on the same port and files while the writer goes on.
  server = await restartEmbedded(server, { dataDir, database, serverArgs: binlogServerArgs });
  const restartedAt = attempted;
  const idOf = (tx: BinlogTransaction) => tx.changes[0]?.after?.[0] as number;
  await until(
    "writes after the restart",
    () => received().some((tx) => idOf(tx) > restartedAt + 20),
    15_000,
  );
  writing = false;
  await writer;
  await pool.end();

  root = await connectRoot();
  const ids = (await rowsOf("SELECT id FROM ticks ORDER BY id")).map((r) => r[0] as number);
  const last = await binlogPosition();
  await until("the last write", () => reader.position() === last);
  const seen = received().map(idOf);
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    ids,
  );
  const sequences = received().map((tx) => BigInt(tx.gtid.split("-")[2] as string));
  assert.ok(
    sequences.every((s, i) => i === 0 || s > (sequences[i - 1] as bigint)),
    "GTIDs grow",
  );
  const messages = errors.map((e) => e.message).join("\n");
  assert.match(messages, /no binlog event nor heartbeat/);
  assert.match(messages, /Connection lost/);
  assert.ok(errors.every((e) => !e.fatal));
});

test("savepoints, CREATE ... SELECT, non-transactional tables and XA", async (t) => {
  await root.query(
    "CREATE TABLE inno (id INT PRIMARY KEY); CREATE TABLE isam (id INT PRIMARY KEY) ENGINE=MyISAM",
  );
  const { reader, delivered, errors } = read(t, await binlogPosition());
  await reader.ready();
  const gtids: string[] = [];
  for (const sql of [
    "BEGIN; INSERT INTO inno VALUES (1); SAVEPOINT s; INSERT INTO inno VALUES (2); ROLLBACK TO SAVEPOINT s; INSERT INTO inno VALUES (3); COMMIT",
    "CREATE TABLE copied AS SELECT id FROM inno",
    // The MyISAM row stays written: the binlog has it, without the InnoDB one.
    "BEGIN; INSERT INTO isam VALUES (1); INSERT INTO inno VALUES (4); ROLLBACK",
    "XA START 'one'; INSERT INTO inno VALUES (5); XA END 'one'; XA COMMIT 'one' ONE PHASE",
    "XA START 'two'; INSERT INTO inno VALUES (6); XA END 'two'; XA PREPARE 'two'",
    "XA COMMIT 'two'",
    "INSERT INTO inno VALUES (7)",
  ]) {
    await root.query(sql);
    gtids.push(await lastGtid());
  }
  await until("the last write", () => reader.position() === gtids.at(-1));
  const summary = delivered.map((d) =>
    d.kind === "ddl"
      ? [d.ddl.gtid, d.ddl.sql.split("(")[0]?.trim()]
      : [d.tx.gtid, ...d.tx.changes.map((c) => `${c.table} ${c.op} ${c.after?.[0]}`)],
  );
  assert.deepEqual(summary, [
    [gtids[0], "inno insert 1", "inno insert 3"],
    [gtids[1], "CREATE TABLE `copied`"],
    [gtids[1], "copied insert 1", "copied insert 3"],
    [gtids[2], "isam insert 1"],
    [gtids[3], "inno insert 5"],
    [gtids[6], "inno insert 7"],
  ]);
  // A prepared XA transaction's rows are logged at PREPARE, its commit apart: not delivered, said so.
  assert.deepEqual(
    errors.map((e) => [e.fatal, e.message]),
    [[false, `XA transaction ${gtids[4]} is not delivered: XA transactions are not supported`]],
  );
});

test("a slow consumer holds the reader back and misses nothing", async (t) => {
  await root.query("CREATE TABLE slow (id INT PRIMARY KEY)");
  const ids: number[] = [];
  const { reader, delivered, errors } = read(t, await binlogPosition(), {
    tables: { [database]: ["slow"] },
    // Reading stops at 10 queued rows and starts again from the queued position at 5.
    maxQueuedChanges: 10,
    onTransaction: async (tx) => {
      await delay(2);
      for (const change of tx.changes) ids.push(change.after?.[0] as number);
    },
  });
  await reader.ready();
  await root.query("CREATE TABLE other (id INT PRIMARY KEY)");
  const count = 150;
  await root.query(
    Array.from(
      { length: count },
      (_, i) => `INSERT INTO slow VALUES (${i + 1}); INSERT INTO other VALUES (${i + 1})`,
    ).join(";"),
  );
  const last = await binlogPosition();
  await until("every transaction", () => reader.position() === last);
  assert.deepEqual(
    ids,
    Array.from({ length: count }, (_, i) => i + 1),
  );
  // Other tables' rows are filtered out; statements are not.
  assert.deepEqual(
    delivered.map((d) => (d.kind === "ddl" ? d.ddl.sql : d.kind)),
    ["CREATE TABLE other (id INT PRIMARY KEY)"],
  );
  assert.deepEqual(errors, []);
});

test("settings and position checks name what is wrong", async (t) => {
  const reader = await mysql.createConnection({ ...replication(), database });
  t.after(() => reader.end());
  assert.deepEqual(await checkBinlogSettings(queryOf(reader)), []);

  // Row images and metadata are dynamic: take them away, as a default server has them.
  await root.query(
    `SET GLOBAL binlog_format = 'MIXED', binlog_row_image = 'MINIMAL', binlog_row_metadata = 'NO_LOG'`,
  );
  try {
    const problems = await checkBinlogSettings(queryOf(reader));
    assert.deepEqual(
      problems.map((p) => [p.setting, p.value, p.expected]),
      [
        ["binlog_format", "MIXED", "ROW"],
        ["binlog_row_image", "MINIMAL", "FULL"],
        ["binlog_row_metadata", "NO_LOG", "FULL"],
      ],
    );
    assert.match(problems[0]?.message ?? "", /^binlog_format is 'MIXED', needs 'ROW': /);
  } finally {
    await root.query(
      `SET GLOBAL binlog_format = 'ROW', binlog_row_image = 'FULL', binlog_row_metadata = 'FULL'`,
    );
  }
  // A server without a binlog, and one too old for row metadata (MySQL 5.7), as SHOW answers them.
  const answers: BinlogQuery = async () => [
    ["log_bin", "OFF"],
    ["binlog_format", "ROW"],
    ["binlog_row_image", "FULL"],
  ];
  assert.deepEqual(
    (await checkBinlogSettings(answers)).map((p) => p.message),
    [
      "log_bin is 'OFF', needs 'ON': no binlog is written",
      "binlog_row_metadata is unsupported by this server, needs 'FULL': column names come from today's table, not from the binlog (wrong after a rename)",
    ],
  );

  const current = await binlogPosition();
  const now = await checkBinlogPosition(queryOf(reader), current);
  assert.deepEqual([now.available, now.current, now.oldest], [true, current, ""]);
  assert.equal((await checkBinlogPosition(queryOf(reader), firstPosition)).available, true);
  const ahead = await checkBinlogPosition(queryOf(reader), "0-1-999999");
  assert.equal(ahead.available, false);
  assert.match(ahead.reason ?? "", /only at/);

  // Purge the files holding this file's first transactions: the old position is gone.
  await root.query("FLUSH BINARY LOGS");
  const files = await rowsOf("SHOW BINARY LOGS");
  await root.query(`PURGE BINARY LOGS TO '${String(files.at(-1)?.[0])}'`);
  const purged = await checkBinlogPosition(queryOf(reader), firstPosition);
  assert.equal(purged.available, false, JSON.stringify(purged));
  assert.match(purged.reason ?? "", /purged/);
  assert.equal((await checkBinlogPosition(queryOf(reader), current)).available, true);

  const { reader: stale, errors } = read(t, firstPosition);
  await assert.rejects(stale.ready(), /Could not find GTID state/);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.fatal, true);
  assert.equal(stale.position(), firstPosition);
});
