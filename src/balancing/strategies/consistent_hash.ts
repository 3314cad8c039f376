import type { Server } from "../server.ts";
import { hash32 } from "./_murmur3.ts";
import { loadCapPerWeight, underCap } from "./_bounded_load.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy, StrategyOptions } from "./types.ts";

/** Room for the server index below the 32-bit point hash in one sortable float (2^21 servers). */
const INDEX_SPACE = 2 ** 21;

/**
 * A consistent-hash ring (Karger et al. 1997) with virtual nodes: each server owns
 * `vnodes × weight ÷ gcd(weights)` points (default vnodes 160); a request goes to the owner
 * of the first point clockwise from hash(key), found by binary search. Adding a server
 * moves about 1/(n+1) of the keys, all to it; removing one moves only its keys.
 *
 * The ring covers every server; unavailable or excluded ones are skipped at pick time by
 * walking clockwise, so a flapping server moves only its own keys, and only while down.
 *
 * With `hash.balanceFactor` > 1 the walk also skips servers over the bounded-load cap
 * (see _bounded_load.ts): no server takes more than ceil(factor × mean) in flight.
 */
export function consistentHash(opts: StrategyOptions = {}): Strategy {
  const vnodes = opts.hash?.vnodes ?? 160;
  const factor = opts.hash?.balanceFactor ?? 0;
  let built: readonly Server[] | undefined;
  let points = new Uint32Array(0);
  let owners = new Uint32Array(0);

  function rebuild(servers: readonly Server[]): void {
    if (servers.length > INDEX_SPACE) {
      throw new Error(`consistent-hash takes at most ${INDEX_SPACE} servers`);
    }
    const g = servers.reduce((a, s) => gcd(a, s.weight), 0) || 1;
    const count = servers.reduce((a, s) => a + vnodes * s.weight / g, 0);
    // hash × 2^21 + index sorts by hash, then by pool order: survivors keep their order
    // when servers come and go, so a (rare) point collision never moves a survivor's keys.
    const keyed = new Float64Array(count);
    let k = 0;
    servers.forEach((s, i) => {
      for (let v = 0; v < vnodes * s.weight / g; v++) {
        keyed[k++] = hash32(s.id, v) * INDEX_SPACE + i;
      }
    });
    keyed.sort();
    points = new Uint32Array(count);
    owners = new Uint32Array(count);
    for (let j = 0; j < count; j++) {
      points[j] = Math.floor(keyed[j] / INDEX_SPACE);
      owners[j] = keyed[j] % INDEX_SPACE;
    }
    built = servers;
  }

  return {
    name: "consistent-hash",
    rebuild,
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      if (servers !== built) rebuild(servers);
      const len = points.length;
      if (len === 0) return undefined;
      const cap = loadCapPerWeight(servers, ctx, factor);
      let at = firstAtOrAbove(points, hash32(ctx.key()));
      for (let step = 0; step < len; step++, at++) {
        if (at === len) at = 0;
        const s = servers[owners[at]];
        if (eligible(s, ctx) && underCap(s, cap)) return s;
      }
      return undefined;
    },
  };
}

/** The first index whose point is ≥ h, or points.length (wrap to 0) when none is. */
function firstAtOrAbove(points: Uint32Array, h: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid] < h) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
