/**
 * Shared health checks over a real redis-server: two in-process instances (two test links
 * over one Redis, each with its own pool of the same backends) split the checks by
 * rendezvous ownership, record each other's results, and fall back to checking everything
 * when results stop coming or Redis goes away. Each instance checks a different health path
 * (`?by=a`, `?by=b`), so the backends can tell who checked them.
 */
import assert from "node:assert/strict";
import { ClusterHealth, type PoolHealthShare } from "../../src/cluster/health_share.ts";
import { ownerOf, ownershipKey } from "../../src/cluster/ownership.ts";
import { resolvePools } from "../../src/config/pools.ts";
import { PoolRuntime } from "../../src/routing/pool_runtime.ts";
import { startRedis } from "../_redis.ts";
import { assertEventually, memoryLogger, testConfig } from "../_stack.ts";
import { ready, type TestLink, testLink } from "./_link.ts";

const INTERVAL = 100;
const NAMES = ["b1", "b2", "b3", "b4", "b5", "b6"];
const MEMBERS = ["a", "b"];

/** A backend whose /health counts the checks of each instance and can be made to fail. */
function healthBackend(name: string) {
  const hits: Record<string, number> = { a: 0, b: 0 };
  const state = { healthy: true };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const by = new URL(req.url).searchParams.get("by") ?? "?";
    hits[by] = (hits[by] ?? 0) + 1;
    return new Response(state.healthy ? "ok" : "down", { status: state.healthy ? 200 : 503 });
  });
  return { name, hits, state, server, url: `http://127.0.0.1:${server.addr.port}` };
}
type Backend = ReturnType<typeof healthBackend>;

/** One instance: its link, its share of the checks and its pool (health loop started). */
interface Instance {
  self: string;
  link: TestLink;
  cluster: ClusterHealth;
  share: PoolHealthShare;
  pool: PoolRuntime;
  logger: ReturnType<typeof memoryLogger>;
}

function startInstance(self: string, redisUrl: string, backends: Backend[]): Instance {
  const link = testLink(redisUrl, self, MEMBERS);
  const logger = memoryLogger();
  const cluster = new ClusterHealth(link, { logger, commandTimeout: 200 });
  const config = testConfig([], {
    backends: backends.map((b) => ({ url: b.url, name: b.name })),
    health: {
      enabled: true,
      path: `/health?by=${self}`,
      interval: `${INTERVAL}ms`,
      timeout: "200ms",
      rise: 1,
      fall: 2,
    },
  });
  let share: PoolHealthShare | undefined;
  const pool = new PoolRuntime(resolvePools(config)[0], "a-test-secret-of-16+", undefined, {
    healthShare: (name) => share = cluster.forPool(name),
  });
  pool.start(logger);
  return { self, link, cluster, share: share!, pool, logger };
}

async function stopInstance(i: Instance): Promise<void> {
  await i.pool.close();
  i.cluster.close();
  await i.link.close();
}

/** Two instances over one Redis in front of six counting backends. */
async function twoInstances() {
  const redis = await startRedis();
  const backends = NAMES.map(healthBackend);
  const a = startInstance("a", redis.url, backends);
  const b = startInstance("b", redis.url, backends);
  await Promise.all([ready(a.link), ready(b.link)]);
  const owner = (name: string) => ownerOf(ownershipKey("default", name), MEMBERS) as "a" | "b";
  return {
    redis,
    backends,
    a,
    b,
    owner,
    /** Counts checks from now on for `ms`, then returns who checked each backend. */
    async window(ms: number): Promise<Record<string, { a: number; b: number }>> {
      for (const x of backends) x.hits.a = x.hits.b = 0;
      await new Promise((r) => setTimeout(r, ms));
      return Object.fromEntries(backends.map((x) => [x.name, { a: x.hits.a, b: x.hits.b }]));
    },
    async close() {
      await Promise.all([stopInstance(a), stopInstance(b)]);
      await Promise.all(backends.map((x) => x.server.shutdown()));
      await redis.close();
    },
  };
}

Deno.test("the six backends are split between both owners (the other tests rely on it)", () => {
  const owners = NAMES.map((n) => ownerOf(ownershipKey("default", n), MEMBERS));
  assert.ok(owners.includes("a") && owners.includes("b"), owners.join(","));
});

Deno.test("each backend is checked by its owner only, and the other instance records the owner's results", async () => {
  const t = await twoInstances();
  try {
    await assertEventually(
      () => t.a.share.stats.recorded > 0 && t.b.share.stats.recorded > 0,
      3000,
      "both instances to record results the other published",
    );
    const seen = await t.window(10 * INTERVAL);
    for (const name of NAMES) {
      const mine = t.owner(name);
      const other = mine === "a" ? "b" : "a";
      assert.ok(
        seen[name][mine] >= 5,
        `${name}: its owner ${mine} checked it ${seen[name][mine]}×`,
      );
      assert.equal(seen[name][other], 0, `${name} was also checked by ${other}`);
    }
    assert.equal(t.a.share.stats.bad + t.b.share.stats.bad, 0);
    // A backend fails its checks: its owner sees it, and so does the other through Redis.
    const sick = t.backends.find((x) => t.owner(x.name) === "a")!;
    sick.state.healthy = false;
    const healthyIn = (i: Instance) => i.pool.servers.get(sick.name)!.healthy;
    await assertEventually(
      () => !healthyIn(t.a) && !healthyIn(t.b),
      3000,
      `${sick.name} to go unhealthy in both instances`,
    );
    assert.equal(sick.hits.b, 0, "b checked a server a owns");
    assert.match(t.b.pool.servers.get(sick.name)!.health.detail!, /status 503 \(checked by a\)/);
    sick.state.healthy = true;
    await assertEventually(
      () => healthyIn(t.a) && healthyIn(t.b),
      3000,
      `${sick.name} to come back in both instances`,
    );
  } finally {
    await t.close();
  }
});

Deno.test("when an owner stops publishing, the other instance checks its backends after the results expire", async () => {
  const t = await twoInstances();
  try {
    await assertEventually(() => t.b.share.stats.recorded > 0, 3000, "b to record a's results");
    const aOwns = t.backends.filter((x) => t.owner(x.name) === "a");
    // Settled: b leaves a's backends to a (under load a's first results can come late).
    for (let settled = false, end = Date.now() + 5000; !settled;) {
      const w = await t.window(3 * INTERVAL);
      settled = aOwns.every((x) => w[x.name].b === 0);
      assert.ok(settled || Date.now() < end, "b kept checking a's backends");
    }
    // a's health loop stops (a hung instance still listed as a member): no checks, no results.
    await t.a.pool.close();
    const stopped = Date.now();
    // b may have checked them itself before a's first results came (under load): count anew.
    const before = new Map(aOwns.map((x) => [x.name, x.hits.b]));
    await assertEventually(
      () => aOwns.every((x) => x.hits.b > before.get(x.name)!),
      5000,
      "b to check the backends a owned",
    );
    // Not before the last result has had a ttl (3 × interval + timeout) to be renewed.
    assert.ok(Date.now() - stopped >= 3 * INTERVAL, `b took over after ${Date.now() - stopped}ms`);
    assert.ok(t.b.share.stats.fallbackChecks > 0);
    const seen = await t.window(5 * INTERVAL);
    for (const x of aOwns) assert.ok(seen[x.name].b >= 3, `${x.name}: ${seen[x.name].b} checks`);
  } finally {
    await t.close();
  }
});

Deno.test("while Redis is down both instances check every backend, and they share again once it is back", async () => {
  const t = await twoInstances();
  try {
    await assertEventually(
      () => t.a.share.stats.recorded > 0 && t.b.share.stats.recorded > 0,
      3000,
      "sharing to start",
    );
    await t.redis.stop();
    await assertEventually(() => t.a.share.away && t.b.share.away, 3000, "both to see Redis away");
    const down = await t.window(6 * INTERVAL);
    for (const name of NAMES) {
      assert.ok(down[name].a >= 3 && down[name].b >= 3, `${name}: ${JSON.stringify(down[name])}`);
    }
    assert.ok(t.a.logger.lines.some((l) => l.includes("checking every server here")));
    await t.redis.start();
    await assertEventually(
      () => !t.a.share.away && !t.b.share.away,
      5000,
      "both to read from Redis again",
    );
    // The owners publish again; once the others have read a result, they stop checking.
    await new Promise((r) => setTimeout(r, 4 * INTERVAL));
    const back = await t.window(8 * INTERVAL);
    for (const name of NAMES) {
      const other = t.owner(name) === "a" ? "b" : "a";
      assert.equal(back[name][other], 0, `${name}: ${JSON.stringify(back[name])}`);
    }
  } finally {
    await t.close();
  }
});

Deno.test("a bad value in Redis is skipped and logged once, and the instance checks that backend itself", async () => {
  const t = await twoInstances();
  try {
    await assertEventually(() => t.b.share.stats.recorded > 0, 3000, "b to record a's results");
    await t.a.pool.close(); // nothing overwrites the bad values any more
    const aOwns = t.backends.filter((x) => t.owner(x.name) === "a");
    const bad = [
      "{not json",
      JSON.stringify({ ok: "yes", detail: "x", at: 1, by: "a" }),
      JSON.stringify({ ok: false, detail: "line\nbreak", at: 1, by: "a" }),
      JSON.stringify({ ok: false, detail: "x", at: 1, by: "a", extra: 1 }),
      "x".repeat(5000),
    ];
    for (const [i, x] of aOwns.entries()) {
      await t.redis.cli(
        "SET",
        `lb:{t}:health:default:${x.name}`,
        bad[i % bad.length],
        "PX",
        "60000",
      );
    }
    const before = t.b.pool.servers.get(aOwns[0].name)!.health.at;
    // Counted from now: b may have checked them before a's first results (under load).
    const hits = new Map(aOwns.map((x) => [x.name, x.hits.b]));
    await assertEventually(
      () =>
        aOwns.every((x) => x.hits.b > hits.get(x.name)!) &&
        t.b.pool.servers.get(aOwns[0].name)!.health.at > before,
      5000,
      "b to check the backends whose values are bad",
    );
    await new Promise((r) => setTimeout(r, 3 * INTERVAL));
    const logged = t.b.logger.lines.filter((l) => l.includes("skipped a bad health result"));
    assert.equal(logged.length, aOwns.length, logged.join("\n"));
    assert.ok(t.b.share.stats.bad > aOwns.length, "the bad values were read only once");
    assert.ok(t.b.pool.servers.get(aOwns[0].name)!.health.at > before);
    assert.ok(
      t.b.pool.servers.servers.every((s) => s.healthy),
      "a bad value changed a server's health",
    );
  } finally {
    await t.close();
  }
});

Deno.test("when the member list changes, a backend that changes owner is checked by its new owner at its next interval", async () => {
  const t = await twoInstances();
  try {
    await assertEventually(() => t.a.share.stats.recorded > 0, 3000, "a to record b's results");
    const bOwns = t.backends.filter((x) => t.owner(x.name) === "b");
    for (const x of bOwns) x.hits.a = 0;
    const changed = Date.now();
    // b leaves the list (as its heartbeats would stop): a owns everything now.
    t.a.link.setMembers(["a"]);
    t.b.link.setMembers(["a"]);
    await assertEventually(() => bOwns.every((x) => x.hits.a > 0), 3000, "a to check b's backends");
    assert.ok(Date.now() - changed < 3 * INTERVAL, `took ${Date.now() - changed}ms`);
    const seen = await t.window(6 * INTERVAL);
    for (const name of NAMES) assert.equal(seen[name].b, 0, `b still checks ${name}`);
  } finally {
    await t.close();
  }
});
