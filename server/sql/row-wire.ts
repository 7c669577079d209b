/**
 * Writes result rows straight to protobuf wire format, for binary responses.
 *
 * protobuf-es serialises by reflection, which costs several microseconds per
 * row, most of a streamed row's CPU (see the README's benchmark section).
 * Rows written here travel in the response message as unknown fields with the
 * number of its `rows` field: a binary decoder reads them as ordinary rows, and
 * protobuf-es writes unknown fields verbatim. JSON responses cannot carry such
 * fields and keep using message objects.
 *
 * Field numbers are those of `sqlgate.v1.Row` and `sqlgate.v1.Value` in
 * proto/sqlgate/v1/value.proto; test/stream.test.ts reads the result with
 * every client.
 */
import type { UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { Value } from "../../gen/sqlgate/v1/value_pb.js";
import { WireWriter } from "./wire-writer.js";

/** `Row.values`. */
const ROW_VALUES = 1;

/** Writes one Value's fields (its oneof case) into `w`. */
export function writeKind(w: WireWriter, kind: Value["kind"]): void {
  switch (kind.case) {
    case "nullValue":
      w.tag(1, WireType.Varint).int32(kind.value);
      break;
    case "int64Value":
      w.tag(2, WireType.Varint).sint64(kind.value);
      break;
    case "uint64Value":
      w.tag(3, WireType.Varint).uint64(kind.value);
      break;
    case "float64Value":
      w.tag(4, WireType.Bit64).double(kind.value);
      break;
    case "stringValue":
      w.tag(5, WireType.LengthDelimited).string(kind.value);
      break;
    case "bytesValue":
      w.tag(6, WireType.LengthDelimited).bytes(kind.value);
      break;
    case "decimalValue":
      w.tag(7, WireType.LengthDelimited).string(kind.value);
      break;
    case "temporalValue":
      w.tag(8, WireType.LengthDelimited).string(kind.value);
      break;
    case "jsonValue":
      w.tag(9, WireType.LengthDelimited).string(kind.value);
      break;
    case "boolValue":
      w.tag(10, WireType.Varint).bool(kind.value);
      break;
    default:
      break;
  }
}

/** Accumulates rows as the wire form of a message's repeated `rows` field. */
export class RowWireWriter {
  private readonly writer = new WireWriter();
  private count = 0;

  constructor(private readonly rowsField: number) {}

  /** Appends one row, given as one Value kind per column. */
  add(kinds: readonly Value["kind"][]): void {
    const w = this.writer;
    w.tag(this.rowsField, WireType.LengthDelimited).fork();
    for (const kind of kinds) {
      w.tag(ROW_VALUES, WireType.LengthDelimited).fork();
      writeKind(w, kind);
      w.join();
    }
    w.join();
    this.count++;
  }

  /** Rows added since the last take(). */
  get rows(): number {
    return this.count;
  }

  /**
   * The rows added so far as an unknown field to set on the response message
   * (`$unknown`), and a fresh start. protobuf-es writes the field's tag itself,
   * so the first tag is left out of `data`; the later rows keep theirs.
   */
  take(): UnknownField {
    const bytes = this.writer.finish();
    this.count = 0;
    return { no: this.rowsField, wireType: WireType.LengthDelimited, data: bytes.subarray(1) };
  }
}
