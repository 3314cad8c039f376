/**
 * `lb check` and `lb route` on configs with pools and routes, as subprocesses: the routing
 * table and shadowed-route warnings, routing mistakes named by field path, explanations
 * from the files (--offline) and from a running `lb serve`, and bad command lines.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { call, freePort, until } from "../_stack.ts";
import { assertUsageError, lb, spawnLb } from "./_cli.ts";

/** lb.yaml with two pools and three routes; `adminPort` where its admin API listens. */
function routedYaml(urls: { web: string; api: [string, string] }, adminPort = freePort()): string {
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: ${adminPort} }
log: { access: false }
health: { enabled: false }
pools:
  web:
    backends: [{ url: "${urls.web}", name: web-1 }]
  api:
    strategy: least-conn
    backends:
      - { url: "${urls.api[0]}", name: api-1 }
      - { url: "${urls.api[1]}", name: api-2 }
routes:
  - name: beta
    match: { path: /api/, headers: { x-user: "/^beta-/" } }
    pool: api
    stripPrefix: true
    headers:
      request: { set: { x-route: beta }, remove: [x-debug] }
      response: { set: { x-served-by: lb }, remove: [server] }
  - name: api
    match: { host: api.test, path: /api/ }
    pool: api
  - name: web
    match: { host: "*.web.test" }
    pool: web
`;
}

/** Backends nothing listens on: `lb check` and `lb route --offline` never connect. */
const NOWHERE = {
  web: "http://127.0.0.1:9",
  api: ["http://127.0.0.1:10", "http://127.0.0.1:11"] as [string, string],
};

/** A temp dir for `fn`, removed after. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lb_route_cli_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("lb check prints the routing table, and warns on stderr about a route an earlier one shadows (exit 0)", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ok.yaml`, routedYaml(NOWHERE));
    const ok = await lb(["check", "--config", `${dir}/ok.yaml`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, "");
    const table = ok.stdout.split("# routing table (the first route that matches wins):\n")[1];
    assert.ok(table, ok.stdout);
    const rows = table.trim().split("\n").map((r) => r.trim().split(/\s{2,}/));
    assert.deepEqual(rows, [
      [
        "1",
        "beta",
        "path /api/*, x-user: /^beta-/",
        "(strip prefix, request headers, response headers)",
        "→ api",
      ],
      ["2", "api", "host api.test, path /api/*", "→ api"],
      ["3", "web", "host *.web.test", "→ web"],
    ]);
    assert.match(ok.stdout, /pools:\n {2}web:/);

    // A catch-all first: the two routes after it can never match.
    await Deno.writeTextFile(
      `${dir}/shadow.yaml`,
      routedYaml(NOWHERE).replace("routes:\n", "routes:\n  - { name: everything, pool: web }\n"),
    );
    const sh = await lb(["check", "--config", `${dir}/shadow.yaml`]);
    assert.equal(sh.code, 0, sh.stderr);
    assert.match(sh.stdout, /^ {2}1\s+everything\s+every request\s+→ web$/m);
    assert.deepEqual(sh.stderr.trim().split("\n"), [
      "lb: warning: route 2 (beta) never matches: route 1 (everything) comes first and matches every request it would",
      "lb: warning: route 3 (api) never matches: route 1 (everything) comes first and matches every request it would",
      "lb: warning: route 4 (web) never matches: route 1 (everything) comes first and matches every request it would",
    ]);
  });
});

Deno.test("lb check refuses routing mistakes with exit 1, naming the field path", async () => {
  const pools = `pools:
  web: { backends: [{ url: "http://127.0.0.1:9" }] }
  api: { backends: [{ url: "http://127.0.0.1:10" }] }
`;
  /** [what, lb.yaml, the problem line it must print]. */
  const cases: [string, string, RegExp][] = [
    [
      "a route naming an unknown pool",
      `${pools}routes: [{ pool: nope }]`,
      /^lb: bad\.yaml: routes\[0\]\.pool: no pool named "nope" \(pools: web, api\)$/m,
    ],
    [
      "an empty pool",
      `pools:\n  x: { backends: [] }\n`,
      /^lb: bad\.yaml: pools\.x\.backends: needs at least one backend$/m,
    ],
    [
      "a host with a port",
      `${pools}routes: [{ pool: web, match: { host: "web.test:80" } }, { pool: api }]`,
      /^lb: bad\.yaml: routes\[0\]\.match\.host: must be a host name like/m,
    ],
    [
      "a bad regex in match.headers",
      `${pools}routes: [{ pool: web, match: { headers: { x-user: "/(beta/" } } }, { pool: api }]`,
      /^lb: bad\.yaml: routes\[0\]\.match\.headers\.x-user: is not a valid regular expression: /m,
    ],
    [
      "stripPrefix without match.path",
      `${pools}routes: [{ pool: web, stripPrefix: true, match: { host: web.test } }, { pool: api }]`,
      /^lb: bad\.yaml: routes\[0\]\.stripPrefix: needs match\.path$/m,
    ],
    [
      "pools and top-level backends",
      `${pools}backends: [{ url: "http://127.0.0.1:11" }]\nroutes: [{ pool: web }]`,
      /^lb: bad\.yaml: backends: with pools, each pool lists its own backends/m,
    ],
    [
      "several pools without routes",
      pools,
      /^lb: bad\.yaml: routes: needed with several pools: say which requests go to web, api$/m,
    ],
  ];
  await inTempDir(async (dir) => {
    const runs = await Promise.all(cases.map(async ([, text], i) => {
      await Deno.mkdir(`${dir}/${i}`);
      await Deno.writeTextFile(`${dir}/${i}/bad.yaml`, text);
      return lb(["check", "--config", "bad.yaml"], { cwd: `${dir}/${i}` });
    }));
    runs.forEach((r, i) => {
      const [what, , line] = cases[i];
      assert.equal(r.code, 1, `${what}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "", what);
      assert.match(r.stderr, line, `${what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, what);
    });
  });
});

Deno.test("lb route --offline explains a request from the files: route, pool, backend path, header rules and server", async () => {
  await inTempDir(async (dir) => {
    const config = `${dir}/lb.yaml`;
    await Deno.writeTextFile(config, routedYaml(NOWHERE));
    const url = "http://api.test/api/v1/users?page=2";
    const beta = await lb([
      "route",
      "--offline",
      "--config",
      config,
      "GET",
      url,
      "-H",
      "x-user: beta-7",
    ]);
    assert.equal(beta.code, 0, beta.stderr);
    assert.equal(beta.stderr, "");
    const rows = Object.fromEntries(
      beta.stdout.trim().split("\n").slice(1).map((l) => [l.slice(2, 19).trim(), l.slice(19)]),
    );
    assert.equal(beta.stdout.split("\n")[0], "GET api.test/api/v1/users?page=2");
    assert.deepEqual(rows, {
      "route": `1 (beta), matching {"path":"/api/","headers":{"x-user":"/^beta-/"}}`,
      "pool": "api (least-conn, 2 of 2 servers available)",
      "backend path": "/v1/users?page=2",
      "request headers": "set x-route: beta; remove x-debug",
      "response headers": "set x-served-by: lb; remove server",
      "server": rows.server,
      "explained from":
        `${config} and its state file (lb is not running there: servers as configured, none checked)`,
    });
    assert.match(
      rows.server,
      /^api-[12] \(http:\/\/127\.0\.0\.1:1[01], healthy\), picked by least-conn$/,
    );

    // Without the header the next route matches, and the prefix stays.
    const plain = await lb(["route", "--offline", "--config", config, "--json", "GET", url]);
    assert.equal(plain.code, 0, plain.stderr);
    const e = JSON.parse(plain.stdout);
    assert.deepEqual([e.route.name, e.pool.name, e.path], ["api", "api", "/api/v1/users?page=2"]);
    assert.deepEqual(e.requestHeaders, { set: {}, remove: [] });

    const none = await lb(["route", "--offline", "--config", config, "GET", "http://other.test/"]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /^ {2}route {12}none matches: lb answers 404 no_route$/m);
    assert.doesNotMatch(none.stdout, /^ {2}(pool|server) /m);
  });
});

Deno.test("lb route asks a running lb serve and says it explains from it, with its live health", async () => {
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const dead = `http://127.0.0.1:${freePort()}`;
  try {
    await inTempDir(async (dir) => {
      const adminPort = freePort();
      const config = `${dir}/lb.yaml`;
      // Health checks on the api pool find api-2 (nothing listens there) down.
      await Deno.writeTextFile(
        config,
        routedYaml({ web: backend.url, api: [backend.url, dead] }, adminPort).replace(
          "    strategy: least-conn\n",
          "    strategy: least-conn\n    health: { enabled: true, interval: 50ms, timeout: 200ms, fall: 1 }\n",
        ),
      );
      const serve = spawnLb(["serve", "--config", config, "--log-format", "text"]);
      try {
        const admin = `http://127.0.0.1:${adminPort}`;
        await until(() => serve.out().includes(`admin listening on ${admin}`), "lb serve", 15_000);
        await until(async () => {
          const r = await call(admin, "GET", "/api/pools/api/servers/api-2");
          return r.json.state === "unhealthy";
        }, "api-2 to be found down");
        const args = [
          "route",
          "--config",
          config,
          "GET",
          "http://x.api.test/api/a",
          "-H",
          "x-user: beta-1",
        ];
        const live = await lb(args);
        assert.equal(live.code, 0, live.stderr);
        assert.match(
          live.stdout,
          /^ {2}route {12}1 \(beta\)/m,
          "the -H header reached the running lb",
        );
        assert.match(live.stdout, /^ {2}pool {13}api \(least-conn, 1 of 2 servers available\)$/m);
        assert.match(live.stdout, /^ {2}server {11}api-1 \(/m);
        assert.match(
          live.stdout,
          new RegExp(
            `^ {2}explained from {3}the running lb at ${admin} \\(live health and load\\)$`,
            "m",
          ),
        );
        const offline = await lb(["route", "--offline", ...args.slice(1)]);
        assert.match(offline.stdout, /2 of 2 servers available/);
        assert.match(offline.stdout, /explained from {3}.*lb is not running there/);
      } finally {
        serve.child.kill("SIGTERM");
        await serve.child.status;
        await serve.reading;
        await serve.errText;
      }
    });
  } finally {
    await backend.close();
  }
});

Deno.test("bad lb route command lines exit 2 with one line and the usage hint, never a stack trace", async () => {
  const runs = await Promise.all([
    lb(["route", "GET"]),
    lb(["route"]),
    lb(["route", "GET", "http://a.test/", "-H", "nocolon"]),
    lb(["route", "GET", "http://a.test/", "-H", ": empty-name"]),
    lb(["route", "G@T", "http://a.test/"]),
    lb(["route", "GET", "a.test/path"]),
    lb(["route", "GET", "http:///path"]),
    lb(["route", "GET", "http://a.test/", "extra"]),
  ]);
  const patterns = [
    /^lb: give a method and a URL, like: lb route GET http:\/\/host\/path$/,
    /^lb: give a method and a URL/,
    /^lb: -H takes "Name: value", got "nocolon"$/,
    /^lb: -H takes "Name: value", got ": empty-name"$/,
    /^lb: "G@T" is not a method like GET$/,
    /^lb: "a\.test\/path" must be a URL like http:\/\/host\/path, or a path like \/path$/,
    /^lb: "http:\/\/\/path" has no host$/,
    /^lb: give a method and a URL/,
  ];
  runs.forEach((r, i) => {
    assertUsageError(r, patterns[i]);
    assert.equal(r.stdout, "");
  });
});

Deno.test("lb route --offline takes the admin states the state file keeps: a disabled server is neither available nor picked", async () => {
  await inTempDir(async (dir) => {
    const config = `${dir}/lb.yaml`;
    await Deno.writeTextFile(config, routedYaml(NOWHERE));
    await Deno.writeTextFile(
      `${dir}/lb.state.json`,
      JSON.stringify({
        version: 2,
        pools: { api: { changed: { "api-1": { state: "disabled" }, "api-2": { weight: 3 } } } },
      }),
    );
    // least-conn between two idle servers picks the first, so a disabled api-1 would show.
    const r = await lb([
      "route",
      "--offline",
      "--config",
      config,
      "--json",
      "GET",
      "http://api.test/api/x",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const e = JSON.parse(r.stdout);
    assert.deepEqual(e.pool, { name: "api", strategy: "least-conn", available: 1, servers: 2 });
    assert.equal(e.server.id, "api-2");
  });
});
