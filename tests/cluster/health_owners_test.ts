/**
 * Health checks split by owner between real lb instances of one cluster: each instance
 * checks only its share and records the other's results; when one stops, the other owns and
 * checks every backend.
 */
import assert from "node:assert/strict";
import { call, until } from "../_stack.ts";
import { type Instance, startCluster, untilConnected } from "./_cluster.ts";

/** An instance's shared-health counters from its /metrics: own, fallback, recorded checks. */
async function checks(i: Instance): Promise<Record<string, number>> {
  const text = await (await fetch(`${i.admin}/metrics`)).text();
  const out: Record<string, number> = { own: 0, fallback: 0, recorded: 0, bad: 0 };
  for (
    const m of text.matchAll(/^lb_health_shared_checks_total\{[^}]*kind="(\w+)"[^}]*\} (\S+)$/gm)
  ) {
    out[m[1]] += Number(m[2]);
  }
  return out;
}

/** What each instance did during `ms`. */
async function during(instances: Instance[], ms: number) {
  const before = await Promise.all(instances.map(checks));
  await new Promise((r) => setTimeout(r, ms));
  const after = await Promise.all(instances.map(checks));
  return after.map((a, k) =>
    Object.fromEntries(Object.keys(a).map((x) => [x, a[x] - before[k][x]]))
  );
}

Deno.test("two instances split the health checks; when one stops the other checks everything", async () => {
  const rig = await startCluster(2, {
    backends: 6,
    health: "{ interval: 100ms, timeout: 500ms, rise: 1, fall: 1 }",
  });
  const [a, b] = rig.instances;
  try {
    await untilConnected(rig.instances);
    // Settled: both check their own share and record the other's (no fallback checks).
    const shared = await until(
      async () => {
        const [da, db] = await during(rig.instances, 1000);
        return da.fallback === 0 && db.fallback === 0 && da.own > 0 && db.own > 0 &&
          da.recorded > 0 && db.recorded > 0 && [da, db];
      },
      "the checks to be split",
      15_000,
    );
    const [da, db] = shared as Record<string, number>[];
    // 6 backends every 100 ms for 1 s: about 60 checks between them, not 120.
    assert.ok(da.own + db.own < 90, `own checks ${da.own} + ${db.own}`);
    const servers = (await call(a.admin, "GET", "/api/servers")).json.servers;
    assert.ok(servers.every((s: { state: string }) => s.state === "healthy"));
    // A backend that fails goes unhealthy in both, whoever owns it.
    rig.backends[0].settings.healthy = false;
    for (const i of rig.instances) {
      await until(
        async () =>
          (await call(i.admin, "GET", "/api/servers/backend-1")).json.state === "unhealthy",
        "backend-1 unhealthy",
        5000,
      );
    }
    rig.backends[0].settings.healthy = true;
    // b stops (it leaves the member list at once): a owns and checks all six.
    await b.lb.shutdown(1000);
    await until(
      async () => (await call(a.admin, "GET", "/api/cluster")).json.members.length === 1,
      "b to leave",
      5000,
    );
    const [alone] = await during([a], 1000);
    assert.ok(
      alone.own >= 40,
      `a checked ${alone.own} times in a second, for 6 backends every 100 ms`,
    );
    assert.equal(alone.recorded, 0);
    await until(
      async () => (await call(a.admin, "GET", "/api/servers/backend-1")).json.state === "healthy",
      "backend-1 back",
      5000,
    );
  } finally {
    await rig.close();
  }
});
