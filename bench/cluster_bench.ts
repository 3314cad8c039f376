/**
 * Per-request and per-check costs of what a cluster member shares (issue 15): the shared
 * rate limit when Redis is away (decided by the local bucket, no await) against the local
 * limiter alone, and the health ownership decisions.
 *
 * Run: deno bench bench/cluster_bench.ts
 */
import type { Server } from "../src/balancing/server.ts";
import { ServerPool } from "../src/balancing/pool.ts";
import { ClusterHealth } from "../src/cluster/health_share.ts";
import type { ClusterLink } from "../src/cluster/link.ts";
import { ownershipKey, Rendezvous } from "../src/cluster/ownership.ts";
import { SharedRateLimits } from "../src/cluster/shared_rate_limit.ts";
import { rateLimitSchema } from "../src/config/routes.ts";
import { createLogger } from "../src/log.ts";
import { RateLimiter } from "../src/routing/rate_limit.ts";

const members = (n: number) => Array.from({ length: n }, (_, i) => `10.1.0.${i}:8001`);

/** A link with Redis away, as while Redis is down. */
const away: ClusterLink = {
  prefix: "lb:{bench}:",
  self: "10.1.0.0:8001",
  redis: () => undefined,
  members: () => members(1),
  onMembers: () => () => {},
};

const config = rateLimitSchema.parse({ rate: 1_000_000, per: "1s", shared: true });
const local = new RateLimiter(config, "bench");
const fallbackLocal = new RateLimiter(config, "bench");
const shared = new SharedRateLimits(away).limit(config, "bench", fallbackLocal);

// A clock that moves 1 µs a take, as under a heavy load.
let now = 0;

Deno.bench("rate limit: local bucket alone", { group: "limit", baseline: true }, () => {
  local.take("10.0.0.1", now += 0.001);
});
Deno.bench("rate limit: shared, Redis away (local fallback)", { group: "limit" }, () => {
  const d = shared.take("10.0.0.1", now += 0.001);
  if (d instanceof Promise) throw new Error("the fallback waited");
});

const ten = new Rendezvous(members(10));
const hundred = new Rendezvous(members(100));
const keys = Array.from(
  { length: 1024 },
  (_, i) => ownershipKey("web", `10.2.${i >> 8}.${i & 255}:80`),
);
let k = 0;

Deno.bench("owner of one backend among 10 members", { group: "owner", baseline: true }, () => {
  ten.owner(keys[k++ & 1023]);
});
Deno.bench("owner of one backend among 100 members", { group: "owner" }, () => {
  hundred.owner(keys[k++ & 1023]);
});

// What the health loop asks before each check: owner cached until the member list changes.
const live: ClusterLink = { ...away, redis: () => ({}) as never, members: () => m100 };
const m100 = members(100);
const logger = createLogger({ format: "json", access: false, write: () => {} });
const share = new ClusterHealth(live, { logger }).forPool("web");
const pool = new ServerPool(keys.map((_, i) => ({ url: `http://10.2.${i >> 8}.${i & 255}:80` })));
const servers: readonly Server[] = pool.servers;
Deno.bench("health share: does this instance check it? (100 members)", { group: "share" }, () => {
  share.checks(servers[k++ & 1023]);
});
