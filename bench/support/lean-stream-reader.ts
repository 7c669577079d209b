/**
 * A lean StreamExecute reader for the benchmark: Connect's server-streaming
 * protocol (binary) straight on `node:http2`, counting rows by walking each
 * message's top-level fields (a row is one `rows` field, number 2) without
 * decoding them, and checking the end-of-stream message for an error.
 *
 * Why: decoding every row into protobuf-es objects costs the reader ~7 us
 * per row, more than the gateway spends producing it, on the same two cores;
 * this reader leaves the gateway's own rate visible. The benchmark checks the
 * rows themselves with connect-node's client first.
 */
import http2 from "node:http2";

/** `StreamExecuteResponse.rows`. */
const ROWS_FIELD = 2;
/** Connect's end-of-stream flag on an envelope. */
const END_STREAM = 0b10;

export interface StreamRead {
  readonly rows: number;
  readonly seconds: number;
}

/** Reads one varint at `pos`: its value (below 2^53) and the position after it. */
function varint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let shift = 1;
  for (;;) {
    const byte = buf[pos++] as number;
    value += (byte & 0x7f) * shift;
    if (byte < 0x80) return [value, pos];
    shift *= 128;
  }
}

/** Counts the `rows` fields among a message's top-level fields. */
function countRows(message: Buffer): number {
  let rows = 0;
  let pos = 0;
  while (pos < message.length) {
    const [tag, afterTag] = varint(message, pos);
    const wireType = tag & 7;
    pos = afterTag;
    if (wireType === 0) pos = varint(message, pos)[1];
    else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else if (wireType === 2) {
      const [length, afterLength] = varint(message, pos);
      pos = afterLength + length;
      if (tag >>> 3 === ROWS_FIELD) rows++;
    } else throw new Error(`unexpected wire type ${wireType}`);
  }
  return rows;
}

/** Runs `requestBody` (a binary StreamExecuteRequest) and counts the rows that arrive. */
export function readStreamLean(
  baseUrl: string,
  path: string,
  requestBody: Uint8Array,
  timeoutMs: number,
): Promise<StreamRead> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const session = http2.connect(baseUrl);
    session.on("error", reject);
    const envelope = Buffer.alloc(5 + requestBody.byteLength);
    envelope.writeUInt32BE(requestBody.byteLength, 1);
    envelope.set(requestBody, 5);
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/connect+proto",
      "connect-protocol-version": "1",
      "connect-timeout-ms": String(timeoutMs),
    });
    let pending: Buffer = Buffer.alloc(0);
    let rows = 0;
    let ended = false;
    stream.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let pos = 0;
      while (pending.length - pos >= 5) {
        const flags = pending[pos] as number;
        const length = pending.readUInt32BE(pos + 1);
        if (pending.length - pos - 5 < length) break;
        const message = pending.subarray(pos + 5, pos + 5 + length);
        pos += 5 + length;
        if ((flags & END_STREAM) !== 0) {
          ended = true;
          const end = JSON.parse(message.toString("utf8")) as { error?: { message?: string } };
          if (end.error) reject(new Error(`stream ended with an error: ${end.error.message}`));
        } else {
          rows += countRows(message);
        }
      }
      pending = pending.subarray(pos);
    });
    stream.on("error", reject);
    stream.on("end", () => {
      session.close();
      if (!ended) reject(new Error("the stream ended without its end-of-stream message"));
      else resolve({ rows, seconds: (performance.now() - started) / 1000 });
    });
    stream.end(envelope);
  });
}
