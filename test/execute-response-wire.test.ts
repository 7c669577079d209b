/**
 * The hand-written ExecuteResponse encoder writes exactly what protobuf-es's
 * `toBinary` writes, for generated responses: every Value kind (integers at
 * their 64-bit edges, NaN and -0, strings of every width, empty bytes), every
 * Field attribute, proto3 defaults left out, timing present or absent.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { ExecuteResponseSchema } from "../gen/sqlgate/v1/database_pb.js";
import { ColumnType, type Value } from "../gen/sqlgate/v1/value_pb.js";
import { encodeExecuteResponse } from "../server/services/execute-response-wire.js";

const int64 = fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n);
const uint64 = fc.bigInt(0n, 2n ** 64n - 1n);
const text = fc.oneof(fc.string(), fc.string({ unit: "grapheme", maxLength: 80 }), fc.constant(""));

const kind: fc.Arbitrary<Value["kind"]> = fc.oneof(
  fc.constant({ case: "nullValue" as const, value: 0 }),
  int64.map((value) => ({ case: "int64Value" as const, value })),
  uint64.map((value) => ({ case: "uint64Value" as const, value })),
  fc.double().map((value) => ({ case: "float64Value" as const, value })),
  text.map((value) => ({ case: "stringValue" as const, value })),
  fc.uint8Array({ maxLength: 300 }).map((value) => ({ case: "bytesValue" as const, value })),
  text.map((value) => ({ case: "decimalValue" as const, value })),
  text.map((value) => ({ case: "temporalValue" as const, value })),
  text.map((value) => ({ case: "jsonValue" as const, value })),
  fc.boolean().map((value) => ({ case: "boolValue" as const, value })),
);

const field = fc.record({
  name: text,
  column: text,
  table: text,
  database: text,
  type: fc.constantFrom(
    ...(Object.values(ColumnType).filter((v) => typeof v === "number") as ColumnType[]),
  ),
  nullable: fc.boolean(),
  unsigned: fc.boolean(),
  length: fc.nat({ max: 2 ** 32 - 1 }),
  decimals: fc.nat({ max: 40 }),
  charset: text,
});

const response = fc.record(
  {
    fields: fc.array(field, { maxLength: 6 }),
    rows: fc.array(
      fc
        .array(kind, { maxLength: 6 })
        .map((kinds) => ({ values: kinds.map((k) => ({ kind: k })) })),
      { maxLength: 8 },
    ),
    rowsAffected: uint64,
    lastInsertId: uint64,
    warningCount: fc.nat({ max: 2 ** 32 - 1 }),
    truncated: fc.boolean(),
    timing: fc.record({ serverUs: uint64, mysqlUs: uint64 }, { requiredKeys: [] }),
    info: text,
    position: text,
    servedBy: text,
  },
  { requiredKeys: [] },
);

test("encodeExecuteResponse writes what toBinary writes", () => {
  fc.assert(
    fc.property(response, (init) => {
      const message = create(ExecuteResponseSchema, init);
      assert.deepEqual(
        Buffer.from(encodeExecuteResponse(message)),
        Buffer.from(toBinary(ExecuteResponseSchema, message)),
      );
    }),
    { numRuns: 2000 },
  );
});

test("a response of 200 rows of 2 KiB strings (lengths of several varint bytes) matches", () => {
  const big = "x".repeat(2048);
  const message = create(ExecuteResponseSchema, {
    fields: [{ name: "a", type: ColumnType.VARCHAR, length: 8192, charset: "utf8mb4" }],
    rows: Array.from({ length: 200 }, () => ({
      values: [{ kind: { case: "stringValue" as const, value: big } }],
    })),
    timing: {},
  });
  const bytes = encodeExecuteResponse(message);
  assert.ok(bytes.byteLength > 400_000);
  assert.deepEqual(Buffer.from(bytes), Buffer.from(toBinary(ExecuteResponseSchema, message)));
  // The shared writer starts afresh for the next response.
  const small = create(ExecuteResponseSchema, { info: "ok" });
  assert.deepEqual(
    Buffer.from(encodeExecuteResponse(small)),
    Buffer.from(toBinary(ExecuteResponseSchema, small)),
  );
});
