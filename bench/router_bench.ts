/**
 * What choosing a route costs, and whether it grows with the number of routes: one route
 * against a table of 100 (90 exact hosts, then 10 path prefixes without a host), hitting
 * the last host route and the last path-prefix route. The router's per-host candidate
 * lists should keep the 100-route figures close to the 1-route ones.
 *
 * Run: deno bench bench/router_bench.ts
 */
import { resolveRoute, type RouteConfig, routeSchema } from "../src/config/routes.ts";
import { type RouteMatchResult, Router } from "../src/routing/router.ts";
import { RegExpRouter } from "hono/router/reg-exp-router";
import { TrieRouter } from "hono/router/trie-router";

function router(inputs: unknown[]): Router<string> {
  const configs: RouteConfig[] = inputs.map((r, i) => resolveRoute(routeSchema.parse(r), i));
  return new Router(configs, (r) => r.pool);
}

const table: unknown[] = [];
for (let i = 0; i < 90; i++) table.push({ match: { host: `h${i}.example.com` }, pool: `h${i}` });
for (let i = 0; i < 10; i++) table.push({ match: { path: `/p${i}/` }, pool: `p${i}` });

const hundred = router(table);
const oneHost = router([{ match: { host: "h89.example.com" }, pool: "h89" }]);
const onePath = router([{ match: { path: "/p9/" }, pool: "p9" }]);
const headers = new Headers({ "user-agent": "bench", accept: "*/*" });

// Kept in a module variable so the matches cannot be optimised away.
let last: RouteMatchResult<string> | undefined;

/** Fails the bench rather than timing a request that went to the wrong route. */
function expect(pool: string): void {
  if (last?.route.target !== pool) throw new Error(`matched ${last?.route.target}, not ${pool}`);
}

Deno.bench("1 route, exact host", { group: "host", baseline: true }, () => {
  last = oneHost.match("GET", "h89.example.com:8080", "/index.html?v=1", headers);
});
Deno.bench("100 routes, the last host route", { group: "host" }, () => {
  last = hundred.match("GET", "h89.example.com:8080", "/index.html?v=1", headers);
});
Deno.bench("100 routes, the last host route, host in upper case", { group: "host" }, () => {
  last = hundred.match("GET", "H89.Example.com", "/index.html?v=1", headers);
});

Deno.bench("1 route, path prefix", { group: "path", baseline: true }, () => {
  last = onePath.match("GET", "other.example.com:8080", "/p9/app.js?v=1", headers);
});
Deno.bench("100 routes, the last path-prefix route", { group: "path" }, () => {
  last = hundred.match("GET", "other.example.com:8080", "/p9/app.js?v=1", headers);
});
Deno.bench("100 routes, the last path-prefix route, path to normalise", { group: "path" }, () => {
  last = hundred.match("GET", "other.example.com:8080", "/x/../%70%39/app.js?v=1", headers);
});

// Each group's routes are checked once, before the timings mean anything.
last = hundred.match("GET", "h89.example.com:8080", "/", headers);
expect("h89");
last = hundred.match("GET", "H89.Example.com", "/", headers);
expect("h89");
last = hundred.match("GET", "other.example.com:8080", "/x/../%70%39/app.js?v=1", headers);
expect("p9");
last = onePath.match("GET", "other.example.com:8080", "/p9/app.js?v=1", headers);
expect("p9");
last = oneHost.match("GET", "h89.example.com:8080", "/", headers);
expect("h89");

// Hono's own routers, which the issue suggested for path matching: 100 path prefixes, path
// only (Hono routes by method and path; hosts, headers and first-match order would be lb's
// own code around it), beside lb's router on the same 100 prefixes.
const prefixes = Array.from({ length: 100 }, (_, i) => `/p${i}/`);
const regexp = new RegExpRouter<string>();
const trie = new TrieRouter<string>();
for (const p of prefixes) {
  regexp.add("GET", `${p}*`, p);
  trie.add("GET", `${p}*`, p);
}
const ours = router(prefixes.map((p) => ({ match: { path: p }, pool: p.slice(1, -1) })));
let honoLast: unknown;
Deno.bench(
  "lb's router, 100 path prefixes, the last one",
  { group: "hono", baseline: true },
  () => {
    last = ours.match("GET", "x", "/p99/app.js?v=1", headers);
  },
);
Deno.bench("Hono RegExpRouter, 100 path prefixes, the last one", { group: "hono" }, () => {
  honoLast = regexp.match("GET", "/p99/app.js");
});
Deno.bench("Hono TrieRouter, 100 path prefixes, the last one", { group: "hono" }, () => {
  honoLast = trie.match("GET", "/p99/app.js");
});
last = ours.match("GET", "x", "/p99/app.js?v=1", headers);
expect("p99");
if ((regexp.match("GET", "/p99/app.js")[0] as [string, unknown][])[0][0] !== "/p99/") {
  throw new Error(`RegExpRouter matched ${JSON.stringify(honoLast)}`);
}
