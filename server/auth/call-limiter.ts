/**
 * Per-credential limits on calls: how many may be in progress at once, and
 * how many may start per second (a token bucket holding one second's worth,
 * so short bursts pass). A call past either is answered `resource_exhausted`
 * at once, naming the limit; it never queues. The anonymous principal (a
 * gateway without credentials) has no limits of its own.
 */
import { limitExceeded } from "../mysql/errors.js";
import type { Principal } from "../principal.js";

interface Usage {
  inFlight: number;
  tokens: number;
  refilledAt: number;
}

export interface CallLimiter {
  /** Admits one call of `principal` (throws `resource_exhausted` if over a limit); returns its release. */
  enter(principal: Principal): () => void;
}

const noop = () => {};

export function createCallLimiter(): CallLimiter {
  const usage = new Map<string, Usage>();
  return {
    enter(principal) {
      const { maxCalls, callsPerSecond } = principal.limits;
      if (principal.name === "" || (maxCalls === 0 && callsPerSecond === 0)) return noop;
      let u = usage.get(principal.name);
      if (u === undefined) {
        u = { inFlight: 0, tokens: callsPerSecond, refilledAt: performance.now() };
        usage.set(principal.name, u);
      }
      if (maxCalls > 0 && u.inFlight >= maxCalls) {
        throw limitExceeded(
          `credential ${principal.name} has ${maxCalls} calls in progress already`,
          "SQLGATE_CREDENTIAL_MAX_CALLS",
          maxCalls,
          "wait for calls to finish, or raise the credential's max_calls",
        );
      }
      if (callsPerSecond > 0) {
        const now = performance.now();
        u.tokens = Math.min(
          callsPerSecond,
          u.tokens + ((now - u.refilledAt) / 1000) * callsPerSecond,
        );
        u.refilledAt = now;
        if (u.tokens < 1) {
          throw limitExceeded(
            `credential ${principal.name} may start ${callsPerSecond} calls per second`,
            "SQLGATE_CREDENTIAL_CALLS_PER_SECOND",
            callsPerSecond,
            "slow down and retry, or raise the credential's calls_per_second",
          );
        }
        u.tokens -= 1;
      }
      u.inFlight++;
      const held = u;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        held.inFlight--;
      };
    },
  };
}
