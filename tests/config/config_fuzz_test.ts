/**
 * Broken lb.yaml files: every one is refused with a clear, stack-free error (exit 1 from
 * `lb check`), never a crash. Most go through parseConfig in-process; a batch goes through
 * the real CLI as subprocesses.
 */
import assert from "node:assert/strict";
import YAML from "yaml";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { routingTable } from "../../src/cli/check.ts";
import { resolvePools, resolveRoutes } from "../../src/config/pools.ts";
import { Router, shadowed } from "../../src/routing/router.ts";
import { prng } from "../_stack.ts";

const VALID = `
listen: { host: 127.0.0.1, port: 8000 }
strategy: consistent-hash
hash: { key: "header:x-user", balanceFactor: 1.25, vnodes: 100, tableSize: 65537 }
backends:
  - { url: "http://127.0.0.1:9001", name: a, weight: 2, maxConnections: 10 }
  - { url: "http://127.0.0.1:9002", name: b }
timeouts: { header: 5s, idle: 30s, request: 0, upstreamIdle: 2s }
health: { enabled: true, path: /health, interval: 1s, timeout: 500ms, expectStatus: "200-399", rise: 2, fall: 3 }
outlier: { enabled: true, consecutive: 5, baseEjection: 30s, maxEjection: 300s, maxEjectionPercent: 50 }
retry: { attempts: 3, on: [502, 503], backoffBase: 25ms, backoffMax: 250ms, budgetPercent: 20, bufferLimit: 64KiB }
limits: { maxBodyBytes: 1MiB, maxUriBytes: 8KiB, maxHeaderBytes: 32KiB, maxConnections: 100, maxConnectionsPerClient: 10 }
trustedProxies: ["10.0.0.0/8", "::1/128"]
admin: { enabled: true, host: 127.0.0.1, port: 8001 }
log: { format: json, access: true }
shutdownTimeout: 10s
`;

/** A problem line users can act on: one line, no stack frame, not absurdly long. */
function assertClearError(e: unknown, what: string): void {
  assert.ok(e instanceof ConfigError, `${what}: threw ${(e as Error)?.constructor?.name}: ${e}`);
  assert.ok(e.problems.length > 0, `${what}: no problems listed`);
  for (const p of e.problems) {
    assert.ok(!p.includes("\n"), `${what}: multi-line problem ${JSON.stringify(p)}`);
    assert.ok(!/\bat .+:\d+:\d+/.test(p), `${what}: stack frame in ${JSON.stringify(p)}`);
    assert.ok(p.length < 400, `${what}: ${p.length}-character problem`);
  }
}

function expectRefused(text: string, what: string): ConfigError {
  try {
    parseConfig(text, "lb.yaml");
  } catch (e) {
    assertClearError(e, what);
    return e as ConfigError;
  }
  assert.fail(`${what}: accepted\n${text.slice(0, 300)}`);
}

const bomb = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ..."bcdefghi".split("").map((k, i) => {
    const prev = "abcdefghi"[i];
    return `${k}: &${k} [${Array(9).fill(`*${prev}`).join(",")}]`;
  }),
].join("\n");

/** [what, yaml, a word the error must contain]. */
const BROKEN: [string, string, RegExp][] = [
  ["a port of the wrong type", "listen: { port: eighty }", /listen\.port/],
  ["a negative port", "listen: { port: -1 }", /listen\.port/],
  ["a port past 65535", "listen: { port: 70000 }", /listen\.port/],
  ["a huge number", "listen: { port: 1e400 }", /listen\.port/],
  ["an unknown top-level key", "lisen: { port: 80 }", /unknown key "lisen"/],
  ["an unknown nested key", "retry: { atempts: 2 }", /retry: unknown key "atempts"/],
  ["a negative duration", "timeouts: { header: -5s }", /timeouts\.header/],
  ["a negative number as a duration", "timeouts: { idle: -1 }", /timeouts\.idle/],
  ["a duration too long for a timer", "timeouts: { header: 600h }", /timeouts\.header.*too long/],
  ["a duration with an unknown unit", "health: { interval: 5 days }", /health\.interval/],
  ["NaN as a duration", "timeouts: { header: .nan }", /timeouts\.header/],
  ["a size with an unknown unit", "limits: { maxBodyBytes: 5 parsecs }", /limits\.maxBodyBytes/],
  ["a fractional byte count", "limits: { maxBodyBytes: 1.5 }", /limits\.maxBodyBytes/],
  ["an empty backend list", "backends: []", /backends.*at least one/],
  ["backends as a string", "backends: http://127.0.0.1:9001", /backends/],
  ["a backend without a url", "backends: [{ name: a }]", /backends\[0\]\.url/],
  ["a backend url that is not a URL", "backends: [{ url: 'not a url' }]", /backends\[0\]\.url/],
  ["a backend url with a bad port", "backends: [{ url: 'http://a:99999' }]", /backends\[0\]\.url/],
  ["an ftp backend", "backends: [{ url: 'ftp://a:1' }]", /backends\[0\]\.url.*https?:\/\//],
  ["a backend url with a path", "backends: [{ url: 'http://a:1/x' }]", /backends\[0\]\.url/],
  ["a backend url with credentials", "backends: [{ url: 'http://u:p@a:1' }]", /backends\[0\]\.url/],
  ["a javascript: url", "backends: [{ url: 'javascript:alert(1)' }]", /backends\[0\]\.url/],
  [
    "duplicate backend names",
    "backends: [{ url: 'http://a:1', name: x }, { url: 'http://b:1', name: x }]",
    /duplicate server id "x"/,
  ],
  [
    "the same backend twice",
    "backends: [{ url: 'http://a:1' }, { url: 'http://A:1/' }]",
    /duplicate backend/,
  ],
  ["a zero weight", "backends: [{ url: 'http://a:1', weight: 0 }]", /weight/],
  ["an unknown strategy", "strategy: fastest-possible", /strategy/],
  ["a bad hash key", "hash: { key: 'header:' }", /hash\.key/],
  ["a bad trusted proxy", "trustedProxies: ['10.0.0.0/33', 'localhost']", /trustedProxies\[0\]/],
  ["a short admin token", "admin: { token: short }", /admin\.token/],
  ["a bad status range", "health: { expectStatus: 200-99 }", /health\.expectStatus/],
  ["a retry status outside 5xx", "retry: { on: [404] }", /retry\.on/],
  ["a list at the top", "- a\n- b", /mapping/],
  ["a scalar at the top", "just text", /mapping/],
  ["duplicate keys", "listen: { port: 1 }\nlisten: { port: 2 }", /line 2/],
  ["tabs for indentation", "listen:\n\tport: 1", /line 2/],
  ["two documents", "a: 1\n---\nb: 2", /line/],
  ["an unclosed bracket", "backends: [{ url: 'http://a:1' }", /line/],
  ["a YAML alias bomb", bomb, /cannot be expanded/],
  ["deeply nested lists", `listen: ${"[".repeat(5000)}${"]".repeat(5000)}`, /./],
  [
    "deeply nested maps",
    Array.from({ length: 2000 }, (_, i) => `${" ".repeat(i)}a:`).join("\n"),
    /./,
  ],
  ["a merge key", "<<: { listen: { port: 1 } }", /unknown key "<<"/],
  [
    "a cluster Redis URL over http",
    "cluster: { redis: 'http://127.0.0.1:6379' }",
    /cluster\.redis/,
  ],
  ["a cluster Redis URL with a path", "cluster: { redis: 'redis://h:1/x/y' }", /database number/],
  [
    "a member TTL shorter than the heartbeat",
    "cluster: { redis: 'redis://h:1', heartbeat: 5s, memberTtl: 2s }",
    /cluster\.memberTtl.*longer than heartbeat/,
  ],
  [
    "a cluster name with a brace",
    "cluster: { redis: 'redis://h:1', name: 'a}b' }",
    /cluster\.name/,
  ],
  ["__proto__", "__proto__: { admin: { enabled: false } }", /unknown key "__proto__"/],
  ["a custom tag", "listen: !!js/function 'function () {}'", /listen/],
  [
    "binary garbage",
    String.fromCharCode(...Array.from({ length: 512 }, (_, i) => (i * 7919 + 13) % 256)),
    /./,
  ],
  [
    "non-UTF-8 bytes",
    new TextDecoder().decode(new Uint8Array([0x6c, 0x69, 0xff, 0xfe, 0x3a, 0x20, 0x80])),
    /./,
  ],
  ["a NUL byte", 'listen: { host: "127.0.0.1\0" }', /./],
];

Deno.test("each broken lb.yaml is refused with a clear error naming the problem", async (t) => {
  for (const [what, text, mentions] of BROKEN) {
    await t.step(what, () => {
      const e = expectRefused(text, what);
      assert.match(e.message, mentions, `${what}: ${e.message}`);
    });
  }
});

/** A random value of a random type, hostile where it can be. */
function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * 16);
  switch (pick) {
    case 0:
      return -Math.floor(r() * 1e6);
    case 1:
      return r() * 1e20;
    case 2:
      return Number.MAX_SAFE_INTEGER * 10;
    case 3:
      return r() < 0.5;
    case 4:
      return null;
    case 5:
      return "";
    case 6:
      return "x".repeat(Math.floor(r() * 5000));
    case 7:
      return ["-1s", "1e9h", "0.5.5ms", "NaN", "∞", "10 ms", "1GiB", "-1KiB"][Math.floor(r() * 8)];
    case 8:
      return ["http://", "http://[::1", "ftp://a", "http://a:0", "//a", "http://a:1#x"][
        Math.floor(r() * 6)
      ];
    case 9:
      return depth < 4 ? [randomValue(r, depth + 1), randomValue(r, depth + 1)] : [];
    case 10:
      return depth < 4 ? { [`k${Math.floor(r() * 3)}`]: randomValue(r, depth + 1) } : {};
    case 11:
      return String.fromCharCode(Math.floor(r() * 0x2000));
    case 12:
      return ["__proto__", "constructor", "toString"][Math.floor(r() * 3)];
    case 13:
      return Math.floor(r() * 70000);
    case 14:
      return "0.0.0.0/0";
    default:
      return r().toString(36);
  }
}

function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  }
  return out;
}

Deno.test("a thousand-odd seeded mutations of a valid lb.yaml either load or fail with a ConfigError", () => {
  const base = YAML.parse(VALID);
  parseConfig(VALID); // the starting point is valid
  const r = prng(20261125);
  const deadline = Date.now() + 4000;
  let tried = 0;
  let refused = 0;
  for (; tried < 3000 && Date.now() < deadline; tried++) {
    let text: string;
    if (tried % 3 === 2) {
      // Byte-level: flip, insert or delete a few characters of the YAML text.
      const chars = VALID.split("");
      for (let k = 0; k < 1 + Math.floor(r() * 4); k++) {
        const i = Math.floor(r() * chars.length);
        const op = r();
        if (op < 0.33) chars[i] = String.fromCharCode(Math.floor(r() * 128));
        else if (op < 0.66) chars.splice(i, 0, "[{:-&*!|>'\"#%@`\t\n"[Math.floor(r() * 18)]);
        else chars.splice(i, 1);
      }
      text = chars.join("");
    } else {
      // Structural: replace, delete or add something at a random path.
      const doc = structuredClone(base);
      const all = paths(doc).filter((p) => p.length > 0);
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
        const p = all[Math.floor(r() * all.length)];
        let parent: Record<string | number, unknown> = doc;
        for (const seg of p.slice(0, -1)) parent = parent[seg] as Record<string | number, unknown>;
        if (!parent || typeof parent !== "object") continue;
        const last = p[p.length - 1];
        const op = r();
        if (op < 0.7) parent[last] = randomValue(r);
        else if (op < 0.85) delete parent[last];
        else parent[`unknown${Math.floor(r() * 9)}`] = randomValue(r);
      }
      text = YAML.stringify(doc);
    }
    try {
      parseConfig(text, "fuzz.yaml");
    } catch (e) {
      refused++;
      assertClearError(e, `mutation #${tried}:\n${text.slice(0, 400)}`);
    }
  }
  assert.ok(tried >= 300, `only ${tried} mutations in the time box`);
  assert.ok(refused > tried / 2, `only ${refused} of ${tried} mutations were refused`);
});

Deno.test("lb check refuses broken files with exit 1 and one clear message, never a stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lb_config_fuzz_" });
  try {
    const files: [string, Uint8Array | string][] = [
      ["garbage.yaml", Uint8Array.from({ length: 2048 }, (_, i) => (i * 7919 + 13) % 256)],
      ["bomb.yaml", bomb],
      [
        "non_utf8.yaml",
        new Uint8Array([0x6c, 0x69, 0x73, 0x74, 0x65, 0x6e, 0x3a, 0x20, 0xff, 0xfe]),
      ],
      ["types.yaml", "listen: { port: '80' }\nbackends: [{ url: 5 }]\nretry: yes\n"],
      ["empty_backends.yaml", "backends: []\n"],
      ["huge.yaml", `backends: [{ url: "http://a:1", weight: ${"9".repeat(400)} }]\n`],
      ["nested.yaml", `listen: ${"[".repeat(20000)}${"]".repeat(20000)}\n`],
    ];
    for (const [name, data] of files) {
      if (typeof data === "string") await Deno.writeTextFile(`${dir}/${name}`, data);
      else await Deno.writeFile(`${dir}/${name}`, data);
    }
    const targets = [...files.map(([n]) => `${dir}/${n}`), `${dir}/missing.yaml`, dir];
    const runs = await Promise.all(targets.map(async (file) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "src/main.ts", "check", "--config", file],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
      return {
        file,
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    }));
    for (const { file, code, stdout, stderr } of runs) {
      const what = `lb check --config ${file.slice(dir.length + 1) || "(a directory)"}`;
      assert.equal(code, 1, `${what}: exit ${code}\n${stderr}`);
      assert.equal(stdout, "", `${what}: printed to stdout`);
      assert.match(stderr, /^lb: /, `${what}: ${stderr}`);
      assert.ok(!/^\s+at /m.test(stderr), `${what}: stack trace\n${stderr}`);
      assert.ok(!/Uncaught|panicked|RUST_BACKTRACE/.test(stderr), `${what}: crashed\n${stderr}`);
      assert.ok(stderr.length < 4000, `${what}: ${stderr.length} characters of error`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- pools and routes ----

const POOLS = `pools:
  web: { backends: [{ url: "http://127.0.0.1:9001" }] }
  api: { backends: [{ url: "http://127.0.0.1:9002" }] }
`;

/** `POOLS` and one route to web with `route` (a YAML flow mapping's inside) added. */
const route = (more: string) => `${POOLS}routes: [{ pool: web, ${more} }]`;

/** [what, yaml, what the error must say]: the routing rules' own mistakes. */
const BROKEN_ROUTING: [string, string, RegExp][] = [
  ["pools as a list", "pools: [web, api]", /^pools: Expected object/],
  ["a pool that is a number", "pools: { web: 5 }", /^pools\.web: Expected object/],
  ["no pools at all", "pools: {}", /^pools: needs at least one pool/],
  ["an empty pool", "pools: { web: { backends: [] } }", /^pools\.web\.backends: needs at least/],
  [
    "an unknown key in a pool",
    `pools: { web: { backends: [{ url: "http://a:1" }], colour: red } }`,
    /^pools\.web: unknown key "colour"/,
  ],
  [
    "an unknown key in a pool's section",
    `pools: { web: { backends: [{ url: "http://a:1" }], timeouts: { heder: 1s } } }`,
    /^pools\.web\.timeouts: unknown key "heder"/,
  ],
  [
    "a pool's unknown strategy",
    `pools: { web: { backends: [{ url: "http://a:1" }], strategy: fastest-ever } }`,
    /^pools\.web\.strategy: must be one of/,
  ],
  [
    "a pool's short sticky secret",
    `pools: { web: { backends: [{ url: "http://a:1" }], sticky: { cookie: s, secret: x } } }`,
    /^pools\.web\.sticky\.secret: must be at least 16 characters/,
  ],
  [
    "a pool name with a slash",
    `pools: { "a/b": { backends: [{ url: "http://a:1" }] } }`,
    /^pools\.a\/b: must be 1-64 letters/,
  ],
  [
    "a pool name with a line break",
    `pools: { "a\\nb": { backends: [{ url: "http://a:1" }] } }`,
    /^pools\["a\\nb"\]: must be 1-64 letters/,
  ],
  [
    "a huge pool name",
    `pools:\n  ? ${"p".repeat(3000)}\n  : { backends: [{ url: "http://a:1" }] }\n`,
    /^pools\["p{64}…"\]: must be 1-64 letters/,
  ],
  [
    "a pool named __proto__ (JavaScript objects drop it silently)",
    `pools:\n  __proto__: { backends: [{ url: "http://a:1" }] }\n  web: { backends: [{ url: "http://a:2" }] }\nroutes: [{ pool: web }]`,
    /^pools\.__proto__: is reserved/,
  ],
  ["routes as a mapping", `${POOLS}routes: { pool: web }`, /^routes: Expected array/],
  ["a route without a pool", `${POOLS}routes: [{ match: { path: /a } }]`, /^routes\[0\]\.pool: /],
  ["a route's unknown key", route("poool: api"), /^routes\[0\]: unknown key "poool"/],
  ["a match's unknown key", route("match: { url: /a }"), /^routes\[0\]\.match: unknown key "url"/],
  ["a lower-case method", route("match: { method: get }"), /^routes\[0\]\.match\.method/],
  ["an empty method list", route("match: { method: [] }"), /^routes\[0\]\.match\.method/],
  ["a path without /", route("match: { path: api }"), /^routes\[0\]\.match\.path: must start/],
  ["a path with ..", route("match: { path: /a/../b }"), /^routes\[0\]\.match\.path: must not/],
  ["a path with a query", route("match: { path: /a?b=1 }"), /^routes\[0\]\.match\.path: must be/],
  ["a host with a scheme", route("match: { host: 'http://a.test' }"), /^routes\[0\]\.match\.host/],
  ["a host as a number", route("match: { host: 5 }"), /^routes\[0\]\.match\.host/],
  ["a bad host in a list", route("match: { host: [a.test, 'b c'] }"), /^routes\[0\]\.match\.host/],
  [
    "a regex that does not compile",
    route(`match: { headers: { x-user: "/(beta/" } }`),
    /^routes\[0\]\.match\.headers\.x-user: is not a valid regular expression: /,
  ],
  [
    "a regex with unknown flags",
    route(`match: { headers: { x-user: "/a/zz" } }`),
    /^routes\[0\]\.match\.headers\.x-user: is not a valid regular expression: /,
  ],
  [
    "a regex with a line break that does not compile",
    route(`match: { headers: { x-user: "/(\\n/" } }`),
    /^routes\[0\]\.match\.headers\.x-user: is not a valid regular expression: .*\\n/,
  ],
  [
    "a header match named __proto__ (it would vanish and the route match more)",
    route(`match: { headers: { __proto__: "x" } }`),
    /^routes\[0\]\.match\.headers\.__proto__: is reserved/,
  ],
  [
    "a header rule named __proto__",
    route(`headers: { request: { set: { __proto__: "x" } } }`),
    /^routes\[0\]\.headers\.request\.set\.__proto__: is reserved/,
  ],
  ["stripPrefix as text", route("stripPrefix: yes please"), /^routes\[0\]\.stripPrefix: Expected/],
  ["stripPrefix without a path", route("stripPrefix: true"), /^routes\[0\]\.stripPrefix: needs/],
  [
    "CR LF in a header value to set",
    route(`headers: { request: { set: { x-a: "a\\r\\nx-b: 1" } } }`),
    /^routes\[0\]\.headers\.request\.set\.x-a: must not contain CR, LF or NUL/,
  ],
  [
    "NUL in a response header value",
    route(`headers: { response: { set: { x-a: "a\\0" } } }`),
    /^routes\[0\]\.headers\.response\.set\.x-a: must not contain CR, LF or NUL/,
  ],
  [
    "CR LF in a header name to set",
    route(`headers: { request: { set: { "x\\r\\ny": v } } }`),
    /^routes\[0\]\.headers\.request\.set\["x\\r\\ny"\]: must be a header name/,
  ],
  [
    "a huge header value",
    route(`headers: { request: { set: { x-a: "${"v".repeat(10_000)}" } } }`),
    /^routes\[0\]\.headers\.request\.set\.x-a: String must contain at most 8192/,
  ],
  [
    "setting Content-Length",
    route(`headers: { request: { set: { Content-Length: "5" } } }`),
    /^routes\[0\]\.headers\.request\.set\.Content-Length: frames the message/,
  ],
  [
    "removing Transfer-Encoding",
    route(`headers: { request: { remove: [transfer-encoding] } }`),
    /^routes\[0\]\.headers\.request\.remove\[0\]: frames the message/,
  ],
  [
    "setting Connection on the answer",
    route(`headers: { response: { set: { connection: close } } }`),
    /^routes\[0\]\.headers\.response\.set\.connection: frames the message/,
  ],
  ["an unknown header direction", route("headers: { both: {} }"), /unknown key "both"/],
  ["a route name with spaces", route("name: my route"), /^routes\[0\]\.name: must be 1-64/],
  [
    "two routes with one name",
    `${POOLS}routes: [{ name: a, pool: web }, { name: a, pool: api }]`,
    /^routes\[1\]\.name: duplicate route name "a"/,
  ],
  [
    "a rate limit keyed on nothing known",
    route("rateLimit: { rate: 5, key: cookie:x }"),
    /^routes\[0\]\.rateLimit\.key: must be ip, route or header:NAME/,
  ],
  ["a zero rate", route("rateLimit: { rate: 0 }"), /^routes\[0\]\.rateLimit\.rate/],
  ["a zero period", route("rateLimit: { rate: 5, per: 0 }"), /^routes\[0\]\.rateLimit\.per/],
];

Deno.test("each broken pools or routes section is refused with one line per problem naming its field", async (t) => {
  for (const [what, text, mentions] of BROKEN_ROUTING) {
    await t.step(what, () => {
      const e = expectRefused(text, what);
      assert.ok(
        e.problems.some((p) => mentions.test(p)),
        `${what}: no problem matches ${mentions}:\n${e.problems.join("\n")}`,
      );
    });
  }
});

const VALID_ROUTED = `
pools:
  web:
    backends: [{ url: "http://127.0.0.1:9001", name: w1 }, { url: "http://127.0.0.1:9002" }]
    sticky: { cookie: lb_web, secret: "0123456789abcdef" }
  api:
    strategy: maglev
    hash: { key: "header:x-user", tableSize: 251 }
    timeouts: { header: 5s }
    health: { path: /ready, interval: 1s }
    outlier: { consecutive: 3 }
    retry: { attempts: 2 }
    panicMode: false
    backends: [{ url: "http://127.0.0.1:9003", weight: 2, maxConnections: 10 }]
routes:
  - name: beta
    match:
      host: [api.example.com, "*.api.example.com"]
      path: /v1/
      method: [GET, POST]
      headers: { x-user: "/^beta-\\\\d+$/i", x-tenant: acme }
    pool: api
    stripPrefix: true
    headers:
      request: { set: { x-route: beta }, remove: [x-debug] }
      response: { set: { x-served-by: lb }, remove: [server] }
    rateLimit: { rate: 100, per: 1s, burst: 200, key: "header:x-user", maxKeys: 1000 }
  - { match: { path: /static }, pool: web, rateLimit: { rate: 10, key: route } }
  - { pool: web }
`;

/** Values a routing section must survive: bad regexes, CR/LF, framing headers, huge text. */
const ROUTING_VALUES: unknown[] = [
  "/(/",
  "/a/zz",
  "/[z-a]/",
  "/(a+)+$/",
  "/x/gy",
  "/\n(/",
  "x\r\ny: 1",
  "x\ny",
  "a\0b",
  "\u2028",
  "content-length",
  "Transfer-Encoding",
  "connection",
  "te",
  "x".repeat(10_000),
  "*.",
  "*.*.a.test",
  "api.test:80",
  "http://api.test",
  "/api/../x",
  "/a?b=1",
  "//",
  "__proto__",
  "get",
  "header:",
  "header:x-user",
  "route",
  "web",
  "api",
  0,
  -1,
  1e9,
  1.5,
  true,
  null,
  [],
  {},
  [[]],
];

/** Keys a routing section must survive: line breaks, framing headers, huge, reserved. */
const ROUTING_KEYS = [
  "a\nb",
  "x\r\n",
  "content-length",
  "X-Ok",
  "__proto__",
  "constructor",
  "",
  " ",
  "k".repeat(300),
  "pool",
  "match",
  "stripPrefix",
  "set",
];

/** `pools…`, `routes…` or `backends…` as formatPath writes a field (dotted, [index], ["odd key"]), then the problem. */
const FIELD_PROBLEM = /^(pools|routes|backends)(\.[^\s.[\]"]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*: \S/;

/** Sets `obj[key] = value` as an own property, even for `__proto__`. */
function put(obj: Record<string | number, unknown>, key: string | number, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** One random change under `pools` or `routes` of `doc`. */
function mutateRouting(doc: Record<string, unknown>, r: () => number): void {
  const all = paths(doc).filter((p) => p[0] === "pools" || p[0] === "routes");
  const p = all[Math.floor(r() * all.length)];
  let parent: Record<string | number, unknown> = doc;
  for (const seg of p.slice(0, -1)) parent = parent[seg] as Record<string | number, unknown>;
  const last = p[p.length - 1];
  const op = r();
  const hostile = () => ROUTING_VALUES[Math.floor(r() * ROUTING_VALUES.length)];
  if (op < 0.5) put(parent, last, hostile());
  else if (op < 0.65) put(parent, last, randomValue(r));
  else if (op < 0.75) delete parent[last];
  else {
    const target = parent[last];
    const into = target && typeof target === "object" ? target as Record<string, unknown> : parent;
    put(into, ROUTING_KEYS[Math.floor(r() * ROUTING_KEYS.length)], r() < 0.7 ? hostile() : {});
  }
}

Deno.test("seeded mutations of pools and routes either load (and compile into a router) or fail with one line per problem naming its field", () => {
  const base = YAML.parse(VALID_ROUTED);
  const valid = parseConfig(VALID_ROUTED);
  assert.equal(resolveRoutes(valid).length, 3, "the starting point is valid");
  const r = prng(20261212);
  const deadline = Date.now() + 3000;
  let tried = 0;
  let refused = 0;
  for (; tried < 3000 && Date.now() < deadline; tried++) {
    const doc = structuredClone(base);
    for (let k = 0; k < 1 + Math.floor(r() * 3); k++) mutateRouting(doc, r);
    const text = YAML.stringify(doc);
    const what = `mutation #${tried}:\n${text.slice(0, 600)}`;
    let config;
    try {
      config = parseConfig(text, "fuzz.yaml");
    } catch (e) {
      refused++;
      assertClearError(e, what);
      for (const p of (e as ConfigError).problems) {
        assert.match(p, FIELD_PROBLEM, `${what}\nproblem: ${p}`);
      }
      continue;
    }
    // What the loader accepted, lb must be able to build and print.
    const routes = resolveRoutes(config);
    assert.equal(resolvePools(config).length, Object.keys(config.pools ?? { d: 0 }).length);
    new Router(routes, (x) => x.pool);
    shadowed(routes);
    routingTable(routes);
  }
  assert.ok(tried >= 300, `only ${tried} mutations in the time box`);
  assert.ok(refused > tried / 2, `only ${refused} of ${tried} mutations were refused`);
  assert.ok(refused < tried, "no mutation was accepted: the fuzz only probes refusals");
});
