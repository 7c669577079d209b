/**
 * Replication positions as the gateway reads them (server/mysql/replication/
 * position.ts) and as the SDK combines them (client/src/consistency.ts): both
 * engines' spellings, reaching, combining. MariaDB's spelling also runs
 * against a real server in test/read-replicas.test.ts; MySQL's only here.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { combinePositions } from "../client/src/consistency.js";
import {
  combine,
  formatPosition,
  hasReached,
  type Position,
  parsePosition,
} from "../server/mysql/replication/position.js";

const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const other = "4f22ab58-82db-22f2-0f44-d91bb0530673";

function parsed(text: string): Position {
  const position = parsePosition(text);
  assert.ok(position !== undefined, text);
  return position;
}

test("MariaDB positions: one sequence per domain, whatever server wrote it", () => {
  const current = parsed("0-1-42,1-2-7");
  assert.ok(hasReached(current, parsed("0-1-42")));
  assert.ok(hasReached(current, parsed("0-3-40,1-2-7")), "an earlier GTID of another server");
  assert.ok(!hasReached(current, parsed("0-1-43")));
  assert.ok(!hasReached(current, parsed("2-1-1")), "a domain it has never seen");
  assert.ok(hasReached(current, parsed("")), "the empty position is reached by every server");
  assert.ok(!hasReached(parsed(""), parsed("0-1-1")));
  assert.equal(
    formatPosition(combine(parsed("0-1-42,1-2-7"), parsed("0-1-40,1-2-9"))),
    "0-1-42,1-2-9",
  );
});

test("MySQL positions: the unbroken run from 1 of each source", () => {
  // gtid_executed with a gap: only 1-42 is known to be applied.
  const current = parsed(`${uuid}:1-42:45-50,${other.toUpperCase()}:1-7`);
  assert.ok(hasReached(current, parsed(`${uuid}:1-42`)));
  assert.ok(hasReached(current, parsed(`${uuid}:42`)), "a transaction's own GTID");
  assert.ok(!hasReached(current, parsed(`${uuid}:45`)), "past the gap");
  assert.ok(hasReached(current, parsed(`${other}:1-7`)), "UUIDs compared without case");
  assert.equal(formatPosition(parsed(`${uuid}:17`)), `${uuid}:1-17`);
  assert.equal(
    formatPosition(combine(parsed(`${uuid}:1-5`), parsed(`${uuid}:9,${other}:3`))),
    `${uuid}:1-9,${other}:1-3`,
  );
});

test("text that is no position is refused", () => {
  for (const text of ["nope", "0-1", "0-1-x", `${uuid}`, `${uuid}:a-b`, "1-2-3,zzz"]) {
    assert.equal(parsePosition(text), undefined, text);
  }
});

test("the SDK keeps the newest position as the gateway would", () => {
  const cases: [string, string][] = [
    ["", "0-1-5"],
    ["0-1-5", "0-1-3"],
    ["0-1-5,1-1-2", "1-1-9"],
    [`${uuid}:1-5`, `${uuid}:8`],
  ];
  for (const [a, b] of cases) {
    const sdk = parsed(combinePositions(a, b));
    const gateway = combine(parsed(a), parsed(b));
    assert.ok(hasReached(sdk, gateway) && hasReached(gateway, sdk), `${a} + ${b}`);
  }
  assert.equal(combinePositions("0-1-5", "unknown-spelling"), "unknown-spelling");
});
