import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend, startDemoBackends } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { checkOnce, startHealthChecks, statusExpected } from "../../src/balancing/health.ts";
import { startLb } from "../../src/lb.ts";
import { ServerPool } from "../../src/balancing/pool.ts";
import { assertEventually, delayOrAbort, lbConfig, memoryLogger } from "../_stack.ts";

function healthConfig(yaml = ""): Config["health"] {
  return parseConfig(`backends: [{ url: "http://127.0.0.1:1" }]\nhealth:\n${yaml}`).health;
}

async function setDemo(b: DemoBackend, settings: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${b.url}/_demo`, { method: "POST", body: JSON.stringify(settings) });
  assert.equal(res.status, 200);
  await res.body?.cancel();
}

/** A backend whose /health answers after `delayMs`, counting checks and how many overlap. */
function slowHealthBackend(delayMs: number) {
  const stats = { checks: 0, concurrent: 0, maxConcurrent: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    stats.checks++;
    stats.concurrent++;
    stats.maxConcurrent = Math.max(stats.maxConcurrent, stats.concurrent);
    try {
      await delayOrAbort(delayMs, req.signal);
    } finally {
      stats.concurrent--;
    }
    return new Response("ok");
  });
  return { stats, server, url: `http://127.0.0.1:${server.addr.port}` };
}

Deno.test("statusExpected accepts a status inside any configured range and nothing else", () => {
  const ranges: [number, number][] = [[200, 299], [304, 304]];
  assert.equal(statusExpected(200, ranges), true);
  assert.equal(statusExpected(299, ranges), true);
  assert.equal(statusExpected(304, ranges), true);
  assert.equal(statusExpected(301, ranges), false);
  assert.equal(statusExpected(503, ranges), false);
});

Deno.test("one check passes on an expected status and fails on 503, a refused port, or a timeout", async () => {
  const b = await startDemoBackend({ port: 0, index: 1 });
  const slow = slowHealthBackend(5_000);
  try {
    const pool = new ServerPool([{ url: b.url }, { url: slow.url }]);
    const [fast, hanging] = pool.servers;
    const cfg = healthConfig("  timeout: 200ms\n");
    const never = new AbortController().signal;
    assert.deepEqual(await checkOnce(fast, cfg, never), { ok: true, detail: "status 200" });
    b.settings.healthy = false;
    assert.deepEqual(await checkOnce(fast, cfg, never), { ok: false, detail: "status 503" });
    // expectStatus decides: 503 can be made acceptable.
    const lenient = healthConfig("  expectStatus: [200-299, 503]\n");
    assert.equal((await checkOnce(fast, lenient, never)).ok, true);
    const timedOut = await checkOnce(hanging, cfg, never);
    assert.deepEqual(timedOut, { ok: false, detail: "no answer within 200ms" });
    await b.close();
    const refused = await checkOnce(fast, cfg, never);
    assert.equal(refused.ok, false);
    assert.match(refused.detail, /refused/);
  } finally {
    await b.close();
    await slow.server.shutdown();
  }
});

Deno.test("a server whose /health turns 503 goes unhealthy after fall checks, gets no traffic, and comes back after rise", async () => {
  const backends = await startDemoBackends({ count: 2, port: 0 });
  const logger = memoryLogger();
  const lb = startLb({
    config: lbConfig(
      backends.map((b) => b.url),
      "health: { interval: 50ms, timeout: 500ms, rise: 2, fall: 3 }",
    ),
    logger,
  });
  try {
    const [s1] = lb.pool.servers;
    const failuresSeen: number[] = [];
    lb.pool.subscribe((e) => {
      if (e.type === "state") failuresSeen.push(e.server.health.failures);
    });
    await assertEventually(() => s1.health.successes >= 1, 2_000, "a first passing check");
    await setDemo(backends[0], { healthy: false });
    await assertEventually(() => !s1.healthy, 3_000, "backend-1 to go unhealthy");
    // It went down on exactly the fall-th consecutive failure.
    assert.deepEqual(failuresSeen, [3]);

    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${lb.url}/x`);
      assert.equal(res.status, 200);
      seen.add((await res.json()).backend);
    }
    assert.deepEqual([...seen], ["backend-2"]);

    await setDemo(backends[0], { healthy: true });
    await assertEventually(() => s1.healthy, 3_000, "backend-1 to be healthy again");
    assert.equal(s1.health.successes >= 2, true);
    const back = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${lb.url}/x`);
      back.add((await res.json()).backend);
    }
    assert.equal(back.has("backend-1"), true);
    // Each change was logged once, as it happened.
    const events = logger.lines.map((l) => JSON.parse(l)).filter((e) => e.kind === "state");
    assert.deepEqual(events.map((e) => `${e.server} ${e.from}→${e.to}`), [
      `${s1.id} healthy→unhealthy`,
      `${s1.id} unhealthy→healthy`,
    ]);
  } finally {
    await lb.shutdown(1_000);
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("checks of one server never overlap, even when /health is slower than the interval", async () => {
  const slow = slowHealthBackend(120);
  const pool = new ServerPool([{ url: slow.url }]);
  const checks = startHealthChecks(
    pool,
    healthConfig("  interval: 10ms\n  timeout: 1s\n"),
    memoryLogger(),
  );
  try {
    await assertEventually(() => slow.stats.checks >= 4, 5_000, "four checks");
    assert.equal(slow.stats.maxConcurrent, 1);
    assert.equal(pool.servers[0].health.ok, true);
  } finally {
    await checks.stop();
    await slow.server.shutdown();
  }
});

Deno.test("with assumeHealthy false, servers get no traffic until rise checks have passed", async () => {
  const b = await startDemoBackend({ port: 0, index: 1 });
  const lb = startLb({
    config: lbConfig(
      [b.url],
      "panicMode: false\nhealth: { interval: 100ms, rise: 3, assumeHealthy: false }",
    ),
    logger: memoryLogger(),
  });
  try {
    const s = lb.pool.servers[0];
    assert.equal(s.healthy, false);
    const early = await fetch(`${lb.url}/x`);
    assert.equal(early.status, 503);
    assert.equal(early.headers.get("retry-after"), "1");
    await early.body?.cancel();
    await assertEventually(() => s.healthy, 3_000, "the server to pass 3 checks");
    assert.equal(s.health.successes, 3);
    const res = await fetch(`${lb.url}/x`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await lb.shutdown(1_000);
    await b.close();
  }
});

Deno.test("servers added later are checked, and removed servers are checked no more", async () => {
  const slowA = slowHealthBackend(0);
  const slowB = slowHealthBackend(0);
  const pool = new ServerPool([{ url: slowA.url }]);
  const checks = startHealthChecks(pool, healthConfig("  interval: 20ms\n"), memoryLogger());
  try {
    await assertEventually(() => slowA.stats.checks >= 2, 2_000, "checks of the first server");
    const added = pool.addServer({ url: slowB.url });
    await assertEventually(() => slowB.stats.checks >= 2, 2_000, "checks of the added server");
    assert.equal(added.health.ok, true);
    pool.removeServer(pool.servers[0].id);
    await new Promise((r) => setTimeout(r, 50)); // let a check already on the wire land
    const after = slowA.stats.checks;
    const bBefore = slowB.stats.checks;
    await assertEventually(
      () => slowB.stats.checks >= bBefore + 3,
      2_000,
      "more checks of the added server",
    );
    assert.equal(slowA.stats.checks, after);
  } finally {
    await checks.stop();
    await slowA.server.shutdown();
    await slowB.server.shutdown();
  }
});

Deno.test("stop() aborts a check in flight and schedules no more", async () => {
  const slow = slowHealthBackend(10_000);
  const pool = new ServerPool([{ url: slow.url }]);
  const checks = startHealthChecks(
    pool,
    healthConfig("  interval: 10ms\n  timeout: 20s\n"),
    memoryLogger(),
  );
  try {
    await assertEventually(() => slow.stats.concurrent === 1, 2_000, "a check in flight");
    await checks.stop();
    // The server saw the check's connection go away, and nothing was recorded for it.
    await assertEventually(() => slow.stats.concurrent === 0, 2_000, "the check to be aborted");
    assert.equal(pool.servers[0].health.at, 0);
    const n = slow.stats.checks;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(slow.stats.checks, n);
  } finally {
    await checks.stop();
    await slow.server.shutdown();
  }
});

Deno.test("with health.enabled false no check is ever sent", async () => {
  const slow = slowHealthBackend(0);
  const pool = new ServerPool([{ url: slow.url }]);
  const checks = startHealthChecks(
    pool,
    healthConfig("  enabled: false\n  interval: 10ms\n"),
    memoryLogger(),
  );
  try {
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(slow.stats.checks, 0);
  } finally {
    await checks.stop();
    await slow.server.shutdown();
  }
});
