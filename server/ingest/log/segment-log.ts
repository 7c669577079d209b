/**
 * The local write-ahead log behind BUFFERED ingest: a batch is acknowledged
 * once it is in this log and fdatasync'd, and applied to MySQL later. MySQL
 * remembers, per log id, the highest seq it applied; so a record is applied
 * exactly once as long as a seq is never given to two records of one log.
 * Everything here serves that: seqs only increase, across restarts and
 * recoveries, and what was acknowledged survives a SIGKILL or a power cut.
 *
 * ## On disk
 *
 * `dir` holds:
 * - `LOCK`: the pid of the process that has the log open.
 * - `log-id`: the log's random id, written once (temp file, fsync, rename).
 * - `NNNNNNNNNNNNNNNNNNNN.seg`: segments, named by the seq of their first
 *   record, zero-padded to 20 digits so that names sort like seqs. Seqs inside
 *   a segment are consecutive; between segments they only increase (a gap is
 *   left where recovery dropped records, so that their seqs are not reused).
 *   The newest segment is kept even when empty: its name is the high-water
 *   mark once every record has been applied and deleted.
 * - `*.seg.corrupt`: segments set aside at open because an earlier segment
 *   was damaged (`recovered.corruptSegments`); nothing reads them again.
 *
 * A segment is a run of frames, little-endian, with no file header:
 *
 * | offset | bytes | field                                          |
 * | -----: | ----: | ---------------------------------------------- |
 * |      0 |     4 | payload length n (u32)                         |
 * |      4 |     4 | CRC-32 (zlib's, as `zlib.crc32`) of bytes 8 .. 24+n |
 * |      8 |     8 | seq (u64)                                      |
 * |     16 |     8 | appendedAtMs (u64, ms since the Unix epoch)    |
 * |     24 |     n | payload                                        |
 *
 * The CRC covers the seq, so a frame left over from other data (a reused
 * block, zeros from a file extended but never written) does not pass for the
 * next record; the length is covered indirectly, as a wrong length makes the
 * CRC run over the wrong bytes.
 *
 * ## Durability
 *
 * Appends that arrive while a write is in flight form the next group: one
 * `write` of their frames and one `fdatasync` (which also persists the new
 * file size: fdatasync(2)). A new segment is fsync'd into the directory
 * before anything is written to it (fsync(2): the directory entry needs its
 * own fsync), and only after the previous segment's last fdatasync, so every
 * segment but the last is complete on disk. A crash can therefore only tear
 * the tail of the last segment; open truncates such a tail. After a failed
 * write or fdatasync the log takes no more appends until it is reopened: the
 * kernel may already have dropped the dirty pages, and a retried fsync would
 * report success for data that is gone (https://wiki.postgresql.org/wiki/Fsync_Errors).
 *
 * Memory: 8 bytes per live record (its offset), never payloads.
 */
import { randomUUID } from "node:crypto";
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { crc32 } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import type { IngestLog, IngestLogStats, LogRecord } from "./ingest-log.js";

export interface SegmentLogOptions {
  /** Directory holding the segments (created if missing), e.g. `${dataDir}/ingest-log`. */
  readonly dir: string;
  /** A segment file is closed and a new one started past this size. */
  readonly segmentBytes: number;
  /** Cap on the bytes of all live segments; appends wait for space past it. */
  readonly maxBytes: number;
}

/** `bytes` counts live segment files plus appends admitted but not yet written. */
export interface SegmentLogStats extends IngestLogStats {
  readonly segments: number;
  /** fdatasync calls made for appends: with group commit, far fewer than appends. */
  readonly syncs: number;
}

/** What open found wrong on disk and repaired, for the caller to log. */
export interface SegmentLogRecovery {
  /** Bytes cut from the end of a segment: a torn write from a crash, or damage. */
  readonly truncatedBytes: number;
  /** Segments (new names) set aside as `*.corrupt` because an earlier one was damaged. */
  readonly corruptSegments: readonly string[];
  /**
   * Seqs that were on disk in valid frames behind the damage and are now gone,
   * possibly acknowledged; new records start after them. 0 after a crash.
   */
  readonly droppedSeqs: number;
}

/**
 * The local write-ahead log, as IngestLog describes it, with these specifics:
 * - `logId` is random, created once and kept in `${dir}/log-id`.
 * - `append` resolves once the record is fdatasync'd; concurrent appends share
 *   one write and one fdatasync (group commit). Past `maxBytes` it waits (FIFO)
 *   for applied segments to be deleted; if `signal` aborts first it rejects with
 *   `resource_exhausted` naming SQLGATE_INGEST_LOG_MAX_BYTES, and a record larger
 *   than `maxBytes` is refused at once. After close() it rejects `unavailable`.
 * - `read` reads the segment files back (no payloads are kept in memory), sees
 *   only fsync'd records, checks each frame's CRC again, and starts at the first
 *   live record after `fromSeq` if that one was deleted.
 * - `markApplied` deletes segments all of whose records are applied (never the
 *   one being appended to). It is not persisted: after a restart the caller asks
 *   MySQL. A seq at or past nextSeq() (MySQL applied records this log lost)
 *   moves nextSeq() past it, so new records are never mistaken for applied ones.
 * - `close` finishes pending appends, closes the files and releases the lock.
 */
export interface SegmentLog extends IngestLog {
  /** What open repaired; all zero and empty for a log closed cleanly or killed mid-append. */
  readonly recovered: SegmentLogRecovery;
  stats(): SegmentLogStats;
}

/** u32 length + u32 CRC + u64 seq + u64 appendedAtMs. */
const frameHeaderBytes = 24;
/** The length field is a u32. */
const maxPayloadBytes = 0xffff_ffff;
/** Open reads segments in pieces this large (or one frame, if larger). */
const scanChunkBytes = 1024 * 1024;
/** A group is cut at this many bytes so that its one buffer stays small; the rest goes next. */
const groupMaxBytes = 16 * 1024 * 1024;
const segmentNamePattern = /^(\d{20})\.seg$/;

/** The file name of the segment whose first record has `seq`. */
export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(20, "0")}.seg`;
}

/**
 * Directories this process has open. The LOCK file cannot tell a second open
 * in this process from a stale lock left by an earlier process that had our
 * pid (pid 1 in a restarted container), so this process keeps its own list.
 */
const openDirs = new Set<string>();

interface Segment {
  readonly firstSeq: number;
  readonly file: string;
  /** Start of each fsync'd frame; only the first `count` entries are used. */
  offsets: Float64Array;
  count: number;
  /** End of the last fsync'd frame: readers never look past it. */
  end: number;
}

interface PendingAppend {
  readonly payload: Buffer;
  readonly appendedAtMs: number;
  readonly resolve: (seq: number) => void;
  readonly reject: (err: unknown) => void;
}

interface SpaceWaiter extends PendingAppend {
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

export async function openSegmentLog(options: SegmentLogOptions): Promise<SegmentLog> {
  if (!(options.segmentBytes > 0) || !(options.maxBytes > 0)) {
    throw new RangeError("segmentBytes and maxBytes must be positive");
  }
  await mkdir(options.dir, { recursive: true });
  const dir = path.resolve(options.dir);
  const releaseLock = await takeLock(dir);
  try {
    const logId = await readOrCreateLogId(dir);
    const state = await recoverSegments(dir);
    const activeHandle = await open(state.active.file, "r+");
    return createSegmentLog(options, dir, logId, state, activeHandle, releaseLock);
  } catch (err) {
    await releaseLock();
    throw err;
  }
}

function createSegmentLog(
  options: SegmentLogOptions,
  dir: string,
  logId: string,
  state: RecoveredState,
  firstActiveHandle: FileHandle,
  releaseLock: () => Promise<void>,
): SegmentLog {
  const { segmentBytes, maxBytes } = options;
  const segments = state.segments;
  let active = state.active;
  let activeHandle = firstActiveHandle;
  /** Seq for the next record written (records in flight already have theirs). */
  let nextSeq = state.nextSeq;
  /** Set by markApplied past nextSeq: the next group starts a segment here. */
  let seqFloor = 0;
  let lastDurableSeq = lastSeqOf(segments.findLast((s) => s.count > 0)) ?? 0;
  let appliedThrough = 0;
  /** The first fsync'd record with seq > appliedThrough, and its appendedAtMs once known. */
  let oldestSeq = state.oldest?.seq;
  let oldestAtMs = state.oldest?.atMs;
  /** Bytes of live segments plus admitted appends: what maxBytes caps. */
  let reservedBytes = segments.reduce((sum, s) => sum + s.end, 0);
  let syncs = 0;
  const pending: PendingAppend[] = [];
  const spaceWaiters: SpaceWaiter[] = [];
  const recordWaiters = new Set<{ readonly fromSeq: number; readonly wake: () => void }>();
  let writer: Promise<void> | undefined;
  let failure: Error | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  const closedError = () =>
    new ConnectError("the ingest log is closed: the gateway is shutting down", Code.Unavailable);

  /** The active segment holds records, all applied, and appends wait for space it holds. */
  const sealWanted = () =>
    spaceWaiters.length > 0 &&
    active.count > 0 &&
    active.firstSeq + active.count <= appliedThrough + 1;

  /** Moves waiting appends that now fit, in order, into the next group. */
  const admitWaiters = () => {
    let head = spaceWaiters[0];
    while (head !== undefined && reservedBytes + frameBytesOf(head) <= maxBytes) {
      spaceWaiters.shift();
      head.signal?.removeEventListener("abort", head.onAbort);
      reservedBytes += frameBytesOf(head);
      pending.push(head);
      head = spaceWaiters[0];
    }
    if (pending.length > 0 || sealWanted()) kick();
  };

  /** Starts the writer unless it is running; it loops while there is work. */
  const kick = () => {
    writer ??= runWriter().finally(() => {
      writer = undefined;
      // Work that arrived after the loop's last look (close waits for it too).
      if (pending.length > 0 || sealWanted()) kick();
    });
  };

  const runWriter = async () => {
    for (;;) {
      // One turn of the event loop lets appends made in this one (and callers
      // whose previous append just resolved) join the group.
      await nextTurn();
      if (failure !== undefined) {
        for (const entry of pending.splice(0)) entry.reject(failure);
        return;
      }
      if (pending.length > 0) {
        const group = takeGroup();
        try {
          await writeGroup(group);
        } catch (err) {
          fail(err, group);
        }
      } else if (sealWanted()) {
        // Without this, a full log whose records sit, applied, in the active
        // segment would wait forever: that segment is never deleted.
        try {
          nextSeq = Math.max(nextSeq, seqFloor);
          await startSegment(nextSeq);
          await deleteApplied();
        } catch (err) {
          fail(err, []);
        }
      } else {
        return;
      }
    }
  };

  const takeGroup = (): PendingAppend[] => {
    let count = 0;
    let bytes = 0;
    for (const entry of pending) {
      bytes += frameBytesOf(entry);
      if (count > 0 && bytes > groupMaxBytes) break;
      count++;
    }
    return pending.splice(0, count);
  };

  const fail = (err: unknown, group: readonly PendingAppend[]) => {
    failure ??= new Error(
      `the ingest log in ${dir} could not write (${(err as Error).message}); it takes no more appends until the gateway restarts`,
      { cause: err },
    );
    for (const entry of group) entry.reject(failure);
    for (const entry of pending.splice(0)) entry.reject(failure);
    for (const waiter of spaceWaiters.splice(0)) {
      waiter.signal?.removeEventListener("abort", waiter.onAbort);
      waiter.reject(failure);
    }
  };

  /** Writes `group` in order, starting new segments as they fill. */
  const writeGroup = async (group: readonly PendingAppend[]) => {
    if (seqFloor > nextSeq) {
      nextSeq = seqFloor;
      await startSegment(nextSeq);
      await deleteApplied();
    }
    let chunk: PendingAppend[] = [];
    let chunkBytes = 0;
    for (const entry of group) {
      const frameBytes = frameBytesOf(entry);
      const used = active.end + chunkBytes;
      if (used > 0 && used + frameBytes > segmentBytes) {
        if (chunk.length > 0) await writeChunk(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        await startSegment(nextSeq);
      }
      chunk.push(entry);
      chunkBytes += frameBytes;
    }
    if (chunk.length > 0) await writeChunk(chunk, chunkBytes);
  };

  /** One write and one fdatasync of `chunk` at the end of the active segment. */
  const writeChunk = async (chunk: readonly PendingAppend[], bytes: number) => {
    const seg = active;
    const firstSeq = nextSeq;
    nextSeq += chunk.length;
    const buf = Buffer.allocUnsafe(bytes);
    const starts: number[] = [];
    let at = 0;
    chunk.forEach((entry, i) => {
      starts.push(seg.end + at);
      at = encodeFrame(buf, at, firstSeq + i, entry);
    });
    await writeFully(activeHandle, buf, seg.end);
    await activeHandle.datasync();
    syncs++;
    for (const start of starts) pushOffset(seg, start);
    seg.end += bytes;
    lastDurableSeq = nextSeq - 1;
    chunk.forEach((entry, i) => {
      entry.resolve(firstSeq + i);
    });
    if (oldestSeq === undefined) {
      // No fsync'd record was unapplied: the first unapplied one is in this chunk.
      const seq = Math.max(firstSeq, appliedThrough + 1);
      const entry = chunk[seq - firstSeq];
      if (entry !== undefined) {
        oldestSeq = seq;
        oldestAtMs = entry.appendedAtMs;
      }
    }
    for (const waiter of recordWaiters) if (waiter.fromSeq <= lastDurableSeq) waiter.wake();
  };

  /** Makes a new, empty segment starting at `firstSeq` the active one. */
  const startSegment = async (firstSeq: number) => {
    const file = path.join(dir, segmentFileName(firstSeq));
    const handle = await open(file, "wx");
    try {
      await syncDir(dir);
    } catch (err) {
      await handle.close();
      throw err;
    }
    const previous = activeHandle;
    activeHandle = handle;
    active = newSegment(firstSeq, file);
    segments.push(active);
    await previous.close();
  };

  /** Deletes the leading segments whose records are all applied, except the active one. */
  const deleteApplied = async () => {
    const doomed: Segment[] = [];
    for (let first = segments[0]; first !== undefined && first !== active; first = segments[0]) {
      if (first.firstSeq + first.count > appliedThrough + 1) break;
      doomed.push(first);
      segments.shift();
    }
    if (doomed.length === 0) return;
    // No directory fsync: a deletion undone by a crash brings back applied
    // records, which MySQL's bookkeeping skips, and frees the space again later.
    const results = await Promise.allSettled(doomed.map((s) => rm(s.file, { force: true })));
    results.forEach((result, i) => {
      if (result.status === "fulfilled") reservedBytes -= doomed[i]?.end ?? 0;
    });
    admitWaiters();
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  };

  /** Segment and index of the first fsync'd record with seq >= `seq`. */
  const locate = (seq: number): { seg: Segment; index: number } | undefined => {
    for (const seg of segments) {
      if (seg.count > 0 && seq < seg.firstSeq + seg.count) {
        return { seg, index: Math.max(0, seq - seg.firstSeq) };
      }
    }
    return undefined;
  };

  const firstSeq = () => locate(0)?.seg.firstSeq ?? Math.max(nextSeq, seqFloor);

  return {
    logId,
    recovered: state.recovery,

    nextSeq: () => Math.max(nextSeq, seqFloor),

    append(payload, signal) {
      if (closed) return Promise.reject(closedError());
      if (failure !== undefined) return Promise.reject(failure);
      const frameBytes = frameHeaderBytes + payload.length;
      if (frameBytes > maxBytes || payload.length > maxPayloadBytes) {
        return Promise.reject(
          new ConnectError(
            `the record (${frameBytes} bytes) is larger than the whole ingest log (SQLGATE_INGEST_LOG_MAX_BYTES = ${maxBytes})`,
            Code.ResourceExhausted,
          ),
        );
      }
      return new Promise<number>((resolve, reject) => {
        const entry = { payload, appendedAtMs: Date.now(), resolve, reject };
        if (spaceWaiters.length === 0 && reservedBytes + frameBytes <= maxBytes) {
          reservedBytes += frameBytes;
          pending.push(entry);
          kick();
          return;
        }
        const logFull = () =>
          new ConnectError(
            `the ingest log is full (${reservedBytes} of ${maxBytes} bytes, SQLGATE_INGEST_LOG_MAX_BYTES) and no space was freed before the call gave up: MySQL is not applying records as fast as they arrive`,
            Code.ResourceExhausted,
            undefined,
            undefined,
            signal?.reason,
          );
        if (signal?.aborted) {
          reject(logFull());
          return;
        }
        const waiter: SpaceWaiter = {
          ...entry,
          signal,
          onAbort: () => {
            const i = spaceWaiters.indexOf(waiter);
            if (i < 0) return;
            spaceWaiters.splice(i, 1);
            reject(logFull());
            // A smaller append behind this one may fit now.
            admitWaiters();
          },
        };
        signal?.addEventListener("abort", waiter.onAbort, { once: true });
        spaceWaiters.push(waiter);
        if (sealWanted()) kick();
      });
    },

    async read(fromSeq, maxRecords, maxBytes) {
      if (closed) throw closedError();
      const records: LogRecord[] = [];
      let seq = fromSeq;
      let payloadBytes = 0;
      while (records.length < maxRecords) {
        const found = locate(seq);
        if (found === undefined) break;
        const { seg, index } = found;
        let end = index;
        let bytes = payloadBytes;
        while (end < seg.count && records.length + end - index < maxRecords) {
          const length = frameStart(seg, end + 1) - frameStart(seg, end) - frameHeaderBytes;
          if (records.length + end - index > 0 && bytes + length > maxBytes) break;
          bytes += length;
          end++;
        }
        if (end === index) break;
        let frames: LogRecord[];
        try {
          frames = await readFrames(seg, index, end);
        } catch (err) {
          // Deleted by markApplied meanwhile: those records are applied.
          if (isErrno(err, "ENOENT") && !segments.includes(seg) && records.length === 0) {
            seq = Math.max(seq, firstSeq());
            continue;
          }
          throw err;
        }
        records.push(...frames);
        payloadBytes = bytes;
        seq = seg.firstSeq + end;
        if (end < seg.count) break;
      }
      return records;
    },

    waitForRecords(fromSeq, signal) {
      if (closed || signal?.aborted || lastDurableSeq >= fromSeq) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const waiter = {
          fromSeq,
          wake: () => {
            recordWaiters.delete(waiter);
            signal?.removeEventListener("abort", waiter.wake);
            resolve();
          },
        };
        recordWaiters.add(waiter);
        signal?.addEventListener("abort", waiter.wake, { once: true });
      });
    },

    async markApplied(throughSeq) {
      if (closed || throughSeq <= appliedThrough) return;
      appliedThrough = throughSeq;
      if (throughSeq >= nextSeq) seqFloor = throughSeq + 1;
      const first = locate(throughSeq + 1);
      const seq = first === undefined ? undefined : first.seg.firstSeq + first.index;
      const moved = seq !== oldestSeq;
      oldestSeq = seq;
      if (seq === undefined) oldestAtMs = undefined;
      await deleteApplied();
      if (moved && first !== undefined) {
        // Until this read returns, the previous (older) time stands.
        const atMs = await readAppendedAtMs(first.seg, first.index).catch((err: unknown) => {
          if (isErrno(err, "ENOENT")) return undefined;
          throw err;
        });
        if (atMs !== undefined && oldestSeq === seq) oldestAtMs = atMs;
      }
      if (sealWanted()) kick();
    },

    firstSeq,

    stats() {
      let unappliedRecords = 0;
      for (const s of segments) {
        unappliedRecords += Math.max(
          0,
          Math.min(s.count, s.firstSeq + s.count - 1 - appliedThrough),
        );
      }
      return {
        bytes: reservedBytes,
        segments: segments.length,
        unappliedRecords,
        oldestUnappliedAtMs: oldestSeq === undefined ? undefined : oldestAtMs,
        syncs,
      };
    },

    close() {
      closing ??= (async () => {
        closed = true;
        for (const waiter of spaceWaiters.splice(0)) {
          waiter.signal?.removeEventListener("abort", waiter.onAbort);
          waiter.reject(closedError());
        }
        while (writer !== undefined) await writer;
        for (const waiter of recordWaiters) waiter.wake();
        try {
          await activeHandle.close();
        } finally {
          await releaseLock();
        }
      })();
      return closing;
    },
  };
}

function frameBytesOf(entry: PendingAppend): number {
  return frameHeaderBytes + entry.payload.length;
}

function newSegment(firstSeq: number, file: string): Segment {
  return { firstSeq, file, offsets: new Float64Array(64), count: 0, end: 0 };
}

function pushOffset(seg: Segment, offset: number): void {
  if (seg.count === seg.offsets.length) {
    const grown = new Float64Array(seg.offsets.length * 2);
    grown.set(seg.offsets);
    seg.offsets = grown;
  }
  seg.offsets[seg.count++] = offset;
}

/** Where frame `i` of `seg` starts; `seg.end` for i === seg.count. */
function frameStart(seg: Segment, i: number): number {
  return (i < seg.count ? seg.offsets[i] : undefined) ?? seg.end;
}

function lastSeqOf(seg: Segment | undefined): number | undefined {
  return seg === undefined ? undefined : seg.firstSeq + seg.count - 1;
}

/** Reads frames [from, to) of `seg` with one read, checking each again. */
async function readFrames(seg: Segment, from: number, to: number): Promise<LogRecord[]> {
  const start = frameStart(seg, from);
  const buf = Buffer.allocUnsafe(frameStart(seg, to) - start);
  const handle = await open(seg.file, "r");
  try {
    await readFully(handle, buf, start);
  } finally {
    await handle.close();
  }
  const records: LogRecord[] = [];
  let at = 0;
  for (let seq = seg.firstSeq + from; at < buf.length; seq++) {
    const frame = frameAt(buf, at);
    if (frame === undefined || !isValidFrame(frame, seq)) {
      throw new Error(
        `ingest log ${seg.file}: record ${seq} at byte ${start + at} fails its check; the file changed after it was written`,
      );
    }
    records.push({
      seq,
      appendedAtMs: readU64(frame, 16),
      payload: frame.subarray(frameHeaderBytes),
    });
    at += frame.length;
  }
  return records;
}

async function readAppendedAtMs(seg: Segment, index: number): Promise<number> {
  const header = Buffer.alloc(frameHeaderBytes);
  const handle = await open(seg.file, "r");
  try {
    await readFully(handle, header, frameStart(seg, index));
  } finally {
    await handle.close();
  }
  return readU64(header, 16);
}

/** Writes frame `seq` for `entry` into `buf` at `at`; returns the offset after it. */
function encodeFrame(buf: Buffer, at: number, seq: number, entry: PendingAppend): number {
  const length = entry.payload.length;
  const end = at + frameHeaderBytes + length;
  buf.writeUInt32LE(length, at);
  writeU64(buf, at + 8, seq);
  writeU64(buf, at + 16, entry.appendedAtMs);
  entry.payload.copy(buf, at + frameHeaderBytes);
  buf.writeUInt32LE(crc32(buf.subarray(at + 8, end)), at + 4);
  return end;
}

/** The whole frame starting at `at` in `buf`, or undefined if `buf` ends first. */
function frameAt(buf: Buffer, at: number): Buffer | undefined {
  if (at + frameHeaderBytes > buf.length) return undefined;
  const end = at + frameHeaderBytes + buf.readUInt32LE(at);
  return end > buf.length ? undefined : buf.subarray(at, end);
}

function isValidFrame(frame: Buffer, seq: number): boolean {
  return readU64(frame, 8) === seq && crc32(frame.subarray(8)) === frame.readUInt32LE(4);
}

/** Seqs and times are below 2^53, so a u64 is two u32 halves of a JS number. */
function writeU64(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32LE(value >>> 0, at);
  buf.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
}

async function writeFully(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

async function readFully(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Makes creations, renames and deletions in `dir` durable (fsync(2) on the directory). */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/**
 * Takes `${dir}/LOCK`, or throws if a live process holds it. A lock naming a
 * dead pid was left by a crash and is taken over. Best effort: two processes
 * racing for a stale lock can both win, and a reused pid can look alive; it
 * guards against an operator pointing two gateways at one directory.
 * Resolves with the function that releases the lock.
 */
async function takeLock(dir: string): Promise<() => Promise<void>> {
  if (openDirs.has(dir)) {
    throw new Error(`the ingest log in ${dir} is already open in this process`);
  }
  const file = path.join(dir, "LOCK");
  for (let attempt = 1; ; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw err;
    }
    const holder = Number.parseInt(await readFile(file, "utf8").catch(() => ""), 10);
    if ((holder > 0 && holder !== process.pid && isAlive(holder)) || attempt === 3) {
      throw new Error(
        `another gateway (pid ${holder}) uses the ingest log in ${dir}; give each gateway its own data directory`,
      );
    }
    await rm(file, { force: true });
  }
  openDirs.add(dir);
  return async () => {
    openDirs.delete(dir);
    await rm(file, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return isErrno(err, "EPERM");
  }
}

/**
 * Reads `log-id`, or creates it for a new log. A log-id without segments, or
 * segments with records but no log-id, mean files were removed by hand:
 * continuing would reuse seqs or replay applied records under a new id.
 */
async function readOrCreateLogId(dir: string): Promise<string> {
  const file = path.join(dir, "log-id");
  const existing = await readFile(file, "utf8").catch((err: unknown) => {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  });
  const segments = await listSegments(dir);
  if (existing !== undefined) {
    const logId = existing.trim();
    if (logId === "") throw new Error(`${file} is empty; remove the directory to start a new log`);
    if (segments.length === 0) {
      throw new Error(
        `${file} exists but no segment does, so seqs cannot continue safely; remove log-id too to start a new log`,
      );
    }
    return logId;
  }
  if (segments.some((s) => s.size > 0)) {
    throw new Error(
      `${dir} holds ingest log segments but no log-id; restore log-id, or remove the segments to start a new log`,
    );
  }
  // The first segment before the id: a log-id is never left without one.
  if (segments.length === 0) {
    await writeFile(path.join(dir, segmentFileName(1)), "", { flag: "wx" });
    await syncDir(dir);
  }
  const logId = randomUUID();
  const temp = `${file}.tmp`;
  const handle = await open(temp, "w");
  try {
    await handle.writeFile(`${logId}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  await syncDir(dir);
  return logId;
}

interface SegmentFile {
  readonly firstSeq: number;
  readonly name: string;
  readonly file: string;
  readonly size: number;
}

async function listSegments(dir: string): Promise<SegmentFile[]> {
  const names = (await readdir(dir)).filter((n) => segmentNamePattern.test(n)).sort();
  return Promise.all(
    names.map(async (name) => {
      const file = path.join(dir, name);
      return { firstSeq: Number(name.slice(0, 20)), name, file, size: (await stat(file)).size };
    }),
  );
}

interface ScanResult {
  readonly offsets: number[];
  readonly firstAppendedAtMs: number | undefined;
  /** End of the last valid frame. */
  readonly goodEnd: number;
}

/** Reads `seg`'s frames in order and stops at the first one that is short, torn or wrong. */
async function scanSegment(seg: SegmentFile): Promise<ScanResult> {
  const offsets: number[] = [];
  let firstAppendedAtMs: number | undefined;
  const handle = await open(seg.file, "r");
  try {
    let buf = Buffer.alloc(0);
    let bufAt = 0;
    let at = 0;
    for (let seq = seg.firstSeq; at < seg.size; seq++) {
      let frame = frameAt(buf, at - bufAt);
      if (frame === undefined) {
        // Refill from `at`: one chunk, or the whole frame if it is larger.
        const head = Buffer.alloc(Math.min(frameHeaderBytes, seg.size - at));
        await readFully(handle, head, at);
        const frameBytes =
          head.length < frameHeaderBytes ? Infinity : frameHeaderBytes + head.readUInt32LE(0);
        if (at + frameBytes > seg.size) break;
        buf = Buffer.allocUnsafe(Math.min(Math.max(frameBytes, scanChunkBytes), seg.size - at));
        bufAt = at;
        await readFully(handle, buf, at);
        frame = frameAt(buf, 0);
      }
      if (frame === undefined || !isValidFrame(frame, seq)) break;
      firstAppendedAtMs ??= readU64(frame, 16);
      offsets.push(at);
      at += frame.length;
    }
    return { offsets, firstAppendedAtMs, goodEnd: at };
  } finally {
    await handle.close();
  }
}

/**
 * The highest seq of a valid frame anywhere in `bytes` (damaged data, or the
 * rest of a segment after damage), or `afterSeq` if none. Frames after a
 * damaged one were likely acknowledged; their seqs must not be given again.
 * Only seqs a frame could have there (afterSeq + 1 .. one per 24 bytes) are
 * CRC-checked, which keeps the byte-by-byte search cheap.
 */
function highestValidSeq(bytes: Buffer, afterSeq: number): number {
  let highest = afterSeq;
  const maxSeq = afterSeq + Math.floor(bytes.length / frameHeaderBytes);
  for (let at = 0; at + frameHeaderBytes <= bytes.length; at++) {
    const seq = readU64(bytes, at + 8);
    if (seq <= highest || seq > maxSeq) continue;
    const frame = frameAt(bytes, at);
    if (frame !== undefined && isValidFrame(frame, seq)) highest = seq;
  }
  return highest;
}

/** The highest seq in `seg` (name and valid frames), reading only past `scan`'s good prefix. */
async function highestSeqIn(seg: SegmentFile, scan: ScanResult): Promise<number> {
  const lastGood = seg.firstSeq + scan.offsets.length - 1;
  if (scan.goodEnd >= seg.size) return lastGood;
  const rest = Buffer.allocUnsafe(seg.size - scan.goodEnd);
  const handle = await open(seg.file, "r");
  try {
    await readFully(handle, rest, scan.goodEnd);
  } finally {
    await handle.close();
  }
  return highestValidSeq(rest, lastGood);
}

interface RecoveredState {
  /** Live segments in order; the last is `active`. */
  readonly segments: Segment[];
  readonly active: Segment;
  readonly nextSeq: number;
  readonly oldest: { readonly seq: number; readonly atMs: number | undefined } | undefined;
  readonly recovery: SegmentLogRecovery;
}

function segmentFromScan(seg: SegmentFile, scan: ScanResult): Segment {
  const s = newSegment(seg.firstSeq, seg.file);
  for (const offset of scan.offsets) pushOffset(s, offset);
  s.end = scan.goodEnd;
  return s;
}

/**
 * Scans every segment and repairs what a crash (or the disk) left behind:
 *
 * - A torn or damaged tail (the crash case: only the last segment is ever
 *   being written) is truncated, keeping the valid frames before it.
 * - Damage in a segment followed by segments with data cannot come from a
 *   crash; the log is not trusted past it: that segment and all later ones
 *   are renamed `*.corrupt`.
 *
 * Either way the next seq is past every seq still seen in a valid frame, and
 * when that leaves a gap a new segment is created at it before anything is
 * cut, so a crash during recovery cannot lose the high-water mark. Empty
 * segments before the last (left by such a crash) are removed.
 */
async function recoverSegments(dir: string): Promise<RecoveredState> {
  const found = await listSegments(dir);
  const live: Segment[] = [];
  const scans: ScanResult[] = [];
  let damagedAt: number | undefined;
  /** The damaged segment starts inside the previous one: it was not written by this log. */
  let overlaps = false;
  for (const [i, seg] of found.entries()) {
    const previous = live.at(-1);
    overlaps = previous !== undefined && seg.firstSeq < previous.firstSeq + previous.count;
    const scan = overlaps
      ? { offsets: [], firstAppendedAtMs: undefined, goodEnd: 0 }
      : await scanSegment(seg);
    scans.push(scan);
    if (scan.goodEnd < seg.size || overlaps) {
      damagedAt = i;
      break;
    }
    live.push(segmentFromScan(seg, scan));
  }

  let truncatedBytes = 0;
  let droppedSeqs = 0;
  const corruptSegments: string[] = [];
  const liveNext = live.reduce((n, s) => Math.max(n, s.firstSeq + s.count), 1);
  let next = liveNext;
  /** Segment files to remove from the live set once the active segment is safe. */
  let later: SegmentFile[] = [];
  let cut: (() => Promise<void>) | undefined;

  const damaged = damagedAt === undefined ? undefined : found[damagedAt];
  const damagedScan = damagedAt === undefined ? undefined : scans[damagedAt];
  if (damagedAt !== undefined && damaged !== undefined && damagedScan !== undefined) {
    later = found.slice(damagedAt + 1);
    const kept = segmentFromScan(damaged, damagedScan);
    let highest = await highestSeqIn(damaged, damagedScan);
    for (const seg of later) {
      highest = Math.max(highest, seg.firstSeq - 1);
      if (seg.size > 0)
        highest = Math.max(highest, await highestSeqIn(seg, await scanSegment(seg)));
    }
    next = Math.max(next, highest + 1);
    if (!overlaps && later.every((s) => s.size === 0)) {
      live.push(kept);
      truncatedBytes = damaged.size - damagedScan.goodEnd;
      droppedSeqs = next - (kept.firstSeq + kept.count);
      cut = async () => {
        const handle = await open(damaged.file, "r+");
        try {
          await handle.truncate(damagedScan.goodEnd);
          await handle.sync();
        } finally {
          await handle.close();
        }
      };
    } else {
      droppedSeqs = next - Math.max(damaged.firstSeq, liveNext);
      const setAside = [damaged, ...later.filter((s) => s.size > 0)];
      later = later.filter((s) => s.size === 0);
      cut = async () => {
        // Newest first: a crash half-way leaves a damaged segment still followed by data.
        for (const seg of setAside.reverse()) {
          await rename(seg.file, `${seg.file}.corrupt`);
          corruptSegments.unshift(`${seg.name}.corrupt`);
        }
      };
    }
  }

  // Empty segments hold only a name: one named `next` can be the active one.
  const empties = [...live.filter((s) => s.count === 0), ...later.map(emptySegment)];
  const lastLive = live.at(-1);
  let active = empties.find((s) => s.firstSeq === next);
  if (
    active === undefined &&
    lastLive !== undefined &&
    lastLive.firstSeq + lastLive.count === next
  ) {
    active = lastLive;
  }
  if (active === undefined) {
    active = newSegment(next, path.join(dir, segmentFileName(next)));
    await writeFile(active.file, "", { flag: "wx" });
    await syncDir(dir);
  }
  await cut?.();
  const segments = live.filter((s) => s.count > 0 && s !== active);
  for (const s of empties) {
    if (s !== active) await rm(s.file, { force: true });
  }
  segments.push(active);
  await syncDir(dir);

  const first = segments.find((s) => s.count > 0);
  const firstScan =
    first === undefined ? undefined : scans[found.findIndex((f) => f.file === first.file)];
  return {
    segments,
    active,
    nextSeq: next,
    oldest:
      first === undefined ? undefined : { seq: first.firstSeq, atMs: firstScan?.firstAppendedAtMs },
    recovery: { truncatedBytes, corruptSegments, droppedSeqs },
  };
}

function emptySegment(seg: SegmentFile): Segment {
  return newSegment(seg.firstSeq, seg.file);
}
