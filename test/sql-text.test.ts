import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseSqlText } from "../server/sql/sql-text.js";

function refusal(sql: string, mode: "bind" | "verbatim" = "bind"): ConnectError {
  try {
    parseSqlText(sql, mode);
  } catch (err) {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    return err;
  }
  assert.fail(`${JSON.stringify(sql)} was accepted`);
}

describe("parseSqlText", () => {
  test("counts ? placeholders outside strings, identifiers and comments", () => {
    const parsed = parseSqlText(
      "SELECT ?, '?', \"?\", `?`, 'it''s ?', 'a\\'?' /* ? */ -- ?\n, ? # ?\n",
    );
    assert.equal(parsed.placeholderCount, 2);
    assert.equal(parsed.names, undefined);
  });

  test("rewrites :name placeholders to ? and keeps their order", () => {
    const parsed = parseSqlText("SELECT :a, ':b', :c_1, @x:=1, :a");
    assert.deepEqual(parsed.names, ["a", "c_1", "a"]);
    assert.equal(parsed.sql, "SELECT ?, ':b', ?, @x:=1, ?");
  });

  test("scans the body of executable comments", () => {
    assert.equal(parseSqlText("SELECT /*! ? , */ 1").placeholderCount, 1);
  });

  test("drops one trailing semicolon and trailing comments", () => {
    assert.equal(parseSqlText("SELECT 1;  -- done\n").sql, "SELECT 1");
  });

  test("refuses two statements", () => {
    assert.match(refusal("SELECT 1; SELECT 2").message, /one statement/);
    assert.match(refusal("SELECT 1;/* x */DROP TABLE t").message, /one statement/);
  });

  test("does not mistake semicolons in strings for statement ends", () => {
    assert.equal(parseSqlText("SELECT ';', `a;b`").sql, "SELECT ';', `a;b`");
  });

  test("refuses empty text", () => {
    assert.match(refusal("").message, /empty/);
    assert.match(refusal("  /* nothing */ -- here\n").message, /empty/);
    assert.match(refusal(";").message, /empty/);
  });

  test("refuses mixed placeholder kinds and unterminated quotes", () => {
    assert.match(refusal("SELECT ?, :a").message, /mixed/);
    assert.match(refusal("SELECT 'abc").message, /unterminated/);
    assert.match(refusal("SELECT 1 /* abc").message, /unterminated/);
  });

  test("classifies what a statement may leave on its connection", () => {
    const effect = (sql: string) => parseSqlText(sql).sessionEffect;
    assert.equal(effect("SELECT a FROM t WHERE b = ?"), "none");
    assert.equal(effect("SELECT @@version"), "none");
    assert.equal(effect("SELECT 'SET @x', `lock`"), "none");
    assert.equal(effect("INSERT INTO t VALUES (1)"), "none");
    assert.equal(effect("set @x = 1"), "reset");
    assert.equal(effect("SELECT @x := 1"), "reset");
    assert.equal(effect("SELECT 1 INTO @x"), "reset");
    assert.equal(effect("/* hi */ SET SESSION sql_mode = ''"), "reset");
    assert.equal(effect("CREATE TEMPORARY TABLE t (id INT)"), "reset");
    assert.equal(effect("LOCK TABLES t WRITE"), "reset");
    assert.equal(effect("SELECT GET_LOCK('x', 1)"), "reset");
    assert.equal(effect("START TRANSACTION"), "transaction");
    assert.equal(effect("begin"), "transaction");
    assert.equal(effect("SAVEPOINT sp1"), "transaction");
    assert.equal(effect("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), "transaction");
    assert.equal(effect("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"), "reset");
    assert.equal(effect("COMMIT"), "none");
    assert.equal(effect("CALL refresh()"), "reset");
    assert.equal(effect("use other"), "reconnect");
  });

  test("finds Vitess's ::name list placeholders and where each name stands", () => {
    const text = "SELECT * FROM t WHERE a = :a AND b IN ::list AND c = '::no'";
    const parsed = parseSqlText(text);
    assert.deepEqual(parsed.names, ["a", "list"]);
    assert.deepEqual(
      parsed.spans?.map(([start, end]) => text.slice(start, end)),
      [":a", "::list"],
    );
  });

  test("sees every way a statement may make a read-only session writable", () => {
    const writable = (sql: string) => parseSqlText(sql, "verbatim").changesAccessMode;
    for (const sql of [
      "SET SESSION TRANSACTION READ WRITE",
      "START TRANSACTION READ WRITE",
      "SET @@session.tx_read_only = 0",
      "SET SESSION `tx_read_only` = 0",
      'SET SESSION "transaction_read_only" = 0',
      "SET STATEMENT `TX_READ_ONLY`=0 FOR DELETE FROM t",
      "SET STATEMENT max_statement_time = 1 FOR DELETE FROM t",
      "PREPARE s FROM 'SET SESSION tx_read_only = 0'",
      "EXECUTE s",
    ]) {
      assert.equal(writable(sql), true, sql);
    }
    for (const sql of ["SELECT @@tx_read_only", "SELECT 'READ WRITE'", "SET @x = 'tx_read_only'"]) {
      assert.equal(writable(sql), false, sql);
    }
  });

  test("verbatim mode leaves placeholders and values in the text", () => {
    const parsed = parseSqlText("SELECT '?', :a, ? FROM t;", "verbatim");
    assert.equal(parsed.sql, "SELECT '?', :a, ? FROM t");
    assert.equal(parsed.placeholderCount, 0);
    assert.match(refusal("SELECT 1; SELECT 2", "verbatim").message, /own call/);
  });
});
