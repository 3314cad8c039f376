/**
 * Strategies in pools above 32 servers, where least-conn and fastest compare a random
 * sample and weighted round-robin follows an earliest-deadline-first schedule, so a pick
 * costs about the same at 10,000 servers as at 32 (bench/strategy_bench.ts).
 */
import assert from "node:assert/strict";
import { fastest } from "../../../src/balancing/strategies/fastest.ts";
import { leastConn } from "../../../src/balancing/strategies/least_conn.ts";
import { weightedRoundRobin } from "../../../src/balancing/strategies/weighted_round_robin.ts";
import { context, makePool, NOW } from "./_helpers.ts";

Deno.test("weighted round-robin over 100 servers gives each exactly its weight's share per window", () => {
  const weights = Array.from({ length: 100 }, (_, i) => 1 + (i % 4));
  const pool = makePool(100, weights, {});
  const wrr = weightedRoundRobin();
  wrr.rebuild!(pool.servers);
  const total = weights.reduce((a, b) => a + b, 0);
  const ctx = context();
  const counts = new Map<string, number>();
  for (let k = 0; k < total * 10; k++) {
    const id = wrr.pick(pool.servers, ctx)!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  pool.servers.forEach((s, i) => {
    const got = counts.get(s.id) ?? 0;
    assert.ok(
      Math.abs(got - weights[i] * 10) <= 1,
      `${s.id}: ${got} picks for weight ${weights[i]}`,
    );
  });
});

Deno.test("weighted round-robin over 100 servers skips unavailable ones and never returns them", () => {
  const pool = makePool(100);
  const wrr = weightedRoundRobin();
  wrr.rebuild!(pool.servers);
  // All but the last three out: the schedule gives up after 16 lost turns and nginx's scan
  // finds them; every pick is one of the three.
  pool.servers.slice(0, 97).forEach((s) => pool.setAdminState(s, "disabled"));
  const ctx = context();
  const ids = new Set(Array.from({ length: 300 }, () => wrr.pick(pool.servers, ctx)!.id));
  assert.deepEqual([...ids].sort(), pool.servers.slice(97).map((s) => s.id).sort());
});

Deno.test("least-conn over 200 servers picks from the idle half nearly always, and finds a lone idle one", () => {
  const pool = makePool(200);
  pool.servers.forEach((s, i) => {
    if (i % 2) { for (let k = 0; k < 10; k++) pool.beginRequest(s); }
  });
  const lc = leastConn();
  const ctx = context();
  let busy = 0;
  for (let k = 0; k < 1000; k++) if (lc.pick(pool.servers, ctx)!.inflight > 0) busy++;
  // All 8 draws busy: 0.5⁸ ≈ 0.4 % of picks.
  assert.ok(busy < 15, `${busy} of 1000 picks went to a busy server`);
  pool.servers.forEach((s, i) => {
    if (i !== 150) pool.setAdminState(s, "disabled");
  });
  for (let k = 0; k < 50; k++) assert.equal(lc.pick(pool.servers, ctx)!.id, pool.servers[150].id);
});

Deno.test("fastest over 200 servers goes to the fast half nearly always", () => {
  const pool = makePool(200);
  pool.servers.forEach((s, i) => {
    pool.beginRequest(s);
    pool.endRequest(s, true, i % 2 ? 200 : 5, NOW);
  });
  const f = fastest();
  const ctx = context();
  let slow = 0;
  for (let k = 0; k < 1000; k++) {
    const s = f.pick(pool.servers, ctx)!;
    if (pool.servers.indexOf(s) % 2) slow++;
  }
  assert.ok(slow < 15, `${slow} of 1000 picks went to a slow server`);
});

Deno.test("a pick over 10,000 servers looks at a few dozen of them, not all (no timing asserted)", async () => {
  const { STRATEGY_NAMES, createStrategy } = await import(
    "../../../src/balancing/strategies/registry.ts"
  );
  const pool = makePool(10_000);
  let reads = 0;
  const counted = new Proxy(pool.servers as object[], {
    get(target, key, receiver) {
      if (typeof key === "string" && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver);
    },
  }) as unknown as typeof pool.servers;
  for (const name of STRATEGY_NAMES) {
    const strategy = createStrategy(name, { hash: { key: "ip" } });
    strategy.rebuild?.(counted);
    const ctx = context();
    reads = 0;
    for (let k = 0; k < 100; k++) assert.ok(strategy.pick(counted, ctx));
    assert.ok(reads / 100 <= 40, `${name} read ${reads / 100} servers per pick`);
  }
});
