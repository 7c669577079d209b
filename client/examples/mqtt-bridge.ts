/**
 * mqtt-bridge: a small daemon that writes MQTT telemetry into a MySQL table
 * through sqlgate's ingest writer.
 *
 *   node --import tsx client/examples/mqtt-bridge.ts \
 *     --mqtt mqtt://127.0.0.1:1883 --topic 'devices/+/telemetry' \
 *     --gateway http://127.0.0.1:8080 --table telemetry --columns device,seq,ts,value
 *
 * Every flag has an environment fallback: MQTT_URL, MQTT_TOPIC, MQTT_CLIENT_ID,
 * SQLGATE_URL, SQLGATE_TABLE, BRIDGE_COLUMNS, BRIDGE_DEVICE_COLUMN,
 * BRIDGE_MAX_PENDING_ROWS, BRIDGE_STOP_TIMEOUT_MS.
 *
 * Mapping. Each message is one JSON object, for example
 * `{"device":"d7","seq":123,"ts":"2024-05-01 12:00:00.250000","value":1.5}`,
 * and becomes one row of `--columns`: each column takes the JSON field of the
 * same name, converted as the SDK's `valueFromJs` says (integers exactly,
 * other numbers as doubles, strings as text that MySQL converts to the
 * column's type, so `ts` must be in a form MySQL accepts; nested objects as
 * JSON). The device column (`--device-column`, default `device`), when the
 * field is absent, takes the topic level that the filter's first `+` matched:
 * `devices/d7/telemetry` under `devices/+/telemetry` gives `d7`. Any other
 * absent field is NULL. A message that is not a JSON object is logged,
 * counted and acknowledged (it will never become valid), not written.
 *
 * Exactly once. MQTT QoS 1 is at-least-once: the broker sends a message
 * again when it did not see the PUBACK (a reconnect, a bridge restart), and
 * publishers retry too. The writer appends with onConflict "ignore", so with
 * a primary key that names each reading, such as (device, seq), a second copy
 * of a row is skipped by MySQL instead of stored twice or failing the batch.
 * Within the gateway, chunks retried after a lost connection are deduplicated
 * by their idempotency keys; the primary key covers copies that arrive as new
 * MQTT messages.
 *
 * Acknowledgements, and what is and is not guaranteed. The bridge subscribes
 * with QoS 1 on a persistent session (MQTT 3.1.1, clean session off, a fixed
 * client id), so the broker keeps queueing messages while the bridge is down
 * or restarting. mqtt.js acknowledges a message (PUBACK) when its
 * `handleMessage` calls back, and handles the next message only then; the
 * bridge calls back once the row is in the writer's buffer, which is at once
 * unless the writer holds `--max-pending-rows` unacknowledged rows, and then
 * waits. So a slow or absent gateway stops consumption while the broker
 * queues (backpressure), and the writer retries the gateway for as long as it
 * takes.
 * - Guaranteed: every message the bridge acknowledged is written exactly
 *   once, provided the bridge stops by SIGTERM or SIGINT. On a signal it
 *   declines further messages (no PUBACK: they stay with the broker for the
 *   next session, and whatever was appended meanwhile comes back as a
 *   duplicate that the key absorbs), closes the writer (which flushes every
 *   buffered row), disconnects and exits 0. If that takes longer than
 *   `--stop-timeout-ms` (default 30 s; the gateway is down, say), it exits 1
 *   and the rows still buffered are lost.
 * - Not guaranteed: if the bridge dies without flushing (SIGKILL, a crash,
 *   the machine), the rows in the writer's buffer are lost: their messages
 *   were acknowledged already. That is at most `--max-pending-rows` rows, in
 *   practice those of the last second or so. Acknowledging each message only
 *   after its row is committed would close that gap, but MQTT requires
 *   PUBACKs in the order of the messages and mqtt.js handles one message at a
 *   time, so it would cost one commit round trip per message.
 * - Brokers bound what they queue for a client (mosquitto's
 *   `max_queued_messages`, 1,000 by default); raise it for outages longer
 *   than that many messages.
 * - If the gateway refuses rows for good (a missing table or column,
 *   `invalid_argument`), the bridge logs the error and exits 1.
 */
import { parseArgs } from "node:util";
import { connect, type IPublishPacket } from "mqtt";
import { createClient } from "../src/index.js";

interface BridgeConfig {
  readonly mqttUrl: string;
  readonly topic: string;
  readonly clientId: string;
  readonly gatewayUrl: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly deviceColumn: string;
  readonly maxPendingRows: number;
  readonly stopTimeoutMs: number;
}

const usage = `usage: mqtt-bridge --mqtt URL --topic FILTER --gateway URL --table NAME --columns a,b,c
  [--client-id ID] [--device-column NAME] [--max-pending-rows N] [--stop-timeout-ms N]`;

function log(message: string): void {
  process.stderr.write(`mqtt-bridge: ${message}\n`);
}

/** Flags, then environment; every problem is reported at once. */
function configFrom(argv: string[], env: NodeJS.ProcessEnv): BridgeConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      mqtt: { type: "string" },
      topic: { type: "string" },
      "client-id": { type: "string" },
      gateway: { type: "string" },
      table: { type: "string" },
      columns: { type: "string" },
      "device-column": { type: "string" },
      "max-pending-rows": { type: "string" },
      "stop-timeout-ms": { type: "string" },
    },
    strict: true,
  });
  const problems: string[] = [];
  const required = (flag: string, value: string | undefined, variable: string) => {
    if (value === undefined || value === "")
      problems.push(`--${flag} (or ${variable}) is required`);
    return value ?? "";
  };
  const mqttUrl = required("mqtt", values.mqtt ?? env.MQTT_URL, "MQTT_URL");
  const topic = required("topic", values.topic ?? env.MQTT_TOPIC, "MQTT_TOPIC");
  const gatewayUrl = required("gateway", values.gateway ?? env.SQLGATE_URL, "SQLGATE_URL");
  const table = required("table", values.table ?? env.SQLGATE_TABLE, "SQLGATE_TABLE");
  const columnList = required("columns", values.columns ?? env.BRIDGE_COLUMNS, "BRIDGE_COLUMNS");
  const columns = columnList
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c !== "");
  if (columnList !== "" && columns.length === 0) problems.push("--columns names no column");
  const positive = (flag: string, text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1)
      problems.push(`--${flag}: expected a positive integer, got ${text}`);
    return n;
  };
  const maxPendingRows = positive(
    "max-pending-rows",
    values["max-pending-rows"] ?? env.BRIDGE_MAX_PENDING_ROWS ?? "10000",
  );
  const stopTimeoutMs = positive(
    "stop-timeout-ms",
    values["stop-timeout-ms"] ?? env.BRIDGE_STOP_TIMEOUT_MS ?? "30000",
  );
  if (problems.length > 0) throw new Error(`${problems.join("\n")}\n${usage}`);
  return {
    mqttUrl,
    topic,
    // The persistent session is the client id's: a restarted bridge gets the
    // messages queued for it only under the same id.
    clientId: values["client-id"] ?? env.MQTT_CLIENT_ID ?? `sqlgate-bridge-${table}`,
    gatewayUrl,
    table,
    columns,
    deviceColumn: values["device-column"] ?? env.BRIDGE_DEVICE_COLUMN ?? "device",
    maxPendingRows,
    stopTimeoutMs,
  };
}

/** The topic level that the filter's first `+` matches, if any. */
function deviceFromTopic(filter: string, topic: string): string | undefined {
  const index = filter.split("/").indexOf("+");
  return index < 0 ? undefined : topic.split("/")[index];
}

/** One row for `config.columns`, or why the message has none. */
function rowFromMessage(
  config: BridgeConfig,
  topic: string,
  payload: Buffer,
): unknown[] | { error: string } {
  let message: unknown;
  try {
    message = JSON.parse(payload.toString("utf8"));
  } catch {
    return { error: "not JSON" };
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return { error: "not a JSON object" };
  }
  const fields = message as Record<string, unknown>;
  return config.columns.map((column) => {
    if (Object.hasOwn(fields, column)) return fields[column];
    if (column === config.deviceColumn) return deviceFromTopic(config.topic, topic) ?? null;
    return null;
  });
}

async function main(): Promise<void> {
  let config: BridgeConfig;
  try {
    config = configFrom(process.argv.slice(2), process.env);
  } catch (err) {
    log(err instanceof Error ? err.message : String(err));
    process.exit(2);
  }

  const client = createClient({ url: config.gatewayUrl });
  const writer = client.ingest.writer(config.table, config.columns, {
    onConflict: "ignore",
    maxPendingRows: config.maxPendingRows,
    // A daemon waits out a gateway outage: backpressure holds the messages
    // at the broker meanwhile.
    maxRetryMs: Number.POSITIVE_INFINITY,
    onRetry: ({ error, attempt, delayMs }) =>
      log(`retry ${attempt} in ${Math.round(delayMs)} ms: ${error.message}`),
  });
  const counts = { messages: 0, skipped: 0 };
  let stopping = false;

  const mqttClient = connect(config.mqttUrl, {
    clientId: config.clientId,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 1000,
  });

  // mqtt.js sends the PUBACK when this calls back without an error, and reads
  // the next message only after any call back: calling back once the row is
  // buffered gives backpressure. After a stop, messages are declined (an
  // error: no PUBACK), so they stay with the broker for the next session
  // while mqtt.js drains its queue and can disconnect.
  const declined = new Error("the bridge is stopping: left with the broker");
  mqttClient.handleMessage = (packet: IPublishPacket, callback) => {
    if (stopping) {
      callback(declined);
      return;
    }
    counts.messages++;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const row = rowFromMessage(config, packet.topic, payload);
    if (!Array.isArray(row)) {
      counts.skipped++;
      log(`skipped a message on ${packet.topic}: ${row.error}`);
      callback();
      return;
    }
    writer.append(row).then(
      // A row appended during a stop is flushed by it, but the stop may still
      // fail: its message is declined and comes back, as a duplicate at worst.
      () => callback(stopping ? declined : undefined),
      (err: unknown) => {
        if (stopping || writer.error !== undefined) {
          callback(declined);
          fatal(writer.error ?? err);
          return;
        }
        // A value the SDK cannot convert: skipped like malformed JSON.
        counts.skipped++;
        log(`skipped a message on ${packet.topic}: ${(err as Error).message}`);
        callback();
      },
    );
  };

  mqttClient.on("connect", (connack) => {
    log(`connected to ${config.mqttUrl} (session present: ${connack.sessionPresent})`);
  });
  mqttClient.on("error", (err) => log(`mqtt: ${err.message}`));
  mqttClient.on("offline", () => log("mqtt: offline, reconnecting"));

  let failed = false;
  const fatal = (err: unknown) => {
    if (failed) return;
    failed = true;
    stopping = true;
    log(`writing failed, exiting: ${err instanceof Error ? err.message : String(err)}`);
    mqttClient.end(true);
    process.exit(1);
  };
  // A writer can fail between messages (its last streams gave up): notice it
  // without waiting for the next message.
  setInterval(() => {
    if (writer.error !== undefined) fatal(writer.error);
  }, 1000).unref();

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping`);
    // Bounds the stop (a gateway that stays down would hold it forever), and
    // keeps the process alive until it is done.
    const deadline = setTimeout(() => {
      log(`stopping took over ${config.stopTimeoutMs} ms: rows still buffered are lost`);
      process.exit(1);
    }, config.stopTimeoutMs);
    try {
      const summary = await writer.close();
      await mqttClient.endAsync();
      await client.close();
      clearTimeout(deadline);
      log(`stopped: ${JSON.stringify({ ...counts, ...summary })}`);
      process.exit(0);
    } catch (err) {
      fatal(err);
    }
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));

  await mqttClient.subscribeAsync(config.topic, { qos: 1 });
  log(`subscribed to ${config.topic} (QoS 1), writing to ${config.table} via ${config.gatewayUrl}`);
}

await main();
