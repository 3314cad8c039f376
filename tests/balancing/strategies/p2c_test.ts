import assert from "node:assert/strict";
import { simulate } from "../../../src/balancing/simulate.ts";
import { fastest } from "../../../src/balancing/strategies/fastest.ts";
import { p2c } from "../../../src/balancing/strategies/p2c.ts";
import { context, makePool, NOW } from "./_helpers.ts";
import { picksUntilMajority, shareOf } from "./_simulation.ts";

Deno.test("p2c sends to the cheaper of two by peak latency × (in-flight + 1)", () => {
  const pool = makePool(2);
  const [a, b] = pool.servers;
  for (const [s, ms] of [[a, 10], [b, 5]] as const) {
    pool.beginRequest(s);
    pool.endRequest(s, true, ms, NOW);
  }
  const strategy = p2c();
  assert.equal(strategy.pick(pool.servers, context()), b); // 5 × 1 < 10 × 1
  for (let i = 0; i < 3; i++) pool.beginRequest(b);
  assert.equal(strategy.pick(pool.servers, context()), a); // 10 × 1 < 5 × 4
});

Deno.test("p2c judges by peak latency: one slow answer counts at once, where fastest averages it", () => {
  const pool = makePool(2);
  const [a, b] = pool.servers;
  for (const ms of [10, 10, 10, 100]) {
    pool.beginRequest(a);
    pool.endRequest(a, true, ms, NOW);
  }
  pool.beginRequest(b);
  pool.endRequest(b, true, 30, NOW);
  assert.equal(p2c().pick(pool.servers, context()), b); // peak 100 > 30
  assert.equal(fastest().pick(pool.servers, context()), a); // average 19 < 30
});

Deno.test("p2c tries an idle server never measured before measured ones", () => {
  const pool = makePool(2);
  const [a, b] = pool.servers;
  pool.beginRequest(a);
  pool.endRequest(a, true, 1, NOW);
  assert.equal(p2c().pick(pool.servers, context()), b);
  pool.beginRequest(b);
  assert.equal(p2c().pick(pool.servers, context()), a); // b's first request is still out
});

Deno.test("p2c sends most traffic to the fast servers in a simulation of 5, 50 and 200 ms servers", () => {
  const r = simulate({ strategy: "p2c", latency: [5, 50, 200], seed: 1 });
  assert.ok(r.servers[0].share > 0.5, `fast server share ${r.servers[0].share}`);
  assert.ok(r.servers[2].share < 0.1, `slow server share ${r.servers[2].share}`);
});

Deno.test("p2c's simulated p99 is lower than round-robin's on servers of 5, 50 and 200 ms", () => {
  for (const seed of [1, 2]) {
    const ours = simulate({ strategy: "p2c", latency: [5, 50, 200], seed });
    const rr = simulate({ strategy: "round-robin", latency: [5, 50, 200], seed });
    assert.ok(
      ours.overall.p99 < rr.overall.p99 / 2,
      `p2c ${ours.overall.p99} vs round-robin ${rr.overall.p99}`,
    );
  }
});

Deno.test("p2c moves to the new fastest server within 200 picks when latencies swap", () => {
  for (const seed of [1, 2, 3]) {
    const r = simulate({
      strategy: "p2c",
      latency: [5, 50, 200],
      changes: [{ after: 5000, latency: [200, 50, 5] }],
      seed,
      recordPicks: true,
    });
    const picks = r.picks!;
    assert.ok(shareOf(picks, 0, 4000, 5000) > 0.55);
    const lag = picksUntilMajority(picks, 2, 5000, 100);
    assert.ok(lag >= 0 && lag <= 200, `seed ${seed}: took ${lag} picks`);
    assert.ok(shareOf(picks, 2, 6000, 10_000) > 0.55);
    assert.ok(shareOf(picks, 0, 6000, 10_000) < 0.1);
  }
});
