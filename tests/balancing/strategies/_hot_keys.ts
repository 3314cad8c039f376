/** A skewed workload with requests in flight, for the bounded-load tests. */
import { isAvailable } from "../../../src/balancing/availability.ts";
import type { ServerPool } from "../../../src/balancing/pool.ts";
import type { Server } from "../../../src/balancing/server.ts";
import { seededRandom } from "../../../src/balancing/strategies/seeded_random.ts";
import type { Strategy } from "../../../src/balancing/strategies/types.ts";
import { context, NOW } from "./_helpers.ts";

/**
 * Sends `requests` requests, 70% with one hot key and 15% with another, keeping about
 * `inflight` of them in flight (a random one finishes for each new one past that).
 * Returns the worst ratio, over all picks, of the picked server's in-flight to
 * ceil(factor × mean in-flight), and how many picks went over it.
 */
export function hotKeys(
  strategy: Strategy,
  pool: ServerPool,
  factor: number,
  requests = 4000,
  inflight = 40,
) {
  const random = seededRandom(5);
  let key = "";
  const ctx = context({ key: () => key });
  const out: Server[] = [];
  let worst = 0;
  let over = 0;
  for (let i = 0; i < requests; i++) {
    const r = random();
    key = r < 0.7 ? "hot-1" : r < 0.85 ? "hot-2" : `key-${Math.floor(random() * 1000)}`;
    const s = strategy.pick(pool.servers, ctx)!;
    pool.beginRequest(s);
    out.push(s);
    const up = pool.servers.filter((x) => isAvailable(x, NOW));
    const mean = up.reduce((a, x) => a + x.inflight, 0) / up.length;
    const cap = Math.ceil(factor * mean - 1e-9);
    worst = Math.max(worst, s.inflight / cap);
    if (s.inflight > cap) over++;
    if (out.length > inflight) {
      const j = Math.floor(random() * out.length);
      const done = out[j];
      out[j] = out[out.length - 1];
      out.pop();
      pool.endRequest(done, true, undefined, NOW);
    }
  }
  return { worst, over };
}
