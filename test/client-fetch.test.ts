/**
 * The fetch entry (`client/src/fetch.ts`) needs nothing but web globals:
 * bundled by esbuild for a neutral platform it reaches no `node:` module and
 * imports nothing from outside the bundle, and the bundle, run in a
 * `node:vm` context whose only globals are web APIs (no `process`, `Buffer`
 * or `require`), runs real queries against a real gateway: execute, batch,
 * stream, transaction, errors, and ingest (`write`, and the writer over
 * unary Write calls, which stays exactly-once when an answer is lost).
 */
import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { test } from "node:test";
import vm from "node:vm";
import type * as Scenario from "./support/fetch-scenario.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase, waitUntilGone } from "./support/mysql.js";
import { bundle, webContext } from "./support/web-sandbox.js";

test("the fetch entry bundles without a node: module", async () => {
  const { code, metafile } = await bundle("client/src/fetch.ts");
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  const inputs = Object.keys(metafile.inputs);
  assert.ok(inputs.some((i) => i.includes("@connectrpc/connect-web")));
  for (const input of inputs) {
    assert.ok(!input.startsWith("node:") && !builtins.has(input), `bundled ${input}`);
    assert.ok(!input.includes("connect-node"), `bundled ${input}`);
  }
  for (const output of Object.values(metafile.outputs)) {
    assert.deepEqual(output.imports, [], "the bundle imports nothing from outside");
  }
  assert.doesNotMatch(code, /\brequire\(|from\s*["']node:|import\(["']node:/);
});

/** The scenario bundle (the SDK's fetch entry inside) run in a fresh web-only context. */
async function runInSandbox(
  fetch: typeof globalThis.fetch,
  run: (scenario: typeof Scenario) => Promise<string>,
): Promise<unknown> {
  const { code } = await bundle("test/support/fetch-scenario.ts");
  const context = webContext(fetch);
  vm.runInContext(code, context, { filename: "fetch-scenario.js" });
  for (const name of ["process", "Buffer", "require", "module", "setImmediate"]) {
    assert.equal(vm.runInContext(`typeof ${name}`, context), "undefined", name);
  }
  const scenario = vm.runInContext("sqlgate", context) as typeof Scenario;
  return JSON.parse(await run(scenario));
}

test("in a web-only sandbox: SQL, transactions, streams, errors and ingest", async (t) => {
  const db = await createTestDatabase(t);
  for (const format of ["binary", "json"]) {
    await db.admin.query(
      `CREATE TABLE notes_${format} (id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(20) UNIQUE)`,
    );
    await db.admin.query(`CREATE TABLE events_${format} (id INT PRIMARY KEY, v VARCHAR(40))`);
  }
  const gateway = await startGateway(t, db.url);
  const paths: string[] = [];
  const countingFetch: typeof globalThis.fetch = (input, init) => {
    paths.push(new URL(String(input)).pathname);
    return fetch(input, init);
  };
  const results = (await runInSandbox(countingFetch, (s) =>
    s.sqlAndIngest(gateway.baseUrl),
  )) as Record<string, Record<string, unknown>>;

  for (const format of ["binary", "json"]) {
    const r = results[format];
    assert.ok(r, format);
    assert.deepEqual(r.params, [
      { big: "18446744073709551615n", bytes: "bytes:0,1,255", nothing: null, price: "12.500" },
    ]);
    assert.deepEqual(r.named, [["x", "x"]]);
    assert.deepEqual(r.insert, { rowsAffected: 2, insertId: "1n" });
    assert.deepEqual(r.batch, [[{ n: "2n" }], [{ id: "2n" }]]);
    assert.deepEqual(r.atomic, {
      code: "already_exists",
      errno: 1062,
      sqlState: "23000",
      statementIndex: 1,
    });
    assert.deepEqual(r.committed, [{ body: "tx" }]);
    assert.equal(r.rolledBack, "roll it back");
    assert.deepEqual(r.bodies, ["a", "b", "tx"]);
    assert.deepEqual(r.stream, { count: 20000, sum: "200010000n", fields: ["seq"] });
    assert.equal(r.early, 10);
    assert.deepEqual(r.syntax, { code: "invalid_argument", errno: 1064, sqlState: "42000" });
    assert.deepEqual(r.duplicate, { code: "already_exists", errno: 1062, sqlState: "23000" });
    const [written] = r.write as { position: string }[];
    assert.deepEqual(r.write, [
      // The write's binlog position; a duplicate wrote nothing.
      { rowsWritten: 1, batches: 1, duplicateBatches: 0, position: written?.position },
      { rowsWritten: 0, batches: 0, duplicateBatches: 1, position: "" },
    ]);
    assert.match(written?.position ?? "", /^\d+-\d+-\d+$/);
    assert.deepEqual(r.writer, { rowsAcknowledged: 3000, rowsWritten: 3000 });
    assert.deepEqual(r.count, [{ n: "3001n" }]);
  }
  // Everything went through the sandbox's fetch, and the writer used unary Writes.
  assert.ok(paths.includes("/sqlgate.v1.DatabaseService/StreamExecute"));
  assert.ok(paths.includes("/sqlgate.v1.IngestService/Write"));
  assert.ok(!paths.includes("/sqlgate.v1.IngestService/WriteStream"));
  // The stream left early was stopped on MySQL.
  await waitUntilGone(db.admin, "seq_1_to_1000000");
});

test("in a web-only sandbox: the writer retries lost answers exactly once", async (t) => {
  const db = await createTestDatabase(t);
  await db.admin.query("CREATE TABLE lost (id INT PRIMARY KEY, v VARCHAR(40))");
  const gateway = await startGateway(t, db.url);
  // Every third Write reaches the gateway and commits, but its answer is lost
  // on the way back, as when a connection drops: fetch rejects with the
  // TypeError browsers and undici give for a network failure.
  let writes = 0;
  let lost = 0;
  const lossyFetch: typeof globalThis.fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).endsWith(".IngestService/Write") && ++writes % 3 === 1) {
      await response.arrayBuffer();
      lost++;
      throw new TypeError("fetch failed");
    }
    return response;
  };
  const summary = (await runInSandbox(lossyFetch, (s) =>
    s.writerAcrossLostAnswers(gateway.baseUrl),
  )) as { rowsAcknowledged: number; duplicateBatches: number; retries: number };
  assert.ok(lost >= 2, `answers lost: ${lost}`);
  assert.equal(summary.rowsAcknowledged, 2000);
  assert.ok(summary.retries >= 1);
  assert.ok(summary.duplicateBatches >= 1, "a retried chunk was a duplicate");
  const [rows] = await db.admin.query(
    "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids, SUM(id) AS sum FROM lost",
  );
  assert.deepEqual(rows, [{ n: 2000, ids: 2000, sum: "2001000" }]);
});
