/**
 * The write options shared by `ingest.write` and `ingest.writer`, as plain
 * strings for callers and as the proto enums for the wire.
 */
import { Durability, OnConflict } from "../../gen/sqlgate/v1/ingest_pb.js";

/**
 * When a write is acknowledged: `"committed"` (the gateway's default) once
 * the rows are committed in MySQL; `"buffered"` once they are fsync'd to the
 * gateway's write-ahead log, from which they reach MySQL exactly once.
 */
export type WriteDurability = "committed" | "buffered";

/**
 * What happens to a row whose primary or unique key exists already:
 * `"error"` (the default) fails the write with `already_exists`, `"ignore"`
 * keeps the existing row (INSERT IGNORE), `"update"` overwrites its non-key
 * columns (ON DUPLICATE KEY UPDATE).
 */
export type WriteOnConflict = "error" | "ignore" | "update";

/** Unset leaves the choice to the gateway (UNSPECIFIED means its default). */
export function durabilityFromOption(option: WriteDurability | undefined): Durability {
  switch (option) {
    case undefined:
      return Durability.UNSPECIFIED;
    case "committed":
      return Durability.COMMITTED;
    case "buffered":
      return Durability.BUFFERED;
    default:
      throw new TypeError(`durability: expected "committed" or "buffered", got ${String(option)}`);
  }
}

/** Unset leaves the choice to the gateway (UNSPECIFIED means its default). */
export function onConflictFromOption(option: WriteOnConflict | undefined): OnConflict {
  switch (option) {
    case undefined:
      return OnConflict.UNSPECIFIED;
    case "error":
      return OnConflict.ERROR;
    case "ignore":
      return OnConflict.IGNORE;
    case "update":
      return OnConflict.UPDATE;
    default:
      throw new TypeError(
        `onConflict: expected "error", "ignore" or "update", got ${String(option)}`,
      );
  }
}
