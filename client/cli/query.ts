/**
 * `sqlgate query`: one statement through the gateway, its result as a table
 * for people or as JSON lines for programs.
 */
import { parseArgs } from "node:util";
import Table from "cli-table3";
import { ColumnType, type Field } from "../../gen/sqlgate/v1/value_pb.js";
import { createClient } from "../src/index.js";
import { type CliIo, type Command, clientOptionsFor } from "./command.js";
import { messageFromError, UsageError } from "./errors.js";
import { executeSql, type SqlResult } from "./sql.js";
import { jsonFromValue, textFromValue, valueFromParam } from "./value-text.js";

const help = `Usage: sqlgate query SQL [options]

Runs one SQL statement through the gateway's DatabaseService.Execute and
prints its result: a table of rows, or the rows affected and last insert id
of a write.

Options:
  -p, --param VALUE   a value for the next ? placeholder; repeat in order.
                      \\N is NULL; an integer (42, -7; no leading zeros) is
                      sent as an exact 64-bit integer; a number with a
                      fraction (12.50) as an exact DECIMAL; anything else as
                      text, which MySQL converts. A value starting with "-"
                      is written --param=-5
      --json          one JSON object per row ({"column": value}) instead of
                      a table; for a write, one object with rowsAffected,
                      lastInsertId, warningCount and info
      --url URL       the gateway (default http://127.0.0.1:8080)
  -h, --help          this help

Values print exactly: 64-bit integers with every digit (in JSON as numbers
with every digit), DECIMAL as MySQL's text (in JSON as a string), NULL as
NULL (null), bytes as 0x-prefixed hex in a table and base64 in JSON, JSON
columns as their text (in JSON embedded as the document), dates and times as
MySQL's text. A repeated column name gets a suffix (_2, _3) in JSON.

Errors go to stderr with the Connect code and, when MySQL raised them, its
errno and SQLSTATE (as the mysql client prints them); the exit code is 1.

Examples:
  sqlgate query "SELECT id, name FROM users WHERE id = ?" --param 9007199254740993
  sqlgate query "SELECT * FROM events" --json | jq .payload
`;

export const queryCommand: Command = {
  name: "query",
  summary: "run one SQL statement and print its result",
  help,
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        param: { type: "string", short: "p", multiple: true },
        json: { type: "boolean" },
        url: { type: "string", default: io.defaultUrl },
      },
    });
    const [sql, ...extra] = positionals;
    if (sql === undefined || sql.trim() === "")
      throw new UsageError('which SQL? (sqlgate query "SELECT ...")');
    if (extra.length > 0) {
      throw new UsageError(
        `query: unexpected arguments after the SQL: ${extra.join(" ")} (quote the SQL as one argument)`,
      );
    }
    const params = (values.param ?? []).map(valueFromParam);
    const client = createClient(clientOptionsFor(values.url));
    try {
      const startedAt = performance.now();
      const result = await executeSql(client, sql, params);
      const elapsedMs = performance.now() - startedAt;
      if (values.json) printJson(result, io);
      else printTable(result, elapsedMs, io);
      if (result.truncated) {
        io.stderr.write(
          `warning: the result was cut at ${result.rows.length} rows (the gateway's SQLGATE_MAX_ROWS); add a LIMIT or narrow the query\n`,
        );
      }
      return 0;
    } catch (err) {
      io.stderr.write(`sqlgate query: ${messageFromError(err)}\n`);
      return 1;
    } finally {
      await client.close();
    }
  },
};

function printTable(result: SqlResult, elapsedMs: number, io: CliIo): void {
  const took = `(${elapsedMs < 1000 ? `${elapsedMs.toFixed(1)} ms` : `${(elapsedMs / 1000).toFixed(2)} s`})`;
  const warnings =
    result.warningCount > 0 ? `, ${plural(result.warningCount, "warning", "warnings")}` : "";
  if (result.fields.length === 0) {
    const lastId = result.lastInsertId > 0n ? `, last insert id ${result.lastInsertId}` : "";
    io.stdout.write(
      `Query OK, ${plural(result.rowsAffected, "row", "rows")} affected${lastId}${warnings} ${took}\n`,
    );
    if (result.info !== "") io.stdout.write(`${result.info}\n`);
    return;
  }
  const table = new Table({
    head: result.fields.map((f) => f.name),
    colAligns: result.fields.map((f) => (isNumeric(f) ? "right" : "left")),
    // No colours: the output is often piped, and cells must read the same everywhere.
    style: { head: [], border: [] },
  });
  for (const row of result.rows) table.push(row.values.map(textFromValue));
  io.stdout.write(`${table.toString()}\n`);
  io.stdout.write(`${plural(result.rows.length, "row", "rows")}${warnings} ${took}\n`);
}

function printJson(result: SqlResult, io: CliIo): void {
  if (result.fields.length === 0) {
    io.stdout.write(
      `{"rowsAffected":${result.rowsAffected},"lastInsertId":${result.lastInsertId},` +
        `"warningCount":${result.warningCount},"info":${JSON.stringify(result.info)}}\n`,
    );
    return;
  }
  const keys = jsonKeys(result.fields);
  let out = "";
  for (const row of result.rows) {
    out += `{${row.values.map((v, i) => `${keys[i]}:${jsonFromValue(v)}`).join(",")}}\n`;
    // Written in pieces, so that a large result does not become one huge string.
    if (out.length > 65_536) {
      io.stdout.write(out);
      out = "";
    }
  }
  io.stdout.write(out);
}

/** Each field's name as a JSON key; a repeated name gets `_2`, `_3` so that no value is lost. */
function jsonKeys(fields: readonly Field[]): string[] {
  const seen = new Map<string, number>();
  return fields.map((f) => {
    const n = (seen.get(f.name) ?? 0) + 1;
    seen.set(f.name, n);
    return JSON.stringify(n === 1 ? f.name : `${f.name}_${n}`);
  });
}

function isNumeric(field: Field): boolean {
  return field.type >= ColumnType.TINYINT && field.type <= ColumnType.DECIMAL;
}

function plural(n: number | bigint, one: string, many: string): string {
  return `${n} ${n === 1 || n === 1n ? one : many}`;
}
