import assert from "node:assert/strict";
import {
  ConfigError,
  DEFAULT_CONFIG_YAML,
  parseConfig,
  validateConfig,
} from "../../src/config/load.ts";
import { backendIdentity } from "../../src/config/backend.ts";
import { applyOverrides } from "../../src/config/overrides.ts";
import { parseDuration, parseSize } from "../../src/config/units.ts";

Deno.test("the embedded default config is the repository's lb.yaml, imported as text", async () => {
  const file = await Deno.readTextFile(new URL("../../lb.yaml", import.meta.url));
  assert.equal(DEFAULT_CONFIG_YAML, file);
});

Deno.test("lb.yaml shows every default the schema has, so it documents them truly", () => {
  const fromFile = parseConfig(DEFAULT_CONFIG_YAML);
  const defaults = validateConfig({});
  // The file names the demo servers; the schema's default backends are the same origins.
  assert.deepEqual(
    { ...fromFile, backends: fromFile.backends!.map((b) => b.url) },
    { ...defaults, backends: defaults.backends!.map((b) => b.url) },
  );
});

Deno.test("the default config listens on 127.0.0.1:8000 with backends 9001-9003 and round-robin", () => {
  const c = parseConfig(DEFAULT_CONFIG_YAML);
  assert.deepEqual(c.listen, { host: "127.0.0.1", port: 8000 });
  assert.equal(c.strategy, "round-robin");
  assert.deepEqual(c.backends!.map((b) => b.url), [
    "http://127.0.0.1:9001",
    "http://127.0.0.1:9002",
    "http://127.0.0.1:9003",
  ]);
  assert.deepEqual(parseConfig("").backends!.map((b) => b.url), c.backends!.map((b) => b.url));
  assert.equal(c.admin.port, 8001);
});

Deno.test("durations and sizes read like people write them", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("1.5m"), 90_000);
  assert.equal(parseDuration(40), 40);
  assert.throws(() => parseDuration("-1s"), /not a duration/);
  assert.throws(() => parseDuration("soon"), /not a duration/);
  assert.equal(parseSize("64KiB"), 65536);
  assert.equal(parseSize("1MiB"), 1048576);
  assert.equal(parseSize("2GB"), 2e9);
  assert.throws(() => parseSize("lots"), /not a size/);
  const c = parseConfig("timeouts:\n  header: 1.5s\nretry:\n  bufferLimit: 1MiB\n");
  assert.equal(c.timeouts.header, 1500);
  assert.equal(c.retry.bufferLimit, 1048576);
});

Deno.test("every problem in a config is reported with its field path, and nothing partial is returned", () => {
  const err = (() => {
    try {
      parseConfig(
        "listen: {port: -1}\nbackends:\n  - url: http://a:1\n    name: x\n  - url: http://b:1\n    name: x\n" +
          "timeouts: {header: -5s}\nhealth: {rise: 0}\nunknownThing: true\n",
      );
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof ConfigError);
  const text = err.problems.join("\n");
  assert.match(text, /listen\.port:/);
  assert.match(text, /backends\[1\]\.name: duplicate server id "x"/);
  assert.match(text, /timeouts\.header: "-5s" is not a duration/);
  assert.match(text, /health\.rise:/);
  assert.match(text, /unknown key "unknownThing"/);
});

Deno.test("an empty backend list and duplicate URLs are errors", () => {
  assert.throws(() => parseConfig("backends: []\n"), /backends: needs at least one backend/);
  assert.throws(
    () => parseConfig("backends:\n  - url: http://a:1\n  - url: http://a:1/\n"),
    /duplicate backend http:\/\/a:1/,
  );
});

Deno.test("an https backend speaks TLS on port 443 unless its URL says otherwise, and is not its http twin", () => {
  assert.deepEqual(backendIdentity({ url: "https://api.internal" }), {
    id: "api.internal:443",
    origin: "https://api.internal",
    hostname: "api.internal",
    port: 443,
    tls: true,
  });
  assert.deepEqual(backendIdentity({ url: "https://[::1]:8443/" }), {
    id: "[::1]:8443",
    origin: "https://[::1]:8443",
    hostname: "::1",
    port: 8443,
    tls: true,
  });
  assert.equal(backendIdentity({ url: "http://api.internal" }).tls, false);
  assert.equal(backendIdentity({ url: "http://api.internal" }).port, 80);
  // Same host and port, two schemes: two backends (a pool may hold both, named apart).
  const c = parseConfig(`backends:
  - { url: "http://10.0.0.1:8443", name: plain }
  - { url: "https://10.0.0.1:8443", name: tls }`);
  assert.deepEqual(c.backends!.map((b) => backendIdentity(b).origin), [
    "http://10.0.0.1:8443",
    "https://10.0.0.1:8443",
  ]);
});

Deno.test("command-line overrides win over the file and are validated like it", () => {
  const c = parseConfig("listen: {port: 9000}\nstrategy: round-robin\n");
  const o = applyOverrides(c, {
    port: 0,
    backends: ["http://127.0.0.1:1234"],
    strategy: "least-conn",
    logFormat: "json",
  });
  assert.equal(o.listen.port, 0);
  assert.equal(o.strategy, "least-conn");
  assert.deepEqual(o.backends!.map((b) => b.url), ["http://127.0.0.1:1234"]);
  assert.equal(o.log.format, "json");
  assert.equal(o.health.interval, c.health.interval, "untouched settings survive");
  assert.deepEqual(o.health.expectStatus, c.health.expectStatus);
  assert.throws(() => applyOverrides(c, { strategy: "nope" }), /strategy: must be one of/);
});

Deno.test("lb.yaml documents the real defaults: apart from backend names it equals an empty config", () => {
  const documented = parseConfig(DEFAULT_CONFIG_YAML);
  const empty = parseConfig("");
  assert.deepEqual({ ...documented, backends: [] }, { ...empty, backends: [] });
  assert.deepEqual(documented.backends!.map((b) => b.url), empty.backends!.map((b) => b.url));
});

Deno.test("lb.yaml's commented pools and routes example is a valid config", () => {
  const lines = DEFAULT_CONFIG_YAML.split("\n");
  const start = lines.indexOf("# pools:");
  const end = lines.findIndex((l, i) => i > start && !l.startsWith("#"));
  assert.ok(start > 0 && end > start, "lb.yaml has the example");
  const example = lines.slice(start, end).map((l) => l.replace(/^# ?/, "")).join("\n");
  const c = parseConfig(example, "lb.yaml example");
  assert.deepEqual(Object.keys(c.pools!), ["api", "web"]);
  assert.equal(c.routes!.length, 3);
  assert.equal(c.routes![1].rateLimit!.burst, 200);
});

Deno.test("lb.yaml's commented cluster example is a valid config", () => {
  const lines = DEFAULT_CONFIG_YAML.split("\n");
  const start = lines.indexOf("# cluster:");
  const end = lines.findIndex((l, i) => i > start && !l.startsWith("#"));
  const example = lines.slice(start, end < 0 ? undefined : end).map((l) => l.replace(/^# ?/, ""))
    .join("\n");
  const c = parseConfig(example, "lb.yaml example");
  assert.equal(c.cluster!.name, "prod");
  assert.equal(c.cluster!.memberTtl, 6000);
});

Deno.test("a YAML error names the line where an unclosed [, { or quote opened, not where the parser gave up", () => {
  const cases: [string, RegExp][] = [
    ["listen:\n  port: 0\nbackends: [ {url: x}\nstrategy: p2c\n", /^line 3, column 11: .*\]/],
    ["listen: {host: 127.0.0.1\n\n\nstrategy: p2c\n", /^line 1, column 9: .*\}/],
    ['strategy: "p2c\nlog: {}\n', /^line 1, column 11: .*quote/],
  ];
  for (const [text, want] of cases) {
    let problems: string[] = [];
    try {
      parseConfig(text, "lb.yaml");
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      problems = e.problems;
    }
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0], want);
    assert.match(problems[0], /still open at line \d+, column \d+/);
  }
});
