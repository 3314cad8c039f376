import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy } from "./types.ts";

/**
 * Smooth weighted round-robin, nginx's algorithm (ngx_http_upstream_get_peer): on each pick
 * every eligible server's current weight grows by its weight, the largest wins (first in
 * order on a tie) and gives back the eligible total. Over any window of sum(weights) picks
 * each server gets exactly its weight, interleaved: weights 5,1,1 give a a b a c a a.
 *
 * Current weights survive `rebuild`, so adding or removing a server does not reset the
 * others' place in the rotation; unavailable servers are skipped and keep theirs.
 * A pick is one pass over the servers (as in nginx), with no allocation.
 */
export function weightedRoundRobin(): Strategy {
  let built: readonly Server[] | undefined;
  let current = new Float64Array(0);

  function rebuild(servers: readonly Server[]): void {
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
