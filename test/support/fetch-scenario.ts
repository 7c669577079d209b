/**
 * What test/client-fetch.test.ts runs inside a sandbox with web globals only:
 * bundled by esbuild together with the SDK's fetch entry, so it may use
 * nothing but its arguments, the SDK and web APIs. Results come back as
 * JSON text (bigints as "<n>n", bytes as "bytes:<list>"), the one thing that
 * crosses realms without prototype trouble.
 */
import { createClient, DatabaseError } from "../../client/src/fetch.js";

function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    typeof v === "bigint"
      ? `${v}n`
      : v instanceof Uint8Array
        ? `bytes:${Array.from(v).join(",")}`
        : v,
  );
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
    return "no error";
  } catch (err) {
    if (!(err instanceof DatabaseError)) return `not a DatabaseError: ${String(err)}`;
    return {
      code: err.code,
      errno: err.errno,
      sqlState: err.sqlState,
      statementIndex: err.statementIndex,
    };
  }
}

/**
 * The SQL methods and ingest through both formats. Expects tables
 * `notes_<format>` (id AUTO_INCREMENT, body UNIQUE) and `events_<format>`
 * (id PRIMARY KEY, v).
 */
export async function sqlAndIngest(baseUrl: string): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const format of ["binary", "json"] as const) {
    const db = createClient({ url: baseUrl, format });
    const r: Record<string, unknown> = {};
    r.params = (
      await db.execute("SELECT ? AS big, ? AS bytes, ? AS nothing, ? AS price", [
        2n ** 64n - 1n,
        new Uint8Array([0, 1, 255]),
        null,
        "12.500",
      ])
    ).rows;
    r.named = (await db.execute("SELECT :a AS a, :a AS b", { a: "x" }, { as: "array" })).rows;

    const notes = `notes_${format}`;
    const inserted = await db.execute(`INSERT INTO ${notes} (body) VALUES (?), (?)`, ["a", "b"]);
    r.insert = { rowsAffected: inserted.rowsAffected, insertId: inserted.insertId };
    r.batch = (
      await db.batch([`SELECT COUNT(*) AS n FROM ${notes}`, `SELECT MAX(id) AS id FROM ${notes}`])
    ).map((result) => result.rows);
    r.atomic = await errorOf(
      db.batch(
        [`INSERT INTO ${notes} (body) VALUES ('c')`, `INSERT INTO ${notes} (body) VALUES ('a')`],
        { atomic: true },
      ),
    );

    r.committed = await db.transaction(async (tx) => {
      await tx.execute(`INSERT INTO ${notes} (body) VALUES ('tx')`);
      return (await tx.execute(`SELECT body FROM ${notes} WHERE body = 'tx'`)).rows;
    });
    r.rolledBack = await db
      .transaction(async (tx) => {
        await tx.execute(`INSERT INTO ${notes} (body) VALUES ('gone')`);
        throw new Error("roll it back");
      })
      .catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
    r.bodies = (
      await db.execute(`SELECT body FROM ${notes} ORDER BY id`, [], { as: "array" })
    ).rows.flat();

    let count = 0;
    let sum = 0n;
    const stream = db.stream<{ seq: bigint }>("SELECT seq FROM seq_1_to_20000");
    for await (const row of stream) {
      count++;
      sum += row.seq;
    }
    r.stream = { count, sum, fields: stream.fields?.map((f) => f.name) };
    // Leaving a stream early cancels it (and the statement on MySQL).
    let early = 0;
    for await (const _ of db.stream("SELECT seq FROM seq_1_to_1000000")) {
      if (++early === 10) break;
    }
    r.early = early;

    r.syntax = await errorOf(db.execute("SELEC 1"));
    r.duplicate = await errorOf(db.execute(`INSERT INTO ${notes} (body) VALUES ('a')`));

    const events = `events_${format}`;
    const written = await db.ingest.write(events, ["id", "v"], [[1, "one"]], {
      idempotencyKey: `k-${format}`,
    });
    const again = await db.ingest.write(events, ["id", "v"], [[1, "one"]], {
      idempotencyKey: `k-${format}`,
    });
    r.write = [written, again];
    const writer = db.ingest.writer(events, ["id", "v"], { maxChunkRows: 500 });
    for (let id = 2; id <= 3001; id++) await writer.append([id, `event ${id}`]);
    const summary = await writer.close();
    r.writer = { rowsAcknowledged: summary.rowsAcknowledged, rowsWritten: summary.rowsWritten };
    r.count = (await db.execute(`SELECT COUNT(*) AS n FROM ${events}`)).rows;
    await db.close();
    out[format] = r;
  }
  return toJson(out);
}

/** A writer whose transport loses answers: returns its summary. Expects table `lost` (id, v). */
export async function writerAcrossLostAnswers(baseUrl: string): Promise<string> {
  const db = createClient({ url: baseUrl });
  const writer = db.ingest.writer("lost", ["id", "v"], {
    maxChunkRows: 250,
    retryBaseDelayMs: 10,
    retryMaxDelayMs: 50,
  });
  for (let id = 1; id <= 2000; id++) await writer.append([id, `event ${id}`]);
  const summary = await writer.close();
  await db.close();
  return toJson(summary);
}
