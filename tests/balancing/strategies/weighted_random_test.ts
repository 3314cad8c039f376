import assert from "node:assert/strict";
import { weightedRandom } from "../../../src/balancing/strategies/weighted_random.ts";
import { seededRandom } from "../../../src/balancing/strategies/seeded_random.ts";
import { context, makePool, NOW, pickIds, tally } from "./_helpers.ts";

function shares(ids: string[]): Map<string, number> {
  return new Map([...tally(ids)].map(([id, n]) => [id, n / ids.length]));
}

Deno.test("weighted random picks each server in proportion to its weight", () => {
  const pool = makePool(3, [1, 2, 7]);
  const got = shares(pickIds(weightedRandom(), pool.servers, context(), 20_000));
  pool.servers.forEach((s, i) => {
    const want = [0.1, 0.2, 0.7][i];
    assert.ok(
      Math.abs(got.get(s.id)! - want) < 0.015,
      `${s.id}: ${got.get(s.id)} instead of ${want}`,
    );
  });
});

Deno.test("weighted random keeps the proportions among the others when the heaviest server is down", () => {
  const pool = makePool(3, [1, 2, 7]);
  const [a, b, c] = pool.servers;
  pool.recordHealth(c, false, "timeout", 1, 1, NOW);
  const got = shares(pickIds(weightedRandom(), pool.servers, context(), 20_000));
  assert.equal(got.get(c.id), undefined);
  assert.ok(Math.abs(got.get(a.id)! - 1 / 3) < 0.02, `a: ${got.get(a.id)}`);
  assert.ok(Math.abs(got.get(b.id)! - 2 / 3) < 0.02, `b: ${got.get(b.id)}`);
});

Deno.test("weighted random gives the same picks for the same seed", () => {
  const pool = makePool(4, [1, 2, 3, 4]);
  const run = () =>
    pickIds(weightedRandom(), pool.servers, context({ random: seededRandom(77) }), 50);
  assert.deepEqual(run(), run());
});

Deno.test("weighted random follows new weights after rebuild", () => {
  const pool = makePool(2, [1, 1]);
  const strategy = weightedRandom();
  strategy.rebuild!(pool.servers);
  pool.setWeight(pool.servers[1], 9);
  strategy.rebuild!(pool.servers);
  const got = shares(pickIds(strategy, pool.servers, context(), 10_000));
  assert.ok(Math.abs(got.get(pool.servers[1].id)! - 0.9) < 0.015);
});
