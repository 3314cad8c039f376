import { DEFAULT_TAU_MS } from "../ewma.ts";
import type { Server } from "../server.ts";
import { latencyCost } from "./_latency_cost.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy, StrategyOptions } from "./types.ts";

/** Uniform draws tried before counting the eligible servers. */
const DRAWS = 3;

/**
 * Power of two random choices (Mitzenmacher) with Finagle's and Linkerd's peak-EWMA cost:
 * draw two distinct eligible servers at random and send to the cheaper one, where cost =
 * peak latency EWMA (decayed to now) × (in-flight + 1) ÷ weight. An idle server never
 * measured costs 0 (tried at once); one whose first request is still out costs more than
 * any measured server. Two random candidates instead of the global best keep several
 * balancers with the same stale view from all rushing to one server.
 * O(1) per pick while most servers are eligible; one counting pass otherwise.
 */
export function p2c(opts: StrategyOptions = {}): Strategy {
  const tau = opts.latencyTau ?? DEFAULT_TAU_MS;
  return {
    name: "p2c",
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      const a = draw(servers, ctx, -1);
      if (a < 0) return undefined;
      const b = draw(servers, ctx, a);
      if (b < 0) return servers[a];
      const ca = latencyCost(servers[a], ctx.now, tau, "peak");
      const cb = latencyCost(servers[b], ctx.now, tau, "peak");
      return servers[cb < ca ? b : a];
    },
  };
}

/** A uniformly random eligible index other than `not`, or -1 when there is none. */
function draw(servers: readonly Server[], ctx: PickContext, not: number): number {
  const n = servers.length;
  if (n === 0) return -1;
  for (let t = 0; t < DRAWS; t++) {
    const i = Math.floor(ctx.random() * n);
    if (i !== not && eligible(servers[i], ctx)) return i;
  }
  let count = 0;
  for (let i = 0; i < n; i++) if (i !== not && eligible(servers[i], ctx)) count++;
  if (count === 0) return -1;
  let k = Math.floor(ctx.random() * count);
  for (let i = 0; i < n; i++) {
    if (i !== not && eligible(servers[i], ctx) && k-- === 0) return i;
  }
  return -1;
}
