import assert from "node:assert/strict";
import { simulate } from "../../../src/balancing/simulate.ts";
import { fastest } from "../../../src/balancing/strategies/fastest.ts";
import { context, makePool, NOW } from "./_helpers.ts";
import { picksUntilMajority, shareOf } from "./_simulation.ts";

Deno.test("fastest tries servers never measured first, one probe each", () => {
  const pool = makePool(3);
  const [a, b, c] = pool.servers;
  pool.beginRequest(a);
  pool.endRequest(a, true, 10, NOW);
  const strategy = fastest();
  const order = Array.from({ length: 3 }, () => {
    const s = strategy.pick(pool.servers, context())!;
    pool.beginRequest(s);
    return s;
  });
  assert.deepEqual(order, [b, c, a]);
});

Deno.test("fastest probes a slow server once its estimate has decayed, one probe at a time", () => {
  const tau = 1000;
  const pool = makePool(2, [], { latencyTau: tau });
  const [a, b] = pool.servers;
  for (const [s, ms] of [[a, 10], [b, 1000]] as const) {
    pool.beginRequest(s);
    pool.endRequest(s, true, ms, NOW);
  }
  const strategy = fastest({ latencyTau: tau });
  const probes: number[] = [];
  const answers: number[] = [];
  for (let t = NOW + 10; t < NOW + 12_000; t += 10) {
    while (answers.length && answers[0] <= t) pool.endRequest(b, true, 1000, answers.shift()!);
    const s = strategy.pick(pool.servers, context({ now: t }))!;
    pool.beginRequest(s);
    if (s === a) {
      pool.endRequest(a, true, 10, t);
    } else {
      probes.push(t - NOW);
      answers.push(t + 1000);
    }
  }
  // 1000 × e^(-idle/τ) falls below a's 10 ms after τ·ln(100) ≈ 4605 ms. The estimate holds
  // while the probe is out; its slow answer 1000 ms later starts the next period.
  assert.equal(probes.length, 2, `probes at ${probes}`);
  assert.ok(probes[0] > 4500 && probes[0] < 4700, `first probe at ${probes[0]} ms`);
  assert.ok(
    probes[1] - probes[0] > 5500 && probes[1] - probes[0] < 5700,
    `second probe at ${probes[1]} ms`,
  );
});

Deno.test("fastest sends most traffic to the fastest server in a simulation of 5, 50 and 200 ms servers", () => {
  const r = simulate({ strategy: "fastest", latency: [5, 50, 200], seed: 1 });
  assert.ok(r.servers[0].share > 0.9, `fast server share ${r.servers[0].share}`);
  assert.ok(r.servers[2].share < 0.02, `slow server share ${r.servers[2].share}`);
});

Deno.test("fastest moves to the new fastest server within 200 picks when latencies swap", () => {
  for (const seed of [1, 2, 3]) {
    const r = simulate({
      strategy: "fastest",
      latency: [5, 50, 200],
      changes: [{ after: 5000, latency: [200, 50, 5] }],
      seed,
      recordPicks: true,
    });
    const picks = r.picks!;
    assert.ok(shareOf(picks, 0, 4000, 5000) > 0.9);
    const lag = picksUntilMajority(picks, 2, 5000, 100);
    assert.ok(lag >= 0 && lag <= 200, `seed ${seed}: took ${lag} picks`);
    assert.ok(shareOf(picks, 2, 6000, 10_000) > 0.9);
  }
});

Deno.test("fastest finds a server that got no traffic when it becomes the fastest, within 200 picks", () => {
  // One request at a time: the 200 ms server gets only decay probes before the swap.
  const r = simulate({
    strategy: "fastest",
    latency: [5, 50, 200],
    concurrency: 1,
    requests: 6000,
    changes: [{ after: 3000, latency: [200, 50, 5] }],
    recordPicks: true,
  });
  const picks = r.picks!;
  assert.ok(shareOf(picks, 2, 2000, 3000) < 0.01);
  const lag = picksUntilMajority(picks, 2, 3000, 100);
  assert.ok(lag >= 0 && lag <= 200, `took ${lag} picks`);
  assert.ok(shareOf(picks, 2, 4000, 6000) > 0.95);
});
