/**
 * ExecuteBatch: statements in order on one connection; `atomic` all or
 * nothing, with the failing statement's index in the error; inside a
 * transaction too (a savepoint).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { SqlErrorSchema } from "../gen/sqlgate/v1/value_pb.js";
import { databaseClient } from "./support/clients.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

async function setup(t: Parameters<typeof createTestDatabase>[0]) {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))");
  const gateway = await startGateway(t, db.url);
  const client = databaseClient(gateway.baseUrl, "1.1");
  const ids = async () => {
    const [rows] = await db.admin.query("SELECT id FROM items ORDER BY id");
    return (rows as { id: number }[]).map((r) => r.id);
  };
  return { client, ids };
}

const insert = (id: number) => ({
  sql: "INSERT INTO items VALUES (?, 'x')",
  params: [{ kind: { case: "numberValue" as const, value: id } }],
});

/** The failing statement's index, from the error's message and its SqlError detail. */
function failedAt(index: number, code: Code) {
  return (err: unknown) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, new RegExp(`^\\[\\w+\\] statement ${index}: `));
    return true;
  };
}

test("statements run in order on one connection and each has its result", async (t) => {
  const { client, ids } = await setup(t);
  const { results } = await client.executeBatch({
    statements: [
      { sql: "SET @before = (SELECT COUNT(*) FROM items)" },
      insert(1),
      insert(2),
      { sql: "SELECT @before AS n_before, COUNT(*) AS n_after, CONNECTION_ID() FROM items" },
      { sql: "SELECT CONNECTION_ID()" },
    ],
  });
  assert.equal(results.length, 5);
  assert.equal(results[1]?.rowsAffected, 1n);
  assert.deepEqual(
    results[3]?.rows[0]?.values.slice(0, 2).map((v) => v.kind.value),
    [0n, 2n],
  );
  // The same connection ran every statement (the user variable survived too).
  assert.equal(
    results[3]?.rows[0]?.values[2]?.kind.value,
    results[4]?.rows[0]?.values[0]?.kind.value,
  );
  assert.deepEqual(await ids(), [1, 2]);
});

test("non-atomic: statements before the failure stay written", async (t) => {
  const { client, ids } = await setup(t);
  await assert.rejects(
    client.executeBatch({ statements: [insert(1), insert(1), insert(2)] }),
    (err) => {
      failedAt(1, Code.AlreadyExists)(err);
      const detail = (err as ConnectError).findDetails(SqlErrorSchema)[0];
      assert.equal(detail?.statementIndex, 1);
      assert.equal(detail?.errno, 1062);
      return true;
    },
  );
  assert.deepEqual(await ids(), [1]);
});

test("atomic: the first error rolls back every statement", async (t) => {
  const { client, ids } = await setup(t);
  await assert.rejects(
    client.executeBatch({ atomic: true, statements: [insert(1), insert(2), { sql: "SELEC 3" }] }),
    failedAt(2, Code.InvalidArgument),
  );
  assert.deepEqual(await ids(), []);
  const ok = await client.executeBatch({ atomic: true, statements: [insert(1), insert(2)] });
  assert.equal(ok.results.length, 2);
  assert.deepEqual(await ids(), [1, 2]);
});

test("a bad parameter is refused before anything runs", async (t) => {
  const { client, ids } = await setup(t);
  await assert.rejects(
    client.executeBatch({ statements: [insert(1), { sql: "SELECT ?" }] }),
    failedAt(1, Code.InvalidArgument),
  );
  assert.deepEqual(await ids(), []);
});

test("atomic inside a transaction undoes only the batch", async (t) => {
  const { client, ids } = await setup(t);
  const { session } = await client.beginTransaction({});
  await client.execute({ ...insert(1), session });
  await assert.rejects(
    client.executeBatch({ session, atomic: true, statements: [insert(2), insert(1)] }),
    failedAt(1, Code.AlreadyExists),
  );
  await client.executeBatch({ session, statements: [insert(3)] });
  await client.commitTransaction({ session });
  assert.deepEqual(await ids(), [1, 3]);
});
