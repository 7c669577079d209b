/**
 * Hostile requests against one real gateway over real HTTP, on both Execute
 * paths (`sqlgate.v1.DatabaseService` and PlanetScale's `psdb.v1alpha1.Database`):
 * malformed bodies and framing, wrong content types, enormous headers and
 * bodies, deep nesting, invalid UTF-8, NUL bytes, oversized and countless
 * parameters, wrong value kinds, a slowly dribbled body, and HTTP/2 floods of
 * RST_STREAM and SETTINGS. Sent with `fetch`, `node:http`, `node:http2` and raw
 * `node:net` sockets, as no typed client would. Each case checks the exact
 * answer (HTTP status and Connect code), then that the gateway still
 * answers good requests and that no row of a table with known rows changed
 * (every refused statement is a write that would change it). All cases share
 * one gateway, so each also shows that it survived the ones before.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { ExecuteRequestSchema as PsdbExecuteRequestSchema } from "../gen/psdb/v1alpha1/database_pb.js";
import { ExecuteRequestSchema } from "../gen/sqlgate/v1/database_pb.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase, waitUntilGone } from "./support/mysql.js";

const sqlgatePath = "/sqlgate.v1.DatabaseService/Execute";
const psdbPath = "/psdb.v1alpha1.Database/Execute";
/** The request body limit of the gateway under attack (1 MiB). */
const maxBodyBytes = 1024 * 1024;
/** Its cap on any call's deadline. */
const maxTimeoutMs = 5000;

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

const text = (answer: Answer) => answer.body.toString("utf8");

/** The JSON body of an answer; fails if it is not JSON. */
function jsonOf(answer: Answer): Record<string, unknown> {
  assert.match(answer.contentType, /^application\/json/, `${answer.status}: ${text(answer)}`);
  return JSON.parse(text(answer)) as Record<string, unknown>;
}

/**
 * Checks a Connect error answer: its HTTP status, `code` and a message; on the
 * PlanetScale path also the `error` object @planetscale/database reads.
 */
function expectError(answer: Answer, status: number, code: string, path = sqlgatePath): string {
  assert.equal(answer.status, status, text(answer));
  const body = jsonOf(answer);
  assert.equal(body.code, code, text(answer));
  assert.equal(typeof body.message, "string");
  if (path === psdbPath) {
    const error = body.error as { code?: unknown; message?: unknown } | undefined;
    assert.equal(error?.code, code.toUpperCase(), text(answer));
    assert.equal(error?.message, body.message);
  }
  return body.message as string;
}

/** Checks a PlanetScale in-band SQL error (HTTP 200, `error`, no `result`); returns its message. */
function expectInBandError(answer: Answer, vitessCode: string): string {
  assert.equal(answer.status, 200, text(answer));
  const body = jsonOf(answer);
  const error = body.error as { code?: unknown; message?: unknown } | undefined;
  assert.equal(error?.code, vitessCode, text(answer));
  assert.equal(body.result, undefined);
  assert.ok(body.session !== undefined, "every PlanetScale answer carries the session");
  return String(error?.message);
}

/** The cells of a PlanetScale JSON result as text (null for NULL). */
function psdbCells(answer: Answer): (string | null)[][] {
  assert.equal(answer.status, 200, text(answer));
  const body = jsonOf(answer);
  assert.equal(body.error, undefined, text(answer));
  const result = body.result as { rows?: { lengths: string[]; values?: string }[] } | undefined;
  return (result?.rows ?? []).map((row) => {
    const values = Buffer.from(row.values ?? "", "base64");
    let at = 0;
    return row.lengths.map((length) => {
      const n = Number(length);
      if (n < 0) return null;
      const cell = values.subarray(at, at + n).toString("utf8");
      at += n;
      return cell;
    });
  });
}

/** The values of a sqlgate JSON result, one array per row. */
function sqlgateValues(answer: Answer): Record<string, unknown>[][] {
  assert.equal(answer.status, 200, text(answer));
  const rows = (jsonOf(answer).rows ?? []) as { values: Record<string, unknown>[] }[];
  return rows.map((row) => row.values);
}

/** POSTs over HTTP/1.1 with fetch. */
async function post(
  gateway: TestGateway,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<Answer> {
  const res = await fetch(`${gateway.baseUrl}${path}`, {
    method: "POST",
    headers,
    body: Buffer.from(body),
  });
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    body: Buffer.from(await res.arrayBuffer()),
  };
}

interface H2Answer {
  /** Undefined when the stream was reset before any response. */
  readonly status: number | undefined;
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly rstCode: number;
}

/** One request on a new HTTP/2 (h2c) connection, closed afterwards. */
function h2Request(
  gateway: TestGateway,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array | string,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(gateway.baseUrl);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ...headers });
    let status: number | undefined;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    stream.on("trailers", (h) => {
      trailers = h;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", () => {}); // a reset is reported by rstCode below
    stream.on("close", () => {
      session.close();
      resolve({
        status,
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(chunks),
        rstCode: stream.rstCode ?? 0,
      });
    });
    stream.end(body);
  });
}

/** A Connect unary POST over HTTP/2, as an Answer (fails if the stream was reset). */
async function h2Post(
  gateway: TestGateway,
  path: string,
  body: string | Uint8Array,
  contentType = "application/json",
): Promise<Answer> {
  const answer = await h2Request(gateway, { ":path": path, "content-type": contentType }, body);
  assert.notEqual(answer.status, undefined, `stream reset with code ${answer.rstCode}`);
  return {
    status: answer.status ?? 0,
    contentType: String(answer.headers["content-type"] ?? ""),
    body: answer.body,
  };
}

interface RawAnswer {
  /** Everything the server sent, as latin1 text. */
  readonly received: string;
  /** Whether the server closed the connection within the wait. */
  readonly closed: boolean;
}

/**
 * Writes `bytes` on a raw TCP connection (without half-closing it, which
 * Node's HTTP server would answer by closing) and collects what comes back
 * until the server closes the connection or `waitMs` passes.
 */
function rawExchange(gateway: TestGateway, bytes: string | Buffer, waitMs = 5000) {
  return new Promise<RawAnswer>((resolve) => {
    const socket = net.connect(gateway.port, "127.0.0.1");
    let received = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received, closed: false });
    }, waitMs);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ received, closed: true });
    });
    socket.write(bytes);
  });
}

/** The body of a Connect request in JSON: the SQL field is `sql` or `query`. */
function jsonBody(path: string, sql: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ [path === psdbPath ? "query" : "sql"]: sql, ...extra });
}

/** The binary body of a request running `sql` on `path`. */
function binaryBody(path: string, sql: string): Uint8Array {
  return path === psdbPath
    ? toBinary(PsdbExecuteRequestSchema, create(PsdbExecuteRequestSchema, { query: sql }))
    : toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { sql }));
}

type SqlgateRequest = MessageInitShape<typeof ExecuteRequestSchema>;

/** A protobuf varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 127) {
    out.push((v & 127) | 128);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

const deleteAll = "DELETE FROM hostile";

describe("hostile input", () => {
  let gateway: TestGateway;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  /** The table's rows as set up, read directly. */
  let knownRows: unknown[];
  const cleanups: (() => unknown)[] = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  const readRows = async () => {
    const [rows] = await db.admin.query("SELECT id, v, HEX(b) AS b FROM hostile ORDER BY id");
    return rows as unknown[];
  };

  /** Puts the known rows back (after a case that changed them, so later cases start clean). */
  const restoreRows = async () => {
    await db.admin.query("DELETE FROM hostile");
    await db.admin.query(
      "INSERT INTO hostile VALUES (1, 'one', x'00ff'), (2, 'two', NULL), (3, 'it''s', '')",
    );
  };

  /**
   * The gateway still answers good requests on both paths and both HTTP
   * versions, and no row changed.
   */
  const expectUnharmed = async () => {
    const ids = sqlgateValues(
      await post(gateway, sqlgatePath, jsonBody(sqlgatePath, "SELECT id FROM hostile ORDER BY id")),
    );
    assert.deepEqual(ids, [[{ int64Value: "1" }], [{ int64Value: "2" }], [{ int64Value: "3" }]]);
    const names = psdbCells(
      await h2Post(gateway, psdbPath, jsonBody(psdbPath, "SELECT v FROM hostile ORDER BY id")),
    );
    assert.deepEqual(names, [["one"], ["two"], ["it's"]]);
    assert.deepEqual(await readRows(), knownRows, "a row changed");
  };

  before(async () => {
    db = await createTestDatabase(t);
    await db.admin.query(
      "CREATE TABLE hostile (id INT PRIMARY KEY, v VARCHAR(100), b VARBINARY(100)) CHARACTER SET utf8mb4",
    );
    await restoreRows();
    knownRows = await readRows();
    assert.equal(knownRows.length, 3);
    gateway = await startGateway(t, db.url, {
      env: {
        SQLGATE_MAX_BODY_BYTES: String(maxBodyBytes),
        SQLGATE_MAX_TIMEOUT_MS: String(maxTimeoutMs),
        SQLGATE_DEFAULT_TIMEOUT_MS: String(maxTimeoutMs),
      },
    });
  });

  test("malformed and truncated JSON is invalid_argument on both paths", async () => {
    for (const path of [sqlgatePath, psdbPath]) {
      const good = jsonBody(path, deleteAll);
      const field = path === psdbPath ? "query" : "sql";
      const bodies = [
        good.slice(0, -1), // truncated
        good.slice(0, Math.floor(good.length / 2)),
        `${good.slice(0, -1)},}`, // trailing comma
        `{${field}: "${deleteAll}"}`, // unquoted key
        `${good}{}`, // trailing data
        `{"${field}":"${deleteAll}\\x"}`, // invalid escape
        `{"${field}":["${deleteAll}"]}`, // wrong JSON type
        `"${deleteAll}"`,
        "[]",
        "null",
        "",
        "\u0000",
      ];
      for (const body of bodies) {
        expectError(await post(gateway, path, body), 400, "invalid_argument", path);
      }
      // Over HTTP/2 too.
      expectError(await h2Post(gateway, path, good.slice(0, -1)), 400, "invalid_argument", path);
    }
    await expectUnharmed();
  });

  test("malformed and truncated protobuf is internal (parse binary, as documented) on both paths", async () => {
    for (const path of [sqlgatePath, psdbPath]) {
      const valid = binaryBody(path, deleteAll);
      const bodies = [
        valid.subarray(0, valid.length - 3), // truncated
        new Uint8Array([...valid, 0xff, 0xff, 0xff, 0x7f]), // a tag with wire type 7
        new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x41]), // a length past the end
        new Uint8Array([0x08, ...Array(10).fill(0xff), 0x01]), // an 11-byte varint
        new Uint8Array([0x02, 0x01, 0x00]), // field number 0
        // 100,000 nested start-group tags: the decoder's recursion limit, not the stack.
        new Uint8Array([...valid, ...Array(100_000).fill(0x7b)]),
        Buffer.from(jsonBody(path, deleteAll)), // JSON sent as protobuf
      ];
      for (const body of bodies) {
        // Connect-ES reports undecodable binary as `internal` (HTTP 500), a
        // known limitation in the README; the message says what failed.
        const message = expectError(
          await post(gateway, path, body, { "content-type": "application/proto" }),
          500,
          "internal",
          path,
        );
        assert.match(message, /^parse binary: /);
      }
    }
    await expectUnharmed();
  });

  test("malformed HTTP/1.1 framing is 400 and closes the connection", async () => {
    const body = jsonBody(sqlgatePath, deleteAll);
    const head = `POST ${sqlgatePath} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n`;
    const requests = [
      `${head}content-length: -5\r\n\r\n${body}`,
      `${head}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n${body}`,
      `${head}transfer-encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
      `${head}content-length: 1\r\ncontent-length: 2\r\n\r\n${body}`,
      "\u0000\u0001\u0002\u00ff\r\n\r\n",
    ];
    for (const request of requests) {
      const answer = await rawExchange(gateway, request);
      assert.match(answer.received, /^HTTP\/1\.1 400 Bad Request\r\n/, JSON.stringify(request));
      assert.ok(answer.closed, "the connection was closed");
    }
    await expectUnharmed();
  });

  test("malformed gRPC framing is a gRPC error status on both paths", async () => {
    const envelope = (flags: number, length: number, payload: number[]) => {
      const header = Buffer.alloc(5);
      header[0] = flags;
      header.writeUInt32BE(length, 1);
      return Buffer.concat([header, Buffer.from(payload)]);
    };
    for (const path of [sqlgatePath, psdbPath]) {
      const cases: [Buffer, number, RegExp][] = [
        // JSON where an envelope belongs: its first bytes read as a 577 MB length.
        [Buffer.from(jsonBody(path, deleteAll)), 8, /larger than configured readMaxBytes/],
        [envelope(0, 100, [0x0a, 0x01]), 3, /incomplete envelope/],
        [Buffer.from([0, 0, 0]), 3, /incomplete envelope/],
        [envelope(1, 2, [0x0a, 0x00]), 13, /do not know how to decompress/],
        [Buffer.alloc(0), 12, /missing input message/],
        [Buffer.concat([envelope(0, 0, []), envelope(0, 0, [])]), 12, /extra input message/],
      ];
      for (const [body, grpcStatus, message] of cases) {
        const answer = await h2Request(
          gateway,
          { ":path": path, "content-type": "application/grpc", te: "trailers" },
          body,
        );
        assert.equal(answer.status, 200);
        assert.equal(answer.trailers["grpc-status"], String(grpcStatus), path);
        assert.match(decodeURIComponent(String(answer.trailers["grpc-message"])), message);
      }
    }
    await expectUnharmed();
  });

  test("a content type that is not Connect's is 415 on both paths", async () => {
    for (const path of [sqlgatePath, psdbPath]) {
      const body = jsonBody(path, deleteAll);
      for (const contentType of [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/connect+json", // Connect's streaming type, on a unary method
        "application/jsonx",
        "application/json, text/plain",
      ]) {
        const answer = await post(gateway, path, body, { "content-type": contentType });
        assert.equal(answer.status, 415, `${path} ${contentType}: ${text(answer)}`);
      }
      const untyped = await post(gateway, path, body, {});
      assert.equal(untyped.status, 415);
      const overH2 = await h2Request(
        gateway,
        { ":path": path, "content-type": "text/plain" },
        body,
      );
      assert.equal(overH2.status, 415);
    }
    await expectUnharmed();
  });

  test("enormous headers: 431 over HTTP/1.1, a refused stream over HTTP/2", async () => {
    const big = "x".repeat(100_000);
    for (const path of [sqlgatePath, psdbPath]) {
      const body = jsonBody(path, deleteAll);
      const head = "host: x\r\ncontent-type: application/json\r\n";
      const tail = `content-length: ${body.length}\r\n\r\n${body}`;
      const requests = [
        `POST ${path} HTTP/1.1\r\n${head}x-big: ${big}\r\n${tail}`,
        `POST ${path} HTTP/1.1\r\n${head}${Array.from({ length: 10_000 }, (_, i) => `x-h${i}: v\r\n`).join("")}${tail}`,
        `POST ${path}?${big} HTTP/1.1\r\n${head}${tail}`,
        `POST ${path} HTTP/1.1\r\n${head}authorization: Basic ${big}\r\n${tail}`,
      ];
      for (const request of requests) {
        const answer = await rawExchange(gateway, request);
        assert.match(answer.received, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
        assert.ok(answer.closed, "the connection was closed");
      }
      for (const headers of [
        { "x-big": big },
        { "x-big": "y".repeat(1_000_000) },
        Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`x-h${i}`, "v"])),
      ]) {
        const answer = await h2Request(
          gateway,
          { ":path": path, "content-type": "application/json", ...headers },
          body,
        );
        assert.equal(answer.status, undefined, "no response");
        assert.equal(answer.rstCode, http2.constants.NGHTTP2_REFUSED_STREAM);
      }
    }
    await expectUnharmed();
  });

  test("a body over SQLGATE_MAX_BODY_BYTES is resource_exhausted however it arrives", async () => {
    const padding = "x".repeat(maxBodyBytes);
    for (const path of [sqlgatePath, psdbPath]) {
      const sql = `${deleteAll} WHERE v = '${padding}'`;
      const expectTooBig = (answer: Answer) =>
        assert.match(
          expectError(answer, 429, "resource_exhausted", path),
          /larger than configured readMaxBytes 1048576/,
        );
      expectTooBig(await post(gateway, path, jsonBody(path, sql)));
      expectTooBig(
        await post(gateway, path, binaryBody(path, sql), { "content-type": "application/proto" }),
      );
      expectTooBig(await h2Post(gateway, path, jsonBody(path, sql)));
      // Chunked, without a content-length to refuse it by.
      expectTooBig(
        await new Promise<Answer>((resolve, reject) => {
          const req = http.request(
            `${gateway.baseUrl}${path}`,
            { method: "POST", headers: { "content-type": "application/json" } },
            (res) => {
              const chunks: Buffer[] = [];
              res.on("data", (c: Buffer) => chunks.push(c));
              res.on("end", () =>
                resolve({
                  status: res.statusCode ?? 0,
                  contentType: res.headers["content-type"] ?? "",
                  body: Buffer.concat(chunks),
                }),
              );
            },
          );
          req.on("error", reject);
          const body = jsonBody(path, sql);
          for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.slice(i, i + 64 * 1024));
          req.end();
        }),
      );
      // A gzip bomb: 20 KB on the wire, 20 MB inflated.
      const bomb = gzipSync(
        Buffer.from(jsonBody(path, `${deleteAll} WHERE v = '${"a".repeat(20_000_000)}'`)),
      );
      assert.ok(bomb.length < maxBodyBytes);
      const inflated = await post(gateway, path, bomb, {
        "content-type": "application/json",
        "content-encoding": "gzip",
      });
      assert.match(
        expectError(inflated, 429, "resource_exhausted", path),
        /larger than configured readMaxBytes 1048576 after decompression/,
      );
    }
    await expectUnharmed();
  });

  test("deeply nested JSON is invalid_argument, or skipped where unknown fields are ignored", async () => {
    const arrays = `${"[".repeat(200_000)}${"]".repeat(200_000)}`;
    const objects = `${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}`;
    for (const body of [
      `{"sql":"${deleteAll} WHERE id = ?","params":[${arrays}]}`,
      `{"sql":"${deleteAll} WHERE id = :a","namedParams":{"a":${objects}}}`,
      `{"sql":"${deleteAll}","nested":${arrays}}`,
      `{"sql":"${deleteAll}","options":${objects}}`,
    ]) {
      expectError(await post(gateway, sqlgatePath, body), 400, "invalid_argument");
    }
    // PlanetScale's path ignores unknown fields (clients echo sessions
    // verbatim): nesting there is skipped and the statement runs.
    const skipped = await post(
      gateway,
      psdbPath,
      `{"query":"SELECT COUNT(*) FROM hostile","session":{"vitessSession":{"x":${objects}}},"y":${arrays}}`,
    );
    assert.deepEqual(psdbCells(skipped), [["3"]]);
    // Nesting where a message belongs is refused.
    expectError(
      await post(gateway, psdbPath, `{"query":"${deleteAll}","session":${arrays}}`),
      400,
      "invalid_argument",
      psdbPath,
    );
    await expectUnharmed();
  });

  test("invalid UTF-8 in JSON strings is invalid_argument, as it is in protobuf", async (ctx) => {
    ctx.after(restoreRows);
    const invalid = Buffer.from([0xff, 0xfe, 0xc3]);
    const insert = (field: string) =>
      Buffer.concat([
        Buffer.from(`{"${field}":"INSERT INTO hostile (id, v) VALUES (100, '`),
        invalid,
        Buffer.from(`')"}`),
      ]);
    // The binary codec refuses a string that is not UTF-8 (protobuf requires it).
    for (const path of [sqlgatePath, psdbPath]) {
      const field = path === psdbPath ? 0x12 : 0x0a;
      const sql = Buffer.concat([Buffer.from("SELECT '"), invalid, Buffer.from("'")]);
      const message = expectError(
        await post(gateway, path, Buffer.from([field, ...varint(sql.length), ...sql]), {
          "content-type": "application/proto",
        }),
        500,
        "internal",
        path,
      );
      assert.match(message, /not valid for encoding utf-8/);
    }
    // JSON must be UTF-8 (RFC 8259 section 8.1): bytes that are not, and lone
    // surrogate escapes, must not reach MySQL as U+FFFD in place of what the
    // client meant.
    const cases: [string, string | Buffer][] = [
      [sqlgatePath, insert("sql")],
      [psdbPath, insert("query")],
      [sqlgatePath, '{"sql":"INSERT INTO hostile (id, v) VALUES (101, ?)","params":["\\ud800"]}'],
      [psdbPath, '{"query":"INSERT INTO hostile (id, v) VALUES (101, \'\\ud800\')"}'],
    ];
    const outcomes: string[] = [];
    for (const [path, body] of cases) {
      const answer = await post(gateway, path, body);
      outcomes.push(`${path} ${answer.status} ${String(jsonOf(answer).code ?? "")}`);
    }
    assert.deepEqual(
      outcomes,
      cases.map(([path]) => `${path} 400 invalid_argument`),
    );
    await expectUnharmed();
  });

  test("NUL bytes in SQL: refused outside literals, kept inside them", async () => {
    for (const sql of [
      `\u0000${deleteAll}`,
      `${deleteAll} WHERE id = 0 \u0000 OR 1 = 1`,
      `SELECT 1 \u0000; ${deleteAll}`,
      `DEL\u0000ETE FROM hostile`,
    ]) {
      expectError(
        await post(gateway, sqlgatePath, jsonBody(sqlgatePath, sql)),
        400,
        "invalid_argument",
      );
      expectInBandError(await post(gateway, psdbPath, jsonBody(psdbPath, sql)), "INVALID_ARGUMENT");
    }
    // Inside a string literal or a parameter, NUL is data.
    assert.deepEqual(
      sqlgateValues(
        await post(
          gateway,
          sqlgatePath,
          jsonBody(sqlgatePath, "SELECT ?, 'a\u0000b'", { params: ["a\u0000b"] }),
        ),
      ),
      [[{ stringValue: "a\u0000b" }, { stringValue: "a\u0000b" }]],
    );
    assert.deepEqual(
      psdbCells(
        await post(
          gateway,
          psdbPath,
          jsonBody(psdbPath, "SELECT 'a\u0000b', :v", {
            bindVariables: {
              v: { type: "VARCHAR", value: Buffer.from("a\u0000b").toString("base64") },
            },
          }),
        ),
      ),
      [["a\u0000b", "a\u0000b"]],
    );
    await expectUnharmed();
  });

  test("oversized parameters are refused by the column's limits, never cut", async () => {
    const sqlgateCases: [SqlgateRequest, RegExp][] = [
      [
        {
          sql: "UPDATE hostile SET v = ? WHERE id = 1",
          typedParams: [{ kind: { case: "stringValue", value: "x".repeat(101) } }],
        },
        /errno 1406/,
      ],
      [
        {
          sql: "UPDATE hostile SET b = ? WHERE id = 1",
          typedParams: [{ kind: { case: "bytesValue", value: new Uint8Array(900_000) } }],
        },
        /errno 1406/,
      ],
      [
        {
          sql: "UPDATE hostile SET id = ? WHERE id = 1",
          typedParams: [{ kind: { case: "int64Value", value: 9223372036854775807n } }],
        },
        /errno 1264/,
      ],
      [
        {
          sql: "UPDATE hostile SET id = ? WHERE id = 1",
          typedParams: [{ kind: { case: "uint64Value", value: 18446744073709551615n } }],
        },
        /errno 1264/,
      ],
      [
        {
          sql: "UPDATE hostile SET id = ? WHERE id = 1",
          typedParams: [{ kind: { case: "decimalValue", value: "9".repeat(100_000) } }],
        },
        /errno 1264/,
      ],
    ];
    for (const [request, message] of sqlgateCases) {
      const body = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, request));
      const answer = await post(gateway, sqlgatePath, body, {
        "content-type": "application/proto",
      });
      assert.match(expectError(answer, 400, "invalid_argument"), message);
    }
    const bind = (type: string, value: string | Buffer) => ({
      type,
      value: Buffer.from(value).toString("base64"),
    });
    for (const [sql, variable, message] of [
      ["UPDATE hostile SET v = :v WHERE id = 1", bind("VARCHAR", "x".repeat(101)), /errno 1406/],
      [
        "UPDATE hostile SET b = :v WHERE id = 1",
        bind("VARBINARY", Buffer.alloc(600_000)),
        /errno 1406/,
      ],
      ["UPDATE hostile SET id = :v WHERE id = 1", bind("INT64", "9".repeat(30)), /errno 1264/],
    ] as const) {
      const answer = await post(
        gateway,
        psdbPath,
        jsonBody(psdbPath, sql, { bindVariables: { v: variable } }),
      );
      assert.match(expectInBandError(answer, "INVALID_ARGUMENT"), message);
    }
    await expectUnharmed();
  });

  test("thousands of parameters bind and run", async () => {
    const n = 10_000;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const inList = (placeholder: (i: number) => string) =>
      `SELECT id FROM hostile WHERE id IN (${ids.map((_, i) => placeholder(i)).join(",")}) ORDER BY id`;
    const expected = [[{ int64Value: "1" }], [{ int64Value: "2" }], [{ int64Value: "3" }]];
    assert.deepEqual(
      sqlgateValues(
        await post(
          gateway,
          sqlgatePath,
          jsonBody(
            sqlgatePath,
            inList(() => "?"),
            { params: ids },
          ),
        ),
      ),
      expected,
    );
    const typed = toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, {
        sql: inList(() => "?"),
        typedParams: ids.map((id) => ({
          kind: { case: "int64Value" as const, value: BigInt(id) },
        })),
      }),
    );
    const binary = await post(gateway, sqlgatePath, typed, { "content-type": "application/proto" });
    assert.equal(binary.status, 200, text(binary));
    assert.deepEqual(
      sqlgateValues(
        await h2Post(
          gateway,
          sqlgatePath,
          jsonBody(
            sqlgatePath,
            inList((i) => `:p${i}`),
            {
              namedParams: Object.fromEntries(ids.map((id, i) => [`p${i}`, id])),
            },
          ),
        ),
      ),
      expected,
    );
    const tuple = await post(
      gateway,
      psdbPath,
      jsonBody(psdbPath, "SELECT id FROM hostile WHERE id IN ::ids ORDER BY id", {
        bindVariables: {
          ids: {
            type: "TUPLE",
            values: ids.map((id) => ({
              type: "INT64",
              value: Buffer.from(String(id)).toString("base64"),
            })),
          },
        },
      }),
    );
    assert.deepEqual(psdbCells(tuple), [["1"], ["2"], ["3"]]);
    // More values than placeholders is refused before MySQL.
    const surplus = await post(
      gateway,
      sqlgatePath,
      jsonBody(sqlgatePath, deleteAll, { params: ids }),
    );
    assert.match(
      expectError(surplus, 400, "invalid_argument"),
      /0 placeholder\(s\) but 10000 parameter\(s\)/,
    );
    await expectUnharmed();
  });

  test("more placeholders than MySQL allows (65,535) is invalid_argument", async () => {
    const n = 65_536;
    const sql = `${deleteAll} WHERE id IN (${Array(n).fill("?").join(",")})`;
    const answer = await post(
      gateway,
      sqlgatePath,
      jsonBody(sqlgatePath, sql, { params: Array(n).fill(0) }),
    );
    // MySQL refuses the statement (errno 1390, SQLSTATE HY000): the request
    // must change, as for any wrong parameters.
    assert.match(expectError(answer, 400, "invalid_argument"), /errno 1390/);
    await expectUnharmed();
  });

  test("an expression too deep for MySQL's stack is a client error, not unknown", async () => {
    // Each `+` nests the parse tree one level: MySQL runs out of thread stack
    // (errno 1436, SQLSTATE HY000). The request is too big, not the server broken.
    const n = 5000;
    const sql = `${deleteAll} WHERE id = ${Array(n).fill("?").join(" + ")}`;
    const answer = await post(
      gateway,
      sqlgatePath,
      jsonBody(sqlgatePath, sql, { params: Array(n).fill(0) }),
    );
    const psdbSql = `${deleteAll} WHERE id = ${Array.from({ length: n }, (_, i) => `:v${i}`).join(" + ")}`;
    const psdb = await post(
      gateway,
      psdbPath,
      jsonBody(psdbPath, psdbSql, {
        bindVariables: Object.fromEntries(
          Array.from({ length: n }, (_, i) => [`v${i}`, { type: "INT64", value: "MA==" }]),
        ),
      }),
    );
    const psdbError = (jsonOf(psdb).error ?? {}) as { code?: string; message?: string };
    const refusals = [
      { path: sqlgatePath, code: jsonOf(answer).code, message: jsonOf(answer).message },
      { path: psdbPath, code: psdbError.code, message: psdbError.message },
    ];
    assert.deepEqual(
      refusals.filter(
        (r) =>
          !/^(invalid_argument|resource_exhausted)$/i.test(String(r.code)) ||
          !/errno 1436/.test(String(r.message)),
      ),
      [],
      "refused with a code other than invalid_argument or resource_exhausted",
    );
    await expectUnharmed();
  });

  test("wrong value kinds for parameters are invalid_argument", async () => {
    const sql = `${deleteAll} WHERE id = ?`;
    const named = `${deleteAll} WHERE id = :id`;
    for (const body of [
      { sql, typedParams: [{ int64Value: "abc" }] },
      { sql, typedParams: [{ int64Value: "1.5" }] },
      { sql, typedParams: [{ int64Value: "9223372036854775808" }] },
      { sql, typedParams: [{ uint64Value: "-1" }] },
      { sql, typedParams: [{ float64Value: "abc" }] },
      { sql, typedParams: [{ float64Value: [1] }] },
      { sql, typedParams: [{ bytesValue: "!!!" }] },
      { sql, typedParams: [{ boolValue: "yes" }] },
      { sql, typedParams: [{ nullValue: "NOT_NULL" }] },
      { sql, typedParams: [{ decimalValue: "1; DROP TABLE hostile" }] },
      { sql, typedParams: [{ int64Value: "1", stringValue: "x" }] },
      { sql, typedParams: [{}] },
      { sql, typedParams: ["1"] },
      { sql, typedParams: { 0: { int64Value: "1" } } },
      { sql, params: [1], typedParams: [{ int64Value: "1" }] },
      { sql, namedParams: { id: 1 } },
      { sql: named, params: [1] },
      { sql: named, namedParams: { id: 1 }, typedNamedParams: { id: { int64Value: "1" } } },
      { sql: named, namedParams: { id: 1, other: 2 } },
      { sql: named, typedNamedParams: { id: "1" } },
      { sql, params: [1], options: { maxRows: -1 } },
      { sql, params: [1], options: { timeoutMs: "soon" } },
      { sql, params: [1], options: { readOnly: "no" } },
      { sql, params: [1], session: "not-a-token" },
    ]) {
      expectError(await post(gateway, sqlgatePath, JSON.stringify(body)), 400, "invalid_argument");
    }
    const base64 = (s: string) => Buffer.from(s).toString("base64");
    for (const bindVariables of [
      { id: { type: "INT64", value: base64("1 OR 1 = 1") } },
      { id: { type: "UINT64", value: base64("0x1") } },
      { id: { type: "FLOAT64", value: base64("1e1; DROP TABLE hostile") } },
      { id: { type: "DECIMAL", value: base64("--1") } },
      { id: { type: "TUPLE", values: [] } },
      { other: { type: "INT64", value: base64("1") } },
    ]) {
      expectInBandError(
        await post(gateway, psdbPath, jsonBody(psdbPath, named, { bindVariables })),
        "INVALID_ARGUMENT",
      );
    }
    for (const bindVariables of [
      { id: { type: "INT64", value: "not base64!" } },
      { id: { type: "INT64", value: 1 } },
      { id: [1] },
      { id: "1" },
    ]) {
      expectError(
        await post(gateway, psdbPath, jsonBody(psdbPath, named, { bindVariables })),
        400,
        "invalid_argument",
        psdbPath,
      );
    }
    // Bind variables need `:name` placeholders.
    expectInBandError(
      await post(
        gateway,
        psdbPath,
        jsonBody(psdbPath, sql, { bindVariables: { id: { type: "INT64", value: base64("1") } } }),
      ),
      "INVALID_ARGUMENT",
    );
    await expectUnharmed();
  });

  test("a body dribbled slowly is ended by the call's deadline, not waited on forever", async () => {
    /** How long the gateway may take to end a dribbling call: its deadline cap and some slack. */
    const limitMs = maxTimeoutMs + 5000;
    /**
     * Sends the headers, then one byte of an endless body every 200 ms; resolves
     * with when the gateway answered or closed the stream (undefined: it never did).
     */
    const dribble = (path: string, version: "1.1" | "2", deadlineMs: number | undefined) =>
      new Promise<{ endedAfterMs: number | undefined; status: number | undefined }>((resolve) => {
        const started = Date.now();
        const bytes = Buffer.from(
          `${jsonBody(path, deleteAll).slice(0, -1)}${" ".repeat(10_000)}}`,
        );
        const timeout: Record<string, string> =
          deadlineMs === undefined ? {} : { "connect-timeout-ms": String(deadlineMs) };
        let sent = 0;
        let write: (b: Buffer) => void = () => {};
        let stop = () => {};
        const finish = (status: number | undefined) => {
          clearInterval(timer);
          clearTimeout(giveUp);
          stop();
          resolve({ endedAfterMs: Date.now() - started, status });
        };
        const timer = setInterval(() => {
          write(bytes.subarray(sent, sent + 1));
          sent++;
        }, 200);
        const giveUp = setTimeout(() => {
          clearInterval(timer);
          stop();
          resolve({ endedAfterMs: undefined, status: undefined });
        }, limitMs);
        if (version === "1.1") {
          const socket = net.connect(gateway.port, "127.0.0.1");
          socket.on("error", () => {});
          socket.once("data", (chunk: Buffer) =>
            finish(Number(/^HTTP\/1\.1 (\d+)/.exec(chunk.toString("latin1"))?.[1])),
          );
          socket.once("close", () => finish(undefined));
          const headers = Object.entries({
            "content-type": "application/json",
            "content-length": String(bytes.length),
            ...timeout,
          })
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join("");
          socket.write(`POST ${path} HTTP/1.1\r\nhost: x\r\n${headers}\r\n`);
          write = (b) => socket.write(b);
          stop = () => socket.destroy();
        } else {
          const session = http2.connect(gateway.baseUrl);
          session.on("error", () => {});
          const stream = session.request({
            ":method": "POST",
            ":path": path,
            "content-type": "application/json",
            ...timeout,
          });
          stream.on("error", () => {});
          stream.once("response", (h) => finish(Number(h[":status"])));
          stream.once("close", () => finish(undefined));
          write = (b) => {
            if (!stream.destroyed) stream.write(b);
          };
          stop = () => session.destroy();
        }
      });
    const variants = [sqlgatePath, psdbPath].flatMap((path) =>
      (["1.1", "2"] as const).flatMap((version) =>
        [1000, undefined].map((deadlineMs) => ({ path, version, deadlineMs })),
      ),
    );
    const results = variants.map((v) => dribble(v.path, v.version, v.deadlineMs));
    // While they dribble, the gateway serves others.
    await new Promise((r) => setTimeout(r, 1500));
    await expectUnharmed();
    const ended = await Promise.all(results);
    const hanging = variants.filter((_, i) => ended[i]?.endedAfterMs === undefined);
    assert.deepEqual(
      hanging,
      [],
      `still waiting for a body after ${limitMs} ms (deadline cap ${maxTimeoutMs} ms)`,
    );
    for (const [i, result] of ended.entries()) {
      // An answer, if any, is an error: the deadline (504) or a request timeout (408).
      if (result.status !== undefined) assert.ok(result.status >= 400, JSON.stringify(variants[i]));
    }
    await expectUnharmed();
  });

  test("an HTTP/2 RST_STREAM flood: every stream ends, the gateway sheds the connection and runs nothing", async () => {
    const marker = `flood_${Date.now()}`;
    const session = http2.connect(gateway.baseUrl);
    const events: string[] = [];
    session.on("error", () => {});
    session.on("goaway", (code) => events.push(`goaway ${code}`));
    const sessionClosed = new Promise<void>((resolve) => session.once("close", resolve));
    await new Promise<void>((resolve) => session.once("connect", () => resolve()));
    const streamsClosed: Promise<void>[] = [];
    for (let i = 0; i < 5000 && !session.closed && !session.destroyed; i++) {
      const path = i % 2 === 0 ? sqlgatePath : psdbPath;
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/json",
      });
      stream.on("error", () => {});
      streamsClosed.push(new Promise((resolve) => stream.once("close", () => resolve())));
      stream.end(jsonBody(path, `SELECT SLEEP(2) AS ${marker}`));
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    const within = (ms: number) =>
      new Promise((resolve) => setTimeout(() => resolve("timeout"), ms));
    assert.notEqual(await Promise.race([Promise.all(streamsClosed), within(10_000)]), "timeout");
    // nghttp2 limits the rate of resets a peer may cause, and past it ends
    // the connection with GOAWAY (the "rapid reset" defence).
    assert.notEqual(await Promise.race([sessionClosed, within(10_000)]), "timeout");
    assert.ok(
      events.some((e) => e.startsWith("goaway")),
      `no GOAWAY from the gateway: ${events.join(", ")}`,
    );
    // Nothing the cancelled streams asked for is left running on MySQL.
    await waitUntilGone(db.admin, marker, 5000);
    await expectUnharmed();
  });

  test("an HTTP/2 SETTINGS flood: acknowledged when paced, the connection closed when not read", async () => {
    // Paced: 2000 SETTINGS frames, five outstanding at a time (Node's client
    // allows ten), each acknowledged; the connection keeps serving.
    const session = http2.connect(gateway.baseUrl);
    session.on("error", () => {});
    await new Promise<void>((resolve) => session.once("connect", () => resolve()));
    let acknowledged = 0;
    for (let round = 0; round < 400; round++) {
      await Promise.all(
        Array.from(
          { length: 5 },
          (_, i) =>
            new Promise<void>((resolve, reject) => {
              session.settings(
                { initialWindowSize: 65_535 + i, maxConcurrentStreams: 100 + round },
                (err) => (err ? reject(err) : resolve()),
              );
            }),
        ),
      );
      acknowledged += 5;
    }
    assert.equal(acknowledged, 2000);
    const answer = await new Promise<Answer>((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": sqlgatePath,
        "content-type": "application/json",
      });
      const chunks: Buffer[] = [];
      let status = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      stream.on("close", () =>
        resolve({ status, contentType: "application/json", body: Buffer.concat(chunks) }),
      );
      stream.end(jsonBody(sqlgatePath, "SELECT COUNT(*) AS n FROM hostile"));
    });
    assert.deepEqual(sqlgateValues(answer), [[{ int64Value: "3" }]]);
    session.close();

    // Unpaced, on a raw socket: 100,000 SETTINGS frames without reading the
    // acknowledgements. The gateway must not queue them without end.
    const frame = (type: number, payload: Buffer) => {
      const header = Buffer.alloc(9);
      header.writeUIntBE(payload.length, 0, 3);
      header[3] = type;
      return Buffer.concat([header, payload]);
    };
    const setting = Buffer.alloc(6);
    setting.writeUInt16BE(0x4, 0); // SETTINGS_INITIAL_WINDOW_SIZE
    setting.writeUInt32BE(65_535, 2);
    const socket = net.connect(gateway.port, "127.0.0.1");
    const received: Buffer[] = [];
    socket.on("data", (c: Buffer) => received.push(c));
    socket.on("error", () => {});
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.pause();
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const thousand = Buffer.concat(Array(1000).fill(frame(0x4, setting)));
    for (let i = 0; i < 100 && !socket.destroyed; i++) socket.write(thousand);
    await new Promise((r) => setTimeout(r, 1000));
    socket.resume();
    const outcome = await Promise.race([
      closed.then(() => "closed"),
      new Promise((r) => setTimeout(() => r("open"), 10_000)),
    ]);
    socket.destroy();
    assert.equal(outcome, "closed", "the gateway kept a flooding connection open");
    // Its last frame is a GOAWAY (type 7).
    const bytes = Buffer.concat(received);
    let at = 0;
    let lastType = -1;
    while (at + 9 <= bytes.length) {
      lastType = bytes[at + 3] ?? -1;
      at += 9 + bytes.readUIntBE(at, 3);
    }
    assert.equal(lastType, 7, "no GOAWAY before the close");
    await expectUnharmed();
  });
});
