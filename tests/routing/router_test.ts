import assert from "node:assert/strict";
import { resolveRoute, type RouteConfig, routeSchema } from "../../src/config/routes.ts";
import { normalizePath, Router, shadowed } from "../../src/routing/router.ts";

/** RouteConfigs as lb.yaml's `routes:` would give them. */
function configs(...inputs: unknown[]): RouteConfig[] {
  return inputs.map((r, i) => resolveRoute(routeSchema.parse(r), i));
}

function router(...inputs: unknown[]): Router<string> {
  return new Router(configs(...inputs), (r) => r.pool);
}

interface Req {
  method?: string;
  host?: string | null;
  headers?: HeadersInit;
}

/** The pool of the route `target` matches, or undefined. */
function pool(r: Router<string>, target: string, req: Req = {}): string | undefined {
  const host = req.host === undefined ? "example.com" : req.host;
  return r.match(req.method ?? "GET", host, target, new Headers(req.headers))?.route.target;
}

Deno.test("an exact host matches whatever its case, port or one trailing dot", () => {
  const r = router({ match: { host: "api.example.com" }, pool: "api" });
  for (
    const host of ["api.example.com", "API.Example.COM", "api.example.com:8080", "api.example.com."]
  ) {
    assert.equal(pool(r, "/", { host }), "api", host);
  }
  assert.equal(pool(r, "/", { host: "Api.Example.com.:443" }), "api");
  for (
    const host of ["example.com", "www.api.example.com", "api.example.com..", "api.example.co"]
  ) {
    assert.equal(pool(r, "/", { host }), undefined, host);
  }
});

Deno.test("a wildcard host matches exactly one more label, not the bare domain nor two labels", () => {
  const r = router({ match: { host: "*.example.com" }, pool: "wild" });
  assert.equal(pool(r, "/", { host: "a.example.com" }), "wild");
  assert.equal(pool(r, "/", { host: "A.Example.com:80" }), "wild");
  assert.equal(pool(r, "/", { host: "a.example.com." }), "wild");
  assert.equal(pool(r, "/", { host: "example.com" }), undefined);
  assert.equal(pool(r, "/", { host: "a.b.example.com" }), undefined);
  assert.equal(pool(r, "/", { host: ".example.com" }), undefined);
  assert.equal(pool(r, "/", { host: "a.example.org" }), undefined);
});

Deno.test("a route with several hosts matches any of them and no other", () => {
  const r = router({ match: { host: ["a.test", "*.b.test"] }, pool: "ab" });
  assert.equal(pool(r, "/", { host: "a.test" }), "ab");
  assert.equal(pool(r, "/", { host: "x.b.test" }), "ab");
  assert.equal(pool(r, "/", { host: "b.test" }), undefined);
  assert.equal(pool(r, "/", { host: "c.test" }), undefined);
});

Deno.test("an IPv6 literal Host loses its port but keeps its colons", () => {
  const r = router({ match: { host: "example.com" }, pool: "named" }, { pool: "any" });
  assert.equal(pool(r, "/", { host: "[::1]:8080" }), "any");
  assert.equal(pool(r, "/", { host: "[::1]" }), "any");
  assert.equal(pool(r, "/", { host: "example.com:1" }), "named");
});

Deno.test("a request without Host matches only routes without a host condition", () => {
  const hosted = router({ match: { host: "example.com" }, pool: "named" });
  assert.equal(pool(hosted, "/", { host: null }), undefined);
  const both = router(
    { match: { host: "example.com" }, pool: "named" },
    { match: { host: "*.example.com" }, pool: "wild" },
    { match: { path: "/" }, pool: "any" },
  );
  assert.equal(pool(both, "/x", { host: null }), "any");
});

Deno.test("a route whose match is empty matches every request", () => {
  const r = router({ match: {}, pool: "all" });
  assert.equal(pool(r, "/anything?q=1", { method: "DELETE", host: null }), "all");
  assert.equal(pool(r, "/", { host: "x.y.z:9" }), "all");
  assert.equal(router({ pool: "all" }).match("GET", null, "/", new Headers())?.path, "/");
});

Deno.test("a prefix ending in / matches every path that starts with it", () => {
  const r = router({ match: { path: "/static/" }, pool: "static" });
  assert.equal(pool(r, "/static/"), "static");
  assert.equal(pool(r, "/static/css/app.css"), "static");
  assert.equal(pool(r, "/static"), undefined);
  assert.equal(pool(r, "/staticfiles/x"), undefined);
});

Deno.test("a prefix without a trailing slash matches at a segment boundary only", () => {
  const r = router({ match: { path: "/api" }, pool: "api" });
  assert.equal(pool(r, "/api"), "api");
  assert.equal(pool(r, "/api/"), "api");
  assert.equal(pool(r, "/api/v1/users"), "api");
  assert.equal(pool(r, "/api?x=1"), "api");
  assert.equal(pool(r, "/apiary"), undefined);
  assert.equal(pool(r, "/ap"), undefined);
});

Deno.test("path matching is case-sensitive and ignores the query", () => {
  const r = router({ match: { path: "/api/" }, pool: "api" });
  assert.equal(pool(r, "/API/x"), undefined);
  assert.equal(pool(r, "/x?next=/api/"), undefined);
  assert.equal(pool(r, "/api/?next=/x"), "api");
});

Deno.test("paths are normalised before matching, so dot segments and escapes cannot dodge a route", () => {
  const r = router(
    { match: { path: "/admin" }, pool: "admin" },
    { match: { path: "/static/" }, pool: "static" },
  );
  assert.equal(pool(r, "/static/../admin"), "admin");
  assert.equal(pool(r, "/static/%2e%2e/admin"), "admin");
  assert.equal(pool(r, "/static/%2E%2e/admin/users"), "admin");
  assert.equal(pool(r, "/%73tatic/x"), "static");
  assert.equal(pool(r, "/static/./x"), "static");
  assert.equal(pool(r, "/x/../static/y?a=../admin"), "static");
  // An encoded slash is not a separator, so this is one segment and no route's.
  assert.equal(pool(r, "/static%2F..%2Fadmin"), undefined);
});

Deno.test("a prefix written with escapes matches the same paths as its decoded form", () => {
  const r = router({ match: { path: "/%7Euser/" }, pool: "home" });
  assert.equal(pool(r, "/~user/x"), "home");
  assert.equal(pool(r, "/%7euser/x"), "home");
});

Deno.test("normalizePath decodes unreserved escapes, upper-cases the rest and removes dot segments", () => {
  const cases: [string, string][] = [
    ["/a/b/c/./../../g", "/a/g"], // RFC 3986 §5.2.4
    ["mid/content=5/../6", "mid/6"], // RFC 3986 §5.2.4
    ["/static/../admin", "/admin"],
    ["/%73tatic/x", "/static/x"],
    ["/a/%2e%2E/b", "/b"],
    ["/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"],
    ["/a%2fb%3a%c3%a9", "/a%2Fb%3A%C3%A9"],
    ["/100%/%zz/%4", "/100%/%zz/%4"],
    ["/..", "/"],
    ["/.", "/"],
    ["/a/..", "/"],
    ["/a/b/..", "/a/"],
    ["/a/.", "/a/"],
    ["/a//..", "/a/"],
    ["/../../a", "/a"],
    ["/.hidden/..x/...", "/.hidden/..x/..."],
    ["/", "/"],
  ];
  for (const [path, want] of cases) assert.equal(normalizePath(path), want, path);
});

Deno.test("the first route in config order that matches wins", () => {
  const r = router(
    { name: "exact-path", match: { host: "a.example.com", path: "/special" }, pool: "p1" },
    { name: "wild", match: { host: "*.example.com" }, pool: "p2" },
    { name: "exact", match: { host: "a.example.com" }, pool: "p3" },
    { name: "api", match: { path: "/api" }, pool: "p4" },
    { name: "rest", pool: "p5" },
  );
  assert.equal(pool(r, "/special", { host: "a.example.com" }), "p1");
  assert.equal(pool(r, "/other", { host: "a.example.com" }), "p2");
  assert.equal(pool(r, "/api", { host: "b.example.com" }), "p2");
  assert.equal(pool(r, "/api", { host: "other.test" }), "p4");
  assert.equal(pool(r, "/", { host: "other.test" }), "p5");
  assert.equal(pool(r, "/api", { host: "example.com" }), "p4");
});

Deno.test("a hostless route listed before a host route wins for that host too", () => {
  const r = router(
    { match: { path: "/health" }, pool: "health" },
    { match: { host: "a.test" }, pool: "a" },
  );
  assert.equal(pool(r, "/health", { host: "a.test" }), "health");
  assert.equal(pool(r, "/x", { host: "a.test" }), "a");
});

Deno.test("a method condition matches only the listed methods", () => {
  const r = router({ match: { method: ["GET", "HEAD"] }, pool: "read" }, { pool: "other" });
  assert.equal(pool(r, "/", { method: "GET" }), "read");
  assert.equal(pool(r, "/", { method: "HEAD" }), "read");
  assert.equal(pool(r, "/", { method: "POST" }), "other");
  assert.equal(pool(r, "/", { method: "get" }), "other");
});

Deno.test("a header condition matches an exact value, a regex, and the combined value of repeats", () => {
  const r = router(
    { match: { headers: { "X-Env": "canary" } }, pool: "exact" },
    { match: { headers: { "user-agent": "/^curl\\//i" } }, pool: "regex" },
    { match: { headers: { "x-tag": "a, b" } }, pool: "combined" },
    { pool: "other" },
  );
  assert.equal(pool(r, "/", { headers: { "x-env": "canary" } }), "exact");
  assert.equal(pool(r, "/", { headers: { "x-env": "Canary" } }), "other");
  assert.equal(pool(r, "/", { headers: { "x-env": "canary2" } }), "other");
  assert.equal(pool(r, "/", { headers: { "user-agent": "CURL/8.5" } }), "regex");
  assert.equal(pool(r, "/", { headers: { "user-agent": "Mozilla curl/8" } }), "other");
  assert.equal(pool(r, "/", { headers: [["x-tag", "a"], ["x-tag", "b"]] }), "combined");
  assert.equal(pool(r, "/"), "other");
});

Deno.test("a regex with the g flag matches on every request, not every other one", () => {
  const r = router({ match: { headers: { "x-id": "/\\d/g" } }, pool: "digits" });
  for (let i = 0; i < 4; i++) assert.equal(pool(r, "/", { headers: { "x-id": "7" } }), "digits");
});

Deno.test("all conditions of a route must hold at once", () => {
  const r = router({
    match: { host: "a.test", path: "/api", method: "POST", headers: { "x-k": "v" } },
    pool: "all",
  });
  const ok = { host: "a.test", method: "POST", headers: { "x-k": "v" } };
  assert.equal(pool(r, "/api/x", ok), "all");
  assert.equal(pool(r, "/api/x", { ...ok, host: "b.test" }), undefined);
  assert.equal(pool(r, "/web", ok), undefined);
  assert.equal(pool(r, "/api/x", { ...ok, method: "GET" }), undefined);
  assert.equal(pool(r, "/api/x", { ...ok, headers: {} }), undefined);
});

Deno.test("a table that routes by path forwards the normalised path it routed by, the query as sent", () => {
  const r = router({ match: { path: "/static/" }, pool: "static" }, { pool: "other" });
  const m = r.match("GET", "example.com", "/static/a/../%7eb?x=%2e", new Headers());
  assert.equal(m?.path, "/static/~b?x=%2e");
  // Matched by the catch-all after normalising: the backend sees the path lb routed by.
  const o = r.match("GET", "example.com", "/static/../admin?x=/../", new Headers());
  assert.deepEqual([o?.route.target, o?.path], ["other", "/admin?x=/../"]);
  const plain = r.match("GET", "example.com", "/static/x?y=1", new Headers());
  assert.equal(plain?.path, "/static/x?y=1");
});

Deno.test("a table that never reads the path forwards the target exactly as the client sent it", () => {
  const r = router({ match: { host: "a.example" }, pool: "a" }, { pool: "other" });
  for (const target of ["/a/../b?x=%2e", "/%7e/./x", "//x/%2F.."]) {
    assert.equal(r.match("GET", "a.example", target, new Headers())?.path, target);
    assert.equal(r.match("GET", "b.example", target, new Headers())?.path, target);
  }
});

Deno.test("stripPrefix removes the prefix from the normalised path and keeps the query", () => {
  const path = (r: Router<string>, target: string) =>
    r.match("GET", "example.com", target, new Headers())?.path;
  const slash = router({ match: { path: "/static/" }, pool: "s", stripPrefix: true });
  assert.equal(path(slash, "/static/app.js?v=1"), "/app.js?v=1");
  assert.equal(path(slash, "/static/app.js"), "/app.js");
  assert.equal(path(slash, "/static/"), "/");
  assert.equal(path(slash, "/static/?"), "/?");
  assert.equal(path(slash, "/%73tatic/x/../y?q=/static/"), "/y?q=/static/");
  const bare = router({ match: { path: "/api" }, pool: "a", stripPrefix: true });
  assert.equal(path(bare, "/api"), "/");
  assert.equal(path(bare, "/api?x=1"), "/?x=1");
  assert.equal(path(bare, "/api/x"), "/x");
  assert.equal(path(bare, "/api/x/?y"), "/x/?y");
  const root = router({ match: { path: "/" }, pool: "r", stripPrefix: true });
  assert.equal(path(root, "/a/b"), "/a/b");
});

Deno.test("a hand-built stripPrefix without a path leaves the target alone", () => {
  const [c] = configs({ pool: "p" });
  const r = new Router([{ ...c, stripPrefix: true }], (x) => x.pool);
  assert.equal(r.match("GET", null, "/a?b", new Headers())?.path, "/a?b");
});

Deno.test("routes keep their config, position and target", () => {
  const cs = configs({ pool: "a" }, { name: "second", pool: "b" });
  const r = new Router(cs, (c) => ({ pool: c.pool }));
  assert.deepEqual(r.routes.map((x) => [x.index, x.config.name, x.target.pool]), [
    [0, "route-1", "a"],
    [1, "second", "b"],
  ]);
  assert.equal(r.routes[1].config, cs[1]);
  assert.equal(r.match("GET", null, "/", new Headers())?.route, r.routes[0]);
});

Deno.test("an empty route list matches nothing", () => {
  assert.equal(router().match("GET", "example.com", "/", new Headers()), undefined);
});

Deno.test("shadowed finds routes an earlier route always wins over", () => {
  const found = shadowed(configs(
    { match: { host: "*.example.com", path: "/api" }, pool: "p" }, // 0
    { match: { host: "a.example.com", path: "/api/v1" }, pool: "p" }, // 1: by 0
    { match: { host: ["b.example.com", "*.example.com"], path: "/api" }, pool: "p" }, // 2: by 0
    { match: { path: "/static/", method: ["GET", "HEAD"] }, pool: "p" }, // 3
    { match: { path: "/static/img/", method: "GET", headers: { "x-a": "1" } }, pool: "p" }, // 4: by 3
    { match: { headers: { "x-b": "/^t/" } }, pool: "p" }, // 5
    { match: { path: "/x", headers: { "x-b": "/^t/", "x-c": "2" } }, pool: "p" }, // 6: by 5
    { pool: "p" }, // 7
    { match: { host: "z.test" }, pool: "p" }, // 8: by 7
    { pool: "p" }, // 9: by 7
  ));
  assert.deepEqual(found, [
    { index: 1, by: 0 },
    { index: 2, by: 0 },
    { index: 4, by: 3 },
    { index: 6, by: 5 },
    { index: 8, by: 7 },
    { index: 9, by: 7 },
  ]);
});

Deno.test("shadowed reports nothing when a later route can still match some request", () => {
  const pairs: [unknown, unknown][] = [
    [{ path: "/api" }, { path: "/apiary" }],
    [{ path: "/api/" }, { path: "/api" }],
    [{ path: "/api/v1" }, { path: "/api" }],
    [{ host: "*.example.com" }, { host: "example.com" }],
    [{ host: "*.example.com" }, { host: "a.b.example.com" }],
    [{ host: "*.example.com" }, { host: ["a.example.com", "example.com"] }],
    [{ host: "a.example.com" }, { host: "*.example.com" }],
    [{ host: "a.test" }, {}],
    [{ path: "/" }, {}],
    [{ method: "GET" }, { method: ["GET", "POST"] }],
    [{ method: "GET" }, { path: "/x" }],
    [{ headers: { "x-a": "1" } }, { headers: { "x-a": "2" } }],
    [{ headers: { "x-a": "1" } }, {}],
    [{ headers: { "x-a": "/^1/" } }, { headers: { "x-a": "1" } }],
  ];
  for (const [a, b] of pairs) {
    const found = shadowed(configs({ match: a, pool: "p" }, { match: b, pool: "p" }));
    assert.deepEqual(found, [], JSON.stringify([a, b]));
  }
});

Deno.test("shadowed agrees with the router on segment boundaries and trailing slashes", () => {
  const pairs: [string, string, boolean][] = [
    ["/api", "/api/", true],
    ["/api", "/api/v1", true],
    ["/api", "/api", true],
    ["/api/", "/api/v1", true],
    ["/", "/anything", true],
    ["/api", "/apiary", false],
    ["/api/", "/api", false],
  ];
  for (const [a, b, want] of pairs) {
    const found = shadowed(
      configs({ match: { path: a }, pool: "p" }, { match: { path: b }, pool: "p" }),
    );
    assert.equal(found.length === 1, want, `${a} over ${b}`);
  }
});

Deno.test("a table of 100 routes picks the route each request belongs to", () => {
  const inputs: unknown[] = [];
  for (let i = 0; i < 80; i++) {
    inputs.push({ match: { host: `h${i}.example.com` }, pool: `host${i}` });
  }
  for (let i = 0; i < 10; i++) inputs.push({ match: { host: `*.w${i}.test` }, pool: `wild${i}` });
  for (let i = 0; i < 9; i++) inputs.push({ match: { path: `/p${i}` }, pool: `path${i}` });
  inputs.push({ pool: "default" });
  const r = router(...inputs);
  assert.equal(r.routes.length, 100);
  for (let i = 0; i < 80; i++) {
    assert.equal(pool(r, "/p3", { host: `H${i}.example.com:8443` }), `host${i}`);
  }
  for (let i = 0; i < 10; i++) assert.equal(pool(r, "/", { host: `x.w${i}.test` }), `wild${i}`);
  for (let i = 0; i < 9; i++) assert.equal(pool(r, `/p${i}/x`, { host: "other.test" }), `path${i}`);
  assert.equal(pool(r, "/p3", { host: "w3.test" }), "path3");
  assert.equal(pool(r, "/p3", { host: "a.b.w3.test" }), "path3");
  assert.equal(pool(r, "/p9", { host: "h80.example.com" }), "default");
  assert.equal(pool(r, "/p1", { host: null }), "path1");
  assert.deepEqual(shadowed(configs(...inputs)), []);
});

Deno.test("the first-segment index of many path prefixes keeps config order with routes of every kind between them", () => {
  const r = router(
    { match: { path: "/a/" }, pool: "a1" },
    { match: { method: "POST" }, pool: "post" },
    { match: { path: "/b" }, pool: "b" },
    { match: { path: "/c/" }, pool: "c" },
    { match: { path: "/d" }, pool: "d" },
    { match: { path: "/a/x" }, pool: "a2" },
    { match: { path: "/" }, pool: "root" },
    { match: { path: "/a" }, pool: "a3" },
  );
  assert.equal(pool(r, "/a/x"), "a1");
  assert.equal(pool(r, "/b/1", { method: "POST" }), "post");
  assert.equal(pool(r, "/b/1"), "b");
  assert.equal(pool(r, "/b"), "b");
  assert.equal(pool(r, "/bb"), "root", "a prefix without / never cuts a segment");
  assert.equal(pool(r, "/e/f"), "root");
  assert.equal(pool(r, "/a"), "root", "/a/ does not match /a, and / comes before /a");
  assert.equal(pool(r, "/%61/x"), "a1", "the index reads the normalised path");
  assert.equal(pool(r, "/x/../d/1"), "d");
  assert.equal(pool(r, "/"), "root");
});
