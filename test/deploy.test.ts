/**
 * The deployment files hold together with the gateway: the Kubernetes
 * manifests probe paths the gateway serves, on the port it listens on, and
 * the systemd unit passes `systemd-analyze verify`.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const run = promisify(execFile);

interface Probe {
  httpGet: { path: string; port: string };
}
interface Container {
  ports: { name: string; containerPort: number }[];
  env: { name: string; value?: string }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  lifecycle?: { preStop?: unknown };
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: {
    clusterIP?: string;
    template?: { spec: { containers: Container[]; terminationGracePeriodSeconds: number } };
  };
}

test("Kubernetes: probes the gateway answers, two Services, a disruption budget", async (t) => {
  const manifests = parseAllDocuments(readFileSync("deploy/kubernetes/sqlgate.yaml", "utf8")).map(
    (doc) => doc.toJS() as Manifest,
  );
  assert.deepEqual(manifests.map((m) => m.kind).sort(), [
    "Deployment",
    "PodDisruptionBudget",
    "Service",
    "Service",
  ]);
  const headless = manifests.find((m) => m.kind === "Service" && m.spec.clusterIP === "None");
  assert.ok(headless, "a headless Service for per-call gRPC balancing");
  const deployment = manifests.find((m) => m.kind === "Deployment");
  const pod = deployment?.spec.template?.spec;
  const container = pod?.containers[0];
  assert.ok(container?.lifecycle?.preStop, "a preStop delay");
  const grace = Number(container?.env.find((e) => e.name === "SQLGATE_SHUTDOWN_GRACE_MS")?.value);
  assert.ok((pod?.terminationGracePeriodSeconds ?? 0) * 1000 > grace + 5000);
  const listen = container?.env.find((e) => e.name === "SQLGATE_LISTEN")?.value ?? "";
  const port = container?.ports.find((p) => p.name === container.readinessProbe.httpGet.port);
  assert.equal(listen.split(":")[1], String(port?.containerPort));

  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  for (const probe of [container?.readinessProbe, container?.livenessProbe]) {
    const response = await fetch(`${gateway.baseUrl}${probe?.httpGet.path}`);
    assert.equal(response.status, 200, probe?.httpGet.path);
  }
});

test("systemd: the unit verifies and runs the built entry point", async () => {
  const unit = readFileSync("deploy/systemd/sqlgate.service", "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/node \/opt\/sqlgate\/dist\/server\/main\.js$/m);
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  const { stderr } = await run("systemd-analyze", ["verify", "deploy/systemd/sqlgate.service"]);
  assert.doesNotMatch(stderr, /error|invalid|unknown/i, stderr);
});
