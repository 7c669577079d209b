/**
 * The SDK's `client.changes.subscribe` against the real gateway and MariaDB:
 * rows decoded as `execute` decodes them, `break` ending the call on the
 * gateway, and a subscription that carries on by itself across a gateway
 * restart with every transaction once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { type ChangeEvent, createClient } from "../client/src/index.js";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

type TransactionEvent = Extract<ChangeEvent, { type: "transaction" }>;

test("rows arrive decoded as execute decodes them; break ends the call", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query(
    "CREATE TABLE things (id INT PRIMARY KEY, big BIGINT UNSIGNED, price DECIMAL(10,2), name VARCHAR(20), raw VARBINARY(4), at DATETIME(6))",
  );
  const gateway = await startGateway(t, url);
  const client = createClient({ url: gateway.baseUrl });
  t.after(() => client.close());

  const events: ChangeEvent[] = [];
  let listening: () => void = () => {};
  const live = new Promise<void>((resolve) => {
    listening = resolve;
  });
  const reading = (async () => {
    for await (const event of client.changes.subscribe({
      tables: ["things"],
      includeBefore: true,
      heartbeatMs: 100,
    })) {
      events.push(event);
      // A heartbeat says the stream is up, reading from now.
      if (event.type === "heartbeat") listening();
      if (events.filter((e) => e.type === "transaction").length === 2) break;
    }
  })();
  await live;
  const inserted = await client.execute(
    "INSERT INTO things VALUES (1, 18446744073709551615, 12.50, 'one', x'00ff', '2024-02-29 12:00:00.000001')",
  );
  await client.execute("UPDATE things SET name = 'uno' WHERE id = 1");
  await reading;

  const [insert, update] = events.filter((e): e is TransactionEvent => e.type === "transaction");
  assert.equal(insert?.position, inserted.position);
  const [read] = (await client.execute("SELECT * FROM things")).rows;
  assert.deepEqual(insert?.changes, [
    {
      database: insert?.changes[0]?.database,
      table: "things",
      op: "insert",
      after: { ...read, name: "one" },
    },
  ]);
  assert.deepEqual(update?.changes[0]?.before, { ...read, name: "one" });
  assert.deepEqual(update?.changes[0]?.after, read);
  assert.equal(typeof read?.id, "number");
  assert.equal(read?.big, 18446744073709551615n);
  assert.ok(events.some((e) => e.type === "heartbeat"));
  // The call ended with the loop: the gateway closes without waiting for it.
  const closing = performance.now();
  await gateway.close();
  assert.ok(
    performance.now() - closing < Number(gateway.config.shutdown.graceMs),
    "no stream held the gateway open",
  );
});

test("a subscription carries on across a gateway restart, every transaction once", async (t) => {
  const { url, admin } = await createTestDatabase(t);
  await admin.query("CREATE TABLE ticks (id INT PRIMARY KEY)");
  let gateway = await startGateway(t, url);
  const port = gateway.port;
  const client = createClient({ url: gateway.baseUrl });
  t.after(() => client.close());

  const ids: unknown[] = [];
  let ready: () => void = () => {};
  const up = new Promise<void>((resolve) => {
    ready = resolve;
  });
  const stop = new AbortController();
  const reading = (async () => {
    for await (const event of client.changes.subscribe({
      tables: ["ticks"],
      heartbeatMs: 100,
      signal: stop.signal,
    })) {
      if (event.type === "heartbeat") ready();
      if (event.type === "transaction") ids.push(...event.changes.map((c) => c.after?.id));
    }
  })();
  await up;
  const until = async (n: number) => {
    const deadline = Date.now() + 20_000;
    while (ids.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${ids.length} of ${n} arrived`);
      await delay(20);
    }
  };
  const write = async (first: number, last: number) => {
    for (let id = first; id <= last; id++) await admin.query("INSERT INTO ticks VALUES (?)", [id]);
  };
  const restart = async (whileDown: () => Promise<void>) => {
    await gateway.close();
    await whileDown();
    gateway = await startGateway(t, url, { port });
  };
  // Down before any transaction arrived: it resumes from where it started.
  await restart(() => write(1, 5));
  await write(6, 10);
  await until(10);
  // Down after some: it resumes from the last one.
  await restart(() => write(11, 15));
  await write(16, 20);
  await until(20);
  await delay(200);
  stop.abort();
  await reading;
  assert.deepEqual(
    ids,
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});
