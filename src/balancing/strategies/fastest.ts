import { DEFAULT_TAU_MS } from "../ewma.ts";
import type { Server } from "../server.ts";
import { latencyCost } from "./_latency_cost.ts";
import { eligible } from "../availability.ts";
import { cheapestOfSample, SCAN_LIMIT } from "./_sampled.ts";
import type { PickContext, Strategy, StrategyOptions } from "./types.ts";

/**
 * The server expected to answer soonest: lowest latency EWMA (decayed to now) × (in-flight
 * + 1) ÷ weight, over every eligible server. Servers never measured go first, one probe
 * each. Ties rotate like round-robin.
 *
 * Why the in-flight factor: with latency alone, every request arriving before the fastest
 * server's next answer would go to it, and a just-probed server would take every request
 * until its first answer came back.
 *
 * No server is starved forever: an idle server's estimate decays as e^(-idle/τ), so a
 * server last measured at E ms is tried again after at most τ·ln(E ÷ c) ms, c being the
 * lowest cost among the others (each at least its own latency). While that probe is out the
 * estimate holds, so it is one probe, not a rush. And a server that turns slow loses its
 * lead after a bounded number of answers, because every sample has a weight of at least
 * 0.1 in the EWMA (see ewma.ts).
 *
 * Above 32 servers, the cheapest of 8 drawn at random (_sampled.ts) instead of all.
 */
export function fastest(opts: StrategyOptions = {}): Strategy {
  const tau = opts.latencyTau ?? DEFAULT_TAU_MS;
  let next = 0;
  const cost = (s: Server, now: number) => latencyCost(s, now, tau, "value");
  return {
    name: "fastest",
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      const n = servers.length;
      if (n > SCAN_LIMIT) {
        const s = cheapestOfSample(servers, ctx, cost);
        if (s !== undefined) return s;
      }
      let best: Server | undefined;
      let bestAt = 0;
      let bestCost = Infinity;
      for (let i = 0; i < n; i++) {
        const at = (next + i) % n;
        const s = servers[at];
        if (!eligible(s, ctx)) continue;
        const cost = latencyCost(s, ctx.now, tau, "value");
        if (best === undefined || cost < bestCost) {
          best = s;
          bestAt = at;
          bestCost = cost;
        }
      }
      if (best !== undefined) next = (bestAt + 1) % n;
      return best;
    },
  };
}
