/**
 * Begin / Commit / Rollback: an interactive transaction held open between
 * statements through the gateway's session token. The bar says whether a
 * transaction is open, its isolation level, and how long it may stay idle
 * before the gateway rolls it back (BeginTransaction's idle timeout, counted
 * down from the last statement: every call resets the gateway's clock).
 */
import type { IsolationLevelName } from "../client/src/fetch.js";
import { type Cell, cellFromValue } from "./cells.js";
import { beginTransaction, type Connection, type OpenTransaction } from "./connection.js";
import { h } from "./dom.js";

export interface SessionBar {
  readonly element: HTMLElement;
  /** The open transaction statements must run in, if any. */
  current(): OpenTransaction | undefined;
  /** A statement ran in the transaction: the gateway's idle clock restarted. */
  touched(): void;
  /** A statement failed because the gateway no longer knows the transaction. */
  lost(reason: string): void;
}

const isolationLevels: readonly IsolationLevelName[] = [
  "read uncommitted",
  "read committed",
  "repeatable read",
  "serializable",
];

/** "0:27", "12:05". */
function clock(ms: number): string {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

export function createSessionBar(options: {
  readonly connection: () => Connection;
  readonly onError: (err: unknown) => void;
  /** Says something to screen readers (and sighted users) once. */
  readonly announce: (text: string) => void;
}): SessionBar {
  const isolation = h(
    "select",
    { id: "isolation", "aria-label": "Isolation level" },
    h("option", { value: "" }, "Server default isolation"),
    ...isolationLevels.map((level) => h("option", { value: level }, level.toUpperCase())),
  );
  const begin = h("button", { type: "button", onclick: () => void start() }, "Begin");
  const commit = h(
    "button",
    { type: "button", disabled: true, onclick: () => void end("commit") },
    "Commit",
  );
  const rollback = h(
    "button",
    { type: "button", disabled: true, onclick: () => void end("rollback") },
    "Rollback",
  );
  const state = h("span", { class: "session-state", "data-state": "none" }, "Autocommit");
  const idle = h("span", { class: "session-idle" });
  const element = h(
    "div",
    { class: "session-bar", role: "group", "aria-label": "Transaction" },
    isolation,
    begin,
    commit,
    rollback,
    state,
    idle,
  );

  let open: OpenTransaction | undefined;
  let lastCallAt = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;

  const tick = () => {
    if (open === undefined) return;
    const left = open.idleTimeoutMs - (performance.now() - lastCallAt);
    if (left <= 0) {
      lost(`rolled back by the gateway after ${Math.round(open.idleTimeoutMs / 1000)} s idle`);
      return;
    }
    idle.textContent = `idle rollback in ${clock(left)}`;
    idle.classList.toggle("warning", left < 10_000);
  };

  function show(level: string | undefined): void {
    const isOpen = open !== undefined;
    begin.disabled = isOpen;
    isolation.disabled = isOpen;
    commit.disabled = !isOpen;
    rollback.disabled = !isOpen;
    state.dataset.state = isOpen ? "open" : "none";
    state.textContent = isOpen ? `Transaction open · ${level ?? "…"}` : "Autocommit";
    if (!isOpen) idle.textContent = "";
  }

  async function start(): Promise<void> {
    begin.disabled = true;
    const chosen = (isolation.value || undefined) as IsolationLevelName | undefined;
    try {
      open = await beginTransaction(options.connection(), chosen);
    } catch (err) {
      begin.disabled = false;
      options.onError(err);
      return;
    }
    lastCallAt = performance.now();
    show(chosen?.toUpperCase());
    ticker = setInterval(tick, 1000);
    tick();
    const level = chosen?.toUpperCase() ?? (await serverIsolation(open));
    if (open !== undefined) show(level);
    options.announce(`Transaction open, ${level}`);
  }

  /** The level of a transaction begun with the server's default, as MySQL reports it. */
  async function serverIsolation(tx: OpenTransaction): Promise<string> {
    // MariaDB before 11.1 and MySQL 5.7 know tx_isolation; MySQL 8 only transaction_isolation.
    for (const variable of ["@@SESSION.tx_isolation", "@@SESSION.transaction_isolation"]) {
      try {
        const { rows } = await tx.tx.execute<Cell[]>(`SELECT ${variable}`, [], {
          as: "array",
          cast: cellFromValue,
        });
        lastCallAt = performance.now();
        return (rows[0]?.[0] ?? "").replace("-", " ");
      } catch {
        // Try the other name.
      }
    }
    return "server default";
  }

  function closed(text: string): void {
    clearInterval(ticker);
    open = undefined;
    show(undefined);
    options.announce(text);
  }

  async function end(how: "commit" | "rollback"): Promise<void> {
    const tx = open;
    if (tx === undefined) return;
    commit.disabled = true;
    rollback.disabled = true;
    try {
      await (how === "commit" ? tx.commit() : tx.rollback());
      closed(how === "commit" ? "Transaction committed" : "Transaction rolled back");
    } catch (err) {
      // A failed COMMIT ends the transaction too (the SDK reports it; MySQL rolled back).
      closed("Transaction ended: its commit failed");
      options.onError(err);
    }
  }

  function lost(reason: string): void {
    const tx = open;
    if (tx === undefined) return;
    // Lets the SDK's callback end; its RollbackTransaction finds nothing, which it ignores.
    void tx.rollback().catch(() => undefined);
    closed(`Transaction ${reason}`);
  }

  return {
    element,
    current: () => open,
    touched: () => {
      lastCallAt = performance.now();
      tick();
    },
    lost,
  };
}
