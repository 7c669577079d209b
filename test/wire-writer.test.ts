/**
 * The fast wire writer writes exactly what protobuf-es's BinaryWriter writes,
 * for every kind of value the gateway sends: strings of every length and
 * width (ASCII, accents, CJK, emoji; across the one-byte-length limit),
 * nested messages across every varint length size, and integers at their
 * edges.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { WireWriter } from "../server/sql/wire-writer.js";

type Op =
  | { op: "string"; value: string }
  | { op: "bytes"; value: Uint8Array }
  | { op: "sint64"; value: bigint }
  | { op: "uint64"; value: bigint }
  | { op: "int64"; value: bigint }
  | { op: "int32"; value: number }
  | { op: "uint32"; value: number }
  | { op: "double"; value: number }
  | { op: "bool"; value: boolean }
  | { op: "nested"; ops: Op[] };

function write<W extends BinaryWriter | WireWriter>(w: W, ops: readonly Op[]): void {
  ops.forEach((o, i) => {
    const no = (i % 20) + 1;
    switch (o.op) {
      case "string":
        w.tag(no, WireType.LengthDelimited).string(o.value);
        break;
      case "bytes":
        w.tag(no, WireType.LengthDelimited).bytes(o.value);
        break;
      case "sint64":
        w.tag(no, WireType.Varint).sint64(o.value);
        break;
      case "uint64":
        w.tag(no, WireType.Varint).uint64(o.value);
        break;
      case "int64":
        w.tag(no, WireType.Varint).int64(o.value);
        break;
      case "int32":
        w.tag(no, WireType.Varint).int32(o.value);
        break;
      case "uint32":
        w.tag(no, WireType.Varint).uint32(o.value);
        break;
      case "double":
        w.tag(no, WireType.Bit64).double(o.value);
        break;
      case "bool":
        w.tag(no, WireType.Varint).bool(o.value);
        break;
      case "nested":
        w.tag(no, WireType.LengthDelimited).fork();
        write(w, o.ops);
        w.join();
        break;
    }
  });
}

function both(ops: readonly Op[]): [Uint8Array, Uint8Array] {
  const reference = new BinaryWriter();
  write(reference, ops);
  const fast = new WireWriter();
  write(fast, ops);
  return [Buffer.from(fast.finish()), Buffer.from(reference.finish())];
}

const text = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 80 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.constantFrom(
    "",
    "a".repeat(42),
    "é".repeat(42),
    "😀".repeat(21),
    "中".repeat(43),
    "x".repeat(20000),
  ),
);
const leaf: fc.Arbitrary<Op> = fc.oneof(
  text.map((value) => ({ op: "string" as const, value })),
  fc.uint8Array({ maxLength: 400 }).map((value) => ({ op: "bytes" as const, value })),
  fc
    .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
    .map((value) => ({ op: "sint64" as const, value })),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value) => ({ op: "uint64" as const, value })),
  fc
    .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
    .map((value) => ({ op: "int64" as const, value })),
  fc
    .integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
    .map((value) => ({ op: "int32" as const, value })),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((value) => ({ op: "uint32" as const, value })),
  fc.double().map((value) => ({ op: "double" as const, value })),
  fc.boolean().map((value) => ({ op: "bool" as const, value })),
);
const { tree } = fc.letrec<{ tree: Op[]; node: Op }>((tie) => ({
  tree: fc.array(tie("node"), { maxLength: 8 }),
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    tie("tree").map((ops) => ({ op: "nested" as const, ops })),
  ),
}));

test("the same bytes as protobuf-es for any mix of fields and nesting", () => {
  fc.assert(
    fc.property(tree, (ops) => {
      const [fast, reference] = both(ops);
      assert.deepEqual(fast, reference);
    }),
    { numRuns: 2000 },
  );
});

test("integer edges and nested lengths across varint sizes", () => {
  const edges: Op[] = [
    ...[0n, 1n, -1n, 2n ** 31n, -(2n ** 31n), 2n ** 32n, 2n ** 63n - 1n, -(2n ** 63n)].map(
      (value) => ({ op: "sint64" as const, value }),
    ),
    ...[0n, 127n, 128n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 64n - 1n].map((value) => ({
      op: "uint64" as const,
      value,
    })),
    ...[0, -1, -(2 ** 31), 2 ** 31 - 1].map((value) => ({ op: "int32" as const, value })),
  ];
  for (const size of [0, 126, 127, 128, 16_383, 16_384, 2_097_152]) {
    const ops: Op[] = [
      {
        op: "nested",
        ops: [{ op: "nested", ops: [{ op: "bytes", value: new Uint8Array(size) }] }, ...edges],
      },
    ];
    const [fast, reference] = both(ops);
    assert.deepEqual(fast, reference, `nested ${size}`);
  }
  // The writer starts afresh after finish().
  const w = new WireWriter();
  w.tag(1, WireType.Varint).uint32(5);
  w.finish();
  assert.deepEqual([...w.tag(2, WireType.Varint).uint32(7).finish()], [16, 7]);
});
