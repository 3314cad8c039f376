/**
 * `rateLimit.shared` over a real redis-server: two instances (two test links over one Redis)
 * draw on one budget per key, and fall back to their own buckets, counted, without throwing
 * or answering 500, while Redis is stopped, failing or slow.
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { registerSharingMetrics } from "../../src/admin/metrics_cluster.ts";
import { clusterSharing } from "../../src/cluster/sharing.ts";
import { SharedRateLimits } from "../../src/cluster/shared_rate_limit.ts";
import { resolvePools, resolveRoutes } from "../../src/config/pools.ts";
import { rateLimitSchema } from "../../src/config/routes.ts";
import { createProxyHandler } from "../../src/proxy/handler.ts";
import { Pools } from "../../src/routing/pools.ts";
import { type RateDecision, RateLimiter } from "../../src/routing/rate_limit.ts";
import { startRedis } from "../_redis.ts";
import { memoryLogger, testConfig, until } from "../_stack.ts";
import { ready, testLink } from "./_link.ts";

const TEN_PER_SECOND = rateLimitSchema.parse({ rate: 10, per: "1s", shared: true });

function limitOver(url: string, self: string) {
  const link = testLink(url, self, ["a", "b"]);
  const limits = new SharedRateLimits(link, { timeoutMs: 100 });
  const shared = limits.limit(TEN_PER_SECOND, "api", new RateLimiter(TEN_PER_SECOND, "api"));
  return { link, limits, shared };
}

Deno.test("two instances' shared limits draw on one budget: 20 quick requests at 10/s, burst 10, admit 10", async () => {
  const redis = await startRedis();
  const a = limitOver(redis.url, "a");
  const b = limitOver(redis.url, "b");
  try {
    await Promise.all([ready(a.link), ready(b.link)]);
    const decisions: RateDecision[] = [];
    for (let i = 0; i < 20; i++) {
      decisions.push(await (i % 2 ? b : a).shared.take("10.0.0.1", performance.now()));
    }
    const allowed = decisions.filter((d) => d.allowed).length;
    // 10 at once, plus at most one refilled if the 20 calls took over 100 ms.
    assert.ok(allowed >= 10 && allowed <= 11, `${allowed} admitted`);
    assert.deepEqual(decisions[0], {
      allowed: true,
      remaining: 9,
      resetSeconds: 1,
      retryAfterSeconds: 0,
    });
    const refused = decisions.find((d) => !d.allowed)!;
    assert.equal(refused.remaining, 0);
    assert.equal(refused.retryAfterSeconds, 1);
    // Another key has a budget of its own.
    assert.equal((await b.shared.take("10.0.0.2", performance.now())).allowed, true);
    assert.deepEqual([...a.limits.fallbacks(), ...b.limits.fallbacks()], []);
    const ttl = Number(await redis.cli("PTTL", "lb:{t}:rl:api:10.0.0.1"));
    assert.ok(ttl > 0 && ttl <= 1001, `the bucket's key expires in ${ttl} ms`);
  } finally {
    await Promise.all([a.link.close(), b.link.close()]);
    await redis.close();
  }
});

Deno.test("a bucket in Redis that is not a number, or owes more than a burst, counts as full", async () => {
  const redis = await startRedis();
  const a = limitOver(redis.url, "a");
  try {
    await ready(a.link);
    await redis.cli("SET", "lb:{t}:rl:api:junk", "not a number");
    await redis.cli("SET", "lb:{t}:rl:api:ahead", "99999999999999999999");
    for (const key of ["junk", "ahead"]) {
      const d = await a.shared.take(key, performance.now());
      assert.deepEqual(d, { allowed: true, remaining: 9, resetSeconds: 1, retryAfterSeconds: 0 });
    }
    // A key longer than MAX_KEY_LENGTH shares the bucket of its first 256 characters.
    await a.shared.take("k".repeat(300), performance.now());
    assert.equal(await redis.cli("EXISTS", `lb:{t}:rl:api:${"k".repeat(256)}`), "1");
    assert.deepEqual(a.limits.fallbacks(), []);
  } finally {
    await a.link.close();
    await redis.close();
  }
});

Deno.test("with Redis stopped a shared limit decides at once by its local bucket, and counts the fallback", async () => {
  const redis = await startRedis();
  const a = limitOver(redis.url, "a");
  try {
    await ready(a.link);
    await redis.stop();
    await until(() => a.link.redis() === undefined, "the link to see Redis gone");
    let allowed = 0;
    for (let i = 0; i < 15; i++) {
      const d = a.shared.take("10.0.0.1", performance.now());
      assert.ok(!(d instanceof Promise), "it waited for a Redis that is not there");
      if (d.allowed) allowed++;
    }
    assert.equal(allowed, 10, "the local bucket applies the limit");
    assert.deepEqual(a.limits.fallbacks(), [{ route: "api", reason: "unreachable", count: 15 }]);
  } finally {
    await a.link.close();
    await redis.close();
  }
});

Deno.test("a shared limit falls back when Redis fails a command or answers too slowly", async () => {
  const redis = await startRedis();
  const a = limitOver(redis.url, "a");
  try {
    await ready(a.link);
    // Slow: Redis holds every client's commands for 500 ms; the limit waits 100 ms.
    await redis.cli("CLIENT", "PAUSE", "500", "ALL");
    const t0 = performance.now();
    const slow = await a.shared.take("10.0.0.1", performance.now());
    assert.ok(performance.now() - t0 < 400, `waited ${performance.now() - t0} ms`);
    assert.equal(slow.allowed, true);
    // Failing: the link still hands out the client, but it is not connected.
    await new Promise((r) => setTimeout(r, 500));
    a.link.client.disconnect();
    const failing = {
      ...a.link,
      redis: () => a.link.client,
    };
    const limits = new SharedRateLimits(failing, { timeoutMs: 100 });
    const local = new RateLimiter(TEN_PER_SECOND, "api");
    const d = await limits.limit(TEN_PER_SECOND, "api", local).take("k", performance.now());
    assert.equal(d.allowed, true);
    assert.deepEqual(a.limits.fallbacks(), [{ route: "api", reason: "timeout", count: 1 }]);
    assert.deepEqual(limits.fallbacks(), [{ route: "api", reason: "error", count: 1 }]);
  } finally {
    await a.link.close();
    await redis.close();
  }
});

/** An lb's request handler (no listener) with a shared limit on `/limited`, over `url`'s Redis. */
function instance(url: string, self: string, backend: string) {
  const link = testLink(url, self, ["a", "b"]);
  const logger = memoryLogger();
  const sharing = clusterSharing(link, { logger, rateLimitTimeoutMs: 100 });
  const config = testConfig([backend], {
    routes: [
      {
        name: "limited",
        match: { path: "/limited" },
        pool: "default",
        rateLimit: { rate: 10, per: "1s", shared: true },
      },
      { name: "open", pool: "default" },
    ],
  });
  const pools = new Pools(
    resolvePools(config),
    resolveRoutes(config),
    "a-test-secret-of-16+",
    undefined,
    sharing,
  );
  const handle = createProxyHandler({ config, pools, logger });
  const info = { remoteAddr: { transport: "tcp" as const, hostname: "10.1.2.3", port: 5000 } };
  return {
    link,
    sharing,
    async get(path: string): Promise<Response> {
      const res = await handle(new Request(`http://lb.test${path}`), info);
      await res.body?.cancel();
      return res;
    },
    async close() {
      await pools.close();
      sharing.close();
      await link.close();
    },
  };
}

Deno.test("through the request path: two lbs share a limit, answer 429 past it, and 200 (never 500) with Redis stopped", async () => {
  const redis = await startRedis();
  const backend = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("ok"),
  );
  const url = `http://127.0.0.1:${backend.addr.port}`;
  const a = instance(redis.url, "a", url);
  const b = instance(redis.url, "b", url);
  try {
    await Promise.all([ready(a.link), ready(b.link)]);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await (i % 2 ? b : a).get("/limited")).status);
    const ok = statuses.filter((s) => s === 200).length;
    assert.ok(ok >= 10 && ok <= 11, statuses.join(","));
    assert.equal(statuses.filter((s) => s === 429).length, 20 - ok);
    const limited = await a.get("/limited");
    assert.equal(limited.status, 429);
    assert.match(limited.headers.get("ratelimit") ?? "", /^"limited";r=0;t=\d+$/);
    assert.equal((await a.get("/open")).status, 200);
    await redis.stop();
    await until(() => a.link.redis() === undefined, "the link to see Redis gone");
    // Each lb falls back to its own bucket: 10 more there, then 429, never a 500.
    const down: number[] = [];
    for (let i = 0; i < 12; i++) down.push((await a.get("/limited")).status);
    assert.deepEqual(down, [...Array(10).fill(200), 429, 429]);
    const registry = new client.Registry();
    registerSharingMetrics(registry, a.sharing);
    const text = await registry.metrics();
    assert.match(text, /lb_rate_limit_fallbacks_total\{route="limited",reason="unreachable"\} 12/);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await backend.shutdown();
    await redis.close();
  }
});
