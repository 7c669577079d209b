/**
 * The unary fast path answers exactly as the Connect router does. Two real
 * gateways on one database, one with SQLGATE_UNARY_FAST_PATH on (the
 * default) and one with it off, get the same raw requests over HTTP/1.1 and
 * h2c; status, headers and bodies must match (timings aside), and the fast
 * one must really have taken the calls (its metric counts them).
 *
 * The requests cover what a caller can observe: binary and JSON success,
 * parameters, SQL errors with their detail, malformed bodies, unknown JSON
 * fields, `connect-timeout-ms` (invalid, above the cap, expiring), body and
 * row limits, compression of large answers, authentication (none, wrong,
 * rate limited) and Write.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { type TestContext, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ExecuteRequestSchema, ExecuteResponseSchema } from "../gen/sqlgate/v1/database_pb.js";
import { WriteRequestSchema, WriteResponseSchema } from "../gen/sqlgate/v1/ingest_pb.js";
import { createCredential } from "../server/auth/credential-tool.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

interface RawRequest {
  readonly name: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array | string;
  /**
   * Compare the code, not the message: two timers race for an expiring
   * deadline (Connect's and the statement's own), either way round on
   * either path.
   */
  readonly codeOnly?: true;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

const executePath = "/sqlgate.v1.DatabaseService/Execute";
const writePath = "/sqlgate.v1.IngestService/Write";
const psdbPath = "/psdb.v1alpha1.Database/Execute";
const proto = { "content-type": "application/proto" };
const json = { "content-type": "application/json" };

function sendHttp1(baseUrl: string, request: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${baseUrl}${request.path}`,
      { method: "POST", headers: request.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers as Record<string, string>,
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(request.body);
  });
}

function sendHttp2(session: http2.ClientHttp2Session, request: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": request.path,
      ...request.headers,
    });
    let headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      headers = h as Record<string, string>;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () =>
      resolve({ status: Number(headers[":status"]), headers, body: Buffer.concat(chunks) }),
    );
    stream.on("error", reject);
    stream.end(request.body);
  });
}

/**
 * What must match: status, headers but date and length, and the body without
 * its timings, and with whether a position was set, not which (each gateway
 * writes its own rows).
 */
function comparable(response: RawResponse, requestPath: string) {
  const { date: _date, ":status": _status, ...headers } = response.headers;
  let body: unknown = response.body;
  const type = headers["content-type"] ?? "";
  const bytes = headers["content-encoding"] === "gzip" ? gunzipSync(response.body) : response.body;
  if (type === "application/proto" && requestPath === writePath) {
    const message = fromBinary(WriteResponseSchema, bytes);
    message.position = message.position === "" ? "" : "(set)";
    body = message;
  } else if (type === "application/proto") {
    const message = fromBinary(ExecuteResponseSchema, bytes);
    message.timing = undefined;
    message.position = message.position === "" ? "" : "(set)";
    body = Buffer.from(toBinary(ExecuteResponseSchema, message));
  } else if (type.startsWith("application/json")) {
    const parsed = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
    delete parsed.timing;
    // PlanetScale's answers carry a session (signed by each gateway) and times.
    delete parsed.session;
    if (typeof parsed.result === "object" && parsed.result !== null) {
      delete (parsed.result as Record<string, unknown>).timing;
    }
    delete parsed.timingSeconds;
    if (parsed.position !== undefined) parsed.position = "(set)";
    body = parsed;
  }
  // Timings differ in length; the length must still be the body's.
  assert.equal(Number(headers["content-length"]), response.body.byteLength);
  delete headers["content-length"];
  return { status: response.status, headers, body };
}

function executeBinary(sql: string, id?: bigint): Uint8Array {
  return toBinary(
    ExecuteRequestSchema,
    create(ExecuteRequestSchema, {
      sql,
      typedParams: id === undefined ? [] : [{ kind: { case: "int64Value", value: id } }],
    }),
  );
}

async function fastPathCalls(gateway: TestGateway): Promise<number> {
  const text = await (await fetch(`${gateway.baseUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("sqlgate_unary_fast_path_calls_total"));
  return Number(line?.split(" ")[1] ?? Number.NaN);
}

/**
 * Two gateways on one database with the same settings and one credential
 * ("app"), the fast path on in the first and off in the second, with an
 * HTTP/2 session to each and the credential's Authorization header.
 */
async function fastAndSlow(t: TestContext, url: string, env: Record<string, string>) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-fast-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "credentials.yaml");
  const password = await createCredential(file, {
    name: "app",
    role: "read_write",
    database: undefined,
    replace: false,
  });
  const shared = {
    ...env,
    SQLGATE_CREDENTIALS_FILE: file,
    SQLGATE_NODE_URL: "http://parity.invalid:8080",
  };
  const fast = await startGateway(t, url, { env: shared });
  const slow = await startGateway(t, url, { env: { ...shared, SQLGATE_UNARY_FAST_PATH: "false" } });
  const sessions = [fast, slow].map((g) => http2.connect(g.baseUrl)) as [
    http2.ClientHttp2Session,
    http2.ClientHttp2Session,
  ];
  t.after(() => {
    for (const s of sessions) s.close();
  });
  const auth = { authorization: `Basic ${Buffer.from(`app:${password}`).toString("base64")}` };
  return { fast, slow, sessions, auth };
}

test("the fast path answers every request exactly as the Connect router does", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query(
    "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2))",
  );
  await admin.query("INSERT INTO items VALUES (1, 'one', 1.50), (2, 'two', 2.25), (3, 'three', 3)");
  await admin.query("CREATE TABLE readings (device INT, value DOUBLE)");

  const { fast, slow, sessions, auth } = await fastAndSlow(t, url, {
    SQLGATE_MAX_BODY_BYTES: "4096",
    SQLGATE_MAX_ROWS: "2",
    SQLGATE_MAX_TIMEOUT_MS: "60000",
  });
  const big = "x".repeat(40_000);
  const requests: RawRequest[] = [
    {
      name: "binary point query",
      path: executePath,
      headers: { ...proto, ...auth },
      body: executeBinary("SELECT id, name, price FROM items WHERE id = ?", 2n),
    },
    {
      name: "JSON with params",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: "SELECT name FROM items WHERE id = ?", params: [3] }),
    },
    {
      name: "JSON, charset",
      path: executePath,
      headers: { "content-type": "application/json; charset=utf-8", ...auth },
      body: JSON.stringify({ sql: "SELECT 1 AS n" }),
    },
    {
      name: "an UPDATE",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: "UPDATE items SET price = price WHERE id > 1" }),
    },
    {
      name: "SQL error",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: "SELECT * FROM nowhere" }),
    },
    {
      name: "SQL error, binary",
      path: executePath,
      headers: { ...proto, ...auth },
      body: executeBinary("SELEC 1"),
    },
    {
      name: "unknown JSON field",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: "SELECT 1", options: { readonly: true } }),
    },
    { name: "malformed JSON", path: executePath, headers: { ...json, ...auth }, body: '{"sql": ' },
    {
      name: "malformed binary",
      path: executePath,
      headers: { ...proto, ...auth },
      body: new Uint8Array([0x0a, 0xff, 0xff, 0x01]),
    },
    {
      name: "empty body",
      path: executePath,
      headers: { ...proto, ...auth },
      body: new Uint8Array(),
    },
    {
      name: "invalid timeout",
      path: executePath,
      headers: { ...json, ...auth, "connect-timeout-ms": "soon" },
      body: JSON.stringify({ sql: "SELECT 1" }),
    },
    {
      name: "timeout above the cap",
      path: executePath,
      headers: { ...json, ...auth, "connect-timeout-ms": "60001" },
      body: JSON.stringify({ sql: "SELECT 1" }),
    },
    {
      name: "timeout expiring",
      path: executePath,
      headers: { ...json, ...auth, "connect-timeout-ms": "100" },
      body: JSON.stringify({ sql: "SELECT SLEEP(2)" }),
      codeOnly: true,
    },
    {
      name: "body over the limit",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: `SELECT '${"y".repeat(5000)}'` }),
    },
    {
      name: "too many rows",
      path: executePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ sql: "SELECT * FROM items" }),
    },
    {
      name: "large answer, gzip",
      path: executePath,
      headers: { ...json, ...auth, "accept-encoding": "gzip" },
      body: JSON.stringify({ sql: `SELECT REPEAT('x', 40000) AS s` }),
    },
    {
      name: "large answer, binary, br first",
      path: executePath,
      headers: { ...proto, ...auth, "accept-encoding": "br;q=1, gzip" },
      body: executeBinary(`SELECT '${big.slice(0, 3000)}' AS a, REPEAT('z', 30000) AS b`),
    },
    {
      name: "no credential",
      path: executePath,
      headers: { ...json },
      body: JSON.stringify({ sql: "SELECT 1" }),
    },
    {
      name: "wrong password",
      path: executePath,
      headers: { ...json, authorization: "Bearer app.wrong" },
      body: JSON.stringify({ sql: "SELECT 1" }),
    },
    {
      name: "request id",
      path: executePath,
      headers: { ...json, ...auth, "x-request-id": "r-1" },
      body: JSON.stringify({ sql: "SELECT 2 AS n" }),
    },
    {
      name: "Write",
      path: writePath,
      headers: { ...proto, ...auth },
      body: toBinary(
        WriteRequestSchema,
        create(WriteRequestSchema, {
          table: "readings",
          columns: ["device", "value"],
          rows: [
            {
              values: [
                { kind: { case: "int64Value", value: 7n } },
                { kind: { case: "float64Value", value: 1.5 } },
              ],
            },
          ],
        }),
      ),
    },
    {
      name: "Write to a missing table",
      path: writePath,
      headers: { ...json, ...auth },
      body: JSON.stringify({
        table: "nowhere",
        columns: ["a"],
        rows: [{ values: [{ int64Value: "1" }] }],
      }),
    },
    // PlanetScale's API, as @planetscale/database sends it.
    {
      name: "PlanetScale query",
      path: psdbPath,
      headers: { ...json, ...auth },
      body: JSON.stringify({
        query: "SELECT id, name, price FROM items WHERE id = 2",
        session: null,
      }),
    },
    {
      name: "PlanetScale SQL error (in-band)",
      path: psdbPath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ query: "SELECT * FROM nowhere", session: null }),
    },
    {
      name: "PlanetScale unknown fields",
      path: psdbPath,
      headers: { ...json, ...auth },
      body: JSON.stringify({ query: "SELECT 1", session: null, extra: { a: 1 } }),
    },
    {
      name: "PlanetScale malformed JSON",
      path: psdbPath,
      headers: { ...json, ...auth },
      body: '{"query": ',
    },
    {
      name: "PlanetScale without a credential",
      path: psdbPath,
      headers: { ...json },
      body: JSON.stringify({ query: "SELECT 1" }),
    },
  ];

  const before = await fastPathCalls(fast);
  for (const request of requests) {
    for (const [label, send] of [
      ["HTTP/1.1", (g: TestGateway) => sendHttp1(g.baseUrl, request)],
      [
        "h2c",
        (g: TestGateway) =>
          sendHttp2(sessions[g === fast ? 0 : 1] as http2.ClientHttp2Session, request),
      ],
    ] as const) {
      const [a, b] = [
        comparable(await send(fast), request.path),
        comparable(await send(slow), request.path),
      ];
      if (request.codeOnly) {
        for (const r of [a, b]) delete (r.body as { message?: string }).message;
      }
      assert.deepEqual(a, b, `${request.name} over ${label}`);
    }
  }
  // Each request twice (HTTP/1.1 and h2c) went the fast way on `fast`, and none on `slow`.
  assert.equal((await fastPathCalls(fast)) - before, 2 * requests.length);
  assert.equal(await fastPathCalls(slow), 0);
});

test("requests the fast path does not take still reach the router", async (t) => {
  const { url } = await createTestDatabase(t);
  const gateway = await startGateway(t, url);
  const before = await fastPathCalls(gateway);
  // A compressed request body, and GET: both Connect's own, answered as before.
  const compressed = await sendHttp1(gateway.baseUrl, {
    name: "gzip body",
    path: executePath,
    headers: { ...json, "content-encoding": "gzip" },
    body: (await import("node:zlib")).gzipSync(JSON.stringify({ sql: "SELECT 5 AS n" })),
  });
  assert.equal(compressed.status, 200);
  assert.deepEqual(JSON.parse(compressed.body.toString("utf8")).rows, [
    { values: [{ int64Value: "5" }] },
  ]);
  const viaGet = await fetch(
    `${gateway.baseUrl}${executePath}?encoding=json&message=${encodeURIComponent(JSON.stringify({ sql: "SELECT 1" }))}`,
  );
  assert.equal(viaGet.status, 405);
  // Content types the fast path does not know go to Connect, which refuses them.
  const unsupported = await sendHttp1(gateway.baseUrl, {
    name: "xml",
    path: executePath,
    headers: { "content-type": "application/xml" },
    body: "<sql/>",
  });
  assert.equal(unsupported.status, 415);
  assert.equal(await fastPathCalls(gateway), before);
});

interface GrpcAnswer {
  readonly headers: Record<string, unknown>;
  readonly trailers: Record<string, unknown>;
  readonly body: Buffer;
}

function sendGrpc(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<GrpcAnswer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    let responseHeaders: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      responseHeaders = { ...h };
    });
    stream.on("trailers", (t) => {
      trailers = { ...t };
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () =>
      resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks) }),
    );
    stream.on("error", reject);
    stream.end(body);
  });
}

function envelope(message: Uint8Array, flags = 0, length = message.byteLength): Buffer {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = flags;
  out.writeUInt32BE(length, 1);
  out.set(message, 5);
  return out;
}

/** Status, headers but the date, trailers, and the message without timings or positions. */
function comparableGrpc(answer: GrpcAnswer, path: string) {
  const { date: _date, ...headers } = answer.headers;
  let message: unknown;
  if (answer.body.length >= 5) {
    const compressed = answer.body[0] === 1;
    const data = answer.body.subarray(5);
    const bytes = compressed ? gunzipSync(data) : data;
    if (path === writePath) {
      const m = fromBinary(WriteResponseSchema, bytes);
      m.position = m.position === "" ? "" : "(set)";
      message = m;
    } else {
      const m = fromBinary(ExecuteResponseSchema, bytes);
      m.timing = undefined;
      m.position = m.position === "" ? "" : "(set)";
      message = { compressed, m };
    }
  }
  return { headers, trailers: answer.trailers, message };
}

test("gRPC unary calls get the router's answers on the fast path", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(64))");
  await admin.query("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
  await admin.query("CREATE TABLE readings (device INT, value DOUBLE)");
  const { fast, slow, sessions, auth } = await fastAndSlow(t, url, {
    SQLGATE_MAX_BODY_BYTES: "4096",
  });
  const write = toBinary(
    WriteRequestSchema,
    create(WriteRequestSchema, {
      table: "readings",
      columns: ["device", "value"],
      rows: [
        {
          values: [
            { kind: { case: "int64Value", value: 7n } },
            { kind: { case: "float64Value", value: 1.5 } },
          ],
        },
      ],
    }),
  );
  const point = executeBinary("SELECT id, name FROM items WHERE id = ?", 2n);
  const cases: {
    name: string;
    path?: string;
    headers: Record<string, string>;
    body: Uint8Array;
    codeOnly?: true;
  }[] = [
    { name: "point query", headers: auth, body: envelope(point) },
    {
      name: "large answer, gzip accepted",
      headers: { ...auth, "grpc-accept-encoding": "gzip" },
      body: envelope(executeBinary("SELECT REPEAT('x', 40000) AS s")),
    },
    {
      name: "small answer, gzip accepted",
      headers: { ...auth, "grpc-accept-encoding": "identity, gzip" },
      body: envelope(point),
    },
    {
      name: "SQL error with its detail",
      headers: auth,
      body: envelope(executeBinary("SELECT * FROM nowhere")),
    },
    {
      name: "invalid grpc-timeout",
      headers: { ...auth, "grpc-timeout": "soon" },
      body: envelope(point),
    },
    {
      name: "grpc-timeout above the cap",
      headers: { ...auth, "grpc-timeout": "99999999S" },
      body: envelope(point),
    },
    {
      name: "grpc-timeout expiring",
      headers: { ...auth, "grpc-timeout": "100m" },
      body: envelope(executeBinary("SELECT SLEEP(2)")),
      codeOnly: true,
    },
    { name: "no message", headers: auth, body: new Uint8Array() },
    {
      name: "two messages",
      headers: auth,
      body: Buffer.concat([envelope(point), envelope(point)]),
    },
    { name: "compressed flag without an encoding", headers: auth, body: envelope(point, 1) },
    { name: "truncated envelope", headers: auth, body: envelope(point, 0, point.byteLength + 10) },
    {
      name: "message over the limit",
      headers: auth,
      body: envelope(executeBinary(`SELECT '${"y".repeat(5000)}'`)),
    },
    {
      name: "undecodable message",
      headers: auth,
      body: envelope(new Uint8Array([0x0a, 0xff, 0xff, 0x01])),
    },
    { name: "no credential", headers: {}, body: envelope(point) },
    { name: "Write", path: writePath, headers: auth, body: envelope(write) },
  ];
  const before = await fastPathCalls(fast);
  for (const c of cases) {
    const target = c.path ?? executePath;
    const [a, b] = [
      comparableGrpc(
        await sendGrpc(sessions[0] as http2.ClientHttp2Session, target, c.headers, c.body),
        target,
      ),
      comparableGrpc(
        await sendGrpc(sessions[1] as http2.ClientHttp2Session, target, c.headers, c.body),
        target,
      ),
    ];
    if (c.codeOnly) {
      for (const r of [a, b]) delete (r.trailers as Record<string, unknown>)["grpc-message"];
    }
    assert.deepEqual(a, b, c.name);
  }
  assert.equal((await fastPathCalls(fast)) - before, cases.length);
  assert.equal(await fastPathCalls(slow), 0);
});
