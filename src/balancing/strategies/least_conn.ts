import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import { cheapestOfSample, SCAN_LIMIT } from "./_sampled.ts";
import type { PickContext, Strategy } from "./types.ts";

/**
 * Fewest requests in flight per unit of weight (inflight ÷ weight, compared by
 * cross-multiplication so no float rounding decides). The scan starts after the last
 * server picked, so ties rotate instead of always landing on the first server.
 * One pass over the servers per pick (in-flight counts change outside the strategy, so
 * there is no index to keep), no allocation; above 32 servers, the least loaded of 8
 * drawn at random (_sampled.ts), so a pick costs the same at 10,000 servers.
 */
export function leastConn(): Strategy {
  let next = 0;
  return {
    name: "least-conn",
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      const n = servers.length;
      if (n > SCAN_LIMIT) {
        const s = cheapestOfSample(servers, ctx, load);
        if (s !== undefined) return s;
      }
      let best: Server | undefined;
      let bestAt = 0;
      for (let i = 0; i < n; i++) {
        const at = (next + i) % n;
        const s = servers[at];
        if (!eligible(s, ctx)) continue;
        if (best === undefined || s.inflight * best.weight < best.inflight * s.weight) {
          best = s;
          bestAt = at;
        }
      }
      if (best !== undefined) next = (bestAt + 1) % n;
      return best;
    },
  };
}

/** Requests in flight per unit of weight. */
function load(s: Server): number {
  return s.inflight / s.weight;
}
