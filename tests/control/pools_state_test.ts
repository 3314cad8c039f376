/**
 * The state file with named pools: version 2 keeps each pool's changes under
 * `pools.<name>`, a version-1 file (lb before pools) is read as the pool `default`, and an
 * entry for a pool the config no longer has is ignored and dropped at the next save.
 */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { call, memoryLogger } from "../_stack.ts";
import { poolsRaw, startPoolBackends, trafficClient } from "../_pools.ts";

interface Setup {
  dir: string;
  stateFile: string;
  /** An lb on the config file as it is now, with its state file beside it. */
  start(): Lb;
  close(): Promise<void>;
}

/** A temp dir holding lb.yaml made of `raw`; the state file goes beside it. */
async function setup(raw: Record<string, unknown>): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "lb_pools_state_" });
  const path = `${dir}/lb.yaml`;
  await Deno.writeTextFile(path, JSON.stringify(raw, null, 2));
  return {
    dir,
    stateFile: `${dir}/lb.state.json`,
    start: () =>
      startLb({
        config: parseConfig(Deno.readTextFileSync(path), path),
        configSource: path,
        logger: memoryLogger(),
      }),
    close: () => Deno.remove(dir, { recursive: true }),
  };
}

function readFile(path: string): any {
  return JSON.parse(Deno.readTextFileSync(path));
}

/** Each pool's servers as [id, weight, enabled, draining], and its strategy. */
function running(lb: Lb): Record<string, unknown> {
  return Object.fromEntries(lb.pools.list.map((p) => [p.name, {
    strategy: p.balancer.strategy.name,
    servers: p.servers.servers.map((s) => [s.id, s.weight, s.enabled, s.draining]),
  }]));
}

async function expectStatus(lb: Lb, status: number, method: string, path: string, body?: unknown) {
  const r = await call(lb.adminUrl!, method, path, body);
  assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.json)}`);
}

Deno.test("changes in two pools are kept under pools.<name> of a version-2 state file and come back after a restart", async () => {
  const b = await startPoolBackends({ web: 2, api: 2 });
  const extra = await startDemoBackend({ port: 0, index: 9 });
  const s = await setup(poolsRaw(b.pools));
  let lb = s.start();
  try {
    await expectStatus(lb, 200, "PATCH", "/api/pools/web/servers/backend-1", { weight: 4 });
    await expectStatus(lb, 202, "DELETE", "/api/pools/web/servers/backend-2");
    await expectStatus(lb, 200, "PATCH", "/api/pools/api/servers/backend-3", {
      state: "disabled",
    });
    await expectStatus(lb, 201, "POST", "/api/pools/api/servers", {
      url: extra.url,
      name: "extra",
      weight: 2,
    });
    await expectStatus(lb, 200, "PUT", "/api/pools/api/strategy", { name: "least-conn" });
    assert.deepEqual(readFile(s.stateFile), {
      version: 2,
      pools: {
        web: { added: [], removed: ["backend-2"], changed: { "backend-1": { weight: 4 } } },
        api: {
          added: [{
            url: extra.url,
            name: "extra",
            weight: 2,
            maxConnections: 0,
            state: "enabled",
          }],
          removed: [],
          changed: { "backend-3": { state: "disabled" } },
          strategy: { name: "least-conn" },
        },
      },
    });
    const want = {
      web: { strategy: "round-robin", servers: [["backend-1", 4, true, false]] },
      api: {
        strategy: "least-conn",
        servers: [["backend-3", 1, false, false], ["backend-4", 1, true, false], [
          "extra",
          2,
          true,
          false,
        ]],
      },
    };
    await lb.shutdown(2000);
    lb = s.start();
    assert.deepEqual(running(lb), want);
    const traffic = trafficClient(lb.url);
    try {
      assert.deepEqual(await traffic.backends(6, "/api/x"), new Set(["backend-4", "backend-9"]));
      assert.deepEqual(await traffic.backends(3, "/", "web.test"), new Set(["backend-1"]));
    } finally {
      traffic.close();
    }
  } finally {
    await lb.shutdown(2000);
    await extra.close();
    await b.close();
    await s.close();
  }
});

/** A config without pools: the servers of `backends`, named as they name themselves. */
function singlePool(backends: DemoBackend[]): Record<string, unknown> {
  const raw = poolsRaw({});
  delete raw.pools;
  delete raw.routes;
  return { ...raw, backends: backends.map((b) => ({ url: b.url, name: b.name })) };
}

Deno.test("a version-1 state file (lb before pools) is read as the pool default, and rewritten as version 2", async () => {
  const b = await startPoolBackends({ default: 3 });
  const extra = await startDemoBackend({ port: 0, index: 9 });
  const s = await setup(singlePool(b.pools.default));
  const v1 = {
    version: 1,
    added: [{ url: extra.url, name: "extra", weight: 3, state: "draining" }],
    removed: ["backend-3"],
    changed: { "backend-1": { weight: 5 }, "backend-2": { state: "disabled" } },
    strategy: { name: "maglev", hash: { tableSize: 251 } },
  };
  await Deno.writeTextFile(s.stateFile, JSON.stringify(v1));
  const lb = s.start();
  try {
    assert.deepEqual(running(lb), {
      default: {
        strategy: "maglev",
        servers: [
          ["backend-1", 5, true, false],
          ["backend-2", 1, false, false],
          ["extra", 3, true, true],
        ],
      },
    });
    assert.equal(lb.pools.get("default")!.balancer.options.hash?.tableSize, 251);
    await expectStatus(lb, 200, "PATCH", "/api/servers/backend-1", { weight: 6 });
    const file = readFile(s.stateFile);
    assert.equal(file.version, 2);
    assert.deepEqual(Object.keys(file.pools), ["default"]);
    const d = file.pools.default;
    assert.deepEqual(d.removed, ["backend-3"]);
    assert.deepEqual(d.changed, { "backend-1": { weight: 6 }, "backend-2": { state: "disabled" } });
    assert.deepEqual(d.added.map((a: any) => [a.name, a.state]), [["extra", "draining"]]);
    assert.equal(d.strategy.name, "maglev");
    assert.equal(d.strategy.hash.tableSize, 251);
  } finally {
    await lb.shutdown(2000);
    await extra.close();
    await b.close();
    await s.close();
  }
});

Deno.test("a state-file entry for a pool the config no longer has is ignored at start and dropped at the next save", async () => {
  const b = await startPoolBackends({ web: 2, api: 1 });
  const s = await setup(poolsRaw(b.pools));
  await Deno.writeTextFile(
    s.stateFile,
    JSON.stringify({
      version: 2,
      pools: {
        // Ids and origins the remaining pools have too: nothing of this may reach them.
        gone: {
          added: [{ url: b.pools.api[0].url, name: "backend-3", weight: 9 }],
          removed: ["backend-2"],
          changed: { "backend-1": { state: "disabled", weight: 8 } },
          strategy: { name: "random" },
        },
        web: { changed: { "backend-2": { weight: 3 } } },
      },
    }),
  );
  const lb = s.start();
  try {
    assert.deepEqual(running(lb), {
      web: {
        strategy: "round-robin",
        servers: [["backend-1", 1, true, false], ["backend-2", 3, true, false]],
      },
      api: { strategy: "round-robin", servers: [["backend-3", 1, true, false]] },
    });
    const pools = (await call(lb.adminUrl!, "GET", "/api/pools")).json.pools;
    assert.deepEqual(pools.map((p: any) => p.name), ["web", "api"]);
    assert.equal(
      readFile(s.stateFile).pools.gone.strategy.name,
      "random",
      "not rewritten at start",
    );

    await expectStatus(lb, 200, "PATCH", "/api/pools/api/servers/backend-3", { weight: 2 });
    assert.deepEqual(readFile(s.stateFile), {
      version: 2,
      pools: {
        web: { added: [], removed: [], changed: { "backend-2": { weight: 3 } } },
        api: { added: [], removed: [], changed: { "backend-3": { weight: 2 } } },
      },
    });
  } finally {
    await lb.shutdown(2000);
    await b.close();
    await s.close();
  }
});

Deno.test("a pool's sticky cookie still pins its client after a restart: the generated key is kept in the state file", async () => {
  const b = await startPoolBackends({ web: 2, api: 1 });
  const s = await setup(poolsRaw(b.pools, { settings: { web: { sticky: { cookie: "lb_web" } } } }));
  let lb = s.start();
  try {
    await lb.ready;
    const secret = readFile(s.stateFile).stickySecret;
    assert.equal(typeof secret, "string");
    let traffic = trafficClient(lb.url);
    const first = await traffic.get("/", "web.test");
    traffic.close();
    const cookie = first.headers.get("set-cookie")!.split(";")[0];
    assert.match(cookie, /^lb_web=/);
    await lb.shutdown(2000);

    lb = s.start();
    traffic = trafficClient(lb.url);
    try {
      for (let i = 0; i < 4; i++) {
        const r = await traffic.get("/", "web.test", { cookie });
        assert.equal(r.backend, first.backend, "round-robin alone would alternate");
        assert.equal(r.headers.get("set-cookie"), null, "the old cookie is still valid");
      }
    } finally {
      traffic.close();
    }
    assert.equal(readFile(s.stateFile).stickySecret, secret);
  } finally {
    await lb.shutdown(2000);
    await b.close();
    await s.close();
  }
});

Deno.test("a --workers worker signs with the sticky key its parent keeps once a reload adds a sticky pool", async () => {
  const b = await startPoolBackends({ web: 2 });
  const urls = b.pools.web.map((x) => ({ url: x.url, name: x.name }));
  const dir = await Deno.makeTempDir({ prefix: "lb_pools_state_" });
  const path = `${dir}/lb.yaml`;
  const base = {
    listen: { port: 0 },
    admin: { port: 0 },
    health: { enabled: false },
    log: { access: false },
    pools: { web: { backends: urls } },
  };
  // The reload adds a sticky pool (making an existing pool sticky needs a restart).
  const sticky = {
    ...base,
    pools: { web: { backends: urls }, shop: { backends: urls, sticky: { cookie: "lb_shop" } } },
    routes: [{ match: { path: "/shop/" }, pool: "shop" }, { pool: "web" }],
  };
  await Deno.writeTextFile(path, JSON.stringify(base));
  const config = parseConfig(JSON.stringify(base), path);
  const parent = startLb({ config, configSource: path, logger: memoryLogger() });
  const worker = startLb({
    config: { ...config, admin: { ...config.admin, enabled: false } },
    configSource: path,
    followStateFile: true,
    logger: memoryLogger(),
  });
  try {
    await Deno.writeTextFile(path, JSON.stringify(sticky));
    const next = parseConfig(JSON.stringify(sticky), path);
    assert.ok((await parent.reload(next)).ok);
    // The worker reloads once the parent has kept its key (it follows the state file).
    assert.ok(readFile(`${dir}/lb.state.json`).stickySecret);
    assert.ok((await worker.reload({ ...next, admin: { ...next.admin, enabled: false } })).ok);
    const first = await fetch(parent.url + "/shop/");
    await first.body?.cancel();
    const cookie = first.headers.get("set-cookie")!.split(";")[0];
    const backend = first.headers.get("x-backend");
    for (let i = 0; i < 4; i++) {
      const res = await fetch(worker.url + "/shop/", { headers: { cookie } });
      await res.body?.cancel();
      assert.equal(res.headers.get("x-backend"), backend, "the worker honours the parent's cookie");
      assert.equal(res.headers.get("set-cookie"), null);
    }
  } finally {
    await parent.shutdown(2000);
    await worker.shutdown(2000);
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});
