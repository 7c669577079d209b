/**
 * TLS to MySQL: a MariaDB started with a test certificate and
 * `require_secure_transport`, and a gateway connecting with `ssl-mode` and
 * `ssl-ca` in its MySQL URL. Verified connections work and are encrypted;
 * a wrong CA or no TLS at all fail.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import mysql from "mysql2/promise";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGateway } from "./support/gateway.js";
import { selfSignedCertificate } from "./support/tls.js";

test("the gateway reaches a TLS-only MariaDB with ssl-mode and ssl-ca, and only so", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-mysql-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certificate = await selfSignedCertificate(t);
  const other = await selfSignedCertificate(t);
  const keyFile = path.join(dir, "server.key");
  writeFileSync(keyFile, certificate.key);
  const server = await startEmbeddedMysql({
    dataDir: path.join(dir, "data"),
    serverArgs: [
      `--ssl-cert=${certificate.certFile}`,
      `--ssl-key=${keyFile}`,
      "--require-secure-transport=ON",
    ],
  });
  t.after(() => server.stop());
  // The socket counts as secure; TCP clients must use TLS.
  const admin = await mysql.createConnection({ socketPath: server.socketPath, user: "root" });
  await admin.query("CREATE USER 'tls'@'%' IDENTIFIED BY 'tls-password'");
  await admin.query(`GRANT ALL ON ${server.database}.* TO 'tls'@'%'`);
  await admin.end();

  const base = `mysql://tls:tls-password@127.0.0.1:${server.port}/${server.database}`;
  const verified = `${base}?ssl-mode=VERIFY_IDENTITY&ssl-ca=${encodeURIComponent(certificate.certFile)}`;
  const gateway = await startGateway(t, verified);
  const db = createClient(
    DatabaseService,
    createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "1.1" }),
  );
  const status = await db.execute({ sql: "SHOW SESSION STATUS LIKE 'Ssl_cipher'" });
  const cipher = status.rows[0]?.values[1]?.kind.value;
  assert.equal(typeof cipher, "string");
  assert.notEqual(cipher, "", "the connection is encrypted");

  // Encrypted but unverified also connects; a wrong CA and no TLS do not.
  await startGateway(t, `${base}?ssl-mode=REQUIRED`);
  await assert.rejects(
    startGateway(t, `${base}?ssl-ca=${encodeURIComponent(other.certFile)}`),
    /certificate|self.signed|verify/i,
  );
  await assert.rejects(startGateway(t, base), /secure transport|Access denied|SSL/i);
});
