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

test("Kubernetes: replicas find each other through the headless Service; the StatefulSet keeps each log on a volume", () => {
  const load = (file: string) =>
    parseAllDocuments(readFileSync(file, "utf8")).map((doc) => doc.toJS()) as {
      kind: string;
      metadata: { name: string };
      spec: Record<string, unknown> & {
        template?: {
          spec: {
            containers: {
              env: { name: string; value?: string }[];
              volumeMounts: { name: string; mountPath: string }[];
            }[];
          };
        };
      };
    }[];
  const deploymentFile = load("deploy/kubernetes/sqlgate.yaml");
  const headless = deploymentFile.find((m) => m.kind === "Service" && m.spec.clusterIP === "None");
  for (const workload of [
    deploymentFile.find((m) => m.kind === "Deployment"),
    load("deploy/kubernetes/sqlgate-statefulset.yaml").find((m) => m.kind === "StatefulSet"),
  ]) {
    const env = workload?.spec.template?.spec.containers[0]?.env ?? [];
    const value = (name: string) => env.find((e) => e.name === name)?.value;
    assert.equal(value("SQLGATE_PEERS"), `${headless?.metadata.name}:8080`, workload?.kind);
    assert.match(value("SQLGATE_NODE_URL") ?? "", /^http:\/\/\$\(POD_IP\):8080$/);
  }
  const statefulSet = load("deploy/kubernetes/sqlgate-statefulset.yaml")[0];
  const claims = statefulSet?.spec.volumeClaimTemplates as { metadata: { name: string } }[];
  const mounts = statefulSet?.spec.template?.spec.containers[0]?.volumeMounts ?? [];
  const dataDir = statefulSet?.spec.template?.spec.containers[0]?.env.find(
    (e) => e.name === "SQLGATE_DATA_DIR",
  )?.value;
  assert.equal(mounts.find((m) => m.mountPath === dataDir)?.name, claims[0]?.metadata.name);
  assert.equal(statefulSet?.spec.serviceName, headless?.metadata.name);
});
