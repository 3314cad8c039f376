/**
 * Redis is not in the request path: killed under load, no request fails; while it is away
 * the instances serve with their last view, refuse changes with 503 and say degraded;
 * restarted empty, they seed it again from their own view and converge.
 */
import assert from "node:assert/strict";
import { call, until } from "../_stack.ts";
import { serverOf, startCluster, untilConnected } from "./_cluster.ts";

/** Requests through `urls` in turn until `signal` aborts; counts answers by status. */
async function load(urls: string[], signal: AbortSignal) {
  const counts = { ok: 0, failed: 0, statuses: new Map<number, number>() };
  let i = 0;
  while (!signal.aborted) {
    try {
      const r = await fetch(urls[i++ % urls.length] + "/");
      await r.body?.cancel();
      if (r.status === 200) counts.ok++;
      else counts.statuses.set(r.status, (counts.statuses.get(r.status) ?? 0) + 1);
    } catch {
      counts.failed++;
    }
  }
  return counts;
}

Deno.test("Redis killed under load: no request fails, changes get 503, restart empty re-seeds", async () => {
  const rig = await startCluster(2);
  const [a, b] = rig.instances;
  const stop = new AbortController();
  try {
    await untilConnected(rig.instances);
    const drained = await call(a.admin, "PATCH", "/api/servers/backend-3", { state: "disabled" });
    assert.equal(drained.status, 200);
    await until(
      async () => (await serverOf(b, "backend-3"))?.state === "disabled",
      "disable",
      5000,
    );
    const running = load([a.url, b.url], stop.signal);
    await new Promise((r) => setTimeout(r, 200));
    await rig.redis.stop();
    // Both notice, keep serving with their view, and refuse changes.
    for (const i of [a, b]) {
      await until(
        async () => (await call(i.admin, "GET", "/healthz")).json.status === "degraded",
        "degraded",
        10_000,
      );
    }
    const refused = await call(b.admin, "PATCH", "/api/servers/backend-1", { weight: 9 });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, "cluster_unavailable");
    assert.match(refused.json.error.message, /Redis is unreachable.*refused.*keeps serving/);
    assert.equal((await serverOf(b, "backend-1")).weight, 1, "a refused change changes nothing");
    const metrics = await (await fetch(`${a.admin}/metrics`)).text();
    assert.match(metrics, /^lb_cluster_connected 0$/m);
    assert.equal((await serverOf(a, "backend-3")).state, "disabled", "the last view stays");
    await new Promise((r) => setTimeout(r, 300));
    // Back, empty: the first instance to reach it seeds the view again; both converge.
    await rig.redis.start();
    await untilConnected(rig.instances);
    stop.abort();
    const counts = await running;
    assert.equal(counts.failed, 0, "no request failed while Redis was away");
    assert.equal(counts.statuses.size, 0, `only 200s: ${[...counts.statuses]}`);
    assert.ok(counts.ok > 20, `requests ran throughout (${counts.ok})`);
    console.log(`${counts.ok} requests while Redis was killed and restarted, 0 failed`);
    const view = await rig.redis.cli("HGET", "lb:{t}:view", '["default","server","backend-3"]');
    assert.match(view, /"state":"disabled"/, "re-seeded from the instances' view");
    const logs = [...a.logs, ...b.logs].join("\n");
    assert.match(logs, /lost Redis/);
    assert.match(logs, /seeded it with this instance's view/);
    const changed = await call(b.admin, "PATCH", "/api/servers/backend-1", { weight: 9 });
    assert.equal(changed.status, 200, JSON.stringify(changed.json));
    await until(async () => (await serverOf(a, "backend-1"))?.weight === 9, "convergence", 5000);
    assert.equal((await call(a.admin, "GET", "/healthz")).json.status, "ok");
  } finally {
    stop.abort();
    await rig.close();
  }
});

Deno.test("values in Redis that lb would not write are skipped; the rest still applies", async () => {
  const rig = await startCluster(2);
  const [a, b] = rig.instances;
  try {
    await untilConnected(rig.instances);
    const rev = Number(await rig.redis.cli("HGET", "lb:{t}:view", "#rev"));
    const epoch = await rig.redis.cli("HGET", "lb:{t}:view", "#epoch");
    // One entry with a bad weight, a field lb never writes, garbage JSON, and one good change.
    await rig.redis.cli("HINCRBY", "lb:{t}:view", "#rev", "1");
    await rig.redis.cli("HSET", "lb:{t}:view", '["default","strategy"]', '{"name":"least-conn"}');
    await rig.redis.cli(
      "XADD",
      "lb:{t}:changes",
      "*",
      "rev",
      String(rev + 1),
      "epoch",
      epoch,
      '["default","server","backend-1"]',
      '{"url":"http://127.0.0.1:1","weight":"heavy","maxConnections":0,"state":"enabled"}',
      '["default","owner"]',
      '"me"',
      '["default","server","backend-3"]',
      "{not json",
      '["default","strategy"]',
      '{"name":"least-conn"}',
    );
    for (const i of [a, b]) {
      await until(
        async () => (await call(i.admin, "GET", "/api/strategy")).json.name === "least-conn",
        "the good change",
        5000,
      );
      assert.equal((await serverOf(i, "backend-1")).weight, 1);
      assert.equal((await serverOf(i, "backend-3")).state, "healthy");
      assert.match(
        i.logs.join("\n"),
        /skipped a value in Redis: field .*backend-1.*: weight: must be a number/,
      );
    }
    // A corrupt hash field at resync time is skipped the same way.
    await rig.redis.cli(
      "HSET",
      "lb:{t}:view",
      '["default","server","backend-2"]',
      '{"removed":"yes"}',
    );
    const fresh = await rig.start();
    await untilConnected(rig.instances);
    assert.ok(await serverOf(fresh, "backend-2"), "the corrupt removal was not applied");
    assert.equal((await call(fresh.admin, "GET", "/api/strategy")).json.name, "least-conn");
  } finally {
    await rig.close();
  }
});

Deno.test("a slow Redis: requests never wait for it; a change it cannot take in time is undone with 503", async () => {
  const rig = await startCluster(2);
  const [a, b] = rig.instances;
  const stop = new AbortController();
  try {
    await untilConnected(rig.instances);
    const running = load([a.url, b.url], stop.signal);
    // Redis stops answering anyone for 2.5 s (DEBUG SLEEP blocks its only thread).
    const sleeping = rig.redis.cli("DEBUG", "SLEEP", "2.5");
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const r = await call(a.admin, "PATCH", "/api/servers/backend-2", { weight: 5 });
    assert.equal(r.status, 503, JSON.stringify(r.json));
    assert.match(r.json.error.message, /Redis did not take the change .*undone/);
    assert.ok(Date.now() - t0 < 2400, "the API answered before Redis woke up");
    assert.equal((await serverOf(a, "backend-2")).weight, 1, "undone here");
    await sleeping;
    await until(
      async () => (await call(a.admin, "GET", "/healthz")).json.status === "ok",
      "ok",
      10_000,
    );
    stop.abort();
    const counts = await running;
    assert.equal(counts.failed, 0);
    assert.equal(counts.statuses.size, 0, `only 200s: ${[...counts.statuses]}`);
    // Nothing of the refused change reached the other instance either.
    assert.equal((await serverOf(b, "backend-2")).weight, 1);
    const ok = await call(a.admin, "PATCH", "/api/servers/backend-2", { weight: 5 });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    await until(async () => (await serverOf(b, "backend-2"))?.weight === 5, "convergence", 5000);
  } finally {
    stop.abort();
    await rig.close();
  }
});
