import assert from "node:assert/strict";
import { ServerPool } from "../../../src/balancing/pool.ts";
import { buildTable, maglev, nextPrime } from "../../../src/balancing/strategies/maglev.ts";
import { assignments, makeKeys, makePool, NOW, serverUrl, tally } from "./_helpers.ts";
import { hotKeys } from "./_hot_keys.ts";

const keys = makeKeys(10_000);

function moved(before: string[], after: string[]): number[] {
  return before.flatMap((id, i) => (id === after[i] ? [] : [i]));
}

Deno.test("maglev's table gives every server the same number of entries, give or take one", () => {
  for (const n of [3, 5, 7]) {
    const counts = tally([...buildTable(makePool(n).servers, 65537)].map(String));
    assert.equal(counts.size, n);
    assert.ok(Math.max(...counts.values()) - Math.min(...counts.values()) <= 1);
  }
});

Deno.test("maglev fills its table in proportion to weight", () => {
  const counts = tally([...buildTable(makePool(3, [1, 2, 3]).servers, 65537)].map(String));
  [1, 2, 3].forEach((w, i) => assert.ok(Math.abs(counts.get(String(i))! / 65537 - w / 6) < 0.001));
});

Deno.test("maglev spreads 10,000 keys within ±5% of equal", () => {
  for (const n of [3, 4, 5, 8]) {
    const counts = tally(assignments(maglev(), makePool(n).servers, keys));
    assert.equal(counts.size, n);
    for (const c of counts.values()) {
      assert.ok(
        Math.abs(c / (keys.length / n) - 1) <= 0.05,
        `${n} servers: ${[...counts.values()]}`,
      );
    }
  }
});

Deno.test("maglev sends the same key to the same server, whatever the servers' order", () => {
  const pool = makePool(5);
  const reversed = new ServerPool(pool.servers.map((s) => ({ url: s.url })).reverse());
  const first = assignments(maglev(), pool.servers, keys);
  assert.deepEqual(assignments(maglev(), pool.servers, keys), first);
  assert.deepEqual(assignments(maglev(), reversed.servers, keys), first);
});

Deno.test("maglev moves only a down server's keys, spread over the others, and they come back when it recovers", () => {
  const pool = makePool(5);
  const strategy = maglev();
  const before = assignments(strategy, pool.servers, keys);
  const down = pool.servers[1];
  pool.recordHealth(down, false, "timeout", 1, 1, NOW);
  const during = assignments(strategy, pool.servers, keys);
  const owned = before.flatMap((id, i) => (id === down.id ? [i] : []));
  assert.deepEqual(moved(before, during), owned);
  for (const c of tally(owned.map((i) => during[i])).values()) {
    assert.ok(Math.abs(c / owned.length - 0.25) < 0.05);
  }
  pool.recordHealth(down, true, "200", 1, 1, NOW);
  assert.deepEqual(assignments(strategy, pool.servers, keys), before);
});

Deno.test("maglev moves about 1/(n+1) of the keys when a server joins, and under 1% elsewhere", () => {
  const pool = makePool(4);
  const strategy = maglev();
  const before = assignments(strategy, pool.servers, keys);
  const added = pool.addServer({ url: serverUrl(4) });
  const after = assignments(strategy, pool.servers, keys);
  const changed = moved(before, after);
  assert.ok(changed.length <= keys.length * (1 / 5 + 0.05), `${changed.length} keys moved`);
  assert.ok(changed.filter((i) => after[i] !== added.id).length < keys.length * 0.01);
});

Deno.test("maglev moves the removed server's keys and under 1% of the others when a server leaves", () => {
  const pool = makePool(5);
  const strategy = maglev();
  const before = assignments(strategy, pool.servers, keys);
  const gone = pool.servers[2].id;
  pool.removeServer(gone);
  const after = assignments(strategy, pool.servers, keys);
  const changed = moved(before, after);
  assert.ok(before.every((id, i) => id !== gone || after[i] !== gone));
  assert.ok(changed.filter((i) => before[i] !== gone).length < keys.length * 0.01);
});

Deno.test("maglev raises a table size that is not prime to the next prime", () => {
  assert.equal(nextPrime(65536), 65537);
  assert.equal(nextPrime(7), 7);
  const counts = tally(
    assignments(maglev({ hash: { tableSize: 1000 } }), makePool(4).servers, keys),
  );
  assert.equal(counts.size, 4);
});

Deno.test("maglev with balanceFactor 1.25 keeps every server within ceil(1.25 × mean in-flight) under hot keys", () => {
  const bounded = hotKeys(maglev({ hash: { balanceFactor: 1.25 } }), makePool(5), 1.25);
  assert.equal(bounded.over, 0, `worst ${bounded.worst}`);
  const unbounded = hotKeys(maglev(), makePool(5), 1.25);
  assert.ok(unbounded.over > 1000 && unbounded.worst > 2, `unbounded worst ${unbounded.worst}`);
});
