import assert from "node:assert/strict";
import { createStrategy, STRATEGY_NAMES } from "../../../src/balancing/strategies/registry.ts";
import type { ServerPool } from "../../../src/balancing/pool.ts";
import { context, makeKeys, makePool, NOW, serverUrl } from "./_helpers.ts";

/** Servers 0..7 where only 6 and 7 may be picked: each other one is out for a different reason. */
function troubledPool(): ServerPool {
  const pool = makePool(8);
  const s = pool.servers;
  pool.recordHealth(s[1], false, "connection refused", 1, 1, NOW);
  pool.setAdminState(s[2], "disabled");
  pool.setAdminState(s[3], "draining");
  pool.eject(s[4], NOW + 30_000, "5 errors in a row", NOW);
  pool.setMaxConnections(s[5], 1);
  pool.beginRequest(s[5]);
  return pool;
}

/** Every pick over many keys and random draws, as ids. */
function picksOver(
  name: string,
  pool: ServerPool,
  over: Parameters<typeof context>[0] = {},
): Set<string> {
  const strategy = createStrategy(name, { hash: { balanceFactor: name === "maglev" ? 1.25 : 0 } });
  strategy.rebuild?.(pool.servers);
  let key = "";
  const ctx = context({ key: () => key, ...over });
  const seen = new Set<string>();
  for (const k of makeKeys(500)) {
    key = k;
    seen.add(strategy.pick(pool.servers, ctx)?.id ?? "none");
  }
  return seen;
}

for (const name of STRATEGY_NAMES) {
  Deno.test(`${name} never picks an unavailable or excluded server`, () => {
    const pool = troubledPool();
    const s = pool.servers;
    const seen = picksOver(name, pool, { exclude: new Set([s[0]]) });
    assert.deepEqual([...seen].sort(), [s[6].id, s[7].id]);
  });

  Deno.test(`${name} returns undefined when no server is eligible`, () => {
    const pool = makePool(3);
    for (const s of pool.servers) pool.recordHealth(s, false, "timeout", 1, 1, NOW);
    assert.deepEqual([...picksOver(name, pool)], ["none"]);
    const excludedAll = makePool(2);
    assert.deepEqual([...picksOver(name, excludedAll, { exclude: new Set(excludedAll.servers) })], [
      "none",
    ]);
    const strategy = createStrategy(name);
    assert.deepEqual(strategy.pick([], context()), undefined);
  });

  Deno.test(`${name} in panic mode picks among unhealthy servers, but not disabled, draining or excluded ones`, () => {
    const pool = makePool(5);
    const s = pool.servers;
    for (const x of s) pool.recordHealth(x, false, "timeout", 1, 1, NOW);
    pool.setAdminState(s[1], "disabled");
    pool.setAdminState(s[2], "draining");
    const seen = picksOver(name, pool, { panic: true, exclude: new Set([s[0]]) });
    assert.deepEqual([...seen].sort(), [s[3].id, s[4].id]);
  });

  Deno.test(`${name} builds its tables again when handed a new servers array, without rebuild`, () => {
    const pool = makePool(2);
    const strategy = createStrategy(name);
    let key = "";
    const ctx = context({ key: () => key });
    key = "warm-up";
    strategy.pick(pool.servers, ctx);
    const added = pool.addServer({ url: serverUrl(2) });
    pool.recordHealth(pool.servers[0], false, "timeout", 1, 1, NOW);
    pool.recordHealth(pool.servers[1], false, "timeout", 1, 1, NOW);
    // Only the new server is eligible: a strategy still using its old tables would find none.
    for (const k of makeKeys(20)) {
      key = k;
      assert.ok(strategy.pick(pool.servers, ctx) === added, `${name} did not see the added server`);
    }
  });
}
