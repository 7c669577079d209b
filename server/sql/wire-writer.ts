/**
 * A protobuf wire-format writer for hot paths: one growable buffer, UTF-8
 * written straight into it, nested lengths patched in place.
 *
 * protobuf-es's BinaryWriter allocates per string (TextEncoder) and per
 * nested message (a chunk list joined at the end); writing change streams,
 * that allocation and copying cost more than everything else the gateway
 * does per row. This writer keeps the same method names (`tag`, `string`,
 * `fork`/`join`, ...) so that code writing `Value`s works with either.
 *
 * `fork()` reserves one byte for the length that `join()` writes; a nested
 * message of 128 bytes or more moves its bytes up to make room for a longer
 * varint. `finish()` returns a copy of exactly the bytes written, and the
 * writer can be used again.
 */
import type { WireType } from "@bufbuild/protobuf/wire";

export class WireWriter {
  private buf = Buffer.allocUnsafe(4096);
  private pos = 0;
  private readonly forks: number[] = [];

  tag(fieldNo: number, wireType: WireType): this {
    this.uvarint32(((fieldNo << 3) | wireType) >>> 0);
    return this;
  }

  uint32(value: number): this {
    this.uvarint32(value >>> 0);
    return this;
  }

  int32(value: number): this {
    // A negative int32 is sign-extended to 64 bits: ten bytes.
    if (value >= 0) this.uvarint32(value);
    else this.uvarint64(BigInt.asUintN(64, BigInt(value)));
    return this;
  }

  uint64(value: bigint | number | string): this {
    // Most values fit in 32 bits: no BigInt arithmetic for them.
    if (typeof value === "bigint" && value >= 0n && value <= 0xffff_ffffn) {
      this.uvarint32(Number(value));
      return this;
    }
    this.uvarint64(BigInt.asUintN(64, BigInt(value)));
    return this;
  }

  int64(value: bigint | number | string): this {
    return this.uint64(value);
  }

  sint64(value: bigint | number | string): this {
    // Zigzag in 32-bit arithmetic for values within +/-2^30.
    if (typeof value === "bigint" && value >= -0x4000_0000n && value < 0x4000_0000n) {
      const n = Number(value);
      this.uvarint32(((n << 1) ^ (n >> 31)) >>> 0);
      return this;
    }
    const v = BigInt(value);
    this.uvarint64(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n)));
    return this;
  }

  double(value: number): this {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
    return this;
  }

  bool(value: boolean): this {
    this.ensure(1);
    this.buf[this.pos++] = value ? 1 : 0;
    return this;
  }

  string(value: string): this {
    // At most 3 bytes per UTF-16 unit; a string that surely fits in 127
    // bytes gets a one-byte length written after the text.
    if (value.length <= 42) {
      this.ensure(1 + value.length * 3);
      const written = this.buf.write(value, this.pos + 1, "utf8");
      this.buf[this.pos] = written;
      this.pos += 1 + written;
      return this;
    }
    const length = Buffer.byteLength(value, "utf8");
    this.uvarint32(length);
    this.ensure(length);
    this.buf.write(value, this.pos, length, "utf8");
    this.pos += length;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.uvarint32(value.byteLength);
    this.ensure(value.byteLength);
    this.buf.set(value, this.pos);
    this.pos += value.byteLength;
    return this;
  }

  /** Bytes already in wire format, as they are. */
  raw(value: Uint8Array): this {
    this.ensure(value.byteLength);
    this.buf.set(value, this.pos);
    this.pos += value.byteLength;
    return this;
  }

  /** Starts a length-delimited field's contents (after its tag). */
  fork(): this {
    this.ensure(1);
    this.forks.push(this.pos);
    this.pos += 1;
    return this;
  }

  /** Ends the contents `fork()` started, writing their length before them. */
  join(): this {
    const start = this.forks.pop();
    if (start === undefined) throw new Error("join() without fork()");
    const length = this.pos - start - 1;
    if (length < 0x80) {
      this.buf[start] = length;
      return this;
    }
    const size = varintSize(length);
    this.ensure(size - 1);
    this.buf.copyWithin(start + size, start + 1, this.pos);
    this.pos += size - 1;
    const end = this.pos;
    this.pos = start;
    this.uvarint32(length);
    this.pos = end;
    return this;
  }

  /** A copy of the bytes written; the writer starts afresh. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    this.reset();
    return out;
  }

  /** Drops what was written (after a failure half way through a message). */
  reset(): void {
    this.pos = 0;
    this.forks.length = 0;
  }

  private ensure(more: number): void {
    if (this.pos + more <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + more));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private uvarint32(value: number): void {
    this.ensure(5);
    let v = value;
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  private uvarint64(value: bigint): void {
    if (value < 0x1_0000_0000n) {
      this.uvarint32(Number(value));
      return;
    }
    // Rare (integers beyond 32 bits): the plain loop.
    this.ensure(10);
    let v = value;
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) size += 1;
  return size;
}
