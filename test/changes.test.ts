/**
 * ChangeService.Subscribe against the real gateway: a server without a
 * binary log is refused, naming the setting; a credential confined to one
 * database follows only its tables. (The binlog reader itself, values,
 * transactions, positions, resuming and reconnecting: binlog-reader.test.ts.)
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ChangeService, type SubscribeResponse } from "../gen/sqlgate/v1/changes_pb.js";
import { startEmbeddedMysql } from "../server/devdb/embedded-mysql.js";
import { startGateway } from "./support/gateway.js";

/**
 * A gateway closes only after SQLGATE_SHUTDOWN_GRACE_MS while a change stream
 * was open, even one the client cancelled (not understood yet; see the
 * README's known limitations): a short grace keeps these tests quick.
 */
const quickClose = { SQLGATE_SHUTDOWN_GRACE_MS: "500" };

function changeClient(baseUrl: string) {
  return createClient(ChangeService, createConnectTransport({ baseUrl, httpVersion: "2" }));
}

/** Reads `stream` until `count` transactions arrived (heartbeats skipped). */
async function transactions(
  stream: AsyncIterable<SubscribeResponse>,
  count: number,
): Promise<NonNullable<Extract<SubscribeResponse["event"], { case: "transaction" }>["value"]>[]> {
  const seen = [];
  for await (const message of stream) {
    if (message.event.case === "transaction") seen.push(message.event.value);
    if (seen.length === count) break;
  }
  return seen;
}

test("a server without a binary log: failed_precondition naming the setting", async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-nobinlog-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const mysql = await startEmbeddedMysql({ dataDir });
  t.after(() => mysql.stop());
  const gateway = await startGateway(t, mysql.url, { env: quickClose });
  const err = await transactions(changeClient(gateway.baseUrl).subscribe({}), 1).then(
    () => assert.fail("subscribed"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.FailedPrecondition);
  assert.match(err.message, /log_bin/);
});

test("a credential confined to one database cannot follow another", async (_t) => {
  const { tableFilter } = await import("../server/services/change-service.js");
  assert.throws(() => tableFilter(["other.t"], "mine", "mine"), /outside database mine/);
  const filter = tableFilter(["*"], "mine", "mine");
  assert.ok(filter.matches("mine", "t"));
  assert.ok(!filter.matches("other", "t"));
  const open = tableFilter(["a.*", "t"], "mine", undefined);
  assert.ok(open.matches("a", "x") && open.matches("mine", "t") && !open.matches("mine", "u"));
});
