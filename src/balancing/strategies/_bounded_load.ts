import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import type { PickContext } from "./types.ts";

/**
 * "Consistent Hashing with Bounded Loads" (Mirrokni, Thorup, Zadimoghaddam 2018), as
 * HAProxy's `hash-balance-factor`: a server may take a request only while
 * `inflight + 1 ≤ ceil(factor × (T + 1) × weight / W)`, where T is the in-flight total and
 * W the weight total of the eligible servers. With equal weights that is
 * `ceil(factor × (T + 1) / n)`. Since T < factor × (T + 1), some eligible server is always
 * under its cap, so a walk over all of them always ends.
 *
 * Returns the cap per unit of weight (`factor × (T + 1) / W`), or Infinity when the bound
 * is off (factor ≤ 1). One O(n) pass, only when the bound is on.
 */
export function loadCapPerWeight(
  servers: readonly Server[],
  ctx: PickContext,
  factor: number,
): number {
  if (!(factor > 1)) return Infinity;
  let inflight = 0;
  let weight = 0;
  for (const s of servers) {
    if (!eligible(s, ctx)) continue;
    inflight += s.inflight;
    weight += s.weight;
  }
  return weight === 0 ? Infinity : factor * (inflight + 1) / weight;
}

/** Whether `s` may take one more request under the cap from {@link loadCapPerWeight}. */
export function underCap(s: Server, capPerWeight: number): boolean {
  // The epsilon keeps float noise (1.25 × 8 = 10.000000000000002) from raising the ceiling.
  return s.inflight + 1 <= Math.ceil(capPerWeight * s.weight - 1e-9);
}
