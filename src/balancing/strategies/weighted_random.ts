import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy } from "./types.ts";

/** Weighted draws tried before the exact two-pass draw over the eligible servers. */
const DRAWS = 4;

/**
 * Weighted random: each eligible server with probability weight ÷ total eligible weight.
 * A draw is a binary search over prefix sums of the weights (built in `rebuild`); a draw
 * that lands on an ineligible server is retried a few times, then replaced by one exact
 * two-pass draw over the eligible servers. Either way the result is exactly weighted
 * among the eligible servers, and nothing is allocated.
 */
export function weightedRandom(): Strategy {
  let built: readonly Server[] | undefined;
  let prefix = new Float64Array(0);

  function rebuild(servers: readonly Server[]): void {
    prefix = new Float64Array(servers.length);
    let sum = 0;
    servers.forEach((s, i) => prefix[i] = sum += s.weight);
    built = servers;
  }

  return {
    name: "random",
    rebuild,
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      if (servers !== built) rebuild(servers);
      const n = servers.length;
      if (n === 0) return undefined;
      const total = prefix[n - 1];
      for (let t = 0; t < DRAWS; t++) {
        const s = servers[firstAbove(prefix, ctx.random() * total)];
        if (eligible(s, ctx)) return s;
      }
      let weight = 0;
      for (const s of servers) if (eligible(s, ctx)) weight += s.weight;
      if (weight === 0) return undefined;
      let r = ctx.random() * weight;
      let last: Server | undefined;
      for (const s of servers) {
        if (!eligible(s, ctx)) continue;
        last = s;
        r -= s.weight;
        if (r < 0) return s;
      }
      return last;
    },
  };
}

/** The first index whose prefix sum is above `r` (binary search). */
function firstAbove(prefix: Float64Array, r: number): number {
  let lo = 0;
  let hi = prefix.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (prefix[mid] > r) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
