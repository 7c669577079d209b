/**
 * Client certificates (SQLGATE_TLS_CLIENT_CA): the TLS handshake refuses
 * clients without one from the CA, and a verified certificate's common name
 * names the credential a call runs as when it sends no Authorization header.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { createCredential } from "../server/auth/credential-tool.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";
import { certificateAuthority, selfSignedCertificate } from "./support/tls.js";

test("mTLS: no certificate, a foreign one and an unknown name are refused; the name is the credential", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY)");
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-mtls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "credentials.yaml");
  await createCredential(file, {
    name: "sensor",
    role: "read_only",
    database: undefined,
    replace: false,
  });
  const writerPassword = await createCredential(file, {
    name: "writer",
    role: "read_write",
    database: undefined,
    replace: false,
  });

  const server = await selfSignedCertificate(t);
  const authority = await certificateAuthority(t);
  const stranger = await certificateAuthority(t);
  const gateway = await startGateway(t, db.url, {
    env: { SQLGATE_CREDENTIALS_FILE: file },
    tls: { cert: server.cert, key: server.key, clientCa: authority.cert },
  });

  const client = (
    identity: { cert: Buffer; key: Buffer } | undefined,
    httpVersion: "1.1" | "2",
    authorization?: string,
  ) =>
    createClient(
      DatabaseService,
      createConnectTransport({
        baseUrl: gateway.baseUrl,
        httpVersion,
        nodeOptions: { ca: server.cert, ...(identity ?? {}) },
        interceptors: [
          (next) => (req) => {
            if (authorization !== undefined) req.header.set("authorization", authorization);
            return next(req);
          },
        ],
      }),
    );
  const refusal = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail("the call succeeded"),
      (e: unknown) => ConnectError.from(e),
    );

  const sensor = await authority.issue("sensor");
  for (const version of ["1.1", "2"] as const) {
    const viaCertificate = client(sensor, version);
    assert.equal((await viaCertificate.execute({ sql: "SELECT 1" })).rows.length, 1, version);
    // It runs as `sensor`, which is read_only: the certificate chose the credential.
    const write = await refusal(viaCertificate.execute({ sql: "INSERT INTO items VALUES (1)" }));
    assert.equal(write.code, Code.PermissionDenied, version);
  }

  // A header, when sent, is what counts.
  const asWriter = client(sensor, "2", `Bearer writer.${writerPassword}`);
  await asWriter.execute({ sql: "INSERT INTO items VALUES (2)" });

  const withoutCertificate = await refusal(client(undefined, "2").execute({ sql: "SELECT 1" }));
  assert.notEqual(withoutCertificate.code, Code.Unauthenticated, "refused in the handshake");
  const foreign = await refusal(
    client(await stranger.issue("sensor"), "1.1").execute({ sql: "SELECT 1" }),
  );
  assert.notEqual(foreign.code, Code.Unauthenticated, "refused in the handshake");
  const unknown = await refusal(
    client(await authority.issue("nobody"), "2").execute({ sql: "SELECT 1" }),
  );
  assert.equal(unknown.code, Code.Unauthenticated);
  assert.match(unknown.message, /nobody/);

  const [rows] = (await db.admin.query("SELECT id FROM items")) as unknown as [unknown[]];
  assert.deepEqual(rows, [{ id: 2 }]);
});
