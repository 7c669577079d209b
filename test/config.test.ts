import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { ConfigError, loadConfig, settings } from "../server/config.js";

describe("loadConfig", () => {
  test("gives the documented defaults", () => {
    const config = loadConfig({});
    assert.deepEqual(config.listen, { host: "127.0.0.1", port: 8080 });
    assert.equal(config.mysql.url, undefined);
    assert.equal(config.mysql.poolSize, 16);
    assert.equal(config.limits.maxRows, 100_000);
    assert.equal(config.tls, undefined);
    assert.ok(Object.isFrozen(config.limits));
  });

  test("reads every setting", () => {
    const config = loadConfig({
      SQLGATE_LISTEN: "[::1]:9000",
      SQLGATE_MYSQL_URL: "mysql://u:p@db:3307/app",
      SQLGATE_POOL_SIZE: "4",
      SQLGATE_MAX_ROWS: "10",
      SQLGATE_TLS_CERT: "c.pem",
      SQLGATE_TLS_KEY: "k.pem",
      SQLGATE_TLS_CLIENT_CA: "ca.pem",
      SQLGATE_CREDENTIAL_MAX_CALLS: "7",
      SQLGATE_PSDB_MAX_ROWS: "11",
      SQLGATE_SHUTDOWN_GRACE_MS: "1234",
      SQLGATE_SLOW_CALL_MS: "99",
    });
    assert.deepEqual(config.listen, { host: "::1", port: 9000 });
    assert.equal(config.mysql.poolSize, 4);
    assert.equal(config.limits.maxRows, 10);
    assert.deepEqual(config.tls, { certFile: "c.pem", keyFile: "k.pem", clientCaFile: "ca.pem" });
    assert.equal(config.auth.credentialLimits.maxCalls, 7);
    assert.equal(config.planetscale.maxRows, 11);
    assert.equal(config.shutdown.graceMs, 1234);
    assert.equal(config.log.slowCallMs, 99);
  });

  test("reports every problem at once, without echoing a password", () => {
    assert.throws(
      () =>
        loadConfig({
          SQLGATE_LISTEN: "nowhere",
          SQLGATE_POOL_SIZE: "0",
          SQLGATE_MAX_ROWS: "many",
          SQLGATE_TLS_CERT: "c.pem",
          SQLGATE_MYSQL_URL: "postgres://u:secret@h/db",
          SQLGATE_LOG_LEVEL: "loud",
        }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 6, err.message);
        assert.doesNotMatch(err.message, /secret/);
        return true;
      },
    );
  });

  test("the README's configuration table lists every setting", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    for (const setting of settings) {
      assert.match(readme, new RegExp(`\\| \`${setting.name}\` \\|`), setting.name);
    }
  });
});
