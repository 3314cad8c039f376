/**
 * What a shared rate limit costs against a real redis-server on loopback (started here, on
 * a free port, and stopped at the end): the latency of one take (one EVALSHA) one at a
 * time, and takes per second with 50 in flight, over one connection as lb has.
 *
 *   deno run -A bench/shared_limit_redis.ts [--takes 20000]
 */
import { Redis } from "ioredis";
import { SharedRateLimits } from "../src/cluster/shared_rate_limit.ts";
import type { ClusterLink } from "../src/cluster/link.ts";
import { rateLimitSchema } from "../src/config/routes.ts";
import { RateLimiter } from "../src/routing/rate_limit.ts";
import { startRedis } from "../tests/_redis.ts";

const i = Deno.args.indexOf("--takes");
const TAKES = i === -1 ? 20_000 : Number(Deno.args[i + 1]);

const server = await startRedis();
const client = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
client.on("error", () => {});
while (client.status !== "ready") await new Promise((r) => setTimeout(r, 10));
const link: ClusterLink = {
  prefix: "lb:{bench}:",
  self: "a",
  redis: () => client,
  members: () => ["a"],
  onMembers: () => () => {},
};
const config = rateLimitSchema.parse({ rate: 1_000_000, per: "1s", shared: true });
const limits = new SharedRateLimits(link, { timeoutMs: 1000 });
const limit = limits.limit(config, "bench", new RateLimiter(config, "bench"));
const keys = Array.from({ length: 1000 }, (_, k) => `10.0.${k >> 8}.${k & 255}`);

try {
  const lat: number[] = [];
  for (let n = 0; n < TAKES / 4; n++) {
    const t0 = performance.now();
    await limit.take(keys[n % 1000], t0);
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat[Math.floor(p * (lat.length - 1))] * 1000).toFixed(0);
  console.log(`one at a time: p50 ${q(0.5)} µs, p99 ${q(0.99)} µs per take (${lat.length} takes)`);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < TAKES) await limit.take(keys[next++ % 1000], performance.now());
  }));
  const s = (performance.now() - t0) / 1000;
  console.log(`50 in flight: ${Math.round(TAKES / s).toLocaleString("en-US")} takes/s`);
  const info = await client.info("commandstats");
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
  if (evalsha) {
    const us = Number(evalsha[2]) / Number(evalsha[1]);
    console.log(`redis-server's own time per EVALSHA: ${us.toFixed(1)} µs`);
  }
  console.log(`fallbacks: ${JSON.stringify(limits.fallbacks())}`);
} finally {
  client.disconnect();
  await server.close();
}
