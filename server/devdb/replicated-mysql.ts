/**
 * A private MariaDB primary with a GTID replica, both on loopback, for tests
 * and for trying read replicas (scripts/mysql-replication.ts): two embedded
 * servers (see embedded-mysql.ts), the primary writing a row-based binary
 * log, the replica following it with MASTER_USE_GTID.
 *
 * Both start from the same bootstrap (system tables, the default database),
 * so the replica starts replicating from the primary's position at set-up
 * time: what the primary writes from then on reaches it. The replica keeps no
 * binary log of its own, so nothing it writes locally can collide with the
 * primary's GTIDs.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import mysql from "mysql2/promise";
import { type EmbeddedMysql, startEmbeddedMysql } from "./embedded-mysql.js";

export interface ReplicatedMysql {
  readonly primary: EmbeddedMysql;
  readonly replica: EmbeddedMysql;
  /** Stops the replica, then the primary. */
  stop(): Promise<void>;
}

export interface ReplicatedMysqlOptions {
  /** Where the two servers keep their files: `<dir>/primary`, `<dir>/replica`. */
  readonly dir: string;
  readonly log?: (message: string) => void;
}

/** The account the replica reads the primary's binary log as. */
const replicationUser = "sqlgate_replication";

async function admin(server: EmbeddedMysql, statements: readonly string[]): Promise<unknown[]> {
  const conn = await mysql.createConnection({ socketPath: server.socketPath, user: "root" });
  try {
    const results: unknown[] = [];
    for (const sql of statements) results.push((await conn.query(sql))[0]);
    return results;
  } finally {
    await conn.end();
  }
}

export async function startReplicatedMysql(
  options: ReplicatedMysqlOptions,
): Promise<ReplicatedMysql> {
  const log = options.log ?? (() => {});
  const primary = await startEmbeddedMysql({
    dataDir: path.join(options.dir, "primary"),
    log,
    serverArgs: [
      "--server-id=1",
      "--log-bin=binlog",
      "--binlog-format=ROW",
      "--gtid-strict-mode=1",
    ],
  });
  let replica: EmbeddedMysql;
  try {
    replica = await startEmbeddedMysql({
      dataDir: path.join(options.dir, "replica"),
      log,
      serverArgs: ["--server-id=2", "--gtid-strict-mode=1", "--read-only=1"],
    });
  } catch (err) {
    await primary.stop();
    throw err;
  }
  try {
    // A new password each start (the account is loopback-only), set without
    // writing to the binary log: the replica must not apply it.
    const password = randomBytes(18).toString("base64url");
    const [, , , rows] = await admin(primary, [
      "SET SESSION sql_log_bin = 0",
      `CREATE USER IF NOT EXISTS '${replicationUser}'@'127.0.0.1' IDENTIFIED BY '${password}'`,
      `ALTER USER '${replicationUser}'@'127.0.0.1' IDENTIFIED BY '${password}'`,
      "SELECT @@GLOBAL.gtid_binlog_pos AS position",
    ]);
    await admin(primary, [
      "SET SESSION sql_log_bin = 0",
      `GRANT REPLICATION SLAVE ON *.* TO '${replicationUser}'@'127.0.0.1'`,
    ]);
    const [status] = (await admin(replica, ["SHOW SLAVE STATUS"])) as [unknown[]];
    const firstTime = status.length === 0;
    const position = (rows as { position: string }[])[0]?.position ?? "";
    await admin(replica, [
      "STOP SLAVE",
      // The first time, start from the primary's position now (both servers
      // hold the same bootstrap); later starts carry on where it stopped.
      ...(firstTime ? [`SET GLOBAL gtid_slave_pos = '${position}'`] : []),
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${primary.port}, ` +
        `MASTER_USER = '${replicationUser}', MASTER_PASSWORD = '${password}', ` +
        "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
      "START SLAVE",
    ]);
    log(
      `replica (port ${replica.port}) follows primary (port ${primary.port}) from GTID ${position || "(start)"}`,
    );
  } catch (err) {
    await Promise.all([replica.stop(), primary.stop()]);
    throw err;
  }
  return {
    primary,
    replica,
    async stop() {
      await replica.stop();
      await primary.stop();
    },
  };
}
