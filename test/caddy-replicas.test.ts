/**
 * Several gateway replicas behind the HTTP/3 front proxy
 * (deploy/caddy/Caddyfile run by scripts/caddy.sh with three replicas in
 * SQLGATE_CADDY_UPSTREAM): Caddy 2.6.2 ends TLS, balances every call round
 * robin over h2c, checks each replica's /readyz every 500 ms, and tries a call
 * whose connection could not be made on another replica. Which replica
 * answered is read from the gateway's own `sqlgate-node` response header
 * (its SQLGATE_NODE_URL): Caddy 2.6 logs no upstream in its access log.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { gtlsclientGet, quicCertificate, startCaddy, type TestCaddy } from "./support/caddy.js";
import { createTestDatabase } from "./support/mysql.js";
import { type Replica, startReplicas } from "./support/replicas.js";

const run = promisify(execFile);
const executePath = "/sqlgate.v1.DatabaseService/Execute";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `calls` Executes one after another; counts the `sqlgate-node` of each answer. */
async function servedBy(transport: Transport, calls: number): Promise<Map<string, number>> {
  const client = createClient(DatabaseService, transport);
  const counts = new Map<string, number>();
  for (let i = 0; i < calls; i++) {
    let node = "(none)";
    const res = await client.execute(
      { sql: `SELECT ${i} AS n` },
      { onHeader: (h) => (node = h.get("sqlgate-node") ?? "(none)") },
    );
    assert.equal(res.rows[0]?.values[0]?.kind.value, BigInt(i));
    counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  return counts;
}

/** One call of a `startLoad` run. */
interface LoadCall {
  /** performance.now() when it was sent. */
  readonly started: number;
  readonly node: string | undefined;
  readonly error: string | undefined;
}

/**
 * Callers inserting rows through Caddy until stopped: four over one HTTP/2
 * connection and one over HTTP/1.1, each with ids of its own. Inserts are
 * not idempotent: a call resent after it ran would fail on the primary key.
 */
function startLoad(h2: Transport, h1: Transport, table: string) {
  const clients = [h2, h2, h2, h2, h1].map((transport) => createClient(DatabaseService, transport));
  let running = true;
  let inFlight = 0;
  const calls: LoadCall[] = [];
  const callers = clients.map(async (client, caller) => {
    for (let n = 0; running; n++) {
      const started = performance.now();
      let node: string | undefined;
      inFlight++;
      try {
        await client.execute(
          { sql: `INSERT INTO ${table} VALUES (${caller * 1_000_000 + n})` },
          { onHeader: (h) => (node = h.get("sqlgate-node") ?? undefined) },
        );
        calls.push({ started, node, error: undefined });
      } catch (err) {
        calls.push({ started, node, error: String(err) });
        // A failure can come without I/O: let timers (and the end of the load) run.
        await sleep(5);
      } finally {
        inFlight--;
      }
    }
  });
  return {
    callers: callers.length,
    inFlight: () => inFlight,
    async stop(): Promise<LoadCall[]> {
      running = false;
      await Promise.all(callers);
      return calls;
    },
  };
}

/** One line of Caddy's own log (its stderr, one JSON object a line): the fields read here. */
interface CaddyLogLine {
  readonly logger?: string;
  readonly msg?: string;
  /** The upstream a health check is about. */
  readonly host?: string;
  /** An error response's status, and the request it answered. */
  readonly status?: number;
  readonly request?: { readonly uri: string };
}

function caddyLog(caddy: TestCaddy): CaddyLogLine[] {
  return caddy
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as CaddyLogLine);
}

/** Why Caddy's active health checks of 127.0.0.1:`port` failed, so far. */
function healthCheckFailures(caddy: TestCaddy, port: number): string[] {
  return caddyLog(caddy)
    .filter(
      (line) =>
        line.logger === "http.handlers.reverse_proxy.health_checker.active" &&
        line.host === `127.0.0.1:${port}`,
    )
    .map((line) => line.msg ?? "");
}

/** Resolves with performance.now() once Caddy's health check of `port` has failed (again, after `failuresBefore` failures). */
async function markedDown(
  caddy: TestCaddy,
  port: number,
  timeoutMs: number,
  failuresBefore = 0,
): Promise<number> {
  const until = performance.now() + timeoutMs;
  while (healthCheckFailures(caddy, port).length <= failuresBefore) {
    assert.ok(
      performance.now() < until,
      `no failed health check of ${port} within ${timeoutMs} ms`,
    );
    await sleep(10);
  }
  return performance.now();
}

/**
 * One call over HTTP/3 through Caddy: an Execute with curl if it speaks
 * HTTP/3 (Debian's 7.88 does not), else a GET of /readyz with gtlsclient
 * (ngtcp2-client: no request headers, so no Connect POST), which reaches
 * MySQL through whichever replica Caddy picks. Says what it did.
 */
async function http3Call(
  t: { after(fn: () => unknown): void },
  caddy: TestCaddy,
  caFile: string,
): Promise<string> {
  const { stdout: version } = await run("curl", ["--version"]);
  if (/^Features:.*\bHTTP3\b/m.test(version)) {
    const { stdout } = await run("curl", [
      "--http3-only",
      "--cacert",
      caFile,
      "--silent",
      "--show-error",
      "--fail",
      "--dump-header",
      "-",
      "--header",
      "content-type: application/json",
      "--data",
      JSON.stringify({ sql: "SELECT 3 AS n" }),
      `${caddy.origin}${executePath}`,
    ]);
    const node = /^sqlgate-node: (\S+)/im.exec(stdout)?.[1];
    assert.ok(node !== undefined, stdout);
    return `curl: Execute answered by ${node}`;
  }
  const haveGtlsclient = await run("gtlsclient", ["--help"]).then(
    () => true,
    () => false,
  );
  if (!haveGtlsclient) return "no HTTP/3 client";
  const body = await gtlsclientGet(t, `${caddy.origin}/readyz`);
  assert.deepEqual(JSON.parse(body ?? "null"), { status: "ready", mysql: "ok" });
  return `gtlsclient: GET /readyz ${body}`;
}

test("three replicas behind Caddy: calls spread round robin, a killed replica is routed around", async (t) => {
  const db = await createTestDatabase(t);
  const [replicas, certificate] = await Promise.all([
    startReplicas(t, { mysqlUrl: db.url, count: 3 }),
    quicCertificate(t),
  ]);
  const caddy = await startCaddy(t, { upstreamPorts: replicas.map((r) => r.port), certificate });
  const urls = replicas.map((r) => r.url);
  // One connect-node HTTP/2 transport keeps one session: one TLS connection.
  const h2 = createConnectTransport({
    baseUrl: caddy.origin,
    httpVersion: "2",
    nodeOptions: { ca: certificate.cert },
  });
  const h1 = createConnectTransport({
    baseUrl: caddy.origin,
    httpVersion: "1.1",
    nodeOptions: { ca: certificate.cert },
  });

  await t.test("every call goes to the next replica, whatever the client's protocol", async () => {
    const overH2 = await servedBy(h2, 30);
    t.diagnostic(
      `30 calls over one HTTP/2 connection: ${JSON.stringify(Object.fromEntries(overH2))}`,
    );
    assert.deepEqual(overH2, new Map(urls.map((url) => [url, 10])), "round robin, per call");
    const overH1 = await servedBy(h1, 30);
    t.diagnostic(`30 calls over HTTP/1.1: ${JSON.stringify(Object.fromEntries(overH1))}`);
    assert.deepEqual(overH1, new Map(urls.map((url) => [url, 10])));
    const executes = await caddy.accessLogWhen((e) => e.request.uri === executePath, 60);
    assert.deepEqual(
      executes.map((e) => `${e.request.proto} ${e.status}`),
      [...Array(30).fill("HTTP/2.0 200"), ...Array(30).fill("HTTP/1.1 200")],
    );

    // Caddy does not route by `sqlgate-owner`: a transaction's statements
    // reach every replica in turn, and the gateways forward them to the one
    // holding the transaction (which names itself in `sqlgate-node`).
    const client = createClient(DatabaseService, h2);
    const { session } = await client.beginTransaction({});
    const owners = new Set<string>();
    const connectionIds = new Set<unknown>();
    for (let i = 0; i < 6; i++) {
      const res = await client.execute(
        { session, sql: "SELECT CONNECTION_ID() AS id" },
        { onHeader: (h) => owners.add(h.get("sqlgate-node") ?? "(none)") },
      );
      connectionIds.add(res.rows[0]?.values[0]?.kind.value);
    }
    await client.commitTransaction({ session });
    assert.equal(owners.size, 1, `one owner answered: ${[...owners].join(", ")}`);
    assert.ok(urls.includes([...owners][0] ?? ""));
    assert.equal(connectionIds.size, 1, "every statement ran on the owner's connection");
  });

  await t.test(
    "SIGKILL of one replica: only calls in flight fail; Caddy's health check takes it out",
    async () => {
      await db.admin.query("CREATE TABLE calls (id INT PRIMARY KEY)");
      const victim = replicas[1] as Replica;
      const load = startLoad(h2, h1, "calls");
      await sleep(500);

      const killedAt = performance.now();
      const inFlightAtKill = load.inFlight();
      victim.process.child.kill("SIGKILL");
      const downAt = await markedDown(caddy, victim.port, 5000);
      // Past the first passing check of each survivor after the kill, and
      // long enough for calls to pile up after the replica is out.
      await sleep(Math.max(0, killedAt + 2500 - performance.now()));
      const calls = await load.stop();

      const failed = calls.filter((c) => c.error !== undefined);
      const afterDown = calls.filter((c) => c.started > downAt);
      const late = calls.filter((c) => c.started > killedAt + 1500);
      t.diagnostic(
        `${victim.url} killed; Caddy's health check failed for it ${Math.round(downAt - killedAt)} ms later; ` +
          `${calls.length} calls, ${inFlightAtKill} in flight at the kill, ${failed.length} failed, ` +
          `${afterDown.length} started after it was marked down`,
      );
      for (const f of failed) {
        t.diagnostic(`failed (${Math.round(f.started - killedAt)} ms after the kill): ${f.error}`);
      }
      assert.ok(downAt - killedAt < 1500, "a dead replica is marked down within 1.5 s");
      // Only calls that Caddy had sent to the victim fail, at most one per
      // caller (it is sequential): not resent, since they may have run.
      // "Sent" lasts a little past kill(): the kernel frees a dying
      // process's memory before it closes its sockets, which takes a few
      // ms (tens, on a busy machine), so a call started just after the
      // kill can be among them.
      assert.ok(failed.length <= load.callers, `${failed.length} failed`);
      const proxyErrors = caddyLog(caddy).filter(
        (line) => line.logger?.startsWith("http.log.error") && line.request?.uri === executePath,
      );
      for (const line of proxyErrors) t.diagnostic(`Caddy: ${line.status} ${line.msg}`);
      assert.equal(proxyErrors.length, failed.length, "each failure is a proxy error of Caddy's");
      for (const f of failed) assert.match(f.error ?? "", /\[unavailable\] HTTP 502/);
      for (const f of failed) assert.ok(f.started < downAt, "no failure once it is marked down");
      assert.ok(afterDown.length > 0, "calls went on");
      assert.deepEqual(
        afterDown.filter((c) => c.error !== undefined || c.node === victim.url),
        [],
        "after the health check, every call succeeds on a survivor",
      );
      assert.ok(late.length > 0);
      assert.deepEqual(
        late.filter((c) => c.error !== undefined),
        [],
        "not one failure from 1.5 s after the kill",
      );
      // Every acknowledged insert is there; a resent one would have failed on the key.
      const [rows] = (await db.admin.query("SELECT COUNT(*) AS n FROM calls")) as unknown as [
        { n: number }[],
      ];
      const count = Number(rows[0]?.n);
      assert.ok(count >= calls.length - failed.length && count <= calls.length, `${count} rows`);

      const survivors = urls.filter((url) => url !== victim.url);
      const after = await servedBy(h2, 12);
      t.diagnostic(`12 calls after the kill: ${JSON.stringify(Object.fromEntries(after))}`);
      assert.deepEqual([...after.keys()].sort(), survivors.sort(), "the survivors share the calls");
      for (const url of survivors) {
        assert.deepEqual(healthCheckFailures(caddy, Number(new URL(url).port)), [], url);
      }

      // One call over HTTP/3 to the pool, with whichever client this machine has.
      const h3 = await http3Call(t, caddy, certificate.certFile);
      t.diagnostic(`over HTTP/3: ${h3}`);
      if (h3 !== "no HTTP/3 client") {
        const entries = await caddy.accessLogWhen((e) => e.request.proto === "HTTP/3.0", 1);
        assert.deepEqual(
          entries.map((e) => e.status),
          [200],
        );
      }
    },
  );

  await t.test(
    "a replica that dies between calls: the call Caddy picks it for is tried on another",
    async () => {
      // The second subtest killed replicas[1]: replicas[0] and [2] serve.
      const [survivor, , last] = replicas as [Replica, Replica, Replica];
      const dead = replicas[1] as Replica;
      // Caddy checks every upstream in the same tick, every 500 ms, and logs
      // the dead one's failure each time: just after one, the next check
      // is ~500 ms away.
      const seen = healthCheckFailures(caddy, dead.port).length;
      await markedDown(caddy, dead.port, 2000, seen);
      last.process.child.kill("SIGKILL");
      // Gone, listening socket and all: a new connection is refused, not
      // accepted into the backlog of a dying process. A moment more for
      // Caddy to read the end of its idle connection to it.
      await last.process.exited;
      await sleep(20);
      const client = createClient(DatabaseService, h2);
      const served: { node: string | undefined; ms: number }[] = [];
      for (let i = 0; i < 4; i++) {
        const started = performance.now();
        let node: string | undefined;
        await client.execute(
          { sql: "SELECT 1 AS n" },
          { onHeader: (h) => (node = h.get("sqlgate-node") ?? undefined) },
        );
        served.push({ node, ms: Math.round(performance.now() - started) });
      }
      const checkedFirst = healthCheckFailures(caddy, last.port).length > 0;
      t.diagnostic(
        `after ${last.url} died: ${JSON.stringify(served)}; ` +
          `its health check ${checkedFirst ? "failed before the calls ended" : "had not run yet"}`,
      );
      assert.deepEqual(
        served.map((s) => s.node),
        Array(4).fill(survivor.url),
      );
      // Tried on the dead replica first (connection refused), then, after
      // lb_try_interval (100 ms), on the survivor; unless a very slow
      // machine let the health check take it out first.
      assert.ok(checkedFirst || served.some((s) => s.ms >= 100), "one call waited lb_try_interval");
    },
  );
});
