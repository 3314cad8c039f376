/**
 * The admin API with named pools: /api/pools/:pool/… changes only the pool it names (seen
 * through the API and through traffic routed by path and by host), /api/servers and
 * /api/strategy refuse to guess on a config with several pools, /api/routes and
 * /api/explain show the routing.
 */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { startLb } from "../../src/lb.ts";
import { call, memoryLogger, testConfig, until } from "../_stack.ts";
import { ROUTES, startPoolStack } from "../_pools.ts";

/** Pools web (backend-1, backend-2, round-robin) and api (backend-3, backend-4, least-conn, sticky). */
const startTwoPools = () =>
  startPoolStack({ web: 2, api: 2 }, {
    settings: { api: { strategy: "least-conn", sticky: { cookie: "lb_api" } } },
  });

/** Each pool's servers and strategy as the API shows them (no counters). */
async function shape(admin: string): Promise<string> {
  const { json } = await call(admin, "GET", "/api/pools");
  return JSON.stringify(json.pools.map((p: any) => [
    p.name,
    p.strategy.name,
    p.strategy.options,
    p.servers.map((s: any) => [s.id, s.url, s.weight, s.state, s.removing]),
  ]));
}

Deno.test("GET /api/pools lists every pool with its servers, strategy and sticky cookie; GET /api/routes the routes", async () => {
  const st = await startTwoPools();
  try {
    const { status, json } = await call(st.admin, "GET", "/api/pools");
    assert.equal(status, 200);
    assert.deepEqual(json.pools.map((p: any) => p.name), ["web", "api"]);
    const [web, api] = json.pools;
    assert.deepEqual(web.servers.map((s: any) => [s.pool, s.id, s.url]), [
      ["web", "backend-1", st.backends.web[0].url],
      ["web", "backend-2", st.backends.web[1].url],
    ]);
    assert.deepEqual(api.servers.map((s: any) => [s.pool, s.id]), [
      ["api", "backend-3"],
      ["api", "backend-4"],
    ]);
    assert.equal(web.strategy.name, "round-robin");
    assert.equal(api.strategy.name, "least-conn");
    assert.ok(api.strategy.available.includes("maglev"));
    assert.equal(web.sticky, null);
    assert.deepEqual(api.sticky, { cookie: "lb_api" });
    const one = await call(st.admin, "GET", "/api/pools/api");
    assert.deepEqual(one.json, api);

    const routes = await call(st.admin, "GET", "/api/routes");
    assert.equal(routes.status, 200);
    assert.deepEqual(
      routes.json.routes.map((r: any) => [r.name, r.pool, r.match, r.stripPrefix]),
      [["api", "api", { path: "/api/" }, true], ["web", "web", { host: ["web.test"] }, false]],
    );
    assert.deepEqual(routes.json.routes[0].headers, {
      request: { set: { "x-route": "api" }, remove: ["x-debug"] },
      response: { set: { "x-served-by": "lb-api" }, remove: [] },
    });
  } finally {
    await st.close();
  }
});

Deno.test("PATCH, POST, DELETE and PUT under /api/pools/:pool change that pool only, by the API and by traffic", async () => {
  const st = await startTwoPools();
  const extra = await startDemoBackend({ port: 0, index: 9 });
  try {
    const { traffic } = st;
    const webBefore = (await call(st.admin, "GET", "/api/pools/web")).json;
    // Traffic reaches each pool by its route: /api/… by path, web.test by host.
    assert.deepEqual(await traffic.backends(4, "/api/x"), new Set(["backend-3", "backend-4"]));
    assert.deepEqual(
      await traffic.backends(4, "/", "web.test"),
      new Set(["backend-1", "backend-2"]),
    );

    const off = await call(st.admin, "PATCH", "/api/pools/api/servers/backend-3", {
      state: "disabled",
    });
    assert.equal(off.status, 200);
    assert.equal(off.json.pool, "api");
    assert.equal(off.json.state, "disabled");
    assert.deepEqual(await traffic.backends(4, "/api/x"), new Set(["backend-4"]));
    assert.deepEqual(
      await traffic.backends(4, "/", "web.test"),
      new Set(["backend-1", "backend-2"]),
    );

    // The same id in another pool is another server.
    const added = await call(st.admin, "POST", "/api/pools/api/servers", {
      url: extra.url,
      name: "backend-1",
      weight: 3,
    });
    assert.equal(added.status, 201);
    assert.equal(added.headers.get("location"), "/api/pools/api/servers/backend-1");
    assert.equal(added.json.url, extra.url);
    const w = await call(st.admin, "PATCH", "/api/pools/api/servers/backend-1", { weight: 7 });
    assert.equal(w.json.weight, 7);
    const webOne = await call(st.admin, "GET", "/api/pools/web/servers/backend-1");
    assert.equal(webOne.json.url, st.backends.web[0].url);
    assert.equal(webOne.json.weight, 1);
    assert.ok((await traffic.backends(8, "/api/x")).has("backend-9"));
    assert.ok(!(await traffic.backends(8, "/", "web.test")).has("backend-9"));

    const put = await call(st.admin, "PUT", "/api/pools/web/strategy", {
      name: "consistent-hash",
      key: "header:x-user",
    });
    assert.equal(put.status, 200);
    assert.equal(put.json.name, "consistent-hash");
    assert.equal(
      (await call(st.admin, "GET", "/api/pools/web/strategy")).json.name,
      "consistent-hash",
    );
    const apiStrategy = await call(st.admin, "GET", "/api/pools/api/strategy");
    assert.equal(apiStrategy.json.name, "least-conn");
    assert.equal(apiStrategy.json.options.key, "ip");

    const del = await call(st.admin, "DELETE", "/api/pools/api/servers/backend-4");
    assert.equal(del.status, 202);
    assert.equal(del.json.pool, "api");
    assert.equal(del.json.state, "draining");
    await until(() => !st.lb.pools.get("api")!.servers.get("backend-4"), "backend-4 to leave api");
    assert.deepEqual(
      (await call(st.admin, "GET", "/api/pools/api/servers")).json.servers.map((s: any) => s.id),
      ["backend-3", "backend-1"],
    );
    assert.deepEqual(await traffic.backends(4, "/api/x"), new Set(["backend-9"]));

    // Through all of it, web kept its servers as they were.
    const webAfter = (await call(st.admin, "GET", "/api/pools/web")).json;
    const servers = (p: any) => p.servers.map((s: any) => [s.id, s.url, s.weight, s.state]);
    assert.deepEqual(servers(webAfter), servers(webBefore));
    const changes = st.log.filter((l) => l.kind === "admin").map((
      l,
    ) => [l.action, l.pool, l.server]);
    assert.deepEqual(changes, [
      ["update", "api", "backend-3"],
      ["add", "api", "backend-1"],
      ["update", "api", "backend-1"],
      ["strategy", "web", undefined],
      ["remove", "api", "backend-4"],
      ["removed", "api", "backend-4"],
    ]);
  } finally {
    await st.close();
    await extra.close();
  }
});

/** Every route that acts on one pool's servers or strategy, under `prefix`, with a good body. */
function onePoolRoutes(prefix: string): [string, string, unknown?][] {
  return [
    ["GET", `${prefix}/servers`],
    ["POST", `${prefix}/servers`, { url: "http://127.0.0.1:1" }],
    ["GET", `${prefix}/servers/backend-1`],
    ["PATCH", `${prefix}/servers/backend-1`, { weight: 2 }],
    ["DELETE", `${prefix}/servers/backend-1`],
    ["GET", `${prefix}/strategy`],
    ["PUT", `${prefix}/strategy`, { name: "random" }],
  ];
}

Deno.test("an unknown pool is a 404 that names it, on every path under /api/pools", async () => {
  const st = await startTwoPools();
  try {
    const before = await shape(st.admin);
    const cases = [["GET", "/api/pools/nope"], ...onePoolRoutes("/api/pools/nope")] as const;
    for (const [method, path, body] of cases) {
      const r = await call(st.admin, method, path, body);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(r.json.error.code, "not_found");
      assert.equal(r.json.error.message, 'no pool named "nope"', `${method} ${path}`);
    }
    // A server of another pool is not in this one.
    const r = await call(st.admin, "GET", "/api/pools/web/servers/backend-3");
    assert.equal(r.status, 404);
    assert.equal(r.json.error.message, 'no server with id "backend-3" in pool web');
    assert.equal(await shape(st.admin), before);
  } finally {
    await st.close();
  }
});

Deno.test("/api/servers and /api/strategy answer 409 naming the pools when there are several, and change nothing", async () => {
  const st = await startTwoPools();
  try {
    const before = await shape(st.admin);
    const cases = onePoolRoutes("/api");
    for (const [method, path, body] of cases) {
      const r = await call(st.admin, method, path, body);
      assert.equal(r.status, 409, `${method} ${path}`);
      assert.equal(r.json.error.code, "conflict");
      assert.match(r.json.error.message, /2 pools \(web, api\).*\/api\/pools\/<pool>\//);
    }
    assert.equal(await shape(st.admin), before);
    assert.equal(st.log.filter((l) => l.kind === "admin").length, 0);
  } finally {
    await st.close();
  }
});

Deno.test("on a config without pools, /api/servers and /api/strategy work on the one pool, which /api/pools calls default", async () => {
  const b = await startDemoBackend({ port: 0, index: 1 });
  const c = await startDemoBackend({ port: 0, index: 2 });
  const lb = startLb({
    config: testConfig([], {
      backends: [{ url: b.url, name: b.name }, { url: c.url, name: c.name }],
      admin: { enabled: true, host: "127.0.0.1", port: 0 },
    }),
    logger: memoryLogger(),
  });
  const admin = lb.adminUrl!;
  try {
    assert.equal((await call(admin, "PATCH", "/api/servers/backend-2", { weight: 4 })).status, 200);
    assert.equal((await call(admin, "PUT", "/api/strategy", { name: "least-conn" })).status, 200);
    const pools = (await call(admin, "GET", "/api/pools")).json.pools;
    assert.deepEqual(pools.map((p: any) => [p.name, p.strategy.name]), [["default", "least-conn"]]);
    const one = await call(admin, "GET", "/api/pools/default/servers/backend-2");
    assert.equal(one.json.weight, 4);
    assert.deepEqual(
      (await call(admin, "GET", "/api/servers")).json.servers.map((s: any) => [s.id, s.weight]),
      [["backend-1", 1], ["backend-2", 4]],
    );
    const routes = (await call(admin, "GET", "/api/routes")).json.routes;
    assert.deepEqual(routes.map((r: any) => [r.name, r.pool, r.match]), [[
      "route-1",
      "default",
      {},
    ]]);
  } finally {
    await lb.shutdown(2000);
    await b.close();
    await c.close();
  }
});

Deno.test("POST /api/explain names the route, pool, backend path, header rules and server, and sends nothing", async () => {
  const st = await startTwoPools();
  try {
    const byPath = await call(st.admin, "POST", "/api/explain", {
      method: "get",
      url: "http://web.test/api/v1/users?page=2",
    });
    assert.equal(byPath.status, 200);
    const e = byPath.json;
    assert.deepEqual(e.request, {
      method: "GET",
      host: "web.test",
      target: "/api/v1/users?page=2",
    });
    assert.deepEqual(e.route, { number: 1, name: "api", match: { path: "/api/" } });
    assert.deepEqual(e.pool, { name: "api", strategy: "least-conn", available: 2, servers: 2 });
    assert.equal(e.path, "/v1/users?page=2");
    assert.deepEqual(e.requestHeaders, ROUTES[0].headers!.request);
    assert.deepEqual(e.responseHeaders, { set: { "x-served-by": "lb-api" }, remove: [] });
    assert.deepEqual(e.sticky, { cookie: "lb_api", sent: false, valid: false });
    assert.ok(["backend-3", "backend-4"].includes(e.server.id), e.server.id);
    assert.equal(e.server.state, "healthy");

    const byHost = await call(st.admin, "POST", "/api/explain", {
      method: "GET",
      url: "/home",
      headers: { host: "WEB.test:8080" },
    });
    assert.equal(byHost.json.route.name, "web");
    assert.equal(byHost.json.pool.name, "web");
    assert.equal(byHost.json.path, "/home");
    assert.ok(["backend-1", "backend-2"].includes(byHost.json.server.id));

    const none = await call(st.admin, "POST", "/api/explain", {
      method: "GET",
      url: "http://other.test/home",
    });
    assert.equal(none.status, 200);
    assert.equal(none.json.route, undefined);
    assert.equal(none.json.server, undefined);

    // The explanation reflects live state: a disabled server is not picked.
    await call(st.admin, "PATCH", "/api/pools/api/servers/backend-3", { state: "disabled" });
    for (let i = 0; i < 4; i++) {
      const r = await call(st.admin, "POST", "/api/explain", { method: "GET", url: "/api/x" });
      assert.equal(r.json.server.id, "backend-4");
      assert.equal(r.json.pool.available, 1);
    }
    const sent = st.lb.pools.list.flatMap((p) => p.servers.servers.map((s) => s.requests));
    assert.deepEqual(sent, [0, 0, 0, 0]);
  } finally {
    await st.close();
  }
});

Deno.test("bad bodies under /api/pools and to /api/explain are 400 naming the field, and change nothing", async () => {
  const st = await startTwoPools();
  try {
    const before = await shape(st.admin);
    const cases: [string, string, unknown, RegExp][] = [
      ["POST", "/api/pools/web/servers", { url: "ftp://10.0.0.1:21" }, /^url: .*http:\/\//],
      ["POST", "/api/pools/web/servers", { url: "http://10.0.0.9:80", weight: 0 }, /^weight: /],
      [
        "POST",
        "/api/pools/web/servers",
        { url: "http://10.0.0.9:80", pool: "api" },
        /pool: unknown field/,
      ],
      ["POST", "/api/pools/web/servers", "{", /malformed JSON/],
      ["PATCH", "/api/pools/api/servers/backend-3", { weight: "5" }, /weight: must be a number/],
      ["PATCH", "/api/pools/api/servers/backend-3", { state: "off" }, /state: must be draining/],
      ["PATCH", "/api/pools/api/servers/backend-3", {}, /give weight, state or both/],
      ["PUT", "/api/pools/web/strategy", { name: "fastest-ever" }, /name: must be one of/],
      ["PUT", "/api/pools/api/strategy", { name: "maglev", balanceFactor: 0.5 }, /balanceFactor/],
      ["POST", "/api/explain", { method: "G T", url: "/" }, /method: must be a method/],
      ["POST", "/api/explain", { method: "GET" }, /url: Required/],
      ["POST", "/api/explain", { method: "GET", url: "api/x" }, /url: .*must be a URL like/],
      ["POST", "/api/explain", { method: "GET", url: "http:///x" }, /url: .*has no host/],
      [
        "POST",
        "/api/explain",
        { method: "GET", url: "/", headers: { "x-a": "1\r\nx-b: 2" } },
        /headers\.x-a: must not contain CR, LF or NUL/,
      ],
      ["POST", "/api/explain", { method: "GET", url: "/", pool: "web" }, /pool: unknown field/],
      ["POST", "/api/explain", "[]", /JSON object/],
    ];
    for (const [method, path, body, message] of cases) {
      const r = await call(st.admin, method, path, body);
      const what = `${method} ${path} ${JSON.stringify(body)}`;
      assert.equal(r.status, 400, what);
      assert.match(r.json.error.message, message, what);
    }
    const dup = await call(st.admin, "POST", "/api/pools/api/servers", {
      url: st.backends.api[0].url,
    });
    assert.equal(dup.status, 409);
    assert.equal(await shape(st.admin), before);
    assert.equal(st.log.filter((l) => l.kind === "admin").length, 0);
  } finally {
    await st.close();
  }
});

Deno.test("the new paths answer methods they do not take with 405 and Allow", async () => {
  const st = await startTwoPools();
  try {
    const before = await shape(st.admin);
    const cases: [string, string, string][] = [
      ["POST", "/api/pools", "GET"],
      ["DELETE", "/api/pools/web", "GET"],
      ["PUT", "/api/pools/web/servers", "GET, POST"],
      ["DELETE", "/api/pools/web/servers", "GET, POST"],
      ["POST", "/api/pools/web/servers/backend-1", "GET, PATCH, DELETE"],
      ["PUT", "/api/pools/web/servers/backend-1", "GET, PATCH, DELETE"],
      ["POST", "/api/pools/web/strategy", "GET, PUT"],
      ["DELETE", "/api/pools/web/strategy", "GET, PUT"],
      ["POST", "/api/routes", "GET"],
      ["GET", "/api/explain", "POST"],
    ];
    for (const [method, path, allow] of cases) {
      const r = await call(st.admin, method, path, method === "GET" ? undefined : {});
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get("allow"), allow, `${method} ${path}`);
      assert.equal(r.json.error.code, "method_not_allowed");
    }
    assert.equal(await shape(st.admin), before);
  } finally {
    await st.close();
  }
});

Deno.test("the line saying a removed server has left names its pool, where two pools have a server of that id", async () => {
  const st = await startTwoPools();
  const extra = await startDemoBackend({ port: 0, index: 9 });
  try {
    const add = await call(st.admin, "POST", "/api/pools/api/servers", {
      url: extra.url,
      name: "backend-1",
    });
    assert.equal(add.status, 201);
    assert.equal((await call(st.admin, "DELETE", "/api/pools/api/servers/backend-1")).status, 202);
    const gone = (await until(
      () => st.log.find((l) => l.kind === "admin" && l.action === "removed"),
      "the removed line",
    ))!;
    assert.equal(gone.pool, "api");
    assert.equal(gone.server, "backend-1");
    assert.match(String(gone.message), /^api: backend-1 removed \(removed by admin/);
    assert.ok(st.lb.pools.get("web")!.servers.get("backend-1"), "web's backend-1 stays");
  } finally {
    await st.close();
    await extra.close();
  }
});
