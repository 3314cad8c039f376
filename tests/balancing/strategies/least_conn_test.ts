import assert from "node:assert/strict";
import { leastConn } from "../../../src/balancing/strategies/least_conn.ts";
import { context, makePool, pickIds, tally } from "./_helpers.ts";

Deno.test("least-conn sends the next requests to the other servers while one is held busy", () => {
  const pool = makePool(3);
  const [a, b, c] = pool.servers;
  for (let i = 0; i < 10; i++) pool.beginRequest(a);
  const strategy = leastConn();
  const picked = Array.from({ length: 20 }, () => {
    const s = strategy.pick(pool.servers, context())!;
    pool.beginRequest(s);
    return s.id;
  });
  const counts = tally(picked);
  assert.equal(counts.get(a.id), undefined);
  assert.equal(counts.get(b.id), 10);
  assert.equal(counts.get(c.id), 10);
  // All three at 10 now: a is back in the rotation.
  assert.equal(strategy.pick(pool.servers, context()), a);
});

Deno.test("least-conn rotates ties instead of always picking the first server", () => {
  const pool = makePool(3);
  const ids = pickIds(leastConn(), pool.servers, context(), 6);
  const [a, b, c] = pool.servers.map((s) => s.id);
  assert.deepEqual(ids, [a, b, c, a, b, c]);
});

Deno.test("least-conn divides in-flight by weight: weights 3 and 1 fill 6 and 2", () => {
  const pool = makePool(2, [3, 1]);
  const strategy = leastConn();
  for (let i = 0; i < 8; i++) pool.beginRequest(strategy.pick(pool.servers, context())!);
  assert.deepEqual(pool.servers.map((s) => s.inflight), [6, 2]);
});
