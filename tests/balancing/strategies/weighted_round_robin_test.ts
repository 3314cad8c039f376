import assert from "node:assert/strict";
import { weightedRoundRobin } from "../../../src/balancing/strategies/weighted_round_robin.ts";
import { seededRandom } from "../../../src/balancing/strategies/seeded_random.ts";
import { context, makePool, NOW, pickIds, serverUrl } from "./_helpers.ts";

/** Picks as letters: server i is the i-th letter. */
function letters(weights: number[], count: number): string {
  const pool = makePool(weights.length, weights);
  const ids = pickIds(weightedRoundRobin(), pool.servers, context(), count);
  return ids.map((id) => "abcdefghijklmnopqrstuvwxyz"[pool.servers.findIndex((s) => s.id === id)])
    .join("");
}

function longestRun(seq: string, letter: string): number {
  let best = 0;
  let run = 0;
  for (const c of seq) {
    run = c === letter ? run + 1 : 0;
    best = Math.max(best, run);
  }
  return best;
}

Deno.test("smooth weighted round-robin yields a a b a c a a for weights 5,1,1", () => {
  assert.equal(letters([5, 1, 1], 14), "aabacaa" + "aabacaa");
});

Deno.test("smooth weighted round-robin gives each server exactly its weight in every window of sum(weights) picks", () => {
  const random = seededRandom(3);
  for (let trial = 0; trial < 50; trial++) {
    const weights = Array.from(
      { length: 2 + Math.floor(random() * 5) },
      () => 1 + Math.floor(random() * 20),
    );
    const total = weights.reduce((a, b) => a + b, 0);
    const seq = letters(weights, 3 * total);
    // Every window, not just the aligned ones: the schedule repeats every sum(weights) picks.
    for (let start = 0; start + total <= seq.length; start++) {
      const window = seq.slice(start, start + total);
      weights.forEach((w, i) => {
        const got = window.split("abcdefghijklmnopqrstuvwxyz"[i]).length - 1;
        assert.equal(
          got,
          w,
          `weights ${weights}: window at ${start} gave server ${i} ${got} picks, not ${w}`,
        );
      });
    }
  }
});

Deno.test("smooth weighted round-robin runs are shorter than 2 × sum(weights) ÷ sum(other weights), but can exceed ⌈w ÷ others⌉", () => {
  // Within one cycle 5,1,1 never gives a more than 2 in a row, but the cycle ends with a a and
  // starts with a a, so the seam holds 4: more than ⌈5 ÷ 2⌉ = 3, less than 2 × 7 ÷ 2 = 7.
  assert.equal(longestRun(letters([5, 1, 1], 14), "a"), 4);
  const random = seededRandom(4);
  for (let trial = 0; trial < 300; trial++) {
    const weights = Array.from(
      { length: 2 + Math.floor(random() * 6) },
      () => 1 + Math.floor(random() * 60),
    );
    const total = weights.reduce((a, b) => a + b, 0);
    const seq = letters(weights, 2 * total);
    weights.forEach((w, i) => {
      const run = longestRun(seq, "abcdefghijklmnopqrstuvwxyz"[i]);
      assert.ok(
        run < 2 * total / (total - w),
        `weights ${weights}: server ${i} ran ${run} picks in a row`,
      );
    });
  }
});

Deno.test("smooth weighted round-robin skips an unavailable server and shares its turns by weight", () => {
  const pool = makePool(3, [5, 1, 1]);
  const [a, b, c] = pool.servers;
  pool.recordHealth(b, false, "timeout", 1, 1, NOW);
  const ids = pickIds(weightedRoundRobin(), pool.servers, context(), 60);
  assert.equal(ids.filter((id) => id === a.id).length, 50);
  assert.equal(ids.filter((id) => id === c.id).length, 10);
  assert.equal(ids.includes(b.id), false);
});

Deno.test("smooth weighted round-robin keeps the others' place in the rotation when a server is added", () => {
  const pool = makePool(2);
  const [a, b] = pool.servers;
  const wrr = weightedRoundRobin();
  wrr.rebuild!(pool.servers);
  assert.equal(wrr.pick(pool.servers, context()), a);
  pool.addServer({ url: serverUrl(2) });
  wrr.rebuild!(pool.servers);
  // b is owed the next turn; a reset rotation would start again from a.
  assert.equal(wrr.pick(pool.servers, context()), b);
});

Deno.test("smooth weighted round-robin follows a weight change", () => {
  const pool = makePool(2, [1, 1]);
  const wrr = weightedRoundRobin();
  const before = pickIds(wrr, pool.servers, context(), 4);
  assert.equal(before.filter((id) => id === pool.servers[0].id).length, 2);
  pool.setWeight(pool.servers[0], 3);
  wrr.rebuild!(pool.servers);
  const after = pickIds(wrr, pool.servers, context(), 40);
  assert.equal(after.filter((id) => id === pool.servers[0].id).length, 30);
});
