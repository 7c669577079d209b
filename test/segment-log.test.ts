/**
 * The ingest write-ahead log on a real filesystem: round trips, group commit,
 * rotation and deletion, the space cap, the lock, and recovery from what a
 * crash or a bad disk leaves (torn tails, flipped bits, a SIGKILLed writer).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type TestContext, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  openSegmentLog,
  type SegmentLog,
  type SegmentLogOptions,
  segmentFileName,
} from "../server/ingest/log/segment-log.js";

/** u32 length + u32 CRC + u64 seq + u64 appendedAtMs. */
const headerBytes = 24;

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sqlgate-segment-log-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function openLog(
  t: TestContext,
  dir: string,
  options: Partial<SegmentLogOptions> = {},
): Promise<SegmentLog> {
  const log = await openSegmentLog({
    dir,
    segmentBytes: 1024 * 1024,
    maxBytes: 1024 * 1024 * 1024,
    ...options,
  });
  t.after(() => log.close());
  return log;
}

/** Every live record, in order. */
async function readAll(log: SegmentLog) {
  return log.read(0, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
}

function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(".seg"))
    .sort();
}

/** What a bad disk does: one bit of `file` at `offset` changes. */
function flipBit(file: string, offset: number): void {
  const bytes = fs.readFileSync(file);
  bytes.writeUInt8(bytes.readUInt8(offset) ^ 0x04, offset);
  fs.writeFileSync(file, bytes);
}

/** Settles to "pending" if `promise` has not settled within `ms`. */
async function stateAfter(promise: Promise<unknown>, ms: number) {
  return Promise.race([
    promise.then(
      () => "resolved",
      () => "rejected",
    ),
    sleep(ms).then(() => "pending"),
  ]);
}

function isUnavailable(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unavailable;
}

function isLogFull(err: unknown): boolean {
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.ResourceExhausted);
  assert.match(err.message, /SQLGATE_INGEST_LOG_MAX_BYTES/);
  return true;
}

test("records round-trip, empty and 1 MiB payloads included, before and after a reopen", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { segmentBytes: 256 * 1024 });
  const payloads = [
    Buffer.alloc(0),
    Buffer.from("a"),
    randomBytes(1024 * 1024),
    Buffer.from("after the big one"),
    Buffer.alloc(0),
  ];
  const before = Date.now();
  const seqs = await Promise.all(payloads.map((p) => log.append(p)));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  assert.equal(log.nextSeq(), 6);
  assert.equal(log.firstSeq(), 1);

  const check = (records: Awaited<ReturnType<typeof readAll>>) => {
    assert.deepEqual(
      records.map((r) => r.seq),
      [1, 2, 3, 4, 5],
    );
    records.forEach((r, i) => {
      assert.ok(r.payload.equals(payloads[i] ?? Buffer.alloc(1)), `payload of ${r.seq}`);
      assert.ok(r.appendedAtMs >= before && r.appendedAtMs <= Date.now());
    });
  };
  check(await readAll(log));
  // Limits: at least one record even past maxBytes; maxRecords; a start in the middle.
  assert.deepEqual(
    (await log.read(1, 10, 0)).map((r) => r.seq),
    [1],
  );
  assert.deepEqual(
    (await log.read(2, 10, 100)).map((r) => r.seq),
    [2],
  );
  assert.deepEqual(
    (await log.read(3, 2, 2 * 1024 * 1024)).map((r) => r.seq),
    [3, 4],
  );
  assert.deepEqual(await log.read(6, 10, 1000), []);

  await log.close();
  const reopened = await openLog(t, dir, { segmentBytes: 256 * 1024 });
  assert.deepEqual(reopened.recovered, { truncatedBytes: 0, corruptSegments: [], droppedSeqs: 0 });
  check(await readAll(reopened));
  assert.equal(reopened.nextSeq(), 6);
  assert.equal(await reopened.append(Buffer.from("next")), 6);
});

test("seqs continue across a reopen after every record was applied and its segment deleted", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { segmentBytes: 100 });
  for (let i = 0; i < 5; i++) await log.append(Buffer.alloc(60, i));
  await log.markApplied(5);
  assert.deepEqual(segmentFiles(dir), [segmentFileName(5)]);
  assert.equal(log.stats().unappliedRecords, 0);
  await log.close();

  const second = await openLog(t, dir, { segmentBytes: 100 });
  assert.equal(second.nextSeq(), 6);
  // The applied records come back (nothing persists markApplied); the caller skips them.
  assert.deepEqual(
    (await readAll(second)).map((r) => r.seq),
    [5],
  );
  assert.equal(await second.append(Buffer.from("x")), 6);
  await second.markApplied(6);
  await second.append(Buffer.alloc(60));
  await second.markApplied(7);
  assert.deepEqual(segmentFiles(dir), [segmentFileName(7)]);
  await second.close();

  const third = await openLog(t, dir, { segmentBytes: 100 });
  assert.equal(third.firstSeq(), 7);
  assert.equal(await third.append(Buffer.from("y")), 8);
});

test("concurrent appends share one write and one fdatasync (group commit)", async (t) => {
  const log = await openLog(t, tempDir(t));
  const seqs = await Promise.all(
    Array.from({ length: 500 }, (_, i) => log.append(Buffer.from(`record ${i}`))),
  );
  assert.deepEqual(
    seqs,
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  const { syncs } = log.stats();
  assert.ok(syncs >= 1 && syncs <= 5, `${syncs} fdatasyncs for 500 concurrent appends`);
  const records = await readAll(log);
  assert.equal(records.length, 500);
  assert.equal(records[499]?.payload.toString(), "record 499");
  // Sequential appends each wait for their own.
  await log.append(Buffer.from("a"));
  await log.append(Buffer.from("b"));
  assert.equal(log.stats().syncs, syncs + 2);
});

test("segments rotate at segmentBytes; markApplied deletes only fully applied, non-active ones", async (t) => {
  const dir = tempDir(t);
  // Frames of 24 + 50 bytes: two fit in 150.
  const log = await openLog(t, dir, { segmentBytes: 150 });
  const seqs = await Promise.all(
    Array.from({ length: 10 }, (_, i) => log.append(Buffer.alloc(50, i))),
  );
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(segmentFiles(dir), [1, 3, 5, 7, 9].map(segmentFileName));
  assert.equal(fs.statSync(path.join(dir, segmentFileName(3))).size, 148);
  assert.equal(log.stats().segments, 5);
  assert.equal(log.stats().bytes, 10 * 74);

  // Segment 3 holds 3 and 4: 4 is not applied yet.
  await log.markApplied(3);
  assert.deepEqual(segmentFiles(dir), [3, 5, 7, 9].map(segmentFileName));
  assert.equal(log.firstSeq(), 3);
  assert.equal(log.stats().unappliedRecords, 7);
  await log.markApplied(2); // lower: ignored
  assert.equal(log.stats().unappliedRecords, 7);

  // Everything applied: all but the active segment go.
  await log.markApplied(10);
  assert.deepEqual(segmentFiles(dir), [segmentFileName(9)]);
  assert.equal(log.stats().bytes, 2 * 74);
  assert.equal(log.firstSeq(), 9);
  assert.deepEqual(
    (await log.read(1, 100, 100_000)).map((r) => r.seq),
    [9, 10],
  );

  // A record larger than segmentBytes gets a segment of its own.
  assert.equal(await log.append(Buffer.alloc(500)), 11);
  assert.equal(await log.append(Buffer.alloc(1)), 12);
  assert.deepEqual(segmentFiles(dir), [9, 11, 12].map(segmentFileName));
});

test("a torn tail is truncated; earlier records, nextSeq and new appends are intact", async (t) => {
  const dir = tempDir(t);
  const payloads = Array.from({ length: 5 }, (_, i) => Buffer.alloc(100, i + 1));
  const log = await openLog(t, dir);
  for (const p of payloads) await log.append(p);
  await log.close();
  const file = path.join(dir, segmentFileName(1));
  assert.equal(fs.statSync(file).size, 5 * 124);

  // A crash in the middle of writing record 5.
  fs.truncateSync(file, 4 * 124 + 50);
  const torn = await openLog(t, dir);
  assert.deepEqual(torn.recovered, { truncatedBytes: 50, corruptSegments: [], droppedSeqs: 0 });
  assert.equal(fs.statSync(file).size, 4 * 124);
  assert.equal(torn.nextSeq(), 5);
  assert.deepEqual(
    (await readAll(torn)).map((r) => r.payload),
    payloads.slice(0, 4),
  );
  assert.equal(await torn.append(Buffer.from("five")), 5);
  assert.equal((await torn.read(5, 1, 1))[0]?.payload.toString(), "five");
  await torn.close();

  // Garbage after the last frame: zeros (a file extended but never written), then noise.
  fs.appendFileSync(file, Buffer.concat([Buffer.alloc(4096), randomBytes(37)]));
  const noisy = await openLog(t, dir);
  assert.deepEqual(noisy.recovered, {
    truncatedBytes: 4096 + 37,
    corruptSegments: [],
    droppedSeqs: 0,
  });
  assert.equal(noisy.nextSeq(), 6);
  assert.deepEqual(
    (await readAll(noisy)).map((r) => r.seq),
    [1, 2, 3, 4, 5],
  );
  assert.equal(await noisy.append(Buffer.from("six")), 6);
  await noisy.close();

  // Cut inside a frame header.
  fs.truncateSync(file, fs.statSync(file).size - (headerBytes + 3) + 10);
  const cut = await openLog(t, dir);
  assert.equal(cut.recovered.truncatedBytes, 10);
  assert.equal(cut.nextSeq(), 6);
});

test("a flipped bit in a middle frame of the last segment drops it and the rest, and their seqs are not reused", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir);
  for (let i = 1; i <= 5; i++) await log.append(Buffer.alloc(100, i));
  await log.close();
  const file = path.join(dir, segmentFileName(1));
  flipBit(file, 2 * 124 + headerBytes + 10); // record 3's payload

  const reopened = await openLog(t, dir);
  // 3 is damaged; 4 and 5 were valid (and likely acknowledged, maybe applied).
  assert.deepEqual(reopened.recovered, {
    truncatedBytes: 3 * 124,
    corruptSegments: [],
    droppedSeqs: 3,
  });
  assert.equal(fs.statSync(file).size, 2 * 124);
  assert.equal(reopened.nextSeq(), 6);
  assert.deepEqual(
    (await readAll(reopened)).map((r) => r.seq),
    [1, 2],
  );
  assert.equal(await reopened.append(Buffer.from("six")), 6);
  assert.deepEqual(
    (await readAll(reopened)).map((r) => r.seq),
    [1, 2, 6],
  );
  assert.deepEqual(
    (await reopened.read(3, 10, 1000)).map((r) => r.seq),
    [6],
  );
  assert.deepEqual(segmentFiles(dir), [1, 6].map(segmentFileName));
  await reopened.close();
  const again = await openLog(t, dir);
  assert.deepEqual(again.recovered, { truncatedBytes: 0, corruptSegments: [], droppedSeqs: 0 });
  assert.equal(again.nextSeq(), 7);
});

test("damage in an earlier segment sets it and all later ones aside as *.corrupt", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { segmentBytes: 100 });
  for (let i = 1; i <= 4; i++) await log.append(Buffer.alloc(60, i));
  await log.close();
  flipBit(path.join(dir, segmentFileName(2)), headerBytes);

  const reopened = await openLog(t, dir, { segmentBytes: 100 });
  assert.deepEqual(reopened.recovered, {
    truncatedBytes: 0,
    corruptSegments: [2, 3, 4].map((s) => `${segmentFileName(s)}.corrupt`),
    droppedSeqs: 3,
  });
  assert.deepEqual(segmentFiles(dir), [1, 5].map(segmentFileName));
  assert.deepEqual(
    (await readAll(reopened)).map((r) => r.seq),
    [1],
  );
  assert.equal(await reopened.append(Buffer.from("five")), 5);
});

test("a segment starting inside the previous one (not written by this log) is set aside, not truncated", async (t) => {
  const dir = tempDir(t);
  // Frames of 74 bytes, two per segment: segments 1 (1, 2) and 3 (3, 4).
  const log = await openLog(t, dir, { segmentBytes: 150 });
  for (let i = 1; i <= 4; i++) await log.append(Buffer.alloc(50, i));
  await log.close();
  // Last, so that it is not mistaken for a torn tail and cut to nothing.
  fs.renameSync(path.join(dir, segmentFileName(3)), path.join(dir, segmentFileName(2)));

  const reopened = await openLog(t, dir, { segmentBytes: 150 });
  assert.deepEqual(reopened.recovered, {
    truncatedBytes: 0,
    corruptSegments: [`${segmentFileName(2)}.corrupt`],
    droppedSeqs: 2,
  });
  assert.equal(fs.statSync(path.join(dir, `${segmentFileName(2)}.corrupt`)).size, 148);
  assert.deepEqual(
    (await readAll(reopened)).map((r) => r.seq),
    [1, 2],
  );
  assert.equal(await reopened.append(Buffer.from("five")), 5);
});

test("the lock: one open per directory; a live holder refuses, a dead one is taken over", async (t) => {
  const dir = tempDir(t);
  const lockFile = path.join(dir, "LOCK");
  const log = await openLog(t, dir);
  assert.equal(fs.readFileSync(lockFile, "utf8").trim(), String(process.pid));
  await assert.rejects(
    openSegmentLog({ dir, segmentBytes: 1000, maxBytes: 10_000 }),
    /already open/,
  );
  await log.close();
  assert.equal(fs.existsSync(lockFile), false);

  const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], {
    stdio: "ignore",
  });
  t.after(() => holder.kill("SIGKILL"));
  fs.writeFileSync(lockFile, `${holder.pid}\n`);
  await assert.rejects(
    openSegmentLog({ dir, segmentBytes: 1000, maxBytes: 10_000 }),
    new RegExp(`another gateway \\(pid ${holder.pid}\\) uses the ingest log`),
  );
  assert.equal(fs.readFileSync(lockFile, "utf8").trim(), String(holder.pid));

  const dead = spawnSync(process.execPath, ["-e", ""]).pid;
  fs.writeFileSync(lockFile, `${dead}\n`);
  const takenOver = await openLog(t, dir);
  assert.equal(fs.readFileSync(lockFile, "utf8").trim(), String(process.pid));
  assert.equal(await takenOver.append(Buffer.from("x")), 1);
});

test("log-id is created once and kept", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir);
  assert.match(log.logId, /^[0-9a-f-]{36}$/);
  assert.equal(fs.readFileSync(path.join(dir, "log-id"), "utf8").trim(), log.logId);
  await log.close();
  const reopened = await openLog(t, dir);
  assert.equal(reopened.logId, log.logId);
  await reopened.close();
  // Segments removed by hand would restart seqs at 1: refused.
  for (const name of segmentFiles(dir)) fs.rmSync(path.join(dir, name));
  await assert.rejects(openSegmentLog({ dir, segmentBytes: 1000, maxBytes: 10_000 }), /no segment/);
});

test("a full log makes appends wait until markApplied frees space", async (t) => {
  const dir = tempDir(t);
  // Frames of 74 bytes, one per segment; two fit in 200.
  const log = await openLog(t, dir, { segmentBytes: 100, maxBytes: 200 });
  await log.append(Buffer.alloc(50, 1));
  await log.append(Buffer.alloc(50, 2));
  const third = log.append(Buffer.alloc(50, 3));
  assert.equal(await stateAfter(third, 100), "pending");
  assert.equal(log.nextSeq(), 3);
  // Applying 1 deletes its segment (2 is active and stays).
  await log.markApplied(1);
  assert.equal(await third, 3);
  assert.deepEqual(segmentFiles(dir), [2, 3].map(segmentFileName));
  assert.ok(log.stats().bytes <= 200);
});

test("an abort while waiting for space rejects with ResourceExhausted naming SQLGATE_INGEST_LOG_MAX_BYTES; nothing is appended", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { segmentBytes: 100, maxBytes: 200 });
  await log.append(Buffer.alloc(50, 1));
  await log.append(Buffer.alloc(50, 2));

  const controller = new AbortController();
  const waiting = log.append(Buffer.alloc(50, 3), controller.signal);
  assert.equal(await stateAfter(waiting, 50), "pending");
  controller.abort();
  await assert.rejects(waiting, isLogFull);
  await assert.rejects(log.append(Buffer.alloc(50), AbortSignal.abort()), isLogFull);
  const deadline = new AbortController();
  setTimeout(() => deadline.abort(), 20);
  await assert.rejects(log.append(Buffer.alloc(50), deadline.signal), isLogFull);

  // Larger than the whole log: at once, without waiting.
  await assert.rejects(log.append(Buffer.alloc(200)), isLogFull);

  await log.markApplied(1);
  assert.equal(await log.append(Buffer.from("next")), 3);
  assert.deepEqual(
    (await readAll(log)).map((r) => r.seq),
    [2, 3],
  );
});

test("a full log whose applied records sit in the active segment starts a new one instead of waiting forever", async (t) => {
  const dir = tempDir(t);
  // One segment could hold the whole log: only a rotation can free space.
  const log = await openLog(t, dir, { segmentBytes: 10_000, maxBytes: 200 });
  await log.append(Buffer.alloc(50, 1));
  await log.append(Buffer.alloc(50, 2));
  const third = log.append(Buffer.alloc(100, 3));
  assert.equal(await stateAfter(third, 50), "pending");
  await log.markApplied(2);
  assert.equal(await stateAfter(third, 2000), "resolved");
  assert.equal(await third, 3);
  assert.deepEqual(segmentFiles(dir), [segmentFileName(3)]);
  assert.equal(log.stats().bytes, 124);
});

test("close finishes pending appends, rejects waiters and later calls, wakes readers; it is idempotent", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { maxBytes: 100 * 1000 });
  const appends = Array.from({ length: 100 }, (_, i) => log.append(Buffer.alloc(900, i)));
  const waiter = assert.rejects(log.append(Buffer.alloc(50_000)), isUnavailable);
  const reader = log.waitForRecords(1000);
  const closing = log.close();
  assert.deepEqual(
    await Promise.all(appends),
    Array.from({ length: 100 }, (_, i) => i + 1),
  );
  await waiter;
  await reader;
  await closing;
  await log.close();
  await assert.rejects(log.append(Buffer.from("late")), isUnavailable);
  await assert.rejects(log.read(1, 10, 1000), /closed/);
  await log.waitForRecords(1000);
  await log.markApplied(100);
  assert.equal(fs.existsSync(path.join(dir, "LOCK")), false);

  const reopened = await openLog(t, dir);
  assert.equal((await readAll(reopened)).length, 100);
});

test("waitForRecords resolves once a record at or past fromSeq is durable, or on abort", async (t) => {
  const log = await openLog(t, tempDir(t));
  const first = log.waitForRecords(1);
  const third = log.waitForRecords(3);
  assert.equal(await stateAfter(first, 20), "pending");
  await log.append(Buffer.from("1"));
  assert.equal(await stateAfter(first, 20), "resolved");
  assert.equal(await stateAfter(third, 20), "pending");
  await Promise.all([log.append(Buffer.from("2")), log.append(Buffer.from("3"))]);
  assert.equal(await stateAfter(third, 20), "resolved");
  await log.waitForRecords(2); // already there

  const controller = new AbortController();
  const later = log.waitForRecords(10, controller.signal);
  controller.abort();
  assert.equal(await stateAfter(later, 20), "resolved");
});

test("stats count unapplied records and the time of the oldest, across reopen", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir, { segmentBytes: 100 });
  assert.deepEqual(log.stats(), {
    bytes: 0,
    segments: 1,
    unappliedRecords: 0,
    oldestUnappliedAtMs: undefined,
    syncs: 0,
  });
  for (let i = 0; i < 3; i++) {
    await log.append(Buffer.alloc(60, i));
    await sleep(5);
  }
  const times = (await readAll(log)).map((r) => r.appendedAtMs);
  assert.equal(new Set(times).size, 3);
  assert.equal(log.stats().unappliedRecords, 3);
  assert.equal(log.stats().oldestUnappliedAtMs, times[0]);
  await log.markApplied(1);
  assert.equal(log.stats().unappliedRecords, 2);
  assert.equal(log.stats().oldestUnappliedAtMs, times[1]);
  await log.markApplied(3);
  assert.equal(log.stats().unappliedRecords, 0);
  assert.equal(log.stats().oldestUnappliedAtMs, undefined);
  await log.append(Buffer.alloc(60));
  const [fourth] = await log.read(4, 1, 100);
  assert.equal(log.stats().oldestUnappliedAtMs, fourth?.appendedAtMs);
  assert.equal(log.stats().unappliedRecords, 1);
  await log.close();

  const reopened = await openLog(t, dir, { segmentBytes: 100 });
  assert.equal(reopened.stats().unappliedRecords, 2); // 3 (kept: its segment was active) and 4
  assert.equal(reopened.stats().oldestUnappliedAtMs, times[2]);
  await reopened.markApplied(3);
  assert.equal(reopened.stats().oldestUnappliedAtMs, fourth?.appendedAtMs);
});

test("markApplied past nextSeq (MySQL applied records this log lost) moves nextSeq past it", async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, dir);
  await log.append(Buffer.from("1"));
  await log.append(Buffer.from("2"));
  await log.markApplied(10);
  assert.equal(log.nextSeq(), 11);
  assert.equal(await log.append(Buffer.from("11")), 11);
  assert.deepEqual(segmentFiles(dir), [segmentFileName(11)]);
  assert.deepEqual(
    (await readAll(log)).map((r) => r.seq),
    [11],
  );
  await log.close();
  const reopened = await openLog(t, dir);
  assert.equal(reopened.nextSeq(), 12);
});

/** The payload the crash test's child appends as its `n`th record. */
const crashPayloadSource = "(n) => Buffer.from(('record ' + n + ' ').padEnd(200, String(n % 10)))";
const crashPayload = (n: number) => Buffer.from(`record ${n} `.padEnd(200, String(n % 10)));

test("every acknowledged append survives a SIGKILL of the appending process", async (t) => {
  const dir = tempDir(t);
  const moduleUrl = new URL("../server/ingest/log/segment-log.ts", import.meta.url).href;
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `
      import { openSegmentLog } from ${JSON.stringify(moduleUrl)};
      const payload = ${crashPayloadSource};
      const log = await openSegmentLog({ dir: process.env.LOG_DIR, segmentBytes: 64 * 1024, maxBytes: 1 << 30 });
      let next = 0;
      const appender = async () => {
        for (;;) {
          const n = next++;
          const seq = await log.append(payload(n));
          process.stdout.write(seq + " " + n + "\\n");
        }
      };
      for (let i = 0; i < 16; i++) void appender();
      `,
    ],
    { env: { ...process.env, LOG_DIR: dir }, stdio: ["ignore", "pipe", "inherit"] },
  );
  t.after(() => child.kill("SIGKILL"));
  const acknowledged = new Map<number, number>();
  let buffered = "";
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once("exit", (_code, signal) => resolve(signal)),
  );
  child.stdout.on("data", (data: Buffer) => {
    buffered += data.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      const [seq, n] = line.split(" ").map(Number);
      if (seq !== undefined && n !== undefined) acknowledged.set(seq, n);
    }
    // Several segments in, while appends are in flight.
    if (acknowledged.size >= 3000) child.kill("SIGKILL");
  });
  assert.equal(await exited, "SIGKILL");
  assert.ok(acknowledged.size >= 3000, `only ${acknowledged.size} acknowledged`);

  const log = await openLog(t, dir, { segmentBytes: 64 * 1024 });
  const records = await readAll(log);
  const bySeq = new Map(records.map((r) => [r.seq, r]));
  for (const [seq, n] of acknowledged) {
    const record = bySeq.get(seq);
    assert.ok(record !== undefined, `acknowledged record ${seq} is missing`);
    assert.ok(record.payload.equals(crashPayload(n)), `record ${seq} has the wrong payload`);
  }
  // No holes, and new seqs follow the last record.
  assert.deepEqual(
    records.map((r) => r.seq),
    Array.from({ length: records.length }, (_, i) => i + 1),
  );
  assert.ok(segmentFiles(dir).length > 3);
  assert.equal(log.nextSeq(), records.length + 1);
  assert.equal(await log.append(Buffer.from("after")), records.length + 1);
});
