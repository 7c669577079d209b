/**
 * MySQL's errors as clients see them: each case of DESIGN section 4 that MySQL
 * itself reports is provoked on real MariaDB through a real gateway, and must
 * arrive with its Connect code and a `sqlgate.v1.SqlError` detail holding the
 * errno and SQLSTATE. Then the mapping itself, as pure units: the SQLSTATE
 * class fallback, client-side codes, and the original error kept as `cause`.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import mysql from "mysql2";
import type { RowDataPacket } from "mysql2/promise";
import { SqlErrorSchema } from "../gen/sqlgate/v1/value_pb.js";
import {
  codeFromMysql,
  connectErrorFromMysql,
  type MysqlLikeError,
} from "../server/mysql/errors.js";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { connectDirect, createTestDatabase, serverUrl, withDatabase } from "./support/mysql.js";

type TestContext = { after(fn: () => unknown): void };
const clientFor = (baseUrl: string) => databaseClient(baseUrl, "1.1");

/** A gateway on a fresh database, after running `schema` there directly. */
async function setup(t: TestContext, ...schema: string[]) {
  const db = await createTestDatabase(t);
  for (const sql of schema) await db.admin.query(sql);
  const gateway = await startGateway(t, db.url);
  const count = async (table: string): Promise<number> => {
    const [rows] = await db.admin.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${table}`);
    return Number(rows[0]?.n);
  };
  return { db, gateway, client: clientFor(gateway.baseUrl), count };
}

/** Awaits `call`, which must fail with `code` and MySQL's `errno` and `sqlState`. */
async function expectMysqlError(
  call: Promise<unknown>,
  code: Code,
  errno: number,
  sqlState: string,
): Promise<ConnectError> {
  let error: unknown;
  try {
    await call;
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
  assert.equal(Code[error.code], Code[code], error.message);
  const details = error.findDetails(SqlErrorSchema);
  assert.equal(details.length, 1, error.message);
  assert.equal(details[0]?.errno, errno, error.message);
  assert.equal(details[0]?.sqlState, sqlState, error.message);
  assert.ok((details[0]?.message ?? "") !== "");
  assert.ok(error.rawMessage.includes(`errno ${errno}`), error.rawMessage);
  return error;
}

/**
 * Polls until `check` is true (MySQL's lock waits are observed, not slept on).
 * InnoDB refreshes its information_schema transaction tables only when they
 * were not read for 0.1 s, so polling faster than that would never see a change.
 */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("MySQL errors through the gateway", () => {
  test("a syntax error is invalid_argument (1064)", async (t) => {
    const { client } = await setup(t);
    const err = await expectMysqlError(
      client.execute({ sql: "SELEC 1" }),
      Code.InvalidArgument,
      1064,
      "42000",
    );
    assert.match(err.findDetails(SqlErrorSchema)[0]?.message ?? "", /near 'SELEC 1'/);
  });

  test("an unknown table is not_found (1146)", async (t) => {
    const { client } = await setup(t);
    await expectMysqlError(
      client.execute({ sql: "SELECT * FROM no_such_table" }),
      Code.NotFound,
      1146,
      "42S02",
    );
  });

  test("an unknown column is invalid_argument (1054)", async (t) => {
    const { client } = await setup(t, "CREATE TABLE t (id INT PRIMARY KEY)");
    await expectMysqlError(
      client.execute({ sql: "SELECT no_such_column FROM t" }),
      Code.InvalidArgument,
      1054,
      "42S22",
    );
  });

  test("a duplicate key is already_exists (1062)", async (t) => {
    const { client, count } = await setup(t, "CREATE TABLE t (id INT PRIMARY KEY)");
    await client.execute({ sql: "INSERT INTO t VALUES (1)" });
    await expectMysqlError(
      client.execute({ sql: "INSERT INTO t VALUES (1)" }),
      Code.AlreadyExists,
      1062,
      "23000",
    );
    assert.equal(await count("t"), 1);
  });

  test("a lock wait timeout is aborted (1205)", async (t) => {
    const { db, client } = await setup(
      t,
      "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
      "INSERT INTO t VALUES (1, 0)",
    );
    const holder = await connectDirect(db.url);
    try {
      await holder.query("START TRANSACTION");
      await holder.query("SELECT * FROM t WHERE id = 1 FOR UPDATE");
      await expectMysqlError(
        client.execute({
          sql: "SET STATEMENT innodb_lock_wait_timeout=1 FOR SELECT * FROM t WHERE id = 1 FOR UPDATE",
        }),
        Code.Aborted,
        1205,
        "HY000",
      );
    } finally {
      // Released here, not in t.after: DROP DATABASE would wait on its locks.
      await holder.query("ROLLBACK");
      await holder.end();
    }
  });

  test("a deadlock is aborted (1213)", async (t) => {
    const { db, client } = await setup(
      t,
      "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
      "INSERT INTO t (id, v) WITH RECURSIVE s (n) AS " +
        "(SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) SELECT n, 0 FROM s",
    );
    const other = await connectDirect(db.url);
    /** Transactions on this test's database waiting for a row lock. */
    const lockWaits = async (): Promise<number> => {
      const [rows] = await db.admin.query<RowDataPacket[]>(
        "SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX x " +
          "JOIN information_schema.PROCESSLIST p ON p.ID = x.trx_mysql_thread_id " +
          "WHERE x.trx_state = 'LOCK WAIT' AND p.DB = ?",
        [db.name],
      );
      return Number(rows[0]?.n);
    };
    try {
      // The other transaction changes many rows first, so that InnoDB, which
      // rolls back the transaction with the smaller weight (undo records and
      // locks), always picks the gateway's one-statement transaction.
      await other.query("START TRANSACTION");
      await other.query("UPDATE t SET v = v + 1 WHERE id >= 3");
      await other.query("UPDATE t SET v = v + 1 WHERE id = 2");
      // Through the gateway: locks row 1, then waits for row 2.
      const gatewayCall = client.execute({
        sql: "SELECT * FROM t WHERE id IN (1, 2) ORDER BY id FOR UPDATE",
      });
      await waitFor(
        "the gateway's statement to wait for row 2",
        async () => (await lockWaits()) === 1,
      );
      // Closes the cycle: row 1 is held by the gateway's statement.
      const closing = other.query("SELECT * FROM t WHERE id = 1 FOR UPDATE").then(
        () => "granted",
        (err: unknown) => err,
      );
      await expectMysqlError(gatewayCall, Code.Aborted, 1213, "40001");
      // The victim was the gateway's statement: the other transaction goes on.
      assert.equal(await closing, "granted");
    } finally {
      await other.query("ROLLBACK");
      await other.end();
    }
  });

  test("access denied by MySQL is permission_denied (1142)", async (t) => {
    const { db, count } = await setup(t, "CREATE TABLE t (id INT PRIMARY KEY)");
    const user = `ro_${randomBytes(4).toString("hex")}`;
    const password = randomBytes(12).toString("hex");
    await db.admin.query("CREATE USER ?@'localhost' IDENTIFIED BY ?", [user, password]);
    t.after(async () => {
      // The database's admin connection is closed by now: use a new one.
      const admin = await connectDirect(serverUrl());
      await admin.query("DROP USER IF EXISTS ?@'localhost'", [user]);
      await admin.end();
    });
    await db.admin.query(`GRANT SELECT ON \`${db.name}\`.* TO ?@'localhost'`, [user]);
    const url = new URL(withDatabase(serverUrl(), db.name));
    url.username = user;
    url.password = password;
    const readOnlyGateway = await startGateway(t, url.toString());
    const client = clientFor(readOnlyGateway.baseUrl);
    // The user can read, so the refusal below is about the privilege.
    assert.equal((await client.execute({ sql: "SELECT COUNT(*) FROM t" })).rows.length, 1);
    await expectMysqlError(
      client.execute({ sql: "INSERT INTO t VALUES (1)" }),
      Code.PermissionDenied,
      1142,
      "42000",
    );
    assert.equal(await count("t"), 0);
  });

  test("a write with options.readOnly is permission_denied (1792) and changes nothing", async (t) => {
    const { client, count } = await setup(t, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB");
    await expectMysqlError(
      client.execute({ sql: "INSERT INTO t VALUES (1)", options: { readOnly: true } }),
      Code.PermissionDenied,
      1792,
      "25006",
    );
    assert.equal(await count("t"), 0);
    // Reads are allowed, and the pooled connection is left outside the transaction.
    const read = await client.execute({
      sql: "SELECT COUNT(*) FROM t",
      options: { readOnly: true },
    });
    assert.equal(read.rows.length, 1);
    await client.execute({ sql: "INSERT INTO t VALUES (2)" });
    assert.equal(await count("t"), 1);
  });

  test("a value out of range or NULL into NOT NULL is invalid_argument", async (t) => {
    const { client, count } = await setup(
      t,
      "CREATE TABLE t (id INT PRIMARY KEY, small TINYINT NOT NULL)",
    );
    const sql = "INSERT INTO t (id, small) VALUES (?, ?)";
    await expectMysqlError(
      client.execute({
        sql,
        typedParams: [
          { kind: { case: "int64Value", value: 1n } },
          { kind: { case: "int64Value", value: 1000n } },
        ],
      }),
      Code.InvalidArgument,
      1264,
      "22003",
    );
    // SQLSTATE 23000 alone would say failed_precondition; errno 1048 is the caller's mistake.
    await expectMysqlError(
      client.execute({
        sql,
        typedParams: [
          { kind: { case: "int64Value", value: 2n } },
          { kind: { case: "nullValue", value: 0 } },
        ],
      }),
      Code.InvalidArgument,
      1048,
      "23000",
    );
    assert.equal(await count("t"), 0);
  });

  test("a foreign key violation is failed_precondition (1452, 1451)", async (t) => {
    const { client, count } = await setup(
      t,
      "CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB",
      "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, " +
        "FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB",
      "INSERT INTO parent VALUES (1)",
      "INSERT INTO child VALUES (1, 1)",
    );
    await expectMysqlError(
      client.execute({ sql: "INSERT INTO child VALUES (2, 99)" }),
      Code.FailedPrecondition,
      1452,
      "23000",
    );
    await expectMysqlError(
      client.execute({ sql: "DELETE FROM parent WHERE id = 1" }),
      Code.FailedPrecondition,
      1451,
      "23000",
    );
    assert.equal(await count("child"), 1);
    assert.equal(await count("parent"), 1);
  });
});

/** A server error as mysql2 reports it. */
function serverError(errno: number, sqlState: string, message = "boom"): Error & MysqlLikeError {
  return Object.assign(new Error(message), {
    code: "ER_SOMETHING",
    errno,
    sqlState,
    sqlMessage: message,
    fatal: false,
  });
}

/** A client-side error as Node or mysql2 reports it. */
function clientError(code: string, fields: Partial<MysqlLikeError> = {}): Error & MysqlLikeError {
  return Object.assign(new Error(`client error ${code}`), { code, ...fields });
}

describe("codeFromMysql", () => {
  test("falls back to the SQLSTATE class for errnos the table does not name", () => {
    const unnamed = 1999; // no such entry in the errno table
    const cases: [string, Code][] = [
      ["08S01", Code.Unavailable],
      ["0A000", Code.Unimplemented],
      ["21000", Code.InvalidArgument],
      ["22012", Code.InvalidArgument],
      ["23000", Code.FailedPrecondition],
      ["25001", Code.FailedPrecondition],
      ["28000", Code.PermissionDenied],
      ["3D000", Code.NotFound],
      ["40001", Code.Aborted],
      ["42000", Code.InvalidArgument],
      ["70100", Code.Canceled],
      ["HY000", Code.Unknown],
    ];
    for (const [sqlState, code] of cases) {
      assert.equal(Code[codeFromMysql(serverError(unnamed, sqlState))], Code[code], sqlState);
    }
  });

  test("prefers the errno to the SQLSTATE class", () => {
    assert.equal(codeFromMysql(serverError(1062, "23000")), Code.AlreadyExists);
    assert.equal(codeFromMysql(serverError(1048, "23000")), Code.InvalidArgument);
    assert.equal(codeFromMysql(serverError(1146, "42S02")), Code.NotFound);
    assert.equal(codeFromMysql(serverError(1213, "40001")), Code.Aborted);
  });

  test("maps client-side codes: the server was not reached or the connection broke", () => {
    // Node's socket errors carry a negative errno and no SQLSTATE.
    assert.equal(codeFromMysql(clientError("ECONNREFUSED", { errno: -111 })), Code.Unavailable);
    assert.equal(
      codeFromMysql(clientError("PROTOCOL_CONNECTION_LOST", { fatal: true })),
      Code.Unavailable,
    );
    assert.equal(codeFromMysql(clientError("ENOENT", { errno: -2 })), Code.Unavailable);
    assert.equal(codeFromMysql(clientError("SOMETHING_NEW", { fatal: true })), Code.Unavailable);
    assert.equal(codeFromMysql(clientError("SOMETHING_NEW")), Code.Internal);
    assert.equal(codeFromMysql(new Error("no code at all")), Code.Internal);
  });

  test("maps a real refused connection from mysql2 to unavailable", async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const address = probe.address() as net.AddressInfo;
        probe.close(() => resolve(address.port));
      });
    });
    const err = await new Promise<Error>((resolve) => {
      const conn = mysql.createConnection({ host: "127.0.0.1", port, user: "nobody" });
      conn.on("error", () => {});
      conn.connect((e) => resolve(e ?? new Error("connected to a closed port")));
    });
    assert.equal((err as MysqlLikeError).code, "ECONNREFUSED");
    const connectError = connectErrorFromMysql(err);
    assert.equal(connectError.code, Code.Unavailable);
    assert.equal(connectError.cause, err);
  });
});

describe("connectErrorFromMysql", () => {
  test("keeps the original server error as cause, with a SqlError detail", () => {
    const original = serverError(1146, "42S02", "Table 'db.nope' doesn't exist");
    const err = connectErrorFromMysql(original, 2);
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.cause, original);
    assert.equal(
      err.rawMessage,
      "statement 2: Table 'db.nope' doesn't exist (errno 1146, SQLSTATE 42S02)",
    );
    const [detail] = err.findDetails(SqlErrorSchema);
    assert.equal(detail?.errno, 1146);
    assert.equal(detail?.sqlState, "42S02");
    assert.equal(detail?.message, "Table 'db.nope' doesn't exist");
    assert.equal(detail?.statementIndex, 2);
    assert.equal(
      connectErrorFromMysql(original).findDetails(SqlErrorSchema)[0]?.statementIndex,
      undefined,
    );
  });

  test("keeps the original client error as cause, without a SqlError detail", () => {
    const lost = clientError("PROTOCOL_CONNECTION_LOST", { fatal: true });
    const err = connectErrorFromMysql(lost);
    assert.equal(err.code, Code.Unavailable);
    assert.equal(err.cause, lost);
    assert.match(err.rawMessage, /PROTOCOL_CONNECTION_LOST/);
    assert.deepEqual(err.findDetails(SqlErrorSchema), []);
    const odd = clientError("SOMETHING_NEW");
    assert.equal(connectErrorFromMysql(odd).cause, odd);
    assert.equal(connectErrorFromMysql(odd).code, Code.Internal);
  });

  test("passes ConnectErrors through and wraps non-errors as internal", () => {
    const already = new ConnectError("already mapped", Code.DeadlineExceeded);
    assert.equal(connectErrorFromMysql(already), already);
    const thrown = connectErrorFromMysql("a string");
    assert.equal(thrown.code, Code.Internal);
    assert.equal(thrown.cause, "a string");
  });
});
