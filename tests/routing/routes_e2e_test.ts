/**
 * Named pools behind ordered routes, through a real `lb serve` process in front of real
 * demo backends: what each route condition matches, which route wins, what a route changes
 * on the way (prefix, request and response headers), each pool's own strategy, and an old
 * config without pools or routes.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { type LbProcess, startLbProcess } from "../_serve.ts";

/** An answer as the client saw it. */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  // deno-lint-ignore no-explicit-any
  json: any;
}

interface Send {
  method?: string;
  /** The Host header (fetch cannot set one, hence node:http). Default the lb's address. */
  host?: string;
  headers?: Record<string, string>;
}

/** One request on its own connection, with the Host header the test chooses. */
function send(origin: string, path: string, opts: Send = {}): Promise<Answer> {
  const u = new URL(origin);
  const headers = { ...(opts.host && { host: opts.host }), ...opts.headers };
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: u.hostname,
      port: Number(u.port),
      method: opts.method ?? "GET",
      path,
      headers,
      agent: false,
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => body += c);
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(body) });
        } catch (e) {
          reject(
            new Error(`${res.statusCode} with a body that is not JSON: ${body}`, { cause: e }),
          );
        }
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** The route that answered (each route sets `x-route`), or `404:<code>` for lb's own 404. */
async function routeOf(origin: string, path: string, opts: Send = {}): Promise<string> {
  const a = await send(origin, path, opts);
  if (a.status === 404) return `404:${a.json.error?.code}`;
  assert.equal(a.status, 200, JSON.stringify(a.json));
  return String(a.headers["x-route"]);
}

const ROUTES = (b: DemoBackend[]) => `
strategy: round-robin
pools:
  api:
    strategy: least-conn
    backends: [{ url: "${b[0].url}" }, { url: "${b[1].url}" }]
  web:
    backends: [{ url: "${b[2].url}" }, { url: "${b[3].url}" }]
  other:
    backends: [{ url: "${b[4].url}" }]
routes:
  - name: exact-host
    match: { host: api.example.com }
    pool: api
    headers: { response: { set: { x-route: exact-host, x-backend: masked } } }
  - name: wildcard
    match: { host: "*.example.com" }
    pool: web
    headers: { response: { set: { x-route: wildcard } } }
  - name: shop-wild
    match: { host: "*.shop.test" }
    pool: web
    headers: { response: { set: { x-route: shop-wild } } }
  - name: shop-exact
    match: { host: [special.shop.test, shop.test] }
    pool: api
    headers: { response: { set: { x-route: shop-exact } } }
  - name: submit
    match: { path: /submit, method: [POST, PUT] }
    pool: other
    headers: { response: { set: { x-route: submit } } }
  - name: tenant-exact
    match: { headers: { x-tenant: blue } }
    pool: other
    headers: { response: { set: { x-route: tenant-exact } } }
  - name: tenant-regex
    match: { headers: { x-tenant: "/^green-[0-9]+$/" } }
    pool: other
    headers: { response: { set: { x-route: tenant-regex } } }
  - name: svc
    match: { path: /svc }
    pool: web
    stripPrefix: true
    headers:
      request: { set: { x-from-lb: svc }, remove: [x-secret] }
      response: { set: { x-route: svc }, remove: [x-backend] }
  - name: shop-get
    match: { path: /shop, method: GET }
    pool: other
    headers: { response: { set: { x-route: shop-get } } }
  - name: shop-cart
    match: { path: /shop/cart }
    pool: api
    headers: { response: { set: { x-route: shop-cart } } }
`;

/** Five demo backends (backend-1 … backend-5) and an lb with ROUTES in front of them. */
async function withRoutedLb(fn: (lb: LbProcess, backends: DemoBackend[]) => Promise<void>) {
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= 5; i++) backends.push(await startDemoBackend({ port: 0, index: i }));
  try {
    const lb = await startLbProcess(ROUTES(backends));
    try {
      await fn(lb, backends);
    } finally {
      await lb.close();
    }
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
}

Deno.test("a route's host matches exactly or by a one-label wildcard, whatever its port or case", async () => {
  await withRoutedLb(async (lb) => {
    const at = (host: string) => routeOf(lb.url, "/h", { host });
    assert.equal(await at("api.example.com"), "exact-host");
    assert.equal(await at("API.Example.COM:8443"), "exact-host");
    assert.equal(await at("www.example.com"), "wildcard");
    assert.equal(await at("Foo.EXAMPLE.com:99"), "wildcard");
    // A wildcard covers exactly one label: neither the bare domain nor two labels.
    assert.equal(await at("example.com"), "404:no_route");
    assert.equal(await at("a.b.example.com"), "404:no_route");
    assert.equal(await at("notexample.com"), "404:no_route");
    assert.equal(await at("api.example.com.evil"), "404:no_route");
  });
});

Deno.test("the first route that matches wins, even over a more specific later one", async () => {
  await withRoutedLb(async (lb) => {
    const at = (host: string, path = "/h", method = "GET") =>
      routeOf(lb.url, path, { host, method });
    // Both exact-host and wildcard match; exact-host comes first.
    assert.equal(await at("api.example.com"), "exact-host");
    // special.shop.test is named exactly by shop-exact, but the wildcard before it wins;
    // shop.test itself is not covered by the wildcard, so it reaches shop-exact.
    assert.equal(await at("special.shop.test"), "shop-wild");
    assert.equal(await at("shop.test"), "shop-exact");
    // GET /shop/cart matches shop-get (earlier) and shop-cart; other methods only shop-cart.
    assert.equal(await at("lb.test", "/shop/cart"), "shop-get");
    assert.equal(await at("lb.test", "/shop/cart", "POST"), "shop-cart");
    assert.equal(await at("lb.test", "/shop/cart/items", "DELETE"), "shop-cart");
  });
});

Deno.test("path prefix, method and header conditions (exact and /regex/) must all hold", async () => {
  await withRoutedLb(async (lb) => {
    const at = (path: string, method = "GET", headers: Record<string, string> = {}) =>
      routeOf(lb.url, path, { host: "lb.test", method, headers });
    assert.equal(await at("/submit", "POST"), "submit");
    assert.equal(await at("/submit/x?y=1", "PUT"), "submit");
    assert.equal(await at("/submit", "GET"), "404:no_route", "method not listed");
    assert.equal(await at("/submitted", "POST"), "404:no_route", "a prefix ends at a /");
    assert.equal(await at("/shop", "GET"), "shop-get");
    assert.equal(await at("/shopping", "GET"), "404:no_route");

    assert.equal(await at("/t", "GET", { "x-tenant": "blue" }), "tenant-exact");
    assert.equal(await at("/t", "GET", { "x-tenant": "Blue" }), "404:no_route", "exact is exact");
    assert.equal(await at("/t", "GET", { "x-tenant": "blue-1" }), "404:no_route");
    assert.equal(await at("/t", "GET", { "x-tenant": "green-42" }), "tenant-regex");
    assert.equal(await at("/t", "GET", { "x-tenant": "green-x" }), "404:no_route");
    assert.equal(await at("/t", "GET", { "x-tenant": "agreen-1" }), "404:no_route", "anchored");
    assert.equal(await at("/t", "GET"), "404:no_route", "header absent");
  });
});

/** Requests every server of every pool has answered, from the admin API. */
async function requestsServed(admin: string): Promise<number> {
  const res = await fetch(`${admin}/api/pools`);
  const { pools } = await res.json();
  let n = 0;
  for (const p of pools) for (const s of p.servers) n += s.requests;
  return n;
}

Deno.test("a request no route matches gets lb's 404 no_route and reaches no backend", async () => {
  await withRoutedLb(async (lb) => {
    assert.equal(await routeOf(lb.url, "/h", { host: "www.example.com" }), "wildcard");
    const before = await requestsServed(lb.admin);
    assert.equal(before, 1, "the admin API counts requests served");
    for (const method of ["GET", "POST", "DELETE"]) {
      const a = await send(lb.url, "/nowhere?x=1", { host: "elsewhere.test", method });
      assert.equal(a.status, 404);
      assert.equal(a.json.error.code, "no_route");
      assert.equal(a.json.error.status, 404);
      assert.match(a.headers["content-type"]!, /application\/json/);
      assert.equal(a.headers["x-backend"], undefined);
    }
    assert.equal(await requestsServed(lb.admin), before);
  });
});

Deno.test("stripPrefix removes the route's path prefix and keeps the query", async () => {
  await withRoutedLb(async (lb) => {
    const path = async (p: string) => {
      const a = await send(lb.url, p, { host: "lb.test" });
      assert.equal(a.status, 200, JSON.stringify(a.json));
      assert.equal(a.headers["x-route"], "svc");
      return a.json.path;
    };
    assert.equal(await path("/svc/users/7"), "/users/7");
    assert.equal(await path("/svc/users/7?x=1&y=a%20b"), "/users/7?x=1&y=a%20b");
    assert.equal(await path("/svc"), "/");
    assert.equal(await path("/svc?q=1"), "/?q=1");
    assert.equal(await path("/svc/"), "/");
    // Another route's path is left as the client sent it.
    const a = await send(lb.url, "/submit/x?y=1", { host: "lb.test", method: "POST" });
    assert.equal(a.json.path, "/submit/x?y=1");
    assert.equal(await routeOf(lb.url, "/svcx", { host: "lb.test" }), "404:no_route");
  });
});

Deno.test("a route's request header rules reach the backend and its response rules the client", async () => {
  await withRoutedLb(async (lb) => {
    const a = await send(lb.url, "/svc/h", {
      host: "lb.test",
      headers: { "x-from-lb": "client", "x-secret": "s3cret", "x-keep": "1" },
    });
    assert.equal(a.status, 200);
    const seen = a.json.headers as Record<string, string>;
    assert.equal(seen["x-from-lb"], "svc", "set replaces the client's value");
    assert.equal(seen["x-secret"], undefined, "removed before the backend");
    assert.equal(seen["x-keep"], "1", "other headers pass");
    assert.equal(a.headers["x-route"], "svc");
    assert.equal(a.headers["x-backend"], undefined, "removed before the client");
    assert.match(a.json.backend, /^backend-[34]$/, "the web pool answered");

    // Set replaces the backend's own value instead of adding a second one.
    const b = await send(lb.url, "/h", { host: "api.example.com" });
    assert.equal(b.headers["x-backend"], "masked");
    assert.match(b.json.backend, /^backend-[12]$/, "the api pool answered");

    // Rules belong to their route: another route's backend sees the client's headers.
    const c = await send(lb.url, "/t", {
      host: "lb.test",
      headers: { "x-tenant": "blue", "x-secret": "s3cret", "x-from-lb": "client" },
    });
    assert.equal(c.json.backend, "backend-5");
    assert.equal(c.json.headers["x-secret"], "s3cret");
    assert.equal(c.json.headers["x-from-lb"], "client");
    assert.equal(c.headers["x-backend"], "backend-5");
  });
});

Deno.test("each pool runs its own strategy, as GET /api/pools shows", async () => {
  await withRoutedLb(async (lb) => {
    const res = await fetch(`${lb.admin}/api/pools`);
    assert.equal(res.status, 200);
    const { pools } = await res.json();
    const strategies = Object.fromEntries(
      pools.map((p: { name: string; strategy: { name: string } }) => [p.name, p.strategy.name]),
    );
    assert.deepEqual(strategies, { api: "least-conn", web: "round-robin", other: "round-robin" });
    const sizes = pools.map((p: { servers: unknown[] }) => p.servers.length);
    assert.deepEqual(sizes, [2, 2, 1]);
    // The web pool's round-robin takes turns between its two servers.
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push((await send(lb.url, "/h", { host: "www.example.com" })).json.backend);
    }
    assert.notEqual(seen[0], seen[1]);
    assert.deepEqual(seen.slice(2), seen.slice(0, 2));
    assert.deepEqual([...new Set(seen)].sort(), ["backend-3", "backend-4"]);
  });
});

Deno.test("a config with only top-level backends sends every request, unchanged, to its one pool", async () => {
  const backends = [
    await startDemoBackend({ port: 0, index: 1 }),
    await startDemoBackend({ port: 0, index: 2 }),
  ];
  const lb = await startLbProcess(
    `backends:\n${backends.map((b) => `  - url: ${b.url}`).join("\n")}`,
  );
  try {
    const seen = new Set<string>();
    const cases: [string, string, string][] = [
      ["GET", "api.example.com", "/"],
      ["POST", "www.example.com:8443", "/svc/users?x=1"],
      ["DELETE", "lb.test", "/a/b/../c?q=%20"],
      ["PUT", "API.EXAMPLE.COM", "/submit"],
    ];
    for (const [method, host, path] of cases) {
      const a = await send(lb.url, path, { host, method, headers: { "x-tenant": "blue" } });
      assert.equal(a.status, 200, `${method} ${host}${path}`);
      assert.equal(a.json.method, method);
      assert.equal(a.json.path, path, "the path reaches the backend as sent");
      assert.equal(a.json.headers.host, host, "the client's Host reaches the backend");
      assert.equal(a.json.headers["x-tenant"], "blue");
      assert.equal(a.headers["x-backend"], a.json.backend);
      assert.equal(a.headers["set-cookie"], undefined);
      assert.equal(a.headers["ratelimit"], undefined);
      seen.add(a.json.backend);
    }
    assert.deepEqual([...seen].sort(), ["backend-1", "backend-2"]);
    const pools = (await (await fetch(`${lb.admin}/api/pools`)).json()).pools;
    assert.deepEqual(pools.map((p: { name: string }) => p.name), ["default"]);
    const routes = (await (await fetch(`${lb.admin}/api/routes`)).json()).routes;
    assert.equal(routes.length, 1);
    assert.equal(routes[0].pool, "default");
    assert.deepEqual(routes[0].match, {});
    // The single-pool API still answers for the one pool.
    const servers = (await (await fetch(`${lb.admin}/api/servers`)).json()).servers;
    assert.equal(servers.length, 2);
  } finally {
    await lb.close();
    await Promise.all(backends.map((b) => b.close()));
  }
});
