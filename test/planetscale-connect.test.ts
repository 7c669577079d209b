/**
 * PlanetScale's API as non-JS clients use it: binary protobuf over Connect and
 * gRPC (as PlanetScale's Go clients and MySQL-protocol proxies do), with bind
 * variables, Prepare and CloseSession.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Database } from "../gen/psdb/v1alpha1/database_pb.js";
import { type QueryResult, Type } from "../gen/vitess/query/v22/query_pb.js";
import { Code as VitessCode } from "../gen/vitess/vtrpc/v22/vtrpc_pb.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const text = (s: string) => new TextEncoder().encode(s);

/** A result's rows as cells of text (null for NULL). */
function cells(result: QueryResult | undefined): (string | null)[][] {
  return (result?.rows ?? []).map((row) => {
    let at = 0;
    return row.lengths.map((length) => {
      if (length < 0n) return null;
      const cell = Buffer.from(row.values.subarray(at, at + Number(length))).toString("utf8");
      at += Number(length);
      return cell;
    });
  });
}

async function setup(t: Parameters<typeof createTestDatabase>[0]) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50))");
  await db.admin.query("INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')");
  const gateway = await startGateway(t, db.url);
  return {
    connect: createClient(
      Database,
      createConnectTransport({ baseUrl: gateway.baseUrl, httpVersion: "1.1" }),
    ),
    grpc: createClient(Database, createGrpcTransport({ baseUrl: gateway.baseUrl })),
  };
}

test("bind variables: values, lists and hostile text, over Connect and gRPC binary", async (t) => {
  const { connect, grpc } = await setup(t);
  for (const client of [connect, grpc]) {
    const response = await client.execute({
      query:
        "SELECT id, name, :s AS s, :b AS b FROM items WHERE id IN ::ids AND id > :min ORDER BY id",
      bindVariables: {
        ids: {
          type: Type.TUPLE,
          values: [
            { type: Type.INT64, value: text("1") },
            { type: Type.INT64, value: text("3") },
          ],
        },
        min: { type: Type.INT64, value: text("0") },
        s: { type: Type.VARCHAR, value: text("it's \\' -- 😀") },
        b: { type: Type.VARBINARY, value: new Uint8Array([0x27, 0x00]) },
      },
    });
    assert.equal(response.error, undefined);
    assert.deepEqual(cells(response.result), [
      ["1", "one", "it's \\' -- 😀", "'\u0000"],
      ["3", "three", "it's \\' -- 😀", "'\u0000"],
    ]);
  }
  const injected = await connect.execute({
    query: "SELECT id FROM items WHERE id = :id",
    bindVariables: { id: { type: Type.INT64, value: text("1 OR 1=1") } },
  });
  assert.equal(injected.error?.code, VitessCode.INVALID_ARGUMENT);
  assert.match(injected.error?.message ?? "", /not an integer/);
  const missing = await connect.execute({
    query: "SELECT :nope",
    bindVariables: { other: { type: Type.INT64, value: text("1") } },
  });
  assert.match(missing.error?.message ?? "", /no bind variable for :nope/);
});

test("Prepare describes a statement's columns and placeholders without running it", async (t) => {
  const { connect } = await setup(t);
  const prepared = await connect.prepare({ query: "SELECT id, name FROM items WHERE id > ?" });
  assert.equal(prepared.error, undefined);
  assert.deepEqual(
    prepared.fields.map((f) => [f.name, f.type, f.table]),
    [
      ["id", Type.INT32, "items"],
      ["name", Type.VARCHAR, "items"],
    ],
  );
  assert.equal(prepared.paramsCount, 1);
  const bad = await connect.prepare({ query: "SELECT nope FROM items" });
  assert.equal(bad.error?.code, VitessCode.NOT_FOUND);
  assert.match(bad.error?.message ?? "", /\(errno 1054\)/);
});

test("CloseSession releases a pinned session; its next use is told so", async (t) => {
  const { connect } = await setup(t);
  const first = await connect.execute({ query: "SET @kept = 'yes'" });
  assert.equal(first.session?.vitessSession?.inReservedConn, true);
  const kept = await connect.execute({ query: "SELECT @kept", session: first.session });
  assert.deepEqual(cells(kept.result), [["yes"]]);
  const closed = await connect.closeSession({ session: kept.session });
  assert.equal(closed.error, undefined);
  assert.equal(closed.session?.vitessSession?.inReservedConn, false);
  const after = await connect.execute({ query: "SELECT @kept", session: kept.session });
  assert.equal(after.error?.code, VitessCode.FAILED_PRECONDITION);
  assert.match(after.error?.message ?? "", /session has ended: it was closed/);
  // The session returned with the error is a fresh one that works.
  const fresh = await connect.execute({ query: "SELECT @kept", session: after.session });
  assert.deepEqual(cells(fresh.result), [[null]]);
});
