/**
 * test/support/nats.ts against the real nats-server 2.9.10 and the
 * @nats-io 3.4.0 clients: a single server and a three-server cluster start
 * ready for use, a replicated stream takes publishes while a server is
 * killed, and the killed server comes back into the cluster. Also that
 * deploy/nats's configs (the file and the Kubernetes ConfigMap) parse.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { AckPolicy, type JetStreamClient, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { parseAllDocuments } from "yaml";
import {
  connectNats,
  natsBacklog,
  natsConsumerInfo,
  natsServerBin,
  natsStreamInfo,
  startNats,
} from "./support/nats.js";

const run = promisify(execFile);

/** Publishes until the ack arrives: while a stream elects a leader, publishes fail for a while. */
async function publishWithRetry(
  js: JetStreamClient,
  subject: string,
  data: string,
  msgID: string,
  timeoutMs: number,
) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await js.publish(subject, data, { msgID, timeout: 2000 });
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

test("a single server keeps a stream across a SIGKILL and restart", async (t) => {
  const nats = await startNats(t);
  assert.equal(nats.nodes.length, 1);
  const [node] = nats.nodes;
  assert.ok(node !== undefined);
  assert.equal(nats.serversOption, `nats://127.0.0.1:${node.port}`);
  assert.equal(node.routePort, undefined);

  const nc = await connectNats(t, nats.urls);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "ONE", subjects: ["one.>"] });
  const js = jetstream(nc);
  const first = await js.publish("one.a", "x", { msgID: "id-1" });
  const again = await js.publish("one.a", "x", { msgID: "id-1" });
  assert.equal(first.duplicate, false);
  assert.equal(again.duplicate, true, "the msgID deduplicates");
  assert.equal(again.seq, first.seq);

  const pid = node.pid;
  await node.kill("SIGKILL");
  assert.equal(node.stopped, true);
  await node.restart();
  assert.equal(node.stopped, false);
  assert.notEqual(node.pid, pid);
  const info = await natsStreamInfo(nats.urls, "ONE");
  assert.equal(info.state.messages, 1, "the acknowledged publish survived the SIGKILL");
  // The client reconnected by itself and the dedup window survived the restart.
  const afterRestart = await publishWithRetry(js, "one.a", "x", "id-1", 10_000);
  assert.equal(afterRestart.duplicate, true);
  assert.match(node.log(), /Server is ready/);
});

test("a three-server cluster keeps a 3-replica stream working through the loss of its leader", async (t) => {
  const nats = await startNats(t, { servers: 3 });
  assert.deepEqual(
    nats.nodes.map((n) => n.name),
    ["n1", "n2", "n3"],
  );
  assert.equal(nats.serversOption, nats.urls.join(","));

  const nc = await connectNats(t, nats.urls);
  const jsm = await jetstreamManager(nc);
  // Right after startNats resolves: placement on three servers must succeed.
  const created = await jsm.streams.add({ name: "LOG", subjects: ["log.>"], num_replicas: 3 });
  assert.equal(created.config.num_replicas, 3);
  await jsm.consumers.add("LOG", {
    durable_name: "writer",
    ack_policy: AckPolicy.Explicit,
    ack_wait: 30_000_000_000,
  });

  const js = jetstream(nc);
  for (let i = 0; i < 100; i++) {
    const ack = await js.publish(`log.${i % 4}`, `row ${i}`, { msgID: `m-${i}` });
    assert.equal(ack.seq, i + 1);
  }

  const consumer = await js.consumers.get("LOG", "writer");
  const seen: string[] = [];
  while (seen.length < 100) {
    const batch = await consumer.fetch({ max_messages: 100 - seen.length, expires: 2000 });
    for await (const m of batch) {
      seen.push(m.string());
      await m.ackAck();
    }
  }
  assert.deepEqual(
    seen,
    Array.from({ length: 100 }, (_, i) => `row ${i}`),
  );
  const consumerInfo = await natsConsumerInfo(nats.urls, "LOG", "writer");
  assert.equal(consumerInfo.num_pending, 0);
  assert.equal(consumerInfo.num_ack_pending, 0);
  assert.equal(consumerInfo.delivered.stream_seq, 100);
  assert.equal(consumerInfo.ack_floor.stream_seq, 100);

  // Kill the stream's leader: the hardest server to lose.
  const before = await natsStreamInfo(nats.urls, "LOG");
  assert.equal(before.cluster?.replicas?.length, 2);
  const victim = nats.nodes.find((n) => n.name === before.cluster?.leader);
  assert.ok(victim !== undefined, `leader ${before.cluster?.leader} is one of the nodes`);
  await victim.kill("SIGKILL");
  for (let i = 100; i < 120; i++) {
    await publishWithRetry(js, "log.0", `row ${i}`, `m-${i}`, 20_000);
  }
  const during = await natsStreamInfo(nats.urls, "LOG");
  assert.equal(during.state.messages, 120);
  assert.notEqual(during.cluster?.leader, victim.name);
  assert.equal(await natsBacklog(nats.urls, "LOG", "writer"), 20);

  // Back on its ports and store: it rejoins and catches up the 20 it missed.
  // "current" in the leader's view can come a message before the copy is.
  await victim.restart();
  const until = Date.now() + 15_000;
  for (;;) {
    const info = await natsStreamInfo(nats.urls, "LOG");
    const peer = info.cluster?.replicas?.find((r) => r.name === victim.name);
    const jsz = await victim.monitor<{ streams?: number; messages?: number }>("/jsz");
    if (peer?.current === true && !peer.offline && jsz.streams === 1 && jsz.messages === 120) {
      break;
    }
    assert.ok(
      Date.now() < until,
      `${victim.name} did not rejoin: ${JSON.stringify({ cluster: info.cluster, jsz })}\n${nats.log()}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
});

test("deploy/nats configs pass nats-server -t", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-nats-conf-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const manifests = parseAllDocuments(readFileSync("deploy/nats/kubernetes.yaml", "utf8")).map(
    (d) => d.toJS() as { kind: string; data?: Record<string, string> },
  );
  const configMap = manifests.find((m) => m.kind === "ConfigMap");
  const fromConfigMap = path.join(dir, "nats.conf");
  writeFileSync(fromConfigMap, configMap?.data?.["nats.conf"] ?? "");
  const env = { ...process.env, NATS_SERVER_NAME: "nats-0", NATS_USER: "u", NATS_PASSWORD: "p" };
  for (const file of ["deploy/nats/nats-cluster.conf", fromConfigMap]) {
    const { stderr } = await run(natsServerBin, ["-t", "-c", file], { env });
    assert.match(stderr, /is valid/, file);
  }
  // Both need their variables: a server without a name must not start.
  await assert.rejects(run(natsServerBin, ["-t", "-c", "deploy/nats/nats-cluster.conf"]), {
    stderr: /NATS_SERVER_NAME/,
  });
});
