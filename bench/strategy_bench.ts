/**
 * What one pick costs per strategy, and whether it grows with the pool: each strategy over
 * 3, 100, 1,000 and 10,000 healthy servers (weights 1-4, a few requests in flight, latency
 * estimates set), picking for a request as the choose stage does.
 *
 * Run: deno bench bench/strategy_bench.ts   (or --filter least-conn)
 */
import { Balancer } from "../src/balancing/balancer.ts";
import { ServerPool } from "../src/balancing/pool.ts";
import type { Server } from "../src/balancing/server.ts";
import { STRATEGY_NAMES } from "../src/balancing/strategies/registry.ts";
import type { PickContext } from "../src/balancing/strategies/types.ts";

const SIZES = [3, 100, 1_000, 10_000];

/** A pool of `n` servers in service, with varied weights, loads and latencies. */
function poolOf(n: number): ServerPool {
  const pool = new ServerPool(
    Array.from({ length: n }, (_, i) => ({
      url: `http://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:80`,
      weight: 1 + (i % 4),
    })),
    { healthy: true },
  );
  const now = Date.now();
  pool.servers.forEach((s, i) => {
    for (let k = 0; k < i % 3; k++) pool.beginRequest(s);
    pool.endRequest(s, true, 5 + (i % 50), now);
  });
  return pool;
}

let seed = 1;
const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
let sink: Server | undefined;

for (const name of STRATEGY_NAMES) {
  for (const n of SIZES) {
    const pool = poolOf(n);
    const balancer = new Balancer(pool, name, { hash: { key: "ip" } });
    let i = 0;
    const ctx: PickContext = { now: Date.now(), random, key: () => `10.0.0.${i++ & 1023}` };
    Deno.bench(`${name} × ${n}`, { group: name, baseline: n === 3 }, () => {
      ctx.now = Date.now();
      sink = balancer.pick(ctx);
    });
  }
}

// Keeps `sink` alive so the picks cannot be optimised away.
addEventListener("unload", () => {
  if (sink === undefined) console.error("no pick");
});
