/**
 * The optional HTTP/3 front proxy (deploy/caddy/Caddyfile run by
 * scripts/caddy.sh): Debian's Caddy 2.6.2 terminates TLS with HTTP/3,
 * HTTP/2 and HTTP/1.1 and proxies to a real gateway over h2c. Driven by the
 * two HTTP/3 clients this machine has: `gtlsclient` (a smoke test) and
 * Debian's Chromium forced onto QUIC, running the SDK's fetch entry in the
 * page. The last two tests pin Caddy 2.6.2's known HTTP/3 limits (dropped
 * response trailers, dropped request bodies without Content-Length): when an
 * upgrade fixes them they fail, and deploy/caddy/README.md should change.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import http2 from "node:http2";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type * as Sdk from "../client/src/fetch.js";
import { IngestService } from "../gen/sqlgate/v1/ingest_pb.js";
import {
  gtlsclientGet,
  launchQuicBrowser,
  openQuicPage,
  quicCertificate,
  readNetLog,
  startCaddy,
} from "./support/caddy.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";
import { bundle } from "./support/web-sandbox.js";

/** A gateway on its own database with Caddy in front of it. */
async function gatewayBehindCaddy(t: { after(fn: () => unknown): void }) {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const certificate = await quicCertificate(t);
  const caddy = await startCaddy(t, { upstreamPort: gateway.port, certificate });
  return { db, gateway, certificate, caddy };
}

/** Response headers of a GET over HTTP/1.1 with TLS, trusting only `ca`. */
function httpsHeaders(url: string, ca: Buffer): Promise<IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        res.resume();
        res.once("end", () => resolve(res.headers));
      })
      .once("error", reject);
  });
}

test("gtlsclient over HTTP/3: /readyz through Caddy reaches MySQL; TLS answers advertise h3", async (t) => {
  const { certificate, caddy } = await gatewayBehindCaddy(t);

  const body = await gtlsclientGet(t, `${caddy.origin}/readyz`);
  assert.ok(body !== undefined, `gtlsclient saved no body; caddy said:\n${caddy.output()}`);
  assert.deepEqual(JSON.parse(body), { status: "ready", mysql: "ok" });

  // Over TCP the same port speaks HTTP/1.1 and tells clients where HTTP/3 is.
  const headers = await httpsHeaders(`${caddy.origin}/healthz`, certificate.cert);
  assert.match(String(headers["alt-svc"]), new RegExp(`h3=":${caddy.port}"`));

  const seen = (await caddy.accessLogWhen(() => true, 2)).map((e) => [
    e.request.proto,
    e.request.uri,
    e.status,
  ]);
  assert.deepEqual(seen, [
    ["HTTP/3.0", "/readyz", 200],
    ["HTTP/1.1", "/healthz", 200],
  ]);
});

test("Chromium over HTTP/3: the SDK's Execute, and a streamed result arriving as MySQL makes it", async (t) => {
  const { certificate, caddy } = await gatewayBehindCaddy(t);
  const { code } = await bundle("client/src/fetch.ts");
  const browser = await launchQuicBrowser(t, { caddy, certificate });
  const page = await openQuicPage(browser, caddy, code);

  const result = await page.evaluate(async () => {
    const { createClient } = (globalThis as unknown as { sqlgate: typeof Sdk }).sqlgate;
    const db = createClient({ url: location.origin, format: "json" });
    const executed = await db.execute("SELECT ? + 1 AS n, ? AS s", [41, "h3"]);
    // Each row is over 256 KiB, so each is a chunk (a message) of its own,
    // and MySQL makes one every 500 ms (SLEEP runs per row).
    const started = performance.now();
    const arrivalsMs: number[] = [];
    const seqs: string[] = [];
    for await (const row of db.stream<{ seq: bigint; pad: string }>(
      "SELECT seq, REPEAT('x', 300000) AS pad, SLEEP(0.5) AS slept FROM seq_1_to_4",
    )) {
      arrivalsMs.push(performance.now() - started);
      seqs.push(`${row.seq}:${row.pad.length}`);
    }
    // A streamed response's timing entry is added once its body has been read
    // to the end, which may be a moment after the last row is handed over.
    const entries = () =>
      (performance.getEntriesByType("resource") as PerformanceResourceTiming[])
        .map((e) => [new URL(e.name).pathname, e.nextHopProtocol])
        .filter(([pathname]) => pathname?.startsWith("/sqlgate."));
    for (let waited = 0; entries().length < 2 && waited < 3000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return {
      rows: executed.rows.map((r) => ({ n: String(r.n), s: r.s })),
      seqs,
      arrivalsMs,
      protocols: entries(),
    };
  });

  t.diagnostic(`streamed rows arrived at ${result.arrivalsMs.map(Math.round).join(", ")} ms`);
  assert.deepEqual(result.rows, [{ n: "42", s: "h3" }]);
  assert.deepEqual(result.seqs, ["1:300000", "2:300000", "3:300000", "4:300000"]);
  // Passed on as they come: ~500 ms apart (1500 ms from first to last), not
  // together at the end as through a buffering proxy. The bounds leave room
  // for a loaded machine, where a late first row lets the next ones catch up.
  const arrivalsMs = result.arrivalsMs;
  const spanMs = (arrivalsMs.at(-1) ?? 0) - (arrivalsMs[0] ?? 0);
  assert.ok(spanMs > 800, `rows arrived at ${arrivalsMs} ms`);
  const gapsMs = arrivalsMs.slice(1).map((at, i) => at - (arrivalsMs[i] ?? 0));
  for (const gapMs of gapsMs) assert.ok(gapMs > 50, `rows arrived at ${arrivalsMs} ms`);
  assert.deepEqual(result.protocols, [
    ["/sqlgate.v1.DatabaseService/Execute", "h3"],
    ["/sqlgate.v1.DatabaseService/StreamExecute", "h3"],
  ]);
  const calls = (await caddy.accessLogWhen((e) => e.request.uri.startsWith("/sqlgate."), 2)).map(
    (e) => [e.request.proto, e.request.uri, e.status],
  );
  assert.deepEqual(calls, [
    ["HTTP/3.0", "/sqlgate.v1.DatabaseService/Execute", 200],
    ["HTTP/3.0", "/sqlgate.v1.DatabaseService/StreamExecute", 200],
  ]);
});

test("Caddy 2.6.2 drops response trailers over HTTP/3: gRPC works through it over h2, not h3 (gRPC-Web does)", async (t) => {
  const { certificate, caddy } = await gatewayBehindCaddy(t);
  const execute = "/sqlgate.v1.DatabaseService/Execute";
  const envelope = (json: string) => {
    const payload = Buffer.from(json);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(payload.length, 1);
    return Buffer.concat([head, payload]);
  };

  // HTTP/2 through Caddy: the status comes in trailers, as gRPC requires,
  // for a success and for an error alike.
  const h2 = http2.connect(caddy.origin, { ca: certificate.cert });
  t.after(() => h2.close());
  const grpcOverH2 = (sql: string) =>
    new Promise<{ status: string; body: string }>((resolve, reject) => {
      const stream = h2.request({
        ":method": "POST",
        ":path": execute,
        "content-type": "application/grpc+json",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      let status = "no trailers";
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("trailers", (trailers) => {
        status = String(trailers["grpc-status"]);
      });
      stream.on("end", () => resolve({ status, body: Buffer.concat(chunks).toString() }));
      stream.once("error", reject);
      stream.end(envelope(JSON.stringify({ sql })));
    });
  const okOverH2 = await grpcOverH2("SELECT 7 AS seven");
  assert.equal(okOverH2.status, "0");
  assert.match(okOverH2.body, /"int64Value":"7"/);
  assert.equal((await grpcOverH2("SELEC 7")).status, "3");

  // HTTP/3: the message arrives, its trailers (grpc-status) do not. Fetch
  // cannot show trailers, so Chromium's NetLog is the witness: it records
  // every HEADERS frame decoded on an HTTP/3 stream.
  const netLogFile = path.join(os.tmpdir(), `sqlgate-netlog-${process.pid}-${Date.now()}.json`);
  t.after(() => rmSync(netLogFile, { force: true }));
  const browser = await launchQuicBrowser(t, { caddy, certificate, netLogFile });
  const page = await openQuicPage(browser, caddy);
  const overH3 = await page.evaluate(async (path) => {
    const call = async (sql: string, contentType: string) => {
      const json = new TextEncoder().encode(JSON.stringify({ sql }));
      const body = new Uint8Array(5 + json.length);
      new DataView(body.buffer).setUint32(1, json.length);
      body.set(json, 5);
      const response = await fetch(path, {
        method: "POST",
        headers: { "content-type": contentType },
        body,
      });
      return {
        httpStatus: response.status,
        grpcStatus: response.headers.get("grpc-status"),
        // The envelopes' 5-byte prefixes decode as control characters.
        body: new TextDecoder().decode(await response.arrayBuffer()),
      };
    };
    return {
      ok: await call("SELECT 7 AS seven", "application/grpc+json"),
      bad: await call("SELEC 7", "application/grpc+json"),
      grpcWeb: await call("SELECT 7 AS seven", "application/grpc-web+json"),
    };
  }, execute);
  await browser.close();

  assert.equal(overH3.ok.httpStatus, 200);
  assert.match(overH3.ok.body, /"int64Value":"7"/, "the response message arrives");
  // No grpc-status anywhere: a gRPC client cannot tell success from
  // failure, and the error's status and message are lost entirely.
  assert.equal(overH3.ok.grpcStatus, null);
  assert.deepEqual(overH3.bad, { httpStatus: 200, grpcStatus: null, body: "" });
  // gRPC-Web carries its status in the body, which arrives.
  assert.match(overH3.grpcWeb.body, /"int64Value":"7".*grpc-status: 0\r\n/s);

  const events = readNetLog(netLogFile);
  const grpcResponses = events
    .filter((e) => e.type === "HTTP3_HEADERS_DECODED")
    .map((e) => e.params?.headers as string[])
    .filter((headers) => headers.includes("content-type: application/grpc+json"));
  assert.equal(grpcResponses.length, 2, "the NetLog holds both gRPC responses' HEADERS frames");
  for (const headers of grpcResponses) {
    assert.deepEqual(
      headers.filter((h) => h.startsWith("grpc-")),
      [],
      "no HEADERS frame carried grpc-status",
    );
  }
  const trailers = events.filter(
    (e) => e.type === "QUIC_CHROMIUM_CLIENT_STREAM_READ_RESPONSE_TRAILERS",
  );
  assert.deepEqual(trailers, []);
});

test("Caddy 2.6.2 drops request bodies without Content-Length over HTTP/3: client streaming breaks", async (t) => {
  const { db, certificate, caddy } = await gatewayBehindCaddy(t);
  await db.admin.query("CREATE TABLE events (id INT PRIMARY KEY, v VARCHAR(20))");
  /** Rows as protobuf-es message inits (for the Node client)... */
  const rowInits = (ids: number[]) =>
    ids.map((id) => ({
      values: [
        { kind: { case: "int64Value" as const, value: BigInt(id) } },
        { kind: { case: "stringValue" as const, value: `e${id}` } },
      ],
    }));
  /** ...and in Connect JSON (for the page). */
  const rows = (ids: number[]) =>
    ids.map((id) => ({ values: [{ int64Value: String(id) }, { stringValue: `e${id}` }] }));

  // HTTP/2 through Caddy: a real client stream (no Content-Length) arrives whole.
  const client = createClient(
    IngestService,
    createConnectTransport({
      baseUrl: caddy.origin,
      httpVersion: "2",
      nodeOptions: { ca: certificate.cert },
    }),
  );
  const overH2 = await client.writeStream(
    (async function* () {
      yield { table: "events", columns: ["id", "v"], rows: rowInits([1]) };
      yield { table: "events", columns: ["id", "v"], rows: rowInits([2]) };
    })(),
  );
  assert.equal(overH2.rowsWritten, 2n);

  // HTTP/3 from Chromium: the same Connect client-streaming call, once with
  // the whole body in hand (fetch sends Content-Length) and once as a
  // ReadableStream (`duplex: "half"`, no Content-Length).
  const browser = await launchQuicBrowser(t, { caddy, certificate });
  const page = await openQuicPage(browser, caddy);
  const overH3 = await page.evaluate(
    async ({ known, streamed }) => {
      const envelopes = (messages: unknown[]) =>
        messages.map((m) => {
          const json = new TextEncoder().encode(JSON.stringify(m));
          const out = new Uint8Array(5 + json.length);
          new DataView(out.buffer).setUint32(1, json.length);
          out.set(json, 5);
          return out;
        });
      const decode = async (response: Response) => {
        const bytes = new Uint8Array(await response.arrayBuffer());
        const frames: { flags: number; json: unknown }[] = [];
        for (let at = 0; at + 5 <= bytes.length; ) {
          const length = new DataView(bytes.buffer, at + 1, 4).getUint32(0);
          const text = new TextDecoder().decode(bytes.subarray(at + 5, at + 5 + length));
          frames.push({ flags: bytes[at] ?? -1, json: JSON.parse(text) });
          at += 5 + length;
        }
        return frames;
      };
      const call = (body: BodyInit) =>
        fetch("/sqlgate.v1.IngestService/WriteStream", {
          method: "POST",
          headers: { "content-type": "application/connect+json" },
          body,
          duplex: "half",
        } as RequestInit);
      const whole = envelopes(known);
      const withLength = await decode(await call(new Blob(whole)));
      const parts = envelopes(streamed);
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = parts.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(next);
        },
      });
      const withoutLength = await decode(await call(stream));
      const resources = performance.getEntriesByType("resource") as PerformanceResourceTiming[];
      const protocols = resources
        .filter((e) => e.name.includes("/sqlgate."))
        .map((e) => e.nextHopProtocol);
      return { withLength, withoutLength, protocols };
    },
    {
      known: [
        { table: "events", columns: ["id", "v"], rows: rows([3]) },
        { table: "events", columns: ["id", "v"], rows: rows([4]) },
      ],
      streamed: [
        { table: "events", columns: ["id", "v"], rows: rows([5]) },
        { table: "events", columns: ["id", "v"], rows: rows([6]) },
      ],
    },
  );

  assert.deepEqual(overH3.protocols, ["h3", "h3"]);
  assert.deepEqual(overH3.withLength, [
    {
      flags: 0,
      json: {
        rowsWritten: "2",
        batches: 2,
        position: (overH3.withLength[0]?.json as { position?: string } | undefined)?.position,
      },
    },
    { flags: 2, json: {} },
  ]);
  // The gateway saw an empty request body: not one message of the stream. It
  // says so rather than answer success.
  assert.equal(overH3.withoutLength.length, 1);
  const [end] = overH3.withoutLength as {
    flags: number;
    json: { error?: { code: string; message: string } };
  }[];
  assert.equal(end?.flags, 2);
  assert.equal(end?.json.error?.code, "invalid_argument");
  assert.match(end?.json.error?.message ?? "", /received no messages/);
  const [written] = await db.admin.query("SELECT id FROM events ORDER BY id");
  assert.deepEqual(written, [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
  const protos = (
    await caddy.accessLogWhen((e) => e.request.uri === "/sqlgate.v1.IngestService/WriteStream", 3)
  ).map((e) => e.request.proto);
  assert.deepEqual(protos, ["HTTP/2.0", "HTTP/3.0", "HTTP/3.0"]);
});
