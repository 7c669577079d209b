/**
 * client/examples/mqtt-bridge.ts as a real daemon: a private mosquitto, a real
 * gateway on a real database, the bridge as a child process, and devices
 * publishing with QoS 1 (duplicates included). Every reading lands exactly
 * once, and SIGTERM stops the bridge cleanly.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connectAsync, type MqttClient } from "mqtt";
import { startGateway } from "./support/gateway.js";
import { connectDirect, createTestDatabase } from "./support/mysql.js";

type Context = Parameters<typeof createTestDatabase>[0];

const bridgeScript = fileURLToPath(new URL("../client/examples/mqtt-bridge.ts", import.meta.url));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Debian installs mosquitto in /usr/sbin, which is not on every PATH. */
function mosquittoBinary(): string {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin"];
  const found = dirs.map((d) => path.join(d, "mosquitto")).find((p) => existsSync(p));
  if (found === undefined) throw new Error("mosquitto not found: run scripts/ensure-mosquitto.sh");
  return found;
}

/** Collects a child's output, and waits for a line of it. */
function watchOutput(child: ChildProcess) {
  let text = "";
  const listeners = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding("utf8").on("data", (chunk: string) => {
      text += chunk;
      for (const l of listeners) l();
    });
  }
  return {
    text: () => text,
    async waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
      const started = Date.now();
      for (;;) {
        const line = text.split("\n").find((l) => pattern.test(l));
        if (line !== undefined) return line;
        if (child.exitCode !== null)
          throw new Error(`exited (${child.exitCode}) before ${pattern}:\n${text}`);
        if (Date.now() - started > timeoutMs)
          throw new Error(`no ${pattern} in ${timeoutMs} ms:\n${text}`);
        await sleep(20);
      }
    },
  };
}

function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "")),
  );
}

/** A private broker: its own port and config file, no persistence, no queue cap. */
async function startMosquitto(t: Context): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-mosquitto-"));
  const port = await freePort();
  const configFile = path.join(dir, "mosquitto.conf");
  writeFileSync(
    configFile,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      // The default (1,000 queued QoS 1 messages per client) would drop
      // messages if the publishers outran the bridge for a moment.
      "max_queued_messages 0",
      "",
    ].join("\n"),
  );
  const child = spawn(mosquittoBinary(), ["-c", configFile], { stdio: ["ignore", "pipe", "pipe"] });
  const output = watchOutput(child);
  t.after(async () => {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited(child);
    rmSync(dir, { recursive: true, force: true });
  });
  const started = Date.now();
  for (;;) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (connected) return `mqtt://127.0.0.1:${port}`;
    if (child.exitCode !== null || Date.now() - started > 10_000) {
      throw new Error(`mosquitto did not start:\n${output.text()}`);
    }
    await sleep(20);
  }
}

/** Device `d`'s reading number `seq`: what it publishes and what must land. */
function reading(d: number, seq: number) {
  const micros = String(seq * 1001).padStart(6, "0");
  return {
    device: `dev-${d}`,
    seq,
    ts: `2024-05-01 12:00:${String(d).padStart(2, "0")}.${micros}`,
    value: seq * 0.25 + d,
  };
}

/** A database with the telemetry table, and a gateway in front of it. */
async function setupTelemetry(t: Context) {
  const db = await createTestDatabase(t);
  await db.admin.query(
    `CREATE TABLE telemetry (device VARCHAR(32) NOT NULL, seq INT NOT NULL,
       ts DATETIME(6) NOT NULL, value DOUBLE NOT NULL, PRIMARY KEY (device, seq))`,
  );
  const gateway = await startGateway(t, db.url);
  const count = async () => {
    const [rows] = (await db.admin.query("SELECT COUNT(*) AS n FROM telemetry")) as unknown as [
      { n: number }[],
    ];
    return Number(rows[0]?.n);
  };
  /** Waits until the table holds `n` rows (or a while passes), then checks every row. */
  const expectReadings = async (deviceCount: number, perDevice: number, log: () => string) => {
    const until = Date.now() + 30_000;
    while ((await count()) < deviceCount * perDevice && Date.now() < until) await sleep(100);
    const direct = await connectDirect(db.url, { dateStrings: true });
    try {
      const [rows] = (await direct.query(
        "SELECT device, seq, ts, value FROM telemetry ORDER BY device, seq",
      )) as unknown as [{ device: string; seq: number; ts: string; value: number }[]];
      const want = Array.from({ length: deviceCount }, (_, d) =>
        Array.from({ length: perDevice }, (_, seq) => reading(d, seq)),
      )
        .flat()
        .sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : a.seq - b.seq));
      assert.equal(rows.length, want.length, log());
      assert.deepEqual(
        rows.map((r) => ({ ...r })),
        want,
      );
    } finally {
      await direct.end();
    }
  };
  return { gateway, count, expectReadings };
}

/** The bridge as a child process, once it has subscribed. */
async function startBridge(t: Context, mqttUrl: string, gatewayUrl: string, clientId: string) {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      bridgeScript,
      "--mqtt",
      mqttUrl,
      "--topic",
      "devices/+/telemetry",
      "--gateway",
      gatewayUrl,
      "--table",
      "telemetry",
      "--columns",
      "device,seq,ts,value",
      "--client-id",
      clientId,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const output = watchOutput(child);
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited(child);
  });
  await output.waitFor(/subscribed to devices\/\+\/telemetry/, 20_000);
  return {
    output,
    /** SIGTERM; resolves with the exit code and the summary the bridge printed. */
    async stop() {
      child.kill("SIGTERM");
      const giveUp = new AbortController();
      const code = await Promise.race([
        exited(child),
        sleep(20_000, "still running", { signal: giveUp.signal }).catch(() => "still running"),
      ]);
      giveUp.abort();
      assert.equal(code, 0, output.text());
      const line = await output.waitFor(/stopped: /, 1000);
      return JSON.parse(line.slice(line.indexOf("{"))) as Record<string, number>;
    },
  };
}

/** One MQTT connection per device, closed when the test ends. */
async function connectDevices(t: Context, mqttUrl: string, count: number) {
  const publishers = await Promise.all(
    Array.from({ length: count }, (_, d) =>
      connectAsync(mqttUrl, { clientId: `device-${d}-${randomBytes(3).toString("hex")}` }),
    ),
  );
  t.after(() => Promise.all(publishers.map((p) => p.endAsync(true))));
  return publishers;
}

/**
 * Device `d` publishes readings `from` to `to` with QoS 1, each awaited for
 * its PUBACK. Even devices name themselves in the payload; odd ones leave it
 * to the topic. Every 50th reading is published twice, as a device that
 * missed its PUBACK would. Resolves with the number of messages.
 */
async function publishReadings(
  publisher: MqttClient,
  d: number,
  from: number,
  to: number,
  pauseMs = 0,
) {
  const topic = `devices/dev-${d}/telemetry`;
  const sends: Promise<unknown>[] = [];
  for (let seq = from; seq < to; seq++) {
    // Paced publishers pause every 20 readings, so that a stop lands mid-flow.
    if (pauseMs > 0 && seq % 20 === 0) await sleep(pauseMs);
    const { device, ...rest } = reading(d, seq);
    const payload = JSON.stringify(d % 2 === 0 ? { device, ...rest } : rest);
    const copies = seq % 50 === 0 ? 2 : 1;
    for (let c = 0; c < copies; c++) sends.push(publisher.publishAsync(topic, payload, { qos: 1 }));
  }
  await Promise.all(sends);
  return sends.length;
}

const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);

test("MQTT QoS 1 readings, duplicates included, land exactly once; SIGTERM exits 0", async (t) => {
  const mqttUrl = await startMosquitto(t);
  const { gateway, count, expectReadings } = await setupTelemetry(t);
  const bridge = await startBridge(
    t,
    mqttUrl,
    gateway.baseUrl,
    `bridge-${randomBytes(4).toString("hex")}`,
  );

  const devices = 10;
  const perDevice = 500;
  const publishers = await connectDevices(t, mqttUrl, devices);
  const published = sum(
    await Promise.all(publishers.map((p, d) => publishReadings(p, d, 0, perDevice))),
  );
  assert.equal(published, devices * perDevice + devices * (perDevice / 50));
  // One message that is not a reading: skipped, and the bridge goes on.
  await publishers[0]?.publishAsync("devices/dev-0/telemetry", "not json", { qos: 1 });

  await expectReadings(devices, perDevice, bridge.output.text);
  const summary = await bridge.stop();
  assert.equal(summary.messages, published + 1);
  assert.equal(summary.skipped, 1);
  // Both copies of a duplicate were appended; MySQL kept the first.
  assert.equal(summary.rowsAcknowledged, published);
  assert.equal(summary.retries, 0);
  // Nothing was written twice or lost after the stop either.
  assert.equal(await count(), devices * perDevice);
});

test("a bridge stopped mid-flow and started again under its client id loses nothing", async (t) => {
  const mqttUrl = await startMosquitto(t);
  const { gateway, expectReadings } = await setupTelemetry(t);
  const clientId = `bridge-${randomBytes(4).toString("hex")}`;
  const first = await startBridge(t, mqttUrl, gateway.baseUrl, clientId);

  const devices = 4;
  const perDevice = 600;
  const publishers = await connectDevices(t, mqttUrl, devices);
  // The bridge is stopped while the devices publish; what arrives meanwhile
  // waits in the broker's session for the bridge's client id.
  const publishing = Promise.all(publishers.map((p, d) => publishReadings(p, d, 0, perDevice, 10)));
  await sleep(100);
  const firstSummary = await first.stop();
  await publishing;
  assert.ok(
    firstSummary.messages !== undefined &&
      firstSummary.messages > 0 &&
      firstSummary.messages < devices * perDevice,
    `the first bridge took ${firstSummary.messages} messages: stop it earlier`,
  );

  const second = await startBridge(t, mqttUrl, gateway.baseUrl, clientId);
  await expectReadings(devices, perDevice, () => first.output.text() + second.output.text());
  await second.stop();
});
