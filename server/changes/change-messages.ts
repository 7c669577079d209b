/**
 * Binlog transactions as `sqlgate.v1` messages: row changes with lossless
 * values, and a large transaction split into ordered parts that share its
 * position. Both the change streams and the JetStream sink send these.
 *
 * A transaction read once goes to many subscribers, each wanting some of
 * its changes: a `TransactionSlice` names which. Binary responses are
 * written straight to protobuf wire format (as sql/row-wire.ts does for
 * rows), each row change encoded once per transaction whoever receives it;
 * protobuf-es's reflection would cost several times the rest of the path.
 * JSON responses are built as messages.
 */
import { create, type MessageInitShape, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeOp,
  type RowChangeSchema,
  type SubscribeResponse,
  SubscribeResponseSchema,
} from "../../gen/sqlgate/v1/changes_pb.js";
import type { ColumnType } from "../../gen/sqlgate/v1/value_pb.js";
import { WireWriter } from "../sql/wire-writer.js";
import type { BinlogChange, BinlogTransaction } from "./binlog-reader.js";
import { columnTypeOfBinlog, rowOfBinlogValues, writeBinlogValues } from "./change-values.js";

export type RowChangeInit = MessageInitShape<typeof RowChangeSchema>;

/** One transaction, or one part of a large one, as a message. */
export interface TransactionMessage {
  readonly position: string;
  readonly commitTime: Timestamp;
  readonly changes: RowChangeInit[];
  /** 1, 2, ... for the parts of a large transaction; 0 for a whole one. */
  readonly part: number;
  readonly lastPart: boolean;
}

/** A transaction read from the binlog, shared by everyone it goes to. */
export class SharedTransaction {
  readonly commitTime: Timestamp;
  /** Responses already encoded, by slice (see responseData). */
  private readonly encoded = new Map<string, Uint8Array>();

  constructor(readonly tx: Pick<BinlogTransaction, "position" | "commitTime" | "changes">) {
    this.commitTime = timestampFromDate(tx.commitTime);
  }

  get position(): string {
    return this.tx.position;
  }

  /** Change `i` as a message. */
  rowChange(i: number, includeBefore: boolean): RowChangeInit {
    const change = this.tx.changes[i] as BinlogChange;
    const withBefore = hasBefore(change, includeBefore);
    return {
      database: change.database,
      table: change.table,
      op: opOf[change.op],
      columns: [...change.columns],
      types: tableWireOf(change).columnTypes,
      ...(withBefore && change.before !== undefined
        ? { before: rowOfBinlogValues(change.before, change.columnTypes) }
        : {}),
      ...(change.after !== undefined
        ? { after: rowOfBinlogValues(change.after, change.columnTypes) }
        : {}),
    };
  }

  /**
   * A slice as the `data` of an unknown `transaction` field (its length,
   * then a `Transaction` in wire format), encoded once however many
   * subscribers get the same slice.
   */
  responseData(slice: TransactionSlice): Uint8Array {
    // Most subscribers get every change: no list of them in the key then.
    const which = slice.changes.length === this.tx.changes.length ? "all" : slice.changes.join(",");
    const key = `${slice.includeBefore ? 1 : 0}:${slice.part}:${which}`;
    let data = this.encoded.get(key);
    if (data === undefined) {
      data = encodeWith((w) => {
        w.fork();
        writeTransaction(w, slice);
        w.join();
      });
      this.encoded.set(key, data);
    }
    return data;
  }
}

/** Some changes of a transaction (indexes into its `changes`), as one subscriber gets them. */
export interface TransactionSlice {
  readonly tx: SharedTransaction;
  readonly changes: readonly number[];
  readonly includeBefore: boolean;
  /** 1, 2, ... for the parts of a large transaction; 0 for a whole one. */
  readonly part: number;
  readonly lastPart: boolean;
}

/** A subscriber's message, before it is a `SubscribeResponse`. */
export type FeedMessage =
  | { readonly case: "transaction"; readonly value: TransactionSlice }
  | { readonly case: "heartbeat"; readonly value: { readonly position: string } }
  | {
      readonly case: "schemaChange";
      readonly value: {
        readonly position: string;
        readonly database: string;
        readonly sql: string;
      };
    };

/**
 * `changes` (indexes) of `tx` as one slice, or as parts of at most
 * `maxChanges` each; none when there are no changes.
 */
export function transactionSlices(
  tx: SharedTransaction,
  changes: readonly number[],
  includeBefore: boolean,
  maxChanges: number,
): TransactionSlice[] {
  if (changes.length === 0) return [];
  if (changes.length <= maxChanges) {
    return [{ tx, changes, includeBefore, part: 0, lastPart: false }];
  }
  const parts: TransactionSlice[] = [];
  for (let i = 0; i < changes.length; i += maxChanges) {
    parts.push({
      tx,
      changes: changes.slice(i, i + maxChanges),
      includeBefore,
      part: parts.length + 1,
      lastPart: i + maxChanges >= changes.length,
    });
  }
  return parts;
}

/** A slice as a message (for JSON responses). */
export function transactionMessage(slice: TransactionSlice): TransactionMessage {
  return {
    position: slice.tx.position,
    commitTime: slice.tx.commitTime,
    changes: slice.changes.map((i) => slice.tx.rowChange(i, slice.includeBefore)),
    part: slice.part,
    lastPart: slice.lastPart,
  };
}

/** A slice in protobuf wire format: a `sqlgate.v1.Transaction`. */
export function transactionBytes(slice: TransactionSlice): Uint8Array {
  return encodeWith((w) => writeTransaction(w, slice));
}

/** What `write` writes with the shared writer, which a failure leaves empty for the next. */
function encodeWith(write: (w: WireWriter) => void): Uint8Array {
  try {
    write(writer);
    return writer.finish();
  } catch (err) {
    writer.reset();
    throw err;
  }
}

/**
 * A slice as a `SubscribeResponse` whose `transaction` travels as an unknown
 * field in wire format: protobuf-es writes it verbatim, and a binary decoder
 * reads an ordinary `transaction`.
 */
export function transactionResponseWire(slice: TransactionSlice): SubscribeResponse {
  const message = create(SubscribeResponseSchema);
  // protobuf-es writes the field's tag itself; `data` is the length and the bytes.
  const field: UnknownField = {
    no: 1,
    wireType: WireType.LengthDelimited,
    data: slice.tx.responseData(slice),
  };
  message.$unknown = [field];
  return message;
}

function writeTransaction(w: WireWriter, slice: TransactionSlice): void {
  const { tx } = slice;
  w.tag(1, WireType.LengthDelimited).string(tx.position);
  const { seconds, nanos } = tx.commitTime;
  w.tag(2, WireType.LengthDelimited).fork();
  if (seconds !== 0n) w.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) w.tag(2, WireType.Varint).int32(nanos);
  w.join();
  for (const i of slice.changes) {
    const change = tx.tx.changes[i] as BinlogChange;
    const table = tableWireOf(change);
    w.tag(3, WireType.LengthDelimited).fork();
    w.raw(table.header[change.op]);
    if (hasBefore(change, slice.includeBefore) && change.before !== undefined) {
      writeRow(w, 5, change.before, change);
    }
    if (change.after !== undefined) writeRow(w, 6, change.after, change);
    w.raw(table.types);
    w.join();
  }
  if (slice.part !== 0) w.tag(4, WireType.Varint).uint32(slice.part);
  if (slice.lastPart) w.tag(5, WireType.Varint).bool(true);
}

const opOf = { insert: ChangeOp.INSERT, update: ChangeOp.UPDATE, delete: ChangeOp.DELETE };

/** One writer for every encoding here: each runs to its finish() without yielding. */
const writer = new WireWriter();

/** Deletes always carry the row before; updates when asked. */
function hasBefore(change: BinlogChange, includeBefore: boolean): boolean {
  return change.op === "delete" || (change.op === "update" && includeBefore);
}

function writeRow(w: WireWriter, field: number, values: readonly unknown[], change: BinlogChange) {
  w.tag(field, WireType.LengthDelimited).fork();
  writeBinlogValues(w, values, change.columnTypes);
  w.join();
}

/** What every row change of one table (one binlog table description) shares. */
interface TableWire {
  /** `RowChange` fields 1-4 (database, table, op, columns) per operation, in wire format. */
  readonly header: Readonly<Record<BinlogChange["op"], Uint8Array>>;
  readonly columnTypes: ColumnType[];
  /** Field 7 (the column types, packed) in wire format. */
  readonly types: Uint8Array;
}

const tableWires = new WeakMap<readonly unknown[], TableWire>();

/** The shared parts of `change`'s wire form, encoded once per table description. */
function tableWireOf(change: BinlogChange): TableWire {
  let table = tableWires.get(change.columnTypes);
  if (table !== undefined) return table;
  const headerFor = (op: BinlogChange["op"]) => {
    const w = new WireWriter();
    w.tag(1, WireType.LengthDelimited).string(change.database);
    w.tag(2, WireType.LengthDelimited).string(change.table);
    w.tag(3, WireType.Varint).int32(opOf[op]);
    for (const column of change.columns) w.tag(4, WireType.LengthDelimited).string(column);
    return w.finish();
  };
  const columnTypes = change.columnTypes.map(columnTypeOfBinlog);
  const w = new WireWriter();
  if (columnTypes.length > 0) {
    w.tag(7, WireType.LengthDelimited).fork();
    for (const type of columnTypes) w.int32(type);
    w.join();
  }
  table = {
    header: {
      insert: headerFor("insert"),
      update: headerFor("update"),
      delete: headerFor("delete"),
    },
    columnTypes,
    types: w.finish(),
  };
  tableWires.set(change.columnTypes, table);
  return table;
}
