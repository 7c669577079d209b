/**
 * The last 100 statements run, newest first, kept in this browser
 * (localStorage, never sent anywhere): the SQL, its parameters, when it ran
 * and how it ended. Running a statement again moves it to the top.
 */

export interface HistoryEntry {
  readonly sql: string;
  readonly params: string;
  /** Milliseconds since the epoch. */
  readonly at: number;
  /** "12 rows", "1 row affected", "error 1064"... */
  readonly outcome: string;
}

export const historyMax = 100;
const storageKey = "sqlgate.console.history";

export interface History {
  entries(): readonly HistoryEntry[];
  add(entry: HistoryEntry): void;
  clear(): void;
}

export function createHistory(storage: Storage | undefined = globalThis.localStorage): History {
  let entries: HistoryEntry[] = [];
  try {
    const stored: unknown = JSON.parse(storage?.getItem(storageKey) ?? "[]");
    if (Array.isArray(stored)) {
      entries = stored.filter(
        (e): e is HistoryEntry =>
          typeof e?.sql === "string" && typeof e.params === "string" && typeof e.at === "number",
      );
    }
  } catch {
    // A damaged entry loses the history, not the console.
  }
  const save = () => {
    try {
      storage?.setItem(storageKey, JSON.stringify(entries));
    } catch {
      // Storage full or denied (private windows): the history lasts this page only.
    }
  };
  return {
    entries: () => entries,
    add(entry) {
      entries = [
        entry,
        ...entries.filter((e) => e.sql !== entry.sql || e.params !== entry.params),
      ].slice(0, historyMax);
      save();
    },
    clear() {
      entries = [];
      save();
    },
  };
}
