import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import { EdfSchedule } from "./_edf.ts";
import { SCAN_LIMIT } from "./_sampled.ts";
import type { PickContext, Strategy } from "./types.ts";

/**
 * Smooth weighted round-robin, nginx's algorithm (ngx_http_upstream_get_peer): on each pick
 * every eligible server's current weight grows by its weight, the largest wins (first in
 * order on a tie) and gives back the eligible total. Over any window of sum(weights) picks
 * each server gets exactly its weight, interleaved: weights 5,1,1 give a a b a c a a.
 *
 * Current weights survive `rebuild`, so adding or removing a server does not reset the
 * others' place in the rotation; unavailable servers are skipped and keep theirs.
 * A pick is one pass over the servers (as in nginx), with no allocation. Above 32 servers
 * an earliest-deadline-first schedule (_edf.ts, Envoy's) takes over: the same shares, at
 * O(log n) per pick, so a pick costs about the same at 10,000 servers as at 32 (the order
 * within a window differs in detail, and nginx's scan is the fallback when many servers in
 * a row are unavailable).
 */
export function weightedRoundRobin(): Strategy {
  let built: readonly Server[] | undefined;
  let current = new Float64Array(0);
  let edf: EdfSchedule | undefined;

  function rebuild(servers: readonly Server[]): void {
    edf = servers.length > SCAN_LIMIT ? new EdfSchedule(servers) : undefined;
    const previous = new Map<Server, number>();
    built?.forEach((s, i) => previous.set(s, current[i]));
    current = new Float64Array(servers.length);
    servers.forEach((s, i) => current[i] = previous.get(s) ?? 0);
    built = servers;
  }

  return {
    name: "weighted-round-robin",
    rebuild,
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      if (servers !== built) rebuild(servers);
      const scheduled = edf?.pick(ctx);
      if (scheduled !== undefined) return scheduled;
      let best = -1;
      let total = 0;
      for (let i = 0; i < servers.length; i++) {
        const s = servers[i];
        if (!eligible(s, ctx)) continue;
        current[i] += s.weight;
        total += s.weight;
        if (best < 0 || current[i] > current[best]) best = i;
      }
      if (best < 0) return undefined;
      current[best] -= total;
      return servers[best];
    },
  };
}
