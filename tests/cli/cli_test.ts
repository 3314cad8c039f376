import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { makePki } from "../_certs.ts";
import { freePort, until } from "../_stack.ts";
import { assertUsageError, lb, spawnLb } from "./_cli.ts";

Deno.test("lb --version and lb --help answer and exit 0", async () => {
  const v = await lb(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^lb \d+\.\d+\.\d+/);
  const h = await lb(["--help"]);
  assert.equal(h.code, 0);
  for (const c of ["serve", "backends", "check", "simulate", "demo"]) {
    assert.match(h.stdout, new RegExp(`\\n  ${c} `));
  }
  for (const c of ["serve", "backends", "check", "simulate", "demo"]) {
    const r = await lb([c, "--help"]);
    assert.equal(r.code, 0, c);
    assert.match(r.stdout, new RegExp(`Usage: lb ${c}`));
  }
});

Deno.test("bad command lines exit 2 with one clear line and the usage hint", async () => {
  assertUsageError(await lb(["frobnicate"]), /^lb: unknown command "frobnicate"$/);
  assertUsageError(await lb(["--nope"]), /^lb: unknown flag --nope$/);
  assertUsageError(await lb(["serve", "--bogus"]), /unknown flag --bogus/);
  assertUsageError(await lb(["serve", "--port"]), /missing value for --port/);
  assertUsageError(await lb(["serve", "--port", "eighty"]), /--port must be a whole number/);
  assertUsageError(
    await lb(["serve", "--port", "70000"]),
    /--port must be a whole number from 0 to 65535/,
  );
  assertUsageError(
    await lb(["serve", "--backend", "not a url"]),
    /--backend must be an http:\/\/ or https:\/\/ origin/,
  );
  assertUsageError(await lb(["serve", "--backend", "http://x:1/path"]), /origin only/);
  assertUsageError(await lb(["serve", "--strategy", "fastest-ever"]), /strategy: must be one of/);
  assertUsageError(await lb(["serve", "--log-format", "xml"]), /--log-format must be json or text/);
  assertUsageError(await lb(["serve", "extra"]), /unexpected argument "extra"/);
  assertUsageError(await lb(["check", "--config"]), /missing value for --config/);
});

Deno.test("lb check prints the effective settings of a good file", async () => {
  const r = await lb(["check", "--config", "lb.yaml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /lb\.yaml: OK/);
  assert.match(r.stdout, /strategy: round-robin/);
  assert.match(r.stdout, /url: http:\/\/127\.0\.0\.1:9001/);
  assert.match(r.stdout, /interval: 2000ms/, "defaults are filled in");
});

Deno.test("lb check names every problem of a bad file by field path, and YAML errors by line and column", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      "listen:\n  port: eighty\nstrategy: nope\nbackends:\n  - url: ftp://x\n  - url: http://a:1\n    weight: 0\ntypo: 1\n",
    );
    const r = await lb(["check", "--config", `${dir}/bad.yaml`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /listen\.port: Expected number/);
    assert.match(r.stderr, /strategy: must be one of/);
    assert.match(r.stderr, /backends\[0\]\.url: .*http:\/\//);
    assert.match(r.stderr, /backends\[1\]\.weight/);
    assert.match(r.stderr, /unknown key "typo"/);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/);

    await Deno.writeTextFile(`${dir}/syntax.yaml`, "listen:\n  port: 80\n backends: [\n");
    const s = await lb(["check", "--config", `${dir}/syntax.yaml`]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /line \d+, column \d+/);

    const missing = await lb(["check", "--config", `${dir}/nope.yaml`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read the config file: no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lb check and lb serve read upstreamTls files relative to the config file, and refuse one they cannot use", async () => {
  const pki = await makePki();
  try {
    await Deno.mkdir(`${pki.dir}/conf/certs`, { recursive: true });
    await Deno.copyFile(pki.ca.certFile, `${pki.dir}/conf/certs/ca.pem`);
    const good = `${pki.dir}/conf/good.yaml`;
    await Deno.writeTextFile(
      good,
      "backends: [{ url: 'https://127.0.0.1:1' }]\nupstreamTls: { ca: certs/ca.pem }\n",
    );
    const ok = await lb(["check", "--config", good]); // run from the repository, not conf/
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /upstreamTls:\n {2}ca: certs\/ca\.pem/);

    const bad = `${pki.dir}/conf/bad.yaml`;
    await Deno.writeTextFile(
      bad,
      "backends: [{ url: 'https://127.0.0.1:1' }]\nupstreamTls: { ca: certs/nowhere.pem }\n",
    );
    for (const cmd of [["check"], ["serve", "--port", "0", "--admin-port", "0"]]) {
      const r = await lb([...cmd, "--config", bad]);
      assert.equal(r.code, 1, cmd[0]);
      assert.equal(
        r.stderr,
        `lb: ${bad}: upstreamTls.ca: cannot read ${pki.dir}/conf/certs/nowhere.pem: no such file\n`,
      );
    }
  } finally {
    await pki.close();
  }
});

Deno.test("without lb.yaml, lb uses built-in defaults", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await lb(["check"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /built-in defaults: OK/);
    assert.match(r.stdout, /port: 8000/);
    assert.match(r.stdout, /127\.0\.0\.1:9003/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lb serve prints one line per listener, proxies, and stops cleanly on SIGTERM and SIGINT", async () => {
  const backend = await startDemoBackend({ port: 0, index: 1 });
  try {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const port = freePort();
      const adminPort = freePort();
      const { child, out, reading, errText } = spawnLb([
        "serve",
        "--port",
        String(port),
        "--admin-port",
        String(adminPort),
        "--backend",
        backend.url,
        "--log-format",
        "text",
      ]);
      try {
        await until(
          () => out().includes(`http://127.0.0.1:${adminPort}`),
          "the listen lines",
          15_000,
        );
        assert.match(out(), new RegExp(`traffic listening on http://127\\.0\\.0\\.1:${port}`));
        assert.match(
          out(),
          new RegExp(`admin listening on http://127\\.0\\.0\\.1:${adminPort}`),
        );
        const res = await fetch(`http://127.0.0.1:${port}/x`);
        assert.equal((await res.json()).backend, "backend-1");
        const hz = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
        assert.equal((await hz.json()).status, "ok");
      } finally {
        child.kill(signal);
      }
      const status = await child.status;
      await reading;
      const stderr = await errText;
      assert.equal(status.code, 0, `exit after ${signal}: ${stderr}`);
      assert.doesNotMatch(stderr, /error|\bat .*:\d+/i);
    }
  } finally {
    await backend.close();
  }
});

Deno.test("lb serve exits 1 with one line when its port is taken", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (l.addr as Deno.NetAddr).port;
    const r = await lb(["serve", "--port", String(port), "--admin-port", "0"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `cannot listen for traffic on 127\\.0\\.0\\.1:${port}: the address is already in use`,
      ),
    );
  } finally {
    l.close();
  }
});

/** A first port whose next two are free too (bound together, then released). */
function threeFreePorts(): number {
  for (let tries = 0; tries < 50; tries++) {
    const first = freePort();
    if (first > 65533) continue;
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        held.push(Deno.listen({ hostname: "127.0.0.1", port: first + i }));
      }
      return first;
    } catch {
      // one of them is taken: try another first port
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("no three free consecutive ports");
}

Deno.test("lb demo --backend-port P runs backend-1..3 on P, P+1, P+2 behind the balancer, in turn; Ctrl-C stops both", async () => {
  const p = threeFreePorts();
  const { child, out, reading, errText } = spawnLb([
    "demo",
    "--port",
    "0",
    "--admin-port",
    "0",
    "--backend-port",
    String(p),
  ]);
  try {
    const url = await until(
      () => /traffic listening on (http:\/\/[\d.:]+)/.exec(out())?.[1],
      "the demo to start",
      15_000,
    );
    for (let i = 0; i < 3; i++) {
      assert.match(
        out(),
        new RegExp(`backend-${i + 1} listening on http://127\\.0\\.0\\.1:${p + i}\\b`),
      );
    }
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push((await (await fetch(`${url}/`)).json()).backend);
    assert.deepEqual(seen, ["backend-1", "backend-2", "backend-3"]);
    // The backends answer on the ports asked for, not only in the log.
    const direct = await fetch(`http://127.0.0.1:${p + 2}/`);
    assert.equal((await direct.json()).backend, "backend-3");
  } finally {
    child.kill("SIGINT");
  }
  assert.equal((await child.status).code, 0);
  await reading;
  assert.doesNotMatch(await errText, /error/i);
});
