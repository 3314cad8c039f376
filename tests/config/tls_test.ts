import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { resolvePools } from "../../src/config/pools.ts";
import { withTlsPaths } from "../../src/config/tls.ts";

/** The problems lb.yaml `text` is refused with. */
function problemsOf(text: string): string[] {
  try {
    parseConfig(text, "lb.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  assert.fail("the config was accepted");
}

Deno.test("upstreamTls is empty by default: https backends are verified against Deno's roots by their URL's host", () => {
  const c = parseConfig("backends: [{ url: 'https://api.internal' }]");
  assert.deepEqual(c.upstreamTls, {});
  assert.deepEqual(resolvePools(c)[0].upstreamTls, {});
});

Deno.test("a pool's upstreamTls replaces the top level's key by key, and a client certificate comes with its own key", () => {
  const c = parseConfig(`
upstreamTls: { ca: ca.pem, serverName: api.internal, cert: lb.pem, key: lb.key }
pools:
  a: { backends: [{ url: "https://10.0.0.1" }] }
  b:
    upstreamTls: { serverName: b.internal, cert: b.pem, key: b.key }
    backends: [{ url: "https://10.0.0.2" }]
  c:
    upstreamTls: { ca: other-ca.pem }
    backends: [{ url: "https://10.0.0.3" }]
routes: [{ pool: a }]
`);
  const [a, b, cc] = resolvePools(c).map((p) => p.upstreamTls);
  assert.deepEqual(a, { ca: "ca.pem", serverName: "api.internal", cert: "lb.pem", key: "lb.key" });
  assert.deepEqual(b, { ca: "ca.pem", serverName: "b.internal", cert: "b.pem", key: "b.key" });
  assert.deepEqual(cc, {
    ca: "other-ca.pem",
    serverName: "api.internal",
    cert: "lb.pem",
    key: "lb.key",
  });
});

Deno.test("a client certificate without its key is refused at the level that gives it", () => {
  assert.deepEqual(problemsOf("upstreamTls: { cert: lb.pem }"), [
    "upstreamTls.key: is required with the other",
  ]);
  assert.deepEqual(
    problemsOf(`
upstreamTls: { cert: lb.pem, key: lb.key }
pools:
  a: { upstreamTls: { key: a.key }, backends: [{ url: "https://10.0.0.1" }] }
`),
    ["pools.a.upstreamTls.cert: is required with the other"],
  );
});

Deno.test("insecureSkipVerify: true is refused in one line that says what to do instead", () => {
  const problems = problemsOf("upstreamTls: { insecureSkipVerify: true }");
  assert.equal(problems.length, 1);
  assert.match(problems[0], /^upstreamTls\.insecureSkipVerify: Deno 2\.9 cannot skip/);
  assert.match(problems[0], /give the backend's CA .* in upstreamTls\.ca/);
  assert.doesNotMatch(problems[0], /\n/);
  assert.match(
    problemsOf(`
pools:
  a: { upstreamTls: { insecureSkipVerify: true }, backends: [{ url: "https://10.0.0.1" }] }
`)[0],
    /^pools\.a\.upstreamTls\.insecureSkipVerify: /,
  );
  // Saying false is saying the default.
  assert.deepEqual(parseConfig("upstreamTls: { insecureSkipVerify: false }").upstreamTls, {
    insecureSkipVerify: false,
  });
});

Deno.test("serverName is a host name or an IP address, as certificates name servers", () => {
  for (const ok of ["api.internal", "backend", "10.0.0.1", "::1", "svc_a.internal"]) {
    assert.equal(parseConfig(`upstreamTls: { serverName: "${ok}" }`).upstreamTls.serverName, ok);
  }
  for (const bad of ["", "api internal", "https://api.internal", "api.internal:443", "a..b"]) {
    assert.match(
      problemsOf(`upstreamTls: { serverName: "${bad}" }`)[0],
      /^upstreamTls\.serverName: must be a host name like api\.internal or an IP address$/,
      bad,
    );
  }
  assert.match(problemsOf("upstreamTls: { sni: x }")[0], /upstreamTls: unknown key "sni"/);
});

Deno.test("the TLS sections' files are relative to the config file's directory, like upstreamTls's", () => {
  const config = parseConfig(`listen:
  tls:
    acme: { directory: "https://ca.test/dir", domains: [a.test], storage: acme, caBundle: ../ca.pem }
admin: { tls: { cert: admin.crt, key: /abs/admin.key } }`);
  const resolved = withTlsPaths(config, "/etc/lb/lb.yaml");
  assert.equal(resolved.listen.tls!.acme!.storage, "/etc/lb/acme");
  assert.equal(resolved.listen.tls!.acme!.caBundle, "/etc/ca.pem");
  assert.deepEqual(resolved.admin.tls, { cert: "/etc/lb/admin.crt", key: "/abs/admin.key" });
  const files = parseConfig(`listen: { tls: { cert: c.pem, key: k.pem } }`);
  const f = withTlsPaths(files, "/srv/lb.yaml").listen.tls!;
  assert.deepEqual([f.cert, f.key], ["/srv/c.pem", "/srv/k.pem"]);
  assert.equal(withTlsPaths(files, undefined).listen.tls!.cert, "c.pem");
});
