/**
 * The `sqlgate` command line as people run it: a real child process
 * (`node --import tsx client/cli/sqlgate.ts`, the source of the package's
 * `bin`) against a real gateway and MariaDB. Values print exactly, errors
 * carry MySQL's errno, a million-row CSV lands whole with a progress bar,
 * NDJSON keeps 64-bit integers, and `serve` starts and stops the gateway.
 *
 * `serve` runs from source here too: the CLI starts the gateway entry point
 * beside its own file with its own node options, so from client/cli/*.ts
 * that is server/main.ts through tsx, and no build is needed; the compiled
 * bin (dist/client/cli) starts dist/server/main.js the same way.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startGateway } from "./support/gateway.js";
import { waitForLog } from "./support/gateway-process.js";
import { createTestDatabase } from "./support/mysql.js";

type Context = Parameters<typeof createTestDatabase>[0];

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `sqlgate args...` to completion. */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  const child = spawn(process.execPath, ["--import", "tsx", "client/cli/sqlgate.ts", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
  });
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

function tempDir(t: Context): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type Admin = { query(sql: string): Promise<unknown> };

/** The rows of `sql` through mysql2, as plain objects: the test's own view of the table. */
async function queryRows(admin: Admin, sql: string): Promise<Record<string, unknown>[]> {
  const [rows] = (await admin.query(sql)) as [Record<string, unknown>[]];
  return rows.map((r) => ({ ...r }));
}

async function queryOne(admin: Admin, sql: string): Promise<Record<string, unknown>> {
  return (await queryRows(admin, sql))[0] ?? {};
}

/** A fresh database and a gateway in front of it. */
async function setup(t: Context) {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  return { db, url: gateway.baseUrl };
}

test("query prints a table of exact values: BIGINT beyond 2^53, DECIMAL, NULL, bytes", async (t) => {
  const { db, url } = await setup(t);
  await db.admin.query(
    "CREATE TABLE exact (id BIGINT UNSIGNED PRIMARY KEY, amount DECIMAL(30,10), note VARCHAR(10), raw VARBINARY(4))",
  );
  await db.admin.query(
    "INSERT INTO exact VALUES (9007199254740992, 1.5, 'near', NULL)," +
      " (9007199254740993, 12345678901234567890.0123456789, NULL, 0x00ff)," +
      " (18446744073709551615, -0.0000000001, '', '')",
  );

  // The parameter is bound as an exact BIGINT: a double would match ...992 as well.
  const one = await cli([
    "query",
    "SELECT id, amount, note, raw FROM exact WHERE id = ?",
    "--param",
    "9007199254740993",
    "--url",
    url,
  ]);
  assert.equal(one.code, 0, one.stderr);
  const lines = one.stdout.split("\n");
  assert.match(lines[1] ?? "", /│\s+id\s+│\s+amount\s+│\s+note\s+│\s+raw\s+│/);
  assert.match(
    lines[3] ?? "",
    /│\s+9007199254740993 │\s+12345678901234567890\.0123456789 │ NULL\s+│ 0x00ff │/,
  );
  assert.match(one.stdout, /^1 row \(/m);

  const all = await cli(["query", "SELECT id, amount FROM exact ORDER BY id", "--url", url]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /│\s+18446744073709551615 │\s+-0\.0000000001 │/);
  assert.match(all.stdout, /^3 rows \(/m);
});

test("query --json writes one exact JSON object per row; writes report rows affected and the insert id", async (t) => {
  const { db, url } = await setup(t);
  await db.admin.query(
    "CREATE TABLE items (id BIGINT PRIMARY KEY AUTO_INCREMENT, amount DECIMAL(30,10), note VARCHAR(10), doc JSON)",
  );
  await db.admin.query("ALTER TABLE items AUTO_INCREMENT = 9007199254740993");

  const insert = await cli([
    "query",
    "INSERT INTO items (amount, note, doc) VALUES (?, ?, ?)",
    "-p",
    "12345678901234567890.0123456789",
    "-p",
    "\\N",
    "-p",
    '{"big": 12345678901234567890}',
    "--url",
    url,
  ]);
  assert.equal(insert.code, 0, insert.stderr);
  assert.match(insert.stdout, /^Query OK, 1 row affected, last insert id 9007199254740993 \(/);

  const json = await cli(["query", "SELECT * FROM items", "--json", "--url", url]);
  assert.equal(json.code, 0, json.stderr);
  // Compared as text: JSON.parse would round the id to ...992.
  assert.equal(
    json.stdout,
    '{"id":9007199254740993,"amount":"12345678901234567890.0123456789","note":null,"doc":{"big": 12345678901234567890}}\n',
  );

  const update = await cli(["query", "UPDATE items SET note = 'x'", "--json", "--url", url]);
  assert.equal(update.code, 0, update.stderr);
  assert.deepEqual(JSON.parse(update.stdout), {
    rowsAffected: 1,
    lastInsertId: 0,
    warningCount: 0,
    info: "Rows matched: 1  Changed: 1  Warnings: 0",
  });
});

test("query errors: exit code 1 with the Connect code, MySQL errno and SQLSTATE on stderr; usage errors exit 2", async (t) => {
  const { url } = await setup(t);
  const missing = await cli(["query", "SELECT * FROM missing_table", "--url", url]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, "");
  assert.match(
    missing.stderr,
    /^sqlgate query: not_found: ERROR 1146 \(42S02\): Table '\w+\.missing_table' doesn't exist\n$/,
  );

  const syntax = await cli(["query", "SELEC 1", "--json", "--url", url]);
  assert.equal(syntax.code, 1);
  assert.match(syntax.stderr, /invalid_argument: ERROR 1064 \(42000\): You have an error/);

  const down = await cli(["query", "SELECT 1", "--url", "http://127.0.0.1:1"]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /unavailable: .*ECONNREFUSED/);

  const usage = await cli(["query", "SELECT 1", "--nope"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /Unknown option '--nope'[\s\S]*see sqlgate query --help/);
});

test("import streams a 1,000,000-row CSV through the ingest writer with a progress bar; every row lands", async (t) => {
  const { db, url } = await setup(t);
  await db.admin.query(
    "CREATE TABLE readings (id BIGINT PRIMARY KEY, device VARCHAR(16) NOT NULL, value DECIMAL(10,1), note VARCHAR(16))",
  );
  const rows = 1_000_000;
  const file = path.join(tempDir(t), "readings.csv");
  const out = createWriteStream(file);
  out.write("id,device,value,note\n");
  let chunk = "";
  for (let id = 1; id <= rows; id++) {
    // Every 7th note is an empty unquoted field (NULL), every 11th a quoted "" (the empty string).
    const note = id % 7 === 0 ? "" : id % 11 === 0 ? '""' : '"hello, world"';
    chunk += `${id},dev-${id % 100},${(id % 1000) / 10},${note}\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, "drain");
      chunk = "";
    }
  }
  out.end(chunk);
  await once(out, "close");

  const run = await cli(["import", file, "--table", "readings", "--progress", "--url", url]);
  assert.equal(run.code, 0, run.stderr);
  // The forced bar prints a line a second (stderr is a pipe here), the last one complete.
  assert.match(run.stderr, /\d+% \| [\d,]+ rows \| [\d,]+ rows\/s \| ETA \d/);
  assert.match(run.stderr, /100% \| 1,000,000 rows \| [\d,]+ rows\/s \| ETA 0s/);
  const summary =
    /^1,000,000 rows read, 1,000,000 written into readings, 0 duplicate chunks, 0 retries, ([\d.]+) s, ([\d,]+) rows\/s\n$/.exec(
      run.stdout,
    );
  assert.ok(summary, run.stdout);
  t.diagnostic(`1,000,000 CSV rows in ${summary[1]} s: ${summary[2]} rows/s`);

  const landed = await queryOne(
    db.admin,
    "SELECT COUNT(*) AS n, CAST(SUM(id) AS CHAR) AS ids, CAST(SUM(value) AS CHAR) AS total," +
      " COUNT(note) AS notes, SUM(note = '') AS empty FROM readings",
  );
  let total = 0;
  let notes = 0;
  let empty = 0;
  for (let id = 1; id <= rows; id++) {
    total += id % 1000;
    if (id % 7 !== 0) notes++;
    if (id % 7 !== 0 && id % 11 === 0) empty++;
  }
  assert.deepEqual(
    {
      n: Number(landed.n),
      ids: landed.ids,
      total: landed.total,
      notes: Number(landed.notes),
      empty: Number(landed.empty),
    },
    {
      n: rows,
      ids: String((rows * (rows + 1)) / 2),
      total: `${total / 10}.0`,
      notes,
      empty,
    },
  );
});

test("import CSV: \\N and empty unquoted fields are NULL, a quoted empty field is ''; a bad record stops at its line", async (t) => {
  const { db, url } = await setup(t);
  await db.admin.query("CREATE TABLE notes (id INT PRIMARY KEY, a VARCHAR(10), b VARCHAR(10))");
  const dir = tempDir(t);
  const good = path.join(dir, "good.csv");
  writeFileSync(good, '1,\\N,""\r\n2,,"x\r\ny"\r\n\r\n3,"a,b",\r\n');
  const run = await cli(["import", good, "-t", "notes", "--columns", "id,a,b", "--url", url]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^3 rows read, 3 written into notes/);
  assert.deepEqual(await queryRows(db.admin, "SELECT id, a, b FROM notes ORDER BY id"), [
    { id: 1, a: null, b: "" },
    { id: 2, a: null, b: "x\r\ny" },
    { id: 3, a: "a,b", b: null },
  ]);

  // Line 5 (after a quoted line break and a blank line) has a field too many.
  const bad = path.join(dir, "bad.csv");
  writeFileSync(bad, 'id,a,b\n10,"p\nq",r\n\n11,s,t,u\n12,v,w\n');
  const stopped = await cli(["import", bad, "--table", "notes", "--url", url]);
  assert.equal(stopped.code, 1);
  assert.match(
    stopped.stderr,
    /^sqlgate import: line 5: 4 fields for 3 columns; 1 row written before it\n$/,
  );
  assert.equal(Number((await queryOne(db.admin, "SELECT COUNT(*) AS n FROM notes")).n), 4);
});

test("import NDJSON: integers beyond 2^53 land exactly, objects go to JSON columns, missing keys are NULL", async (t) => {
  const { db, url } = await setup(t);
  await db.admin.query(
    "CREATE TABLE events (id BIGINT UNSIGNED PRIMARY KEY, amount DECIMAL(30,10), doc JSON, note VARCHAR(10))",
  );
  const file = path.join(tempDir(t), "events.ndjson");
  writeFileSync(
    file,
    [
      '{"id": 9007199254740993, "amount": "12345678901234567890.0123456789", "doc": {"n": 12345678901234567890}, "note": "a"}',
      '{"id": 18446744073709551615, "amount": 1.5, "doc": [1, 2], "note": null}',
      "",
      '{"id": 7}',
    ].join("\n"),
  );
  const run = await cli(["import", file, "--table", "events", "--url", url]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^3 rows read, 3 written into events/);
  const rows = await queryRows(
    db.admin,
    "SELECT CAST(id AS CHAR) AS id, CAST(amount AS CHAR) AS amount, CAST(doc AS CHAR) AS doc, note FROM events ORDER BY events.id",
  );
  assert.deepEqual(rows, [
    { id: "7", amount: null, doc: null, note: null },
    {
      id: "9007199254740993",
      amount: "12345678901234567890.0123456789",
      doc: '{"n":12345678901234567890}',
      note: "a",
    },
    { id: "18446744073709551615", amount: "1.5000000000", doc: "[1,2]", note: null },
  ]);

  // What query --json prints, import reads back: the same exact table in another copy.
  await db.admin.query("CREATE TABLE events_copy LIKE events");
  const exported = await cli(["query", "SELECT * FROM events", "--json", "--url", url]);
  const copy = path.join(tempDir(t), "copy.jsonl");
  writeFileSync(copy, exported.stdout);
  const back = await cli(["import", copy, "--table", "events_copy", "--url", url]);
  assert.equal(back.code, 0, back.stderr);
  const differ = await queryOne(
    db.admin,
    "SELECT COUNT(*) AS n FROM events e LEFT JOIN events_copy c ON c.id = e.id" +
      " WHERE c.id IS NULL OR NOT (c.amount <=> e.amount) OR NOT (c.doc <=> e.doc) OR NOT (c.note <=> e.note)",
  );
  assert.equal(Number(differ.n), 0);
});

test("serve starts the gateway beside the CLI, which answers /healthz, and exits 0 on SIGTERM", async (t) => {
  const help = await cli(["serve", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: sqlgate serve/);

  const db = await createTestDatabase(t);
  const child = spawn(process.execPath, ["--import", "tsx", "client/cli/sqlgate.ts", "serve"], {
    env: {
      ...process.env,
      SQLGATE_LISTEN: "127.0.0.1:0",
      SQLGATE_MYSQL_URL: db.url,
      SQLGATE_DATA_DIR: tempDir(t),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => child.kill("SIGKILL"));
  const exited = once(child, "exit");
  const listening = await waitForLog(child, /sqlgate listening on/, 60_000);
  const baseUrl = /(http:\/\/[\d.]+:\d+)/.exec(listening)?.[1];
  assert.ok(baseUrl, listening);
  const health = await fetch(`${baseUrl}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok" });

  child.kill("SIGTERM");
  const [code, signal] = await exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
});

test("--help, <command> --help and --version", async () => {
  const help = await cli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: sqlgate <command>/);
  for (const name of ["query", "import", "serve"])
    assert.match(help.stdout, new RegExp(`  ${name} `));
  const importHelp = await cli(["import", "--help"]);
  assert.match(importHelp.stdout, /^Usage: sqlgate import FILE --table TABLE/);
  const version = await cli(["--version"]);
  assert.match(version.stdout, /^sqlgate \d+\.\d+\.\d+\n$/);
  const unknown = await cli(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command frobnicate/);
});

test("credential create prints a password once; query authenticates with it from the URL or SQLGATE_TOKEN", async (t) => {
  const db = await createTestDatabase(t);
  const file = path.join(tempDir(t), "credentials.yaml");
  const created = await cli([
    "credential",
    "create",
    "--file",
    file,
    "--name",
    "cli",
    "--role",
    "read_only",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const password = /^ {2}(\S+)$/m.exec(created.stdout)?.[1] ?? "";
  assert.ok(password.length >= 24, created.stdout);
  assert.ok(!readFileSync(file, "utf8").includes(password), "the file keeps only a hash");
  const again = await cli(["credential", "create", "--file", file, "--name", "cli"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /exists already/);
  const listed = await cli(["credential", "list", "--file", file]);
  assert.match(listed.stdout, /^cli\tread_only\t/m);

  const gateway = await startGateway(t, db.url, { env: { SQLGATE_CREDENTIALS_FILE: file } });
  const host = gateway.baseUrl.replace("http://", "");
  const refused = await cli(["query", "SELECT 1", "--url", gateway.baseUrl]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unauthenticated/);
  const viaUrl = await cli([
    "query",
    "SELECT 7 AS n",
    "--json",
    "--url",
    `http://cli:${encodeURIComponent(password)}@${host}`,
  ]);
  assert.equal(viaUrl.code, 0, viaUrl.stderr);
  assert.equal(viaUrl.stdout.trim(), '{"n":7}');
  const viaToken = await cli(["query", "SELECT 8 AS n", "--json", "--url", gateway.baseUrl], {
    SQLGATE_TOKEN: `cli.${password}`,
  });
  assert.equal(viaToken.code, 0, viaToken.stderr);
  assert.equal(viaToken.stdout.trim(), '{"n":8}');
});

test("changes: prints each row change as it is committed, exact, until interrupted", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query(
    "CREATE TABLE watched (id BIGINT UNSIGNED PRIMARY KEY, price DECIMAL(8,2), raw VARBINARY(2))",
  );
  const gateway = await startGateway(t, url);
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "client/cli/sqlgate.ts",
      "changes",
      "watched",
      "--json",
      "--before",
      "--url",
      gateway.baseUrl,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  t.after(() => child.kill("SIGKILL"));
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
  });
  const lines = async (n: number) => {
    const deadline = Date.now() + 20_000;
    while (stdout.split("\n").filter(Boolean).length < n) {
      if (Date.now() > deadline) throw new Error(`only this arrived:\n${stdout}`);
      // Writes go on until the subscription (which starts from now) has seen them.
      await new Promise((r) => setTimeout(r, 50));
    }
    return stdout.split("\n").filter(Boolean);
  };
  // The command subscribes from now: write until its first line shows it is listening.
  for (let i = 0; stdout === "" && i < 200; i++) {
    await admin.query(`INSERT INTO watched VALUES (${i + 1}, 0.5, x'0000')`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const before = (await lines(1)).length;
  await admin.query("INSERT INTO watched VALUES (18446744073709551615, 12.50, x'00ff')");
  await admin.query("UPDATE watched SET price = 99.99 WHERE id = 18446744073709551615");
  await admin.query("DELETE FROM watched WHERE id = 18446744073709551615");
  const last = (await lines(before + 3))
    .slice(before)
    .map((line) => JSON.parse(line.replace(/:(\d{16,})/g, ':"$1"')));
  assert.deepEqual(
    last.map((c) => [c.op, c.table, c.before, c.after]),
    [
      ["insert", "watched", undefined, { id: "18446744073709551615", price: "12.50", raw: "AP8=" }],
      [
        "update",
        "watched",
        { id: "18446744073709551615", price: "12.50", raw: "AP8=" },
        { id: "18446744073709551615", price: "99.99", raw: "AP8=" },
      ],
      ["delete", "watched", { id: "18446744073709551615", price: "99.99", raw: "AP8=" }, undefined],
    ],
  );
  assert.match(last[0].position, /^\d+-\d+-\d+$/);
  child.kill("SIGINT");
  const [code] = (await once(child, "close")) as [number | null];
  assert.equal(code, 0);
});
