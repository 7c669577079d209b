/**
 * Binlog transactions as `sqlgate.v1` messages: row changes with lossless
 * values, and a large transaction split into ordered parts that share its
 * position. Both the change streams and the JetStream sink send these.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ChangeOp, type RowChangeSchema } from "../../gen/sqlgate/v1/changes_pb.js";
import type { BinlogChange, BinlogTransaction } from "./binlog-reader.js";
import { columnTypeOfBinlog, rowOfBinlogValues } from "./change-values.js";

export type RowChangeInit = MessageInitShape<typeof RowChangeSchema>;

/** One transaction, or one part of a large one. */
export interface TransactionMessage {
  readonly position: string;
  readonly commitTime: Timestamp;
  readonly changes: RowChangeInit[];
  /** 1, 2, ... for the parts of a large transaction; 0 for a whole one. */
  readonly part: number;
  readonly lastPart: boolean;
}

/** A subscriber's message (a `SubscribeResponse`). */
export type ChangeMessage = {
  readonly event:
    | { readonly case: "transaction"; readonly value: TransactionMessage }
    | { readonly case: "heartbeat"; readonly value: { readonly position: string } }
    | {
        readonly case: "schemaChange";
        readonly value: {
          readonly position: string;
          readonly database: string;
          readonly sql: string;
        };
      };
};

const opOf = { insert: ChangeOp.INSERT, update: ChangeOp.UPDATE, delete: ChangeOp.DELETE };

/**
 * `changes` of `tx` as one message, or as parts of at most `maxChanges`
 * each; none when there are no changes.
 */
export function transactionParts(
  tx: Pick<BinlogTransaction, "position" | "commitTime">,
  changes: readonly BinlogChange[],
  includeBefore: boolean,
  maxChanges: number,
): TransactionMessage[] {
  if (changes.length === 0) return [];
  const commitTime = timestampFromDate(tx.commitTime);
  const rows = changes.map((c) => rowChange(c, includeBefore));
  if (rows.length <= maxChanges) {
    return [{ position: tx.position, commitTime, changes: rows, part: 0, lastPart: false }];
  }
  const parts: TransactionMessage[] = [];
  for (let i = 0; i < rows.length; i += maxChanges) {
    parts.push({
      position: tx.position,
      commitTime,
      changes: rows.slice(i, i + maxChanges),
      part: parts.length + 1,
      lastPart: i + maxChanges >= rows.length,
    });
  }
  return parts;
}

/** One row change; `before` for deletes, and for updates when asked. */
export function rowChange(change: BinlogChange, includeBefore: boolean) {
  const withBefore = change.op === "delete" || (change.op === "update" && includeBefore);
  return {
    database: change.database,
    table: change.table,
    op: opOf[change.op],
    columns: [...change.columns],
    types: change.columnTypes.map(columnTypeOfBinlog),
    ...(withBefore && change.before !== undefined
      ? { before: rowOfBinlogValues(change.before, change.columnTypes) }
      : {}),
    ...(change.after !== undefined
      ? { after: rowOfBinlogValues(change.after, change.columnTypes) }
      : {}),
  };
}
