/**
 * `sqlgate changes`: row changes as they are committed, one line per row
 * change, for people watching a table or for programs (`--json`).
 */

import { parseArgs } from "node:util";
import { createClient as createConnectClient } from "@connectrpc/connect";
import { ChangeOp, ChangeService, type RowChange } from "../../gen/sqlgate/v1/changes_pb.js";
import type { Row } from "../../gen/sqlgate/v1/value_pb.js";
import { resumingSubscription } from "../src/changes.js";
import { createClient } from "../src/index.js";
import { type Command, clientOptionsFor } from "./command.js";
import { messageFromError, UsageError } from "./errors.js";
import { jsonFromValue } from "./value-text.js";

const help = `Usage: sqlgate changes [TABLE...] [options]

Prints row changes as they are committed (ChangeService.Subscribe), until
interrupted (Ctrl-C). A TABLE is db.table, table (in the credential's
database), db.* or *; none means every table the credential may read. A
broken stream is opened again from the last transaction printed, so nothing
is printed twice or skipped.

Each row change is one line:
  POSITION  TIME  insert  db.table  {"id":1,"name":"x"}
  POSITION  TIME  update  db.table  {"id":1,"name":"x"} -> {"id":1,"name":"y"}
  POSITION  TIME  delete  db.table  {"id":1,"name":"y"}
and each schema change:
  POSITION  schema  db  ALTER TABLE ...
Rows are JSON with exact values (as sqlgate query --json writes them); the
row before an update shows with --before.

Options:
      --from POSITION  start after this position (from an earlier line, or a
                       write's result) instead of from now
      --before         show the row before each update
      --json           one JSON object per row change (and schema change)
      --url URL        the gateway (default http://127.0.0.1:8080)
  -h, --help           this help

Examples:
  sqlgate changes orders
  sqlgate changes 'shop.*' --json | jq 'select(.op == "delete")'
`;

export const changesCommand: Command = {
  name: "changes",
  summary: "print row changes as they are committed",
  help,
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        from: { type: "string", default: "" },
        before: { type: "boolean" },
        json: { type: "boolean" },
        url: { type: "string", default: io.defaultUrl },
      },
    });
    if (positionals.some((table) => table.trim() === "")) {
      throw new UsageError("an empty table name");
    }
    const client = createClient(clientOptionsFor(values.url));
    const stop = new AbortController();
    const interrupt = () => stop.abort();
    process.once("SIGINT", interrupt);
    process.once("SIGTERM", interrupt);
    try {
      const messages = resumingSubscription(
        createConnectClient(ChangeService, client.transport),
        { tables: positionals, from: values.from, includeBefore: values.before ?? false },
        { signal: stop.signal },
      );
      for await (const message of messages) {
        const event = message.event;
        if (event.case === "transaction") {
          const tx = event.value;
          const time = tx.commitTime === undefined ? "" : commitTimeText(tx.commitTime.seconds);
          for (const change of tx.changes) {
            io.stdout.write(
              values.json
                ? `${changeJson(tx.position, time, change)}\n`
                : `${changeLine(tx.position, time, change)}\n`,
            );
          }
        } else if (event.case === "schemaChange") {
          const { position, database, sql } = event.value;
          io.stdout.write(
            values.json
              ? `${JSON.stringify({ position, op: "schema", database, sql })}\n`
              : `${position}  schema  ${database}  ${sql}\n`,
          );
        }
      }
      return 0;
    } catch (err) {
      io.stderr.write(`sqlgate changes: ${messageFromError(err)}\n`);
      return 1;
    } finally {
      process.off("SIGINT", interrupt);
      process.off("SIGTERM", interrupt);
      await client.close();
    }
  },
};

const opNames: Record<number, string> = {
  [ChangeOp.INSERT]: "insert",
  [ChangeOp.UPDATE]: "update",
  [ChangeOp.DELETE]: "delete",
};

/** A commit time (whole seconds, as the binlog keeps it) as UTC text. */
function commitTimeText(seconds: bigint): string {
  return new Date(Number(seconds) * 1000).toISOString().replace("T", " ").slice(0, 19);
}

/** A row as a JSON object of its columns, values exact. */
function rowJson(columns: readonly string[], row: Row): string {
  return `{${row.values.map((v, i) => `${JSON.stringify(columns[i] ?? `col${i + 1}`)}:${jsonFromValue(v)}`).join(",")}}`;
}

function changeLine(position: string, time: string, change: RowChange): string {
  const op = opNames[change.op] ?? "change";
  const rows = [change.before, change.after]
    .filter((row): row is Row => row !== undefined)
    .map((row) => rowJson(change.columns, row))
    .join(" -> ");
  return `${position}  ${time}  ${op}  ${change.database}.${change.table}  ${rows}`;
}

function changeJson(position: string, time: string, change: RowChange): string {
  const fields = [
    `"position":${JSON.stringify(position)}`,
    `"commitTime":${JSON.stringify(time)}`,
    `"op":${JSON.stringify(opNames[change.op] ?? "change")}`,
    `"database":${JSON.stringify(change.database)}`,
    `"table":${JSON.stringify(change.table)}`,
  ];
  if (change.before !== undefined)
    fields.push(`"before":${rowJson(change.columns, change.before)}`);
  if (change.after !== undefined) fields.push(`"after":${rowJson(change.columns, change.after)}`);
  return `{${fields.join(",")}}`;
}
