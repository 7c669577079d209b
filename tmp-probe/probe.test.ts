import { test } from "node:test";
import { createTestDatabase } from "../test/support/mysql.js";
import { startGateway } from "../test/support/gateway.js";

async function post(base: string, body: BodyInit, ct: string) {
  const res = await fetch(`${base}/sqlgate.v1.DatabaseService/Execute`, { method: "POST", headers: { "content-type": ct }, body });
  console.log(res.status, res.headers.get("content-type"), await res.text());
}

test("probe", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10000))");
  const gw = await startGateway(t, db.url, { env: { SQLGATE_MAX_BODY_BYTES: "2048" } });
  const j = "application/json";
  await post(gw.baseUrl, "{not json", j);
  await post(gw.baseUrl, new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]), "application/proto");
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT 1", bogus: 1 }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT 1" }), "text/plain");
  await post(gw.baseUrl, JSON.stringify({ sql: `INSERT INTO t VALUES (1, '${"x".repeat(4096)}')` }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "INSERT INTO t VALUES (2,'a'); INSERT INTO t VALUES (3,'b')" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELEC 1" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT * FROM nope" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT ?, ?", params: [1] }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT :a, :b", namedParams: { a: 1 } }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT ?, ?", params: [1], typedParams: [{ int64Value: "2" }] }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "LOAD DATA INFILE '/etc/passwd' INTO TABLE t" }), j);
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT 1" }), "application/json; charset=utf-8");
  await post(gw.baseUrl, JSON.stringify({ sql: "SELECT 1" }), j);
  console.log(await db.admin.query("SELECT COUNT(*) AS n FROM t"));
});
