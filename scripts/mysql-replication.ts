/**
 * Starts a private MariaDB primary and a GTID replica on loopback (Debian's
 * mariadb-server, no systemd), prints the settings that point a gateway at
 * them, and runs until Ctrl-C or SIGTERM, which stop both servers:
 *
 *   npx tsx scripts/mysql-replication.ts [directory]     (default .sqlgate/replication)
 *
 * Then, in another shell, start the gateway with the two printed lines.
 * The servers keep their files in the directory; a second start carries on.
 */
import path from "node:path";
import { startReplicatedMysql } from "../server/devdb/replicated-mysql.js";

const dir = path.resolve(process.argv[2] ?? ".sqlgate/replication");
const servers = await startReplicatedMysql({
  dir,
  log: (message) => process.stderr.write(`mysql-replication: ${message}\n`),
});
process.stdout.write(
  `SQLGATE_MYSQL_URL='${servers.primary.url}'\nSQLGATE_MYSQL_REPLICA_URLS='${servers.replica.url}'\n`,
);
process.stderr.write("mysql-replication: running; Ctrl-C stops both servers\n");
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await servers.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
