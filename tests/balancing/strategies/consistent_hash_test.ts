import assert from "node:assert/strict";
import { ServerPool } from "../../../src/balancing/pool.ts";
import { consistentHash } from "../../../src/balancing/strategies/consistent_hash.ts";
import { assignments, makeKeys, makePool, NOW, serverUrl, tally } from "./_helpers.ts";
import { hotKeys } from "./_hot_keys.ts";

const keys = makeKeys(10_000);

function moved(before: string[], after: string[]): number[] {
  return before.flatMap((id, i) => (id === after[i] ? [] : [i]));
}

Deno.test("consistent-hash sends the same key to the same server, whatever the servers' order", () => {
  const pool = makePool(5);
  const reversed = new ServerPool(pool.servers.map((s) => ({ url: s.url })).reverse());
  const first = assignments(consistentHash(), pool.servers, keys);
  assert.deepEqual(assignments(consistentHash(), pool.servers, keys), first);
  assert.deepEqual(assignments(consistentHash(), reversed.servers, keys), first);
  assert.equal(tally(first).size, 5);
});

Deno.test("consistent-hash moves at most 1/(n+1) + 5% of 10,000 keys when one server joins n, all to it", () => {
  for (const n of [3, 4, 8]) {
    const pool = makePool(n);
    const strategy = consistentHash();
    const before = assignments(strategy, pool.servers, keys);
    const added = pool.addServer({ url: serverUrl(n) });
    const after = assignments(strategy, pool.servers, keys);
    const changed = moved(before, after);
    assert.ok(
      changed.length <= keys.length * (1 / (n + 1) + 0.05),
      `${n} → ${n + 1}: ${changed.length} keys moved`,
    );
    assert.ok(changed.length > 0);
    for (const i of changed) assert.equal(after[i], added.id);
  }
});

Deno.test("consistent-hash moves only the removed server's keys when a server leaves", () => {
  const pool = makePool(5);
  const strategy = consistentHash();
  const before = assignments(strategy, pool.servers, keys);
  const gone = pool.servers[2].id;
  pool.removeServer(gone);
  const after = assignments(strategy, pool.servers, keys);
  const owned = before.flatMap((id, i) => (id === gone ? [i] : []));
  assert.deepEqual(moved(before, after), owned);
});

Deno.test("consistent-hash moves only a down server's keys, and they come back when it recovers", () => {
  const pool = makePool(5);
  const strategy = consistentHash();
  const before = assignments(strategy, pool.servers, keys);
  const down = pool.servers[3];
  pool.recordHealth(down, false, "timeout", 1, 1, NOW);
  const during = assignments(strategy, pool.servers, keys);
  assert.deepEqual(moved(before, during), before.flatMap((id, i) => (id === down.id ? [i] : [])));
  // Its keys spread over the others (the next points clockwise belong to all of them).
  assert.equal(new Set(moved(before, during).map((i) => during[i])).size, 4);
  pool.recordHealth(down, true, "200", 1, 1, NOW);
  assert.deepEqual(assignments(strategy, pool.servers, keys), before);
});

Deno.test("consistent-hash gives a server of weight 2 about twice the keys", () => {
  const pool = makePool(3, [1, 2, 1]);
  const counts = tally(assignments(consistentHash(), pool.servers, keys));
  const share = counts.get(pool.servers[1].id)! / keys.length;
  assert.ok(Math.abs(share - 0.5) < 0.05, `weight-2 share ${share}`);
});

Deno.test("consistent-hash with balanceFactor 1.25 keeps every server within ceil(1.25 × mean in-flight) under hot keys", () => {
  const bounded = hotKeys(consistentHash({ hash: { balanceFactor: 1.25 } }), makePool(5), 1.25);
  assert.equal(bounded.over, 0, `worst ${bounded.worst}`);
  // The same workload without the bound piles the hot key's requests onto one server.
  const unbounded = hotKeys(consistentHash(), makePool(5), 1.25);
  assert.ok(unbounded.over > 1000 && unbounded.worst > 2, `unbounded worst ${unbounded.worst}`);
});
