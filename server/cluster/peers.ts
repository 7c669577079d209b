/**
 * SQLGATE_PEERS: the replicas a session's calls may be forwarded to. Each
 * entry is a replica's URL (`http://10.0.0.5:8080`), or a DNS name and port
 * (`sqlgate-headless.default.svc:8080`) whose addresses are the replicas, as
 * a Kubernetes headless Service gives: such a name is looked up again when a
 * token names a replica not known yet (at most once a second), so replicas
 * that come and go are found without a restart.
 */
import { lookup } from "node:dns/promises";

export interface Peers {
  /** Whether `url` is one of the replicas (looking names up again if needed). */
  has(url: string): Promise<boolean>;
}

/** How often names may be looked up again. */
const refreshMs = 1000;

export function createPeers(entries: readonly string[], scheme: "http" | "https"): Peers {
  const urls = new Set(entries.filter((e) => /^https?:\/\//.test(e)));
  const names = entries.filter((e) => !/^https?:\/\//.test(e));
  let resolved = new Set<string>();
  let lookedUpAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<void> | undefined;

  const refresh = async () => {
    const next = new Set<string>();
    for (const entry of names) {
      const colon = entry.lastIndexOf(":");
      const host = entry.slice(0, colon);
      const port = entry.slice(colon + 1);
      try {
        for (const { address, family } of await lookup(host, { all: true })) {
          next.add(`${scheme}://${family === 6 ? `[${address}]` : address}:${port}`);
        }
      } catch {
        // A name that does not resolve now has no replicas now.
      }
    }
    resolved = next;
    lookedUpAt = performance.now();
  };

  return {
    async has(url) {
      if (urls.has(url) || resolved.has(url)) return true;
      if (names.length === 0 || performance.now() - lookedUpAt < refreshMs) return false;
      pending ??= refresh().finally(() => {
        pending = undefined;
      });
      await pending;
      return resolved.has(url);
    },
  };
}
