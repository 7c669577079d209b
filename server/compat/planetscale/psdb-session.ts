/**
 * PlanetScale API sessions as clients carry them: a `Session` message that
 * they echo back verbatim. Its `SessionUUID` names what the gateway holds for
 * it (a pinned session's token, or a fresh random name when nothing is
 * held), and its `signature` is an HMAC of that name and of the credential
 * it belongs to, with the gateway's token secret, so a forged or altered
 * session, or another credential's, is refused before any lookup. The other
 * fields describe the session for the client; the gateway trusts none of them.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Session } from "../../../gen/psdb/v1alpha1/database_pb.js";
import { ExecuteOptions_IncludedFields } from "../../../gen/vitess/query/v22/query_pb.js";
import type { TokenCodec } from "../../sessions/session-token.js";

/** What a response says about its session besides who it is. */
export interface SessionFacts {
  /** The database statements run on. */
  readonly database: string;
  readonly inTransaction: boolean;
  /** The last statement's insert id, if it had one. */
  readonly lastInsertId: bigint;
}

/** What the gateway holds for a session, as its name says. */
export interface SessionRef {
  /** The pinned session's registry token, when it holds a connection. */
  readonly pinned?: string | undefined;
  /**
   * SET TRANSACTION statements for the next transaction, when it holds no
   * connection: they run first on whichever connection the next statement
   * gets (Kysely sends one as its own request before BEGIN).
   */
  readonly prelude?: readonly string[] | undefined;
}

export interface PsdbSessions {
  /**
   * What a request's session holds (nothing for a new session). Throws
   * `invalid_argument` for a session this gateway did not sign for `owner`.
   */
  read(session: Session | undefined, owner: string): SessionRef;
  /** The session of `owner` to return, naming what `ref` holds. */
  sessionFor(owner: string, ref: SessionRef, facts: SessionFacts): Session;
}

/** Pinned sessions are named by their registry token, which starts so. */
const pinnedPrefix = "sg1.";
/** Unpinned sessions: `u.<random>`, then `.<base64url JSON prelude>` if any. */
const unpinnedPrefix = "u.";

export function createPsdbSessions(codec: TokenCodec): PsdbSessions {
  /** What the signature covers: the credential, then the session's name. */
  const signed = (owner: string, name: string) => `psdb\n${owner}\n${name}`;
  return {
    read(session, owner) {
      const name = session?.vitessSession?.SessionUUID ?? "";
      // No session yet, or one from elsewhere (a PlanetScale session) with nothing here.
      if (name === "") return {};
      if (!codec.verifyMac(signed(owner, name), session?.signature ?? new Uint8Array(0))) {
        throw new ConnectError(
          "invalid session: its signature does not match (forged, altered, another credential's, or issued with another SQLGATE_TOKEN_SECRET); start a new session",
          Code.InvalidArgument,
        );
      }
      if (name.startsWith(pinnedPrefix)) return { pinned: name };
      const [, , prelude] = name.split(".");
      if (!name.startsWith(unpinnedPrefix) || prelude === undefined) return {};
      return {
        prelude: JSON.parse(Buffer.from(prelude, "base64url").toString("utf8")) as string[],
      };
    },

    sessionFor(owner, ref, facts) {
      const pinnedToken = ref.pinned;
      let name = pinnedToken ?? `${unpinnedPrefix}${randomBytes(12).toString("base64url")}`;
      if (pinnedToken === undefined && ref.prelude !== undefined && ref.prelude.length > 0) {
        name += `.${Buffer.from(JSON.stringify(ref.prelude)).toString("base64url")}`;
      }
      return {
        $typeName: "psdb.v1alpha1.Session",
        signature: codec.mac(signed(owner, name)),
        vitessSession: {
          $typeName: "vitess.vtgate.v22.Session",
          inTransaction: facts.inTransaction,
          autocommit: !facts.inTransaction,
          targetString: facts.database,
          options: {
            $typeName: "vitess.query.v22.ExecuteOptions",
            includedFields: ExecuteOptions_IncludedFields.ALL,
            clientFoundRows: true,
            workload: 0,
          },
          warnings: [],
          lastInsertId: facts.lastInsertId,
          foundRows: 0n,
          rowCount: 0n,
          inReservedConn: pinnedToken !== undefined,
          DDLStrategy: "direct",
          SessionUUID: name,
          enableSystemSettings: true,
        },
      };
    },
  };
}
