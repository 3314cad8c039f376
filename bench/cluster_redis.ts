/**
 * What a cluster's shared parts cost a real redis-server on loopback (started here, on a
 * free port, and stopped at the end), read from its `INFO commandstats` and `INFO memory`:
 * - a shared rate limit: the latency of one take (one EVALSHA) one at a time, and takes per
 *   second with 50 in flight over one connection, as lb has;
 * - shared health: 10,000 published results (their size and Redis memory), a pipelined
 *   `SET … PX` and an `MGET` of 500 (what each instance sends every interval).
 *
 *   deno run -A bench/cluster_redis.ts [--takes 20000]
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
  await health();
} finally {
  client.disconnect();
  await server.close();
}

/** The health share's commands at 10,000 results: sizes, Redis memory, time per command. */
async function health(): Promise<void> {
  await client.flushall();
  const before = Number(/used_memory:(\d+)/.exec(await client.info("memory"))![1]);
  const value = JSON.stringify({
    ok: true,
    detail: "status 200",
    at: Date.now(),
    by: "10.1.0.17:8001",
  });
  const keys = Array.from(
    { length: 10_000 },
    (_, k) => `lb:{prod}:health:web:10.2.${k >> 8}.${k & 255}:8080`,
  );
  await client.config("RESETSTAT");
  for (let r = 0; r < 200; r++) {
    const p = client.pipeline();
    for (let j = 0; j < 50; j++) p.set(keys[(r * 50 + j) % keys.length], value, "PX", 7000);
    await p.exec();
  }
  const after = Number(/used_memory:(\d+)/.exec(await client.info("memory"))![1]);
  const t0 = performance.now();
  for (let r = 0; r < 200; r++) {
    await client.mget(keys.slice((r * 500) % 10_000, (r * 500) % 10_000 + 500));
  }
  const wall = (performance.now() - t0) / 200;
  const stats = await client.info("commandstats");
  const per = (cmd: string) =>
    /usec_per_call=([\d.]+)/.exec(new RegExp(`cmdstat_${cmd}:[^\r\n]*`).exec(stats)![0])![1];
  console.log(
    `health: value ${value.length} B, key ${keys[5000].length} B; 10,000 results take ` +
      `${((after - before) / 1e6).toFixed(1)} MB of Redis memory`,
  );
  console.log(
    `health: redis-server's time per pipelined SET … PX ${per("set")} µs, per MGET of ` +
      `500 ${per("mget")} µs (${wall.toFixed(2)} ms round trip from here)`,
  );
}
