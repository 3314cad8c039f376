import assert from "node:assert/strict";
import { roundRobin } from "../../../src/balancing/strategies/round_robin.ts";
import { context, makePool, NOW, pickIds } from "./_helpers.ts";

Deno.test("round-robin rotates evenly over the available servers", () => {
  const pool = makePool(4, [5, 1, 1, 1]);
  const [a, b, , d] = pool.servers.map((s) => s.id);
  pool.recordHealth(pool.servers[2], false, "timeout", 1, 1, NOW);
  assert.deepEqual(pickIds(roundRobin(), pool.servers, context(), 6), [a, b, d, a, b, d]);
});
