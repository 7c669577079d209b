/**
 * Requests the gateway must refuse, sent over a real port with real clients:
 * raw HTTP/1.1 (`fetch`) for bodies no typed client would produce, and
 * connect-node for typed calls. Each case checks the exact Connect code and
 * that nothing ran on MySQL: every refused request is an INSERT into an empty
 * table that must stay empty. Also the result limits (rows, response bytes).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { RowDataPacket } from "mysql2/promise";
import { ExecuteRequestSchema } from "../gen/sqlgate/v1/database_pb.js";
import { LimitExceededSchema, SqlErrorSchema } from "../gen/sqlgate/v1/value_pb.js";
import { databaseClient } from "./support/clients.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

type TestContext = { after(fn: () => unknown): void };

const executePath = "/sqlgate.v1.DatabaseService/Execute";
const insertMarker = "INSERT INTO t (v) VALUES ('marker')";

/** A gateway on a fresh database holding one empty table `t`, with both kinds of client. */
async function setup(t: TestContext, env: Record<string, string> = {}) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
  const gateway = await startGateway(t, db.url, { env });
  const client = databaseClient(gateway.baseUrl, "1.1");
  /** Rows in `t`, read directly from MySQL. */
  const rowCount = async (): Promise<number> => {
    const [rows] = await db.admin.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM t");
    return Number(rows[0]?.n);
  };
  return { db, gateway, client, rowCount };
}

interface HttpAnswer {
  readonly status: number;
  readonly contentType: string | null;
  readonly body: string;
}

/** POSTs `body` to Execute over HTTP/1.1, as curl or a browser would. */
async function post(
  gateway: TestGateway,
  body: string | Uint8Array,
  contentType: string | undefined,
): Promise<HttpAnswer> {
  const headers: Record<string, string> =
    contentType === undefined ? {} : { "content-type": contentType };
  const res = await fetch(`${gateway.baseUrl}${executePath}`, {
    method: "POST",
    headers,
    body: Buffer.from(body),
  });
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    body: await res.text(),
  };
}

interface JsonError {
  readonly code: string;
  readonly message: string;
  readonly details?: readonly { type: string; debug?: Record<string, unknown> }[];
}

/** Checks a Connect unary error response (HTTP status and JSON body) and returns the body. */
function expectJsonError(answer: HttpAnswer, httpStatus: number, code: string): JsonError {
  assert.equal(answer.status, httpStatus, answer.body);
  assert.equal(answer.contentType, "application/json");
  const error = JSON.parse(answer.body) as JsonError;
  assert.equal(error.code, code, answer.body);
  assert.equal(typeof error.message, "string");
  return error;
}

/** The ConnectError that `call` rejects with. */
async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `not a ConnectError: ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

describe("malformed requests", () => {
  test("malformed JSON is invalid_argument and runs nothing", async (t) => {
    const { gateway, rowCount } = await setup(t);
    const truncated = JSON.stringify({ sql: insertMarker }).slice(0, -1);
    const error = expectJsonError(
      await post(gateway, truncated, "application/json"),
      400,
      "invalid_argument",
    );
    assert.match(error.message, /cannot decode message sqlgate\.v1\.ExecuteRequest from JSON/);
    // A field of the wrong JSON type and an empty body are malformed too.
    expectJsonError(
      await post(gateway, JSON.stringify({ sql: insertMarker, params: "x" }), "application/json"),
      400,
      "invalid_argument",
    );
    expectJsonError(await post(gateway, "", "application/json"), 400, "invalid_argument");
    assert.equal(await rowCount(), 0);
  });

  test("malformed protobuf is refused and runs nothing", async (t) => {
    const { gateway, rowCount } = await setup(t);
    const valid = toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, { sql: insertMarker }),
    );
    // A well-formed INSERT followed by a tag with the invalid wire type 7, and
    // a length prefix that runs past the end of the body.
    const trailingGarbage = new Uint8Array([...valid, 0xff, 0xff, 0xff, 0x7f]);
    const truncated = valid.subarray(0, valid.length - 5);
    for (const body of [trailingGarbage, truncated]) {
      // connect-es reports undecodable binary as `internal` (HTTP 500: its
      // createBinarySerialization throws Code.Internal), unlike JSON, which it
      // reports as `invalid_argument`. DESIGN section 4 asks for
      // invalid_argument; this pins what the gateway answers today.
      const error = expectJsonError(
        await post(gateway, body, "application/proto"),
        500,
        "internal",
      );
      assert.match(error.message, /^parse binary: /);
    }
    assert.equal(await rowCount(), 0);
  });

  test("an unknown JSON field is invalid_argument and runs nothing", async (t) => {
    const { gateway, rowCount } = await setup(t);
    const error = expectJsonError(
      await post(gateway, JSON.stringify({ sql: insertMarker, bogus: 1 }), "application/json"),
      400,
      "invalid_argument",
    );
    assert.match(error.message, /"bogus" is unknown/);
    // A misspelt option must not silently drop the safeguard it names.
    expectJsonError(
      await post(
        gateway,
        JSON.stringify({ sql: insertMarker, options: { readonly: true } }),
        "application/json",
      ),
      400,
      "invalid_argument",
    );
    assert.equal(await rowCount(), 0);
    // The same request without the unknown field runs (the check above is not vacuous).
    assert.equal(
      (await post(gateway, JSON.stringify({ sql: insertMarker }), "application/json")).status,
      200,
    );
    assert.equal(await rowCount(), 1);
  });

  test("a content type that is not Connect's is 415 Unsupported Media Type", async (t) => {
    const { gateway, rowCount } = await setup(t);
    const body = JSON.stringify({ sql: insertMarker });
    // Connect answers a codec it does not serve with a bare HTTP 415 (JSON is
    // only accepted as UTF-8).
    for (const contentType of ["text/plain", "application/json; charset=latin1"]) {
      const answer = await post(gateway, body, contentType);
      assert.equal(answer.status, 415, contentType);
      assert.equal(answer.body, "", contentType);
    }
    // Types fastify has no body parser for, and a missing type, are refused by
    // fastify before Connect sees them: 415 with fastify's own JSON error.
    for (const contentType of ["application/xml", undefined]) {
      const answer = await post(gateway, body, contentType);
      assert.equal(answer.status, 415, `${contentType}: ${answer.body}`);
      assert.equal(JSON.parse(answer.body).code, "FST_ERR_CTP_INVALID_MEDIA_TYPE");
    }
    assert.equal(await rowCount(), 0);
  });

  test("a body over SQLGATE_MAX_BODY_BYTES is resource_exhausted and runs nothing", async (t) => {
    const { gateway, client, rowCount } = await setup(t, { SQLGATE_MAX_BODY_BYTES: "2048" });
    const big = `INSERT INTO t (v) VALUES ('${"x".repeat(4096)}')`;
    const error = expectJsonError(
      await post(gateway, JSON.stringify({ sql: big }), "application/json"),
      429,
      "resource_exhausted",
    );
    assert.match(error.message, /larger than configured readMaxBytes 2048/);
    assert.equal((await rejection(client.execute({ sql: big }))).code, Code.ResourceExhausted);
    assert.equal(await rowCount(), 0);
    // A body under the limit is accepted.
    await client.execute({ sql: `INSERT INTO t (v) VALUES ('${"x".repeat(1024)}')` });
    assert.equal(await rowCount(), 1);
  });
});

describe("refused SQL and parameters", () => {
  test("empty SQL is invalid_argument", async (t) => {
    const { gateway, client, rowCount } = await setup(t);
    const error = expectJsonError(
      await post(gateway, JSON.stringify({ sql: "" }), "application/json"),
      400,
      "invalid_argument",
    );
    assert.match(error.message, /empty statement/);
    expectJsonError(await post(gateway, "{}", "application/json"), 400, "invalid_argument");
    for (const sql of ["   ", "-- nothing\n", "/* nothing */ ;"]) {
      const err = await rejection(client.execute({ sql }));
      assert.equal(err.code, Code.InvalidArgument, sql);
      assert.match(err.rawMessage, /empty statement/);
    }
    assert.equal(await rowCount(), 0);
  });

  test("two statements are invalid_argument and neither runs", async (t) => {
    const { gateway, client, rowCount } = await setup(t);
    const two = "INSERT INTO t (v) VALUES ('a'); INSERT INTO t (v) VALUES ('b')";
    const error = expectJsonError(
      await post(gateway, JSON.stringify({ sql: two }), "application/json"),
      400,
      "invalid_argument",
    );
    assert.match(error.message, /only one statement per call/);
    const hidden = "INSERT INTO t (v) VALUES ('a') /* ; */;-- x\nDELETE FROM t";
    assert.equal((await rejection(client.execute({ sql: hidden }))).code, Code.InvalidArgument);
    assert.equal(await rowCount(), 0);
  });

  test("a syntax error is invalid_argument with MySQL's errno 1064", async (t) => {
    const { gateway, client, rowCount } = await setup(t);
    const err = await rejection(client.execute({ sql: "INSERT INTO t (v) VALUES ('x'" }));
    assert.equal(err.code, Code.InvalidArgument);
    const [detail, ...more] = err.findDetails(SqlErrorSchema);
    assert.equal(more.length, 0);
    assert.equal(detail?.errno, 1064);
    assert.equal(detail?.sqlState, "42000");
    assert.match(detail?.message ?? "", /SQL syntax/);
    // The same detail reaches a JSON client, readable without the schema.
    const json = expectJsonError(
      await post(gateway, JSON.stringify({ sql: "SELEC 1" }), "application/json"),
      400,
      "invalid_argument",
    );
    assert.equal(json.details?.[0]?.type, "sqlgate.v1.SqlError");
    assert.equal(json.details?.[0]?.debug?.errno, 1064);
    assert.equal(await rowCount(), 0);
  });

  test("an unknown table is not_found with errno 1146", async (t) => {
    const { gateway, client, db } = await setup(t);
    const err = await rejection(client.execute({ sql: "INSERT INTO nope (v) VALUES ('x')" }));
    assert.equal(err.code, Code.NotFound);
    const detail = err.findDetails(SqlErrorSchema)[0];
    assert.equal(detail?.errno, 1146);
    assert.equal(detail?.sqlState, "42S02");
    assert.match(detail?.message ?? "", new RegExp(`${db.name}\\.nope`));
    expectJsonError(
      await post(gateway, JSON.stringify({ sql: "SELECT * FROM nope" }), "application/json"),
      404,
      "not_found",
    );
  });

  test("a parameter count mismatch is invalid_argument", async (t) => {
    const { client, rowCount } = await setup(t);
    const sql = "INSERT INTO t (id, v) VALUES (?, ?)";
    const tooFew = await rejection(
      client.execute({ sql, params: [{ kind: { case: "numberValue", value: 1 } }] }),
    );
    assert.equal(tooFew.code, Code.InvalidArgument);
    assert.match(tooFew.rawMessage, /2 placeholder\(s\) but 1 parameter\(s\)/);
    const tooMany = await rejection(
      client.execute({
        sql,
        typedParams: [
          { kind: { case: "int64Value", value: 1n } },
          { kind: { case: "stringValue", value: "a" } },
          { kind: { case: "stringValue", value: "b" } },
        ],
      }),
    );
    assert.equal(tooMany.code, Code.InvalidArgument);
    assert.match(tooMany.rawMessage, /2 placeholder\(s\) but 3 parameter\(s\)/);
    const none = await rejection(client.execute({ sql }));
    assert.equal(none.code, Code.InvalidArgument);
    assert.equal(await rowCount(), 0);
  });

  test("a missing named parameter is invalid_argument", async (t) => {
    const { client, rowCount } = await setup(t);
    const sql = "INSERT INTO t (id, v) VALUES (:id, :v)";
    const missing = await rejection(
      client.execute({ sql, namedParams: { id: { kind: { case: "numberValue", value: 1 } } } }),
    );
    assert.equal(missing.code, Code.InvalidArgument);
    assert.match(missing.rawMessage, /missing named parameter :v/);
    const stray = await rejection(
      client.execute({
        sql,
        namedParams: {
          id: { kind: { case: "numberValue", value: 1 } },
          v: { kind: { case: "stringValue", value: "a" } },
          w: { kind: { case: "stringValue", value: "b" } },
        },
      }),
    );
    assert.equal(stray.code, Code.InvalidArgument);
    assert.match(stray.rawMessage, /:w does not appear/);
    assert.equal(await rowCount(), 0);
  });

  test("mixing params and typedParams is invalid_argument", async (t) => {
    const { gateway, client, rowCount } = await setup(t);
    const sql = "INSERT INTO t (id, v) VALUES (?, ?)";
    const err = await rejection(
      client.execute({
        sql,
        params: [{ kind: { case: "numberValue", value: 1 } }],
        typedParams: [{ kind: { case: "stringValue", value: "a" } }],
      }),
    );
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /either `params` or `typedParams`/);
    // Positional values for `:name` placeholders, over JSON.
    const json = expectJsonError(
      await post(
        gateway,
        JSON.stringify({ sql: "INSERT INTO t (id, v) VALUES (:id, :v)", params: [1, "a"] }),
        "application/json",
      ),
      400,
      "invalid_argument",
    );
    assert.match(json.message, /positional parameters given/);
    assert.equal(await rowCount(), 0);
  });

  test("LOAD DATA LOCAL INFILE is refused and reads nothing", async (t) => {
    const { db, client, rowCount } = await setup(t);
    // The server allows LOCAL INFILE: the refusal is the gateway's own.
    const [rows] = await db.admin.query<RowDataPacket[]>("SELECT @@local_infile AS on_");
    assert.equal(Number(rows[0]?.on_), 1);
    const err = await rejection(
      client.execute({ sql: "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t (v)" }),
    );
    assert.equal(err.code, Code.PermissionDenied, err.message);
    assert.equal(err.findDetails(SqlErrorSchema)[0]?.errno, 4166);
    assert.equal(await rowCount(), 0);
  });

  test("the embedded server confines server-side file reads", async (t) => {
    const { client, rowCount } = await setup(t);
    const err = await rejection(
      client.execute({ sql: "LOAD DATA INFILE '/etc/passwd' INTO TABLE t (v)" }),
    );
    assert.equal(err.code, Code.PermissionDenied, err.message);
    assert.equal(err.findDetails(SqlErrorSchema)[0]?.errno, 1290); // --secure-file-priv
    assert.equal(await rowCount(), 0);
    const file = await client.execute({ sql: "SELECT LOAD_FILE('/etc/passwd') AS f" });
    assert.equal(file.rows[0]?.values[0]?.kind.case, "nullValue");
  });
});

describe("result limits", () => {
  async function tenRows(t: TestContext, env: Record<string, string>) {
    const s = await setup(t, env);
    await s.db.admin.query(
      "INSERT INTO t (v) VALUES ('1'),('2'),('3'),('4'),('5'),('6'),('7'),('8'),('9'),('10')",
    );
    return s;
  }
  const ids = (rows: readonly { values: readonly { kind: { value?: unknown } }[] }[]) =>
    rows.map((row) => row.values[0]?.kind.value);

  test("a write cut at maxRows still completes: DELETE ... RETURNING", async (t) => {
    const { client, rowCount } = await tenRows(t, {});
    const cut = await client.execute({
      sql: "DELETE FROM t RETURNING id",
      options: { maxRows: 3 },
    });
    assert.equal(cut.rows.length, 3);
    assert.equal(cut.truncated, true);
    assert.equal(await rowCount(), 0, "every row was deleted, not only the ones returned");
  });

  test("SQLGATE_MAX_ROWS cuts a result and marks it truncated", async (t) => {
    const { client } = await tenRows(t, { SQLGATE_MAX_ROWS: "5" });
    const cut = await client.execute({ sql: "SELECT id FROM t ORDER BY id" });
    assert.deepEqual(ids(cut.rows), [1n, 2n, 3n, 4n, 5n]);
    assert.equal(cut.truncated, true);
    // Exactly the limit is not truncated.
    const exact = await client.execute({ sql: "SELECT id FROM t ORDER BY id LIMIT 5" });
    assert.equal(exact.rows.length, 5);
    assert.equal(exact.truncated, false);
    // options.maxRows cannot raise the server's limit.
    const capped = await client.execute({ sql: "SELECT id FROM t", options: { maxRows: 50 } });
    assert.equal(capped.rows.length, 5);
    assert.equal(capped.truncated, true);
  });

  test("options.maxRows cuts a result and marks it truncated", async (t) => {
    const { client } = await tenRows(t, {});
    const cut = await client.execute({
      sql: "SELECT id FROM t ORDER BY id",
      options: { maxRows: 3 },
    });
    assert.deepEqual(ids(cut.rows), [1n, 2n, 3n]);
    assert.equal(cut.truncated, true);
    const all = await client.execute({ sql: "SELECT id FROM t ORDER BY id" });
    assert.equal(all.rows.length, 10);
    assert.equal(all.truncated, false);
  });

  test("a result over SQLGATE_MAX_RESPONSE_BYTES is resource_exhausted naming the setting", async (t) => {
    const { gateway, client } = await setup(t, { SQLGATE_MAX_RESPONSE_BYTES: "4096" });
    const sql =
      "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) " +
      "SELECT n, REPEAT('x', 1000) AS pad FROM s";
    const err = await rejection(client.execute({ sql }));
    assert.equal(err.code, Code.ResourceExhausted);
    const [limit] = err.findDetails(LimitExceededSchema);
    assert.equal(limit?.setting, "SQLGATE_MAX_RESPONSE_BYTES");
    assert.equal(limit?.limit, 4096n);
    // Over JSON too, and one row of 100 KB is refused like 100 rows of 1 KB.
    const json = expectJsonError(
      await post(
        gateway,
        JSON.stringify({ sql: "SELECT REPEAT('x', 100000)" }),
        "application/json",
      ),
      429,
      "resource_exhausted",
    );
    assert.equal(json.details?.[0]?.type, "sqlgate.v1.LimitExceeded");
    assert.equal(json.details?.[0]?.debug?.setting, "SQLGATE_MAX_RESPONSE_BYTES");
    // Small results still pass, on the same pool.
    const small = await client.execute({ sql: "SELECT REPEAT('x', 100)" });
    assert.equal(small.rows.length, 1);
  });
});
