/**
 * Response compression against the real gateway: a client that accepts gzip
 * gets small responses (a point query's) as they are, where compressing costs
 * more CPU than it saves bytes, and large ones compressed.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { compressMinBytes } from "../server/transport/compression.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

test("small responses go uncompressed, large ones gzip'd for clients that accept it", async (t) => {
  const { url } = await createTestDatabase(t);
  const gateway = await startGateway(t, url);
  // node:http, which hands over the bytes as sent (fetch would inflate them).
  const execute = (sql: string) =>
    new Promise<{
      encoding: string | undefined;
      wire: number;
      body: { rows: { values: { stringValue: string }[] }[] };
    }>((resolve, reject) => {
      const request = http.request(
        `${gateway.baseUrl}/sqlgate.v1.DatabaseService/Execute`,
        {
          method: "POST",
          headers: { "content-type": "application/json", "accept-encoding": "gzip" },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            const bytes = Buffer.concat(chunks);
            const encoding = response.headers["content-encoding"];
            const text = (encoding === "gzip" ? gunzipSync(bytes) : bytes).toString("utf8");
            resolve({ encoding, wire: bytes.length, body: JSON.parse(text) });
          });
        },
      );
      request.on("error", reject);
      request.end(JSON.stringify({ sql }));
    });
  const small = await execute("SELECT 1 AS n");
  assert.equal(small.encoding, undefined);
  assert.ok(small.wire < compressMinBytes);
  const large = await execute(`SELECT REPEAT('x', ${4 * compressMinBytes}) AS s`);
  assert.equal(large.encoding, "gzip");
  assert.ok(large.wire < compressMinBytes, `compressed to ${large.wire} bytes`);
  assert.equal(large.body.rows[0]?.values[0]?.stringValue.length, 4 * compressMinBytes);
});
