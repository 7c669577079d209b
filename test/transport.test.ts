/**
 * The one port: TLS with ALPN h2 and http/1.1, and a close() that finishes
 * promptly with idle keep-alive and HTTP/2 clients connected while letting an
 * in-flight call complete.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { describe, test } from "node:test";
import tls from "node:tls";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startGateway } from "./support/gateway.js";
import { serverUrl } from "./support/mysql.js";
import { selfSignedCertificate } from "./support/tls.js";

const run = promisify(execFile);

function negotiatedProtocol(
  port: number,
  ca: Buffer,
  protocols: string[],
): Promise<string | false | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, ALPNProtocols: protocols }, () => {
      resolve(socket.alpnProtocol);
      socket.end();
    });
    socket.once("error", reject);
  });
}

describe("TLS", () => {
  test("ALPN offers h2 and http/1.1; Connect works over both; curl over both", async (t) => {
    const certificate = await selfSignedCertificate(t);
    const gateway = await startGateway(t, serverUrl(), { tls: certificate });
    assert.equal(
      await negotiatedProtocol(gateway.port, certificate.cert, ["h2", "http/1.1"]),
      "h2",
    );
    assert.equal(
      await negotiatedProtocol(gateway.port, certificate.cert, ["http/1.1"]),
      "http/1.1",
    );

    for (const httpVersion of ["2", "1.1"] as const) {
      const client = createClient(
        DatabaseService,
        createConnectTransport({
          baseUrl: gateway.baseUrl,
          httpVersion,
          nodeOptions: { ca: certificate.cert },
        }),
      );
      const response = await client.execute({
        sql: "SELECT ? AS v",
        params: [{ kind: { case: "stringValue", value: httpVersion } }],
      });
      assert.equal(response.rows[0]?.values[0]?.kind.value, httpVersion);
    }
    for (const [flag, version] of [
      ["--http2", "2"],
      ["--http1.1", "1.1"],
    ]) {
      const { stdout } = await run("curl", [
        "-sS",
        flag as string,
        "--cacert",
        certificate.certFile,
        "-w",
        "\n%{http_version}",
        "-H",
        "content-type: application/json",
        "-d",
        '{"sql":"SELECT 1 AS one"}',
        `${gateway.baseUrl}/sqlgate.v1.DatabaseService/Execute`,
      ]);
      const [body, httpVersion] = stdout.split("\n");
      assert.equal(httpVersion, version);
      assert.match(body ?? "", /"int64Value":"1"/);
    }
  });
});

describe("close()", () => {
  test("closes idle HTTP/1.1 keep-alive and HTTP/2 connections promptly", async (t) => {
    const gateway = await startGateway({ after: () => {} }, serverUrl());
    t.after(() => gateway.db.close());
    const agent = new http.Agent({ keepAlive: true });
    t.after(() => agent.destroy());
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${gateway.baseUrl}/healthz`, { agent }, (res) => {
          res.resume();
          res.once("end", resolve);
        })
        .once("error", reject);
    });
    const session = http2.connect(gateway.baseUrl);
    session.on("error", () => {});
    t.after(() => session.destroy());
    await new Promise<void>((resolve, reject) => {
      const stream = session.request({ ":path": "/healthz" });
      stream.resume();
      stream.once("end", resolve);
      stream.once("error", reject);
    });
    const sessionClosed = new Promise<void>((resolve) => session.once("close", resolve));

    const started = Date.now();
    await gateway.app.close();
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms`);
    await sessionClosed;
  });

  test("a connection that never sends a byte does not hold up close()", async (t) => {
    const gateway = await startGateway({ after: () => {} }, serverUrl());
    t.after(() => gateway.db.close());
    const silent = net.connect(gateway.port, "127.0.0.1");
    silent.on("error", () => {});
    await new Promise((resolve) => silent.once("connect", resolve));
    const started = Date.now();
    await gateway.app.close();
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms`);
  });

  test("lets an in-flight call finish, over HTTP/2 and HTTP/1.1", async (t) => {
    const gateway = await startGateway({ after: () => {} }, serverUrl());
    t.after(() => gateway.db.close());
    const calls = (["2", "1.1"] as const).map((httpVersion) =>
      createClient(
        DatabaseService,
        createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion }),
      ).execute({ sql: "SELECT SLEEP(0.5) AS slept" }),
    );
    await new Promise((r) => setTimeout(r, 150));
    const closed = gateway.app.close();
    const results = await Promise.all(calls);
    for (const result of results) assert.equal(result.rows[0]?.values[0]?.kind.value, 0n);
    const started = Date.now();
    await closed;
    assert.ok(Date.now() - started < 2000, "close() finished soon after the calls");
  });
});
