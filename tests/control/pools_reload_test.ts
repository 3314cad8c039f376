/**
 * Reload with named pools, in process through lb.reload: a pool and its route added are
 * served at once, a pool removed finishes its in-flight requests while its route is gone,
 * a change to one pool leaves the others' servers alone, and a pool's settings that only a
 * restart can apply are named `pools.<name>.<section>`.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { call, memoryLogger, until } from "../_stack.ts";
import {
  type PoolBackends,
  poolsConfig,
  poolsRaw,
  startPoolBackends,
  trafficClient,
} from "../_pools.ts";

/** An lb on `config` and a traffic client for it. */
function start(config: ReturnType<typeof poolsConfig>, configSource?: string) {
  const logger = memoryLogger();
  const lb = startLb({ config, logger, configSource });
  const traffic = trafficClient(lb.url);
  return {
    lb,
    traffic,
    logger,
    async close() {
      traffic.close();
      await lb.shutdown(2000);
    },
  };
}

const pick = (b: PoolBackends, ...names: string[]) =>
  Object.fromEntries(names.map((n) => [n, b[n]]));

Deno.test("a reload that adds a pool and a route to it serves the new route at once", async () => {
  const b = await startPoolBackends({ web: 1, api: 1 });
  const web = [{ name: "web", pool: "web" }];
  const st = start(poolsConfig(pick(b.pools, "web"), { routes: web }));
  try {
    assert.deepEqual(await st.traffic.backends(2, "/api/x"), new Set(["backend-1"]));
    const r = await st.lb.reload(
      poolsConfig(b.pools, {
        routes: [{ name: "api", match: { path: "/api/" }, pool: "api" }, ...web],
        settings: { api: { strategy: "least-conn" } },
      }),
      "test",
    );
    assert.equal(r.ok, true, r.problems.join("\n"));
    assert.deepEqual(r.changes, ["added pool api (1 servers, least-conn)", "routes replaced (2)"]);
    assert.deepEqual(r.needsRestart, []);
    const res = await st.traffic.get("/api/x");
    assert.equal(res.status, 200);
    assert.equal(res.backend, "backend-2");
    assert.equal(res.json.path, "/api/x");
    assert.deepEqual(await st.traffic.backends(2, "/other"), new Set(["backend-1"]));
    assert.deepEqual(st.lb.pools.list.map((p) => p.name), ["web", "api"]);
    assert.equal(st.lb.pools.get("api")!.balancer.strategy.name, "least-conn");
  } finally {
    await st.close();
    await b.close();
  }
});

Deno.test("a reload that removes a pool lets its in-flight requests finish, and its route is gone at once (404 no_route)", async () => {
  const b = await startPoolBackends({ web: 1 });
  const slow = await startPoolBackends({ api: 1 }, { latencyMs: 300, first: 2 });
  const routes = [
    { name: "api", match: { path: "/api/" }, pool: "api", stripPrefix: true },
    { name: "web", match: { path: "/web/" }, pool: "web" },
  ];
  const pools = { web: b.pools.web, api: slow.pools.api };
  const st = start(poolsConfig(pools, { routes }));
  try {
    const api = st.lb.pools.get("api")!;
    const server = api.servers.servers[0];
    // One answer mid-body (its headers are here, 100 chunks 5 ms apart still to come) and
    // one still waiting for its headers.
    const streaming = await fetch(`${st.lb.url}/api/stream?bytes=100000&chunk=1000&delayMs=5`);
    assert.equal(streaming.status, 200);
    assert.equal(streaming.headers.get("x-backend"), "backend-2");
    const waiting = fetch(`${st.lb.url}/api/slow`);
    await until(() => server.inflight === 2, "two requests in flight on the api pool");

    const r = await st.lb.reload(poolsConfig(pick(pools, "web"), { routes: [routes[1]] }), "test");
    assert.equal(r.ok, true, r.problems.join("\n"));
    assert.deepEqual(r.changes, ["routes replaced (1)", "removing pool api (draining)"]);
    assert.equal(st.lb.pools.get("api"), undefined);
    const gone = await st.traffic.get("/api/x");
    assert.equal(gone.status, 404);
    assert.equal(gone.json.error.code, "no_route");
    assert.equal(gone.backend, null);
    assert.equal((await st.traffic.get("/web/x")).backend, "backend-1");
    // Its requests still count in the metrics while they finish.
    const metrics = await st.lb.metrics.text();
    assert.match(metrics, /lb_requests_in_flight\{pool="api"\} 2/);

    const res = await waiting;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).backend, "backend-2");
    assert.equal((await streaming.bytes()).byteLength, 100000);
    await until(() => api.servers.servers.length === 0, "the removed pool's server to leave");
  } finally {
    await st.close();
    await b.close();
    await slow.close();
  }
});

Deno.test("a reload that changes one pool's backends leaves the other pool's servers and their state alone", async () => {
  const b = await startPoolBackends({ web: 2, api: 2 });
  const dir = await Deno.makeTempDir({ prefix: "lb_pools_reload_" });
  const path = `${dir}/lb.yaml`;
  const before = { web: b.pools.web, api: [b.pools.api[0]] };
  await Deno.writeTextFile(path, JSON.stringify(poolsRaw(before)));
  const st = start(parseConfig(Deno.readTextFileSync(path), path), path);
  try {
    const admin = st.lb.adminUrl!;
    const patch = (id: string, body: unknown) =>
      call(admin, "PATCH", `/api/pools/web/servers/${id}`, body);
    assert.equal((await patch("backend-1", { state: "disabled" })).status, 200);
    assert.equal((await patch("backend-2", { weight: 5 })).status, 200);
    assert.deepEqual(await st.traffic.backends(3, "/", "web.test"), new Set(["backend-2"]));
    const web = st.lb.pools.get("web")!;
    const servers = [...web.servers.servers];
    const requests = servers.map((s) => s.requests);

    await Deno.writeTextFile(path, JSON.stringify(poolsRaw(b.pools)));
    const r = await st.lb.reload(() => parseConfig(Deno.readTextFileSync(path), path), "test");
    assert.equal(r.ok, true, r.problems.join("\n"));
    assert.deepEqual(r.changes, [`api: added backend-4 (${b.pools.api[1].url}, weight 1)`]);
    assert.equal(st.lb.pools.get("web"), web);
    assert.deepEqual(web.servers.servers, servers, "the same server objects");
    assert.deepEqual(servers.map((s) => [s.id, s.enabled, s.weight]), [
      ["backend-1", false, 1],
      ["backend-2", true, 5],
    ]);
    assert.deepEqual(servers.map((s) => s.requests), requests);
    assert.deepEqual(await st.traffic.backends(3, "/", "web.test"), new Set(["backend-2"]));
    assert.deepEqual(await st.traffic.backends(4, "/api/x"), new Set(["backend-3", "backend-4"]));
  } finally {
    await st.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a change to a pool's timeouts, health or retry is reported as pools.<name>.<section> needing a restart", async () => {
  const b = await startPoolBackends({ web: 1, api: 1, extra: 1 });
  const two = pick(b.pools, "web", "api");
  const st = start(poolsConfig(two));
  const reload = async (lb: Lb, config: ReturnType<typeof poolsConfig>) => {
    const r = await lb.reload(config, "test");
    assert.equal(r.ok, true, r.problems.join("\n"));
    return r;
  };
  try {
    const header = st.lb.pools.get("api")!.settings.timeouts.header;
    const one = await reload(
      st.lb,
      poolsConfig(two, { settings: { api: { timeouts: { header: "5s" } } } }),
    );
    assert.deepEqual(one.needsRestart, ["pools.api.timeouts"]);
    assert.deepEqual(one.changes, []);
    assert.equal(st.lb.pools.get("api")!.settings.timeouts.header, header, "not applied live");
    assert.ok(
      st.logger.lines.some((l) =>
        /changes to pools\.api\.timeouts take effect after a restart/.test(l)
      ),
    );

    // Top-level sections reach every pool that does not set its own; a pool added by the
    // same reload is built with them, so it needs nothing.
    const every = await reload(
      st.lb,
      poolsConfig(b.pools, {
        routes: [{ name: "all", pool: "web" }],
        extra: { timeouts: { connect: "1s" }, retry: { attempts: 2 } },
        settings: { web: { health: { path: "/ready" } } },
      }),
    );
    assert.deepEqual(every.needsRestart, [
      "pools.web.timeouts",
      "pools.web.health",
      "pools.web.retry",
      "pools.api.timeouts",
      "pools.api.retry",
    ]);
    assert.ok(every.changes.includes("added pool extra (1 servers, round-robin)"));
  } finally {
    await st.close();
    await b.close();
  }
});
