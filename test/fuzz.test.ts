/**
 * Property-based fuzzing (fast-check) of what the gateway reads from the
 * network: arbitrary `ExecuteRequest`s (SQL mixing keywords, quotes,
 * comments and placeholders, write attempts dressed to slip past the
 * read-only guard, parameters of every Value kind, options), arbitrary bytes
 * as protobuf bodies, arbitrary JSON as JSON bodies, and arbitrary PlanetScale
 * Execute bodies (sessions with random fields, bind variables). All of it as
 * a `read_only` credential, over HTTP/1.1 and HTTP/2, against one gateway with
 * a MySQL user of its own.
 *
 * Each answer must be well formed: a success the schema decodes, or a Connect
 * error with a known code and its HTTP status (PlanetScale: HTTP 200 with a
 * `result` or an `error`, or a Connect error with an `error` object); never an
 * `internal` or `unknown` error without a clear cause, never a dropped
 * connection. After each case no table may have changed (CHECKSUM TABLE; the
 * tables are put back when one did, so that shrinking finds the smallest
 * write); after the run the gateway still answers and its MySQL connections
 * return to what its pools keep idle.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  create,
  fromBinary,
  fromJson,
  type JsonValue,
  type MessageInitShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { NullValue, type ValueSchema as PbValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { codeFromString, codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import fc from "fast-check";
import type { RowDataPacket } from "mysql2/promise";
import {
  ExecuteRequestSchema as PsdbExecuteRequestSchema,
  ExecuteResponseSchema as PsdbExecuteResponseSchema,
} from "../gen/psdb/v1alpha1/database_pb.js";
import { ExecuteRequestSchema, ExecuteResponseSchema } from "../gen/sqlgate/v1/database_pb.js";
import type { ValueSchema } from "../gen/sqlgate/v1/value_pb.js";
import { Type as VitessType } from "../gen/vitess/query/v22/query_pb.js";
import { createCredential } from "../server/auth/credential-tool.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const sqlgatePath = "/sqlgate.v1.DatabaseService/Execute";
const psdbPath = "/psdb.v1alpha1.Database/Execute";

/** The gateway's pools, kept small so that a leak shows. */
const poolSize = 4;
const ingestConnections = 1;
/**
 * Connections the gateway keeps open when idle: the statement pool and the
 * ingest pool (SQLGATE_INGEST_CONNECTIONS + 2) never close idle connections;
 * the transaction and control pools close theirs after SQLGATE_POOL_IDLE_TIMEOUT_MS.
 */
const idleConnectionsAtMost = poolSize + ingestConnections + 2;

const gatewayEnv = {
  SQLGATE_POOL_SIZE: String(poolSize),
  SQLGATE_INGEST_CONNECTIONS: String(ingestConnections),
  SQLGATE_MAX_TRANSACTIONS: "8",
  SQLGATE_POOL_IDLE_TIMEOUT_MS: "1000",
  SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS: "1000",
  SQLGATE_POOL_ACQUIRE_TIMEOUT_MS: "3000",
  SQLGATE_MYSQL_CONNECT_TIMEOUT_MS: "2000",
  SQLGATE_MAX_TIMEOUT_MS: "3000",
  SQLGATE_DEFAULT_TIMEOUT_MS: "3000",
  SQLGATE_PSDB_READ_TIMEOUT_MS: "3000",
  SQLGATE_PSDB_WRITE_TIMEOUT_MS: "3000",
  SQLGATE_MAX_BODY_BYTES: String(256 * 1024),
  SQLGATE_MAX_ROWS: "1000",
  SQLGATE_PSDB_MAX_ROWS: "1000",
  SQLGATE_MAX_RESPONSE_BYTES: String(1024 * 1024),
  SQLGATE_PSDB_MAX_RESULT_BYTES: String(1024 * 1024),
};

/** How long one fuzzed call may take before it counts as a hang. */
const callLimitMs = 15_000;

const schema = `
  CREATE TABLE fz_items (
    id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2), data VARBINARY(64),
    created DATETIME(6), doc JSON
  ) CHARACTER SET utf8mb4;
  CREATE TABLE fz_notes (
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, body TEXT, flag BIT(1), at TIMESTAMP NULL
  ) CHARACTER SET utf8mb4;
  INSERT INTO fz_items VALUES
    (1, 'one', 1.10, x'00ff', '2024-02-29 12:34:56.000001', '{"a": [1, 2]}'),
    (2, 'it''s', -0.01, '', '1000-01-01 00:00:00', 'null'),
    (3, '😀', NULL, NULL, NULL, NULL);
  INSERT INTO fz_notes (body, flag, at) VALUES ('first', b'1', '2038-01-19 03:14:07'), ('', b'0', NULL);`;

// ---------------------------------------------------------------------------
// SQL text: a soup of tokens, and write attempts dressed to look harmless.

// biome-ignore format: a word list reads better packed
const keywords = [
  "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "LIMIT", "ORDER BY",
  "GROUP BY", "HAVING", "UNION", "ALL", "DISTINCT", "AS", "JOIN", "ON", "INSERT", "INTO", "VALUES",
  "UPDATE", "SET", "DELETE", "REPLACE", "CREATE", "TABLE", "TEMPORARY", "DROP", "ALTER", "TRUNCATE",
  "RENAME", "INDEX", "VIEW", "START", "TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT",
  "RELEASE", "READ", "WRITE", "ONLY", "SESSION", "GLOBAL", "STATEMENT", "FOR", "SHARE", "LOCK",
  "TABLES", "UNLOCK", "SHOW", "DESCRIBE", "EXPLAIN", "USE", "DO", "CALL", "PREPARE", "EXECUTE",
  "DEALLOCATE", "HANDLER", "OPEN", "CLOSE", "WITH", "RECURSIVE", "RETURNING", "IGNORE", "DUPLICATE",
  "KEY", "DEFAULT", "CASE", "WHEN", "THEN", "ELSE", "END", "BINARY", "COLLATE", "INTERVAL", "XA",
  "FLUSH", "ANALYZE", "OPTIMIZE", "CHECK", "GRANT", "KILL", "LOAD", "DATA", "INFILE", "OUTFILE",
  "LOCAL", "SEQUENCE",
];
// biome-ignore format: a word list reads better packed
const names = [
  "fz_items", "fz_notes", "`fz_items`", "`fz_notes`", "fz_missing", "information_schema.TABLES",
  "mysql.user", "sqlgate_schema", "`we``ird`", "id", "name", "price", "data", "doc", "body", "*",
];
// biome-ignore format: a word list reads better packed
const literals = [
  "0", "1", "-1", "9223372036854775807", "18446744073709551616", "1.5e308", "0x41", "x'00ff'",
  "b'101'", "'it''s'", "'\\''", "'\\\\'", '"dq"', "_utf8mb4'é'", "N'x'", "''", "TRUE",
  "'2024-02-30'", "DATE '2024-01-01'", "'{\"a\":1}'", "'😀'",
];
// biome-ignore format: a word list reads better packed
const functions = [
  "SLEEP(0.01)", "CONNECTION_ID()", "GET_LOCK('fz', 0)", "RELEASE_LOCK('fz')", "DATABASE()",
  "VERSION()", "NOW(6)", "RAND()", "BENCHMARK(10, 1)", "JSON_OBJECT('a', 1)", "CAST(1 AS CHAR)",
  "CONVERT('x' USING latin1)", "LAST_INSERT_ID()", "@@tx_read_only", "@@session.tx_read_only", "@v",
  "@@autocommit", "LOAD_FILE('/etc/passwd')", "COUNT(*)",
];
const placeholders = ["?", ":a", ":b", "::list", ":1", "?:a", "??", ":"];
// biome-ignore format: a word list reads better packed
const comments = [
  "-- c\n", "--\n", "#c\n", "/* c */", "/*!50000 SELECT */", "/*M! 1 */", "/*", "*/", "/*!", "--x",
];
// biome-ignore format: a word list reads better packed
const punctuation = [
  "(", ")", ",", ";", "=", "<", ">", "+", "-", "*", "/", ".", "@", "@@", "`", "'", '"', "\\", ":=",
  "||", "&&", "!", "~",
];
const separators = [" ", " ", " ", "\n", "\t", "", "\r\n", "\u00a0", "\u0000"];

const token = fc.oneof(
  { arbitrary: fc.constantFrom(...keywords), weight: 6 },
  { arbitrary: fc.constantFrom(...names), weight: 3 },
  { arbitrary: fc.constantFrom(...literals), weight: 2 },
  { arbitrary: fc.constantFrom(...functions), weight: 2 },
  { arbitrary: fc.constantFrom(...placeholders), weight: 2 },
  { arbitrary: fc.constantFrom(...comments), weight: 1 },
  { arbitrary: fc.constantFrom(...punctuation), weight: 2 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 6 }), weight: 1 },
);

/** Tokens joined by random separators. */
const tokenSoup = fc
  .array(fc.tuple(token, fc.constantFrom(...separators)), { minLength: 1, maxLength: 20 })
  .map((parts) => parts.map(([t, s]) => t + s).join(""));

/** Statements that write, each of which a read-only caller must be refused. */
const writes = [
  "DELETE FROM fz_items WHERE id = ?",
  "DELETE FROM fz_items",
  "UPDATE fz_items SET name = ? WHERE id = 1",
  "UPDATE fz_items SET price = price + 1 ORDER BY id LIMIT 1",
  "INSERT INTO fz_notes (body) VALUES (?)",
  "INSERT INTO fz_notes (body) SELECT name FROM fz_items",
  "REPLACE INTO fz_items (id, name) VALUES (1, ?)",
  "INSERT INTO fz_items (id) VALUES (1) ON DUPLICATE KEY UPDATE name = 'x'",
  "DELETE FROM fz_notes RETURNING id",
  "TRUNCATE TABLE fz_notes",
  "DROP TABLE fz_notes",
  "CREATE TABLE fz_new (a INT)",
  "CREATE TABLE fz_copy AS SELECT * FROM fz_items",
  "ALTER TABLE fz_items ADD COLUMN z INT",
  "RENAME TABLE fz_notes TO fz_gone",
  "CREATE VIEW fz_view AS SELECT 1",
  "CREATE INDEX fz_index ON fz_items (name)",
  "CREATE TEMPORARY TABLE fz_tmp (a INT)",
];
/** System variables that govern writes, spelt every way MySQL reads them. */
// biome-ignore format: a word list reads better packed
const accessVariables = [
  "tx_read_only", "TX_READ_ONLY", "`tx_read_only`", "`TX_READ_ONLY`", "@@tx_read_only",
  "@@session.tx_read_only", "@@session.`tx_read_only`", "transaction_read_only",
  "`transaction_read_only`", "autocommit", "`autocommit`", "max_statement_time", "sql_mode",
];
const accessValues = ["0", "1", "OFF", "ON", "DEFAULT", "''", "FALSE"];

const writeAttempt = fc.oneof(
  { arbitrary: fc.constantFrom(...writes), weight: 2 },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom(...accessVariables),
        fc.constantFrom(...accessValues),
        fc.constantFrom(...writes),
      )
      .map(([variable, value, write]) => `SET STATEMENT ${variable}=${value} FOR ${write}`),
    weight: 3,
  },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom("", "SESSION ", "@@", "GLOBAL "),
        fc.constantFrom(...accessVariables),
        fc.constantFrom(...accessValues),
      )
      .map(([scope, variable, value]) => `SET ${scope}${variable} = ${value}`),
    weight: 2,
  },
  {
    arbitrary: fc.constantFrom(
      "SET SESSION TRANSACTION READ WRITE",
      "SET TRANSACTION READ WRITE",
      "START TRANSACTION READ WRITE",
      "BEGIN",
      "COMMIT",
      "ROLLBACK",
      "XA START 'fz'",
      "LOCK TABLES fz_items WRITE",
      "SELECT * FROM fz_items FOR UPDATE",
      "HANDLER fz_items OPEN",
      "PREPARE s FROM 'DELETE FROM fz_items'",
      "EXECUTE s",
      "USE mysql",
      "KILL CONNECTION_ID()",
    ),
    weight: 2,
  },
  fc.constantFrom(...writes).map((write) => `/*!${write}*/`),
  fc.constantFrom(...writes).map((write) => `EXPLAIN ${write}`),
  fc.constantFrom(...writes).map((write) => `WITH w AS (SELECT 1) ${write}`),
);

/** A write attempt with its words' case changed and comments or blanks between them. */
const disguisedWrite = fc
  .tuple(
    writeAttempt,
    fc.array(fc.constantFrom(" ", "  ", "\n", "/**/", " /* x */ ", "\t"), {
      minLength: 1,
      maxLength: 4,
    }),
    fc.boolean(),
  )
  .map(([sql, gaps, lower]) => {
    let gap = 0;
    const spaced = sql.replace(/ /g, () => gaps[gap++ % gaps.length] ?? " ");
    return lower ? spaced.toLowerCase() : spaced;
  });

const sqlText = fc.oneof(
  { arbitrary: tokenSoup, weight: 4 },
  { arbitrary: disguisedWrite, weight: 4 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 1 },
  {
    arbitrary: fc.constantFrom(
      "SELECT * FROM fz_items",
      "SELECT ? AS v",
      "SELECT :a AS v",
      "SHOW TABLES",
    ),
    weight: 1,
  },
);

// ---------------------------------------------------------------------------
// Parameters of every kind, and whole requests.

type PbValueInit = MessageInitShape<typeof PbValueSchema>;
type SqlValueInit = MessageInitShape<typeof ValueSchema>;

const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 12 }),
  fc.constantFrom("", "'", "\\", "\u0000", "😀", "1; DROP TABLE fz_items", "2024-02-29", "1.10"),
);

/** google.protobuf.Value: what `params` and `namedParams` hold. */
const { pbValue } = fc.letrec<{ pbValue: PbValueInit }>((tie) => ({
  pbValue: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant<PbValueInit>({ kind: { case: "nullValue", value: NullValue.NULL_VALUE } }),
    fc.double().map<PbValueInit>((value) => ({ kind: { case: "numberValue", value } })),
    fc.integer().map<PbValueInit>((value) => ({ kind: { case: "numberValue", value } })),
    text.map<PbValueInit>((value) => ({ kind: { case: "stringValue", value } })),
    fc.boolean().map<PbValueInit>((value) => ({ kind: { case: "boolValue", value } })),
    fc
      .dictionary(fc.string({ maxLength: 4 }), tie("pbValue"), { maxKeys: 3 })
      .map<PbValueInit>((fields) => ({ kind: { case: "structValue", value: { fields } } })),
    fc
      .array(tie("pbValue"), { maxLength: 3 })
      .map<PbValueInit>((values) => ({ kind: { case: "listValue", value: { values } } })),
  ),
}));

/** sqlgate.v1.Value: what `typedParams` and `typedNamedParams` hold, every kind. */
const sqlValue = fc.oneof(
  fc.constant<SqlValueInit>({ kind: { case: "nullValue", value: NullValue.NULL_VALUE } }),
  fc.constant<SqlValueInit>({}), // no kind set
  fc
    .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
    .map<SqlValueInit>((value) => ({ kind: { case: "int64Value", value } })),
  fc
    .bigInt({ min: 0n, max: 2n ** 64n - 1n })
    .map<SqlValueInit>((value) => ({ kind: { case: "uint64Value", value } })),
  fc.double().map<SqlValueInit>((value) => ({ kind: { case: "float64Value", value } })),
  text.map<SqlValueInit>((value) => ({ kind: { case: "stringValue", value } })),
  fc
    .uint8Array({ maxLength: 16 })
    .map<SqlValueInit>((value) => ({ kind: { case: "bytesValue", value } })),
  fc
    .oneof(fc.constantFrom("0", "-12.500", "1e5", "99999999999999999999.99", ".5", "1."), text)
    .map<SqlValueInit>((value) => ({ kind: { case: "decimalValue", value } })),
  fc
    .oneof(
      fc.constantFrom(
        "2024-02-29",
        "2024-02-30",
        "-838:59:59",
        "9999-12-31 23:59:59.999999",
        "2024",
      ),
      text,
    )
    .map<SqlValueInit>((value) => ({ kind: { case: "temporalValue", value } })),
  fc
    .oneof(fc.json({ maxDepth: 2 }), text)
    .map<SqlValueInit>((value) => ({ kind: { case: "jsonValue", value } })),
  fc.boolean().map<SqlValueInit>((value) => ({ kind: { case: "boolValue", value } })),
);

const paramName = fc.oneof(fc.constantFrom("a", "b", "list", "1", ""), fc.string({ maxLength: 5 }));

/** Roughly how many `?` a text holds: often right, so that many requests reach MySQL. */
const questionMarks = (sql: string) => sql.split("?").length - 1;
/** Roughly which `:name` placeholders a text holds. */
const namedPlaceholders = (sql: string) => [
  ...new Set(Array.from(sql.matchAll(/(?<![:\w]):{1,2}([A-Za-z_]\w*)/g), (m) => m[1] ?? "")),
];

type ExecuteInit = MessageInitShape<typeof ExecuteRequestSchema>;
type ParamsInit = Pick<ExecuteInit, "params" | "typedParams" | "namedParams" | "typedNamedParams">;

/** A map from each of `keys` to a value (`keys` is mostly the text's own names). */
function byName<T>(keys: fc.Arbitrary<string[]>, value: fc.Arbitrary<T>) {
  return keys.chain((names) =>
    fc
      .array(value, { minLength: names.length, maxLength: names.length })
      .map((values) => Object.fromEntries(names.map((name, i) => [name, values[i] as T]))),
  );
}

const executeRequest: fc.Arbitrary<ExecuteInit> = sqlText.chain((sql) => {
  const count = fc.oneof(
    { arbitrary: fc.constant(questionMarks(sql)), weight: 4 },
    { arbitrary: fc.nat(4), weight: 1 },
  );
  const keys = fc.oneof(
    { arbitrary: fc.constant(namedPlaceholders(sql)), weight: 4 },
    { arbitrary: fc.array(paramName, { maxLength: 3 }), weight: 1 },
  );
  const positional = <T>(value: fc.Arbitrary<T>) =>
    count.chain((n) => fc.array(value, { minLength: n, maxLength: n }));
  const params: fc.Arbitrary<ParamsInit> = fc.oneof(
    fc.constant({}),
    positional(pbValue).map((params) => ({ params })),
    positional(sqlValue).map((typedParams) => ({ typedParams })),
    byName(keys, pbValue).map((namedParams) => ({ namedParams })),
    byName(keys, sqlValue).map((typedNamedParams) => ({ typedNamedParams })),
    // Any mix of the forms, which the gateway must refuse clearly.
    fc.record(
      {
        params: positional(pbValue),
        typedParams: positional(sqlValue),
        namedParams: fc.dictionary(paramName, pbValue, { maxKeys: 3 }),
        typedNamedParams: fc.dictionary(paramName, sqlValue, { maxKeys: 3 }),
      },
      { requiredKeys: [] },
    ),
  );
  const options = fc.record(
    {
      maxRows: fc.oneof(fc.nat(3), fc.nat(0xffffffff)),
      timeoutMs: fc.oneof(
        { arbitrary: fc.constant(0), weight: 6 },
        { arbitrary: fc.integer({ min: 1, max: 50 }), weight: 1 },
        { arbitrary: fc.nat(0xffffffff), weight: 1 },
      ),
      readOnly: fc.boolean(),
    },
    { requiredKeys: [] },
  );
  const session = fc.oneof(
    { arbitrary: fc.constant(""), weight: 12 },
    { arbitrary: fc.constantFrom("sg1.", "sg1.eyJ9.x", "x.y.z"), weight: 1 },
    { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
  );
  return fc
    .tuple(params, session, fc.option(options, { nil: undefined }))
    .map(([p, s, o]) => ({ sql, ...p, session: s, ...(o === undefined ? {} : { options: o }) }));
});

/** Byte-level damage to a valid encoding. */
type Mutation =
  | { readonly op: "flip"; readonly at: number; readonly byte: number }
  | { readonly op: "cut"; readonly at: number }
  | { readonly op: "insert"; readonly at: number; readonly bytes: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ op: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ maxLength: 8 }),
  }),
);

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let out = Buffer.from(bytes);
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % out.length;
    if (m.op === "flip") out[at] = m.byte;
    else if (m.op === "cut") out = out.subarray(0, at);
    else out = Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
  }
  return out;
}

/** An ExecuteRequest's JSON; undefined where JSON cannot say it (a NaN in a google.protobuf.Value). */
function requestJson(request: ExecuteInit): string | undefined {
  try {
    return JSON.stringify(toJson(ExecuteRequestSchema, create(ExecuteRequestSchema, request)));
  } catch {
    return undefined;
  }
}

// PlanetScale's API: sessions with random fields and bind variables.

const vitessTypeNames = Object.keys(VitessType).filter((k) => Number.isNaN(Number(k)));
const base64 = (s: string | Uint8Array) => Buffer.from(s).toString("base64");

const bindValue = fc.record(
  {
    type: fc.oneof(fc.constantFrom(...vitessTypeNames), fc.integer({ min: -1, max: 20_000 })),
    value: fc.oneof(
      fc
        .constantFrom("1", "-1", "1.5", "1e999", "0x1", "x'; DELETE FROM fz_items; --", "")
        .map(base64),
      text.map(base64),
      fc.uint8Array({ maxLength: 12 }).map(base64),
    ),
  },
  { requiredKeys: [] },
);
const bindVariable = fc.oneof(
  bindValue,
  fc.record(
    { type: fc.constant("TUPLE"), values: fc.array(bindValue, { maxLength: 4 }) },
    { requiredKeys: [] },
  ),
);

const sessionName = fc.oneof(
  fc.constantFrom("", "u.", "u.x", "sg1.", "sg1.eyJzIjoiYSJ9.x"),
  fc.string({ maxLength: 30 }).map((s) => `u.x.${Buffer.from(s).toString("base64url")}`),
  fc.string({ maxLength: 20 }),
);
const randomSession = fc.record(
  {
    signature: fc.uint8Array({ maxLength: 40 }).map(base64),
    vitessSession: fc.record(
      {
        inTransaction: fc.boolean(),
        autocommit: fc.boolean(),
        targetString: fc.oneof(
          fc.constantFrom("mysql", "information_schema", ""),
          fc.string({ maxLength: 10 }),
        ),
        options: fc.record(
          {
            includedFields: fc.constantFrom("ALL", "TYPE_ONLY", "TYPE_AND_NAME", 7),
            clientFoundRows: fc.boolean(),
            workload: fc.constantFrom("OLTP", "OLAP", "DBA", 0, 9),
          },
          { requiredKeys: [] },
        ),
        lastInsertId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
        rowCount: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
        inReservedConn: fc.boolean(),
        DDLStrategy: fc.string({ maxLength: 8 }),
        SessionUUID: sessionName,
        enableSystemSettings: fc.boolean(),
        unknownField: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);

/** How a fuzzed PlanetScale request picks its session. */
type SessionChoice = "none" | "random" | "last" | "lastAltered";

/** Bind variables whose values are what their types say, mostly. */
const validBindVariable = fc.oneof(
  fc.integer().map((n) => ({ type: "INT64", value: base64(String(n)) })),
  fc
    .double({ noNaN: true, noDefaultInfinity: true })
    .map((n) => ({ type: "FLOAT64", value: base64(String(n)) })),
  text.map((s) => ({ type: "VARCHAR", value: base64(s) })),
  fc.uint8Array({ maxLength: 8 }).map((b) => ({ type: "VARBINARY", value: base64(b) })),
  fc.constant({ type: "NULL_TYPE" }),
  fc.array(fc.nat(9), { minLength: 1, maxLength: 3 }).map((ns) => ({
    type: "TUPLE",
    values: ns.map((n) => ({ type: "INT64", value: base64(String(n)) })),
  })),
);

const psdbRequest = sqlText.chain((query) => {
  const keys = fc.oneof(
    { arbitrary: fc.constant(namedPlaceholders(query)), weight: 4 },
    { arbitrary: fc.array(paramName, { maxLength: 3 }), weight: 1 },
  );
  return fc.record({
    query: fc.constant(query),
    bindVariables: fc.oneof(
      byName(
        keys,
        fc.oneof(
          { arbitrary: validBindVariable, weight: 3 },
          { arbitrary: bindVariable, weight: 1 },
        ),
      ),
      fc.dictionary(paramName, bindVariable, { maxKeys: 3 }),
    ),
    session: fc.constantFrom<SessionChoice>("none", "random", "last", "last", "lastAltered"),
    randomSession,
    prepared: fc.boolean(),
  });
});

// ---------------------------------------------------------------------------
// What a well-formed answer is.

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

const answerText = (answer: Answer) => answer.body.toString("utf8").slice(0, 500);

/**
 * Checks a Connect unary error: a known code, the HTTP status Connect gives
 * it, and a clear message. `internal` only as the README's known limitation
 * (an undecodable protobuf body); `unknown` only for a MySQL error, which
 * carries its errno. Returns the code's name.
 */
function checkConnectError(answer: Answer, psdb: boolean): string {
  assert.equal(answer.contentType, "application/json", answerText(answer));
  const error = JSON.parse(answer.body.toString("utf8")) as {
    code?: unknown;
    message?: unknown;
    details?: { type?: string; debug?: { errno?: number } }[];
    error?: { code?: unknown; message?: unknown };
  };
  const code = codeFromString(String(error.code));
  assert.ok(code !== undefined, `unknown code: ${answerText(answer)}`);
  assert.equal(answer.status, codeToHttpStatus(code), answerText(answer));
  assert.ok(typeof error.message === "string" && error.message.length > 0, answerText(answer));
  if (code === Code.Internal) {
    assert.match(error.message, /^parse binary: /, `an internal error: ${answerText(answer)}`);
  }
  let outcome = String(error.code);
  if (code === Code.Unknown) {
    const errno = error.details?.find((d) => d.type === "sqlgate.v1.SqlError")?.debug?.errno;
    assert.ok(errno !== undefined, `an unknown error that is not MySQL's: ${answerText(answer)}`);
    outcome += ` (errno ${errno})`;
  }
  if (psdb) {
    assert.equal(error.error?.code, String(error.code).toUpperCase(), answerText(answer));
    assert.equal(error.error?.message, error.message);
  }
  return outcome;
}

/** Checks a sqlgate Execute answer; returns "ok" or the error code. */
function checkSqlgateAnswer(answer: Answer, binary: boolean): string {
  if (answer.status !== 200) return checkConnectError(answer, false);
  if (binary) {
    assert.equal(answer.contentType, "application/proto");
    fromBinary(ExecuteResponseSchema, answer.body);
  } else {
    assert.equal(answer.contentType, "application/json");
    fromJson(ExecuteResponseSchema, JSON.parse(answer.body.toString("utf8")) as JsonValue);
  }
  return "ok";
}

/**
 * Checks a PlanetScale Execute answer: HTTP 200 with a session and either a
 * result or an in-band error with a clear message, or a Connect error with
 * an `error` object. Returns "ok", the in-band Vitess code, or the Connect
 * code; and the session to send next, if any.
 */
function checkPsdbAnswer(
  answer: Answer,
  binary: boolean,
): { outcome: string; session?: JsonValue } {
  if (answer.status !== 200) return { outcome: checkConnectError(answer, true) };
  const response = binary
    ? fromBinary(PsdbExecuteResponseSchema, answer.body)
    : fromJson(PsdbExecuteResponseSchema, JSON.parse(answer.body.toString("utf8")) as JsonValue);
  assert.ok(response.session !== undefined, `no session: ${answerText(answer)}`);
  assert.ok(
    (response.result === undefined) !== (response.error === undefined),
    `not exactly one of result and error: ${answerText(answer)}`,
  );
  const session = (toJson(PsdbExecuteResponseSchema, response) as { session: JsonValue }).session;
  if (response.error === undefined) return { outcome: "ok", session };
  const { code, message } = response.error;
  assert.ok(message.length > 0, `an error without a message: ${answerText(answer)}`);
  // In-band errors carry the Connect code's number (gRPC and Vitess share them).
  assert.notEqual(code, 13, `an internal error: ${answerText(answer)}`);
  // Unknown (2) only for a MySQL error, which names its errno.
  const errno = /\(errno (\d+)\)/.exec(message)?.[1];
  if (code === 2)
    assert.ok(errno !== undefined, `an unknown error that is not MySQL's: ${message}`);
  return { outcome: `in-band ${code}${code === 2 ? ` (errno ${errno})` : ""}`, session };
}

// ---------------------------------------------------------------------------

describe("fuzz", () => {
  let gateway: TestGateway;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let mysqlUser: string;
  let authorization: string;
  /** CHECKSUM TABLE of every table in the database, before any fuzzing. */
  let baseline: string;
  let session: http2.ClientHttp2Session | undefined;
  const cleanups: (() => unknown)[] = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  after(async () => {
    session?.destroy();
    for (const fn of cleanups.reverse()) await fn();
  });

  /** Every table of the database and its checksum, as one comparable string. */
  const tableState = async () => {
    const [tables] = await db.admin.query<RowDataPacket[]>(
      "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
      [db.name],
    );
    const list = tables.map((row) => `\`${String(row.name)}\``).join(", ");
    const [sums] = await db.admin.query<RowDataPacket[]>(`CHECKSUM TABLE ${list}`);
    return JSON.stringify(sums);
  };

  /** Puts the fuzz tables back as they were and drops any table a case created. */
  const restoreTables = async () => {
    const [tables] = await db.admin.query<RowDataPacket[]>(
      "SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
      [db.name],
    );
    for (const { name, type } of tables) {
      if (String(name).startsWith("sqlgate_")) continue;
      await db.admin.query(`DROP ${type === "VIEW" ? "VIEW" : "TABLE"} \`${String(name)}\``);
    }
    await db.admin.query(schema);
  };

  /** Fails the case if a table changed, after putting the tables back. */
  const expectTablesUnchanged = async (what: () => string) => {
    const now = await tableState();
    if (now === baseline) return;
    await restoreTables();
    assert.fail(`a table changed after ${what()}:\n${now}\nwas:\n${baseline}`);
  };

  /** POSTs over HTTP/1.1 (fetch) or HTTP/2; a dropped connection or a hang throws. */
  const send = async (
    version: "1.1" | "2",
    urlPath: string,
    body: string | Uint8Array,
    contentType: string,
  ): Promise<Answer> => {
    const headers = { "content-type": contentType, authorization };
    if (version === "1.1") {
      const res = await fetch(`${gateway.baseUrl}${urlPath}`, {
        method: "POST",
        headers,
        body: Buffer.from(body),
        signal: AbortSignal.timeout(callLimitMs),
      });
      return {
        status: res.status,
        contentType: res.headers.get("content-type") ?? "",
        body: Buffer.from(await res.arrayBuffer()),
      };
    }
    if (session === undefined || session.closed || session.destroyed) {
      session = http2.connect(gateway.baseUrl);
      session.on("error", () => {});
    }
    const stream = session.request({ ":method": "POST", ":path": urlPath, ...headers });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`no answer within ${callLimitMs} ms`));
      }, callLimitMs);
      let status = 0;
      let type = "";
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        type = String(h["content-type"] ?? "");
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.on("close", () => {
        clearTimeout(timer);
        if (status === 0)
          reject(new Error(`stream closed without an answer (code ${stream.rstCode})`));
        else resolve({ status, contentType: type, body: Buffer.concat(chunks) });
      });
      stream.end(body);
    });
  };

  /** Counts outcomes per property, reported as a diagnostic. */
  const tally = () => {
    const counts = new Map<string, number>();
    return {
      add: (outcome: string) => counts.set(outcome, (counts.get(outcome) ?? 0) + 1),
      toString: () =>
        [...counts]
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k}: ${v}`)
          .join(", "),
    };
  };

  before(async () => {
    db = await createTestDatabase(t);
    await db.admin.query(schema);
    // A MySQL user of the gateway's own: its connections can be counted, and
    // what it may do is bounded to this database whatever a case slips past.
    mysqlUser = `fz_${randomBytes(4).toString("hex")}`;
    const password = randomBytes(12).toString("hex");
    await db.admin.query("CREATE USER ?@'localhost' IDENTIFIED BY ?", [mysqlUser, password]);
    t.after(() => db.admin.query("DROP USER IF EXISTS ?@'localhost'", [mysqlUser]));
    await db.admin.query(`GRANT ALL PRIVILEGES ON \`${db.name}\`.* TO ?@'localhost'`, [mysqlUser]);
    const url = new URL(db.url);
    url.username = mysqlUser;
    url.password = password;

    const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-fuzz-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const credentials = path.join(dir, "credentials.yaml");
    const secret = await createCredential(credentials, {
      name: "fuzzer",
      role: "read_only",
      database: undefined,
      replace: false,
    });
    authorization = `Basic ${Buffer.from(`fuzzer:${secret}`).toString("base64")}`;
    gateway = await startGateway(t, url.toString(), {
      env: { ...gatewayEnv, SQLGATE_CREDENTIALS_FILE: credentials },
    });
    baseline = await tableState();
    // The credential can read, so refusals below are about writing.
    const read = await send(
      "1.1",
      sqlgatePath,
      '{"sql":"SELECT COUNT(*) FROM fz_items"}',
      "application/json",
    );
    assert.equal(read.status, 200, answerText(read));
  });

  test("arbitrary ExecuteRequests, in JSON and binary, over HTTP/1.1 and HTTP/2", async (ctx) => {
    const outcomes = tally();
    try {
      await fc.assert(
        fc.asyncProperty(
          executeRequest,
          fc.boolean(),
          fc.constantFrom<"1.1" | "2">("1.1", "2"),
          async (request, binary, version) => {
            const json = binary ? undefined : requestJson(request);
            const body =
              json ?? toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, request));
            const answer = await send(
              version,
              sqlgatePath,
              body,
              json === undefined ? "application/proto" : "application/json",
            );
            outcomes.add(checkSqlgateAnswer(answer, json === undefined));
            await expectTablesUnchanged(() =>
              JSON.stringify(request, (_, v) => (typeof v === "bigint" ? `${v}n` : v)),
            );
          },
        ),
        { numRuns: 4000, includeErrorInReport: true },
      );
    } finally {
      ctx.diagnostic(`outcomes: ${outcomes}`);
    }
  });

  test("arbitrary bytes as protobuf bodies, on both paths", async (ctx) => {
    const outcomes = tally();
    /** Random bytes, or a valid request for the path with bytes damaged. */
    const body = (
      urlPath: string,
      random: Uint8Array | undefined,
      sql: string,
      damage: Mutation[],
    ) => {
      if (random !== undefined) return random;
      const valid =
        urlPath === psdbPath
          ? toBinary(PsdbExecuteRequestSchema, create(PsdbExecuteRequestSchema, { query: sql }))
          : toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { sql }));
      return mutate(valid, damage);
    };
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(sqlgatePath, psdbPath),
          fc.option(fc.uint8Array({ maxLength: 200 }), { nil: undefined }),
          sqlText,
          fc.array(mutation, { minLength: 1, maxLength: 4 }),
          fc.constantFrom<"1.1" | "2">("1.1", "2"),
          async (urlPath, random, sql, damage, version) => {
            const bytes = body(urlPath, random, sql, damage);
            const answer = await send(version, urlPath, bytes, "application/proto");
            outcomes.add(
              urlPath === psdbPath
                ? checkPsdbAnswer(answer, true).outcome
                : checkSqlgateAnswer(answer, true),
            );
            await expectTablesUnchanged(() => `${urlPath} ${Buffer.from(bytes).toString("hex")}`);
          },
        ),
        { numRuns: 2000, includeErrorInReport: true },
      );
    } finally {
      ctx.diagnostic(`outcomes: ${outcomes}`);
    }
  });

  test("arbitrary JSON as JSON bodies, on both paths", async (ctx) => {
    const outcomes = tally();
    const shaped = fc.record(
      {
        sql: fc.oneof(sqlText, fc.jsonValue({ maxDepth: 2 })),
        query: fc.oneof(sqlText, fc.jsonValue({ maxDepth: 2 })),
        params: fc.jsonValue({ maxDepth: 3 }),
        typedParams: fc.oneof(
          fc.array(
            fc.dictionary(
              fc.constantFrom("int64Value", "stringValue", "bytesValue", "nullValue", "x"),
              fc.jsonValue({ maxDepth: 1 }),
              { maxKeys: 2 },
            ),
          ),
          fc.jsonValue(),
        ),
        namedParams: fc.jsonValue({ maxDepth: 3 }),
        bindVariables: fc.jsonValue({ maxDepth: 3 }),
        session: fc.jsonValue({ maxDepth: 3 }),
        options: fc.oneof(
          fc.record(
            { maxRows: fc.jsonValue(), timeoutMs: fc.jsonValue(), readOnly: fc.jsonValue() },
            { requiredKeys: [] },
          ),
          fc.jsonValue(),
        ),
      },
      { requiredKeys: [] },
    );
    const bodies = fc.oneof(
      fc.json({ maxDepth: 4 }),
      fc.jsonValue({ maxDepth: 3, stringUnit: "binary" }).map((v) => JSON.stringify(v) ?? "null"),
      shaped.map((v) => JSON.stringify(v)),
      fc.string({ unit: "binary", maxLength: 30 }), // mostly not JSON at all
    );
    try {
      await fc.assert(
        fc.asyncProperty(
          bodies,
          fc.constantFrom(sqlgatePath, psdbPath),
          fc.constantFrom<"1.1" | "2">("1.1", "2"),
          async (body, urlPath, version) => {
            const answer = await send(version, urlPath, body, "application/json");
            outcomes.add(
              urlPath === psdbPath
                ? checkPsdbAnswer(answer, false).outcome
                : checkSqlgateAnswer(answer, false),
            );
            await expectTablesUnchanged(() => `${urlPath} ${body}`);
          },
        ),
        { numRuns: 2000, includeErrorInReport: true },
      );
    } finally {
      ctx.diagnostic(`outcomes: ${outcomes}`);
    }
  });

  test("arbitrary PlanetScale Execute bodies, sessions carried from call to call", async (ctx) => {
    const outcomes = tally();
    /** The session the last answer returned, as a client would send it next. */
    let lastSession: JsonValue | undefined;
    try {
      await fc.assert(
        fc.asyncProperty(
          psdbRequest,
          fc.constantFrom<"1.1" | "2">("1.1", "2"),
          async (request, version) => {
            let sessionJson: JsonValue | undefined;
            if (request.session === "random") sessionJson = request.randomSession as JsonValue;
            else if (request.session === "last") sessionJson = lastSession;
            else if (
              request.session === "lastAltered" &&
              typeof lastSession === "object" &&
              lastSession !== null
            ) {
              sessionJson = {
                ...(lastSession as Record<string, JsonValue>),
                ...(request.randomSession as Record<string, JsonValue>),
              };
            }
            const body = JSON.stringify({
              query: request.query,
              bindVariables: request.bindVariables,
              prepared: request.prepared,
              ...(sessionJson === undefined ? {} : { session: sessionJson }),
            });
            const answer = await send(version, psdbPath, body, "application/json");
            const { outcome, session: next } = checkPsdbAnswer(answer, false);
            outcomes.add(outcome);
            if (next !== undefined) lastSession = next;
            await expectTablesUnchanged(() => body);
          },
        ),
        { numRuns: 3000, includeErrorInReport: true },
      );
    } finally {
      ctx.diagnostic(`outcomes: ${outcomes}`);
    }
  });

  test("afterwards: the gateway answers, no table changed, no MySQL connection leaked", async () => {
    const read = await send(
      "2",
      sqlgatePath,
      '{"sql":"SELECT COUNT(*) AS n FROM fz_items"}',
      "application/json",
    );
    assert.equal(read.status, 200, answerText(read));
    assert.deepEqual(JSON.parse(read.body.toString("utf8")).rows, [
      { values: [{ int64Value: "3" }] },
    ]);
    const psdb = await send(
      "1.1",
      psdbPath,
      '{"query":"SELECT COUNT(*) FROM fz_notes"}',
      "application/json",
    );
    assert.equal(checkPsdbAnswer(psdb, false).outcome, "ok");
    assert.equal(await tableState(), baseline);
    // Pinned sessions end after SQLGATE_TRANSACTION_IDLE_TIMEOUT_MS, idle
    // transaction and control connections close after SQLGATE_POOL_IDLE_TIMEOUT_MS.
    const connections = async () => {
      const [rows] = await db.admin.query<RowDataPacket[]>(
        "SELECT COMMAND AS command, INFO AS info FROM information_schema.PROCESSLIST WHERE USER = ?",
        [mysqlUser],
      );
      return rows;
    };
    const settleBy = Date.now() + 15_000;
    let open = await connections();
    while (
      (open.length > idleConnectionsAtMost || open.some((c) => c.command !== "Sleep")) &&
      Date.now() < settleBy
    ) {
      await new Promise((r) => setTimeout(r, 250));
      open = await connections();
    }
    assert.ok(
      open.length <= idleConnectionsAtMost,
      `${open.length} connections of ${mysqlUser} (at most ${idleConnectionsAtMost} when idle): ${JSON.stringify(open)}`,
    );
    assert.deepEqual(
      open.filter((c) => c.command !== "Sleep"),
      [],
      "a statement still runs",
    );
  });
});
