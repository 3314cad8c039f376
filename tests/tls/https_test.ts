/**
 * HTTPS on lb's listeners: HTTP/2 and HTTP/1.1 by ALPN through real clients (curl, nghttp,
 * Deno's fetch, Chromium), what lb adds for HTTPS (X-Forwarded-Proto, HSTS, Secure cookies),
 * the redirect listener, and certificates replaced on reload under load.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { memoryLogger, until } from "../_stack.ts";
import { makeCa, servedCn, type TestCa, type TestCert } from "./_certs.ts";

interface Setup {
  ca: TestCa;
  cert: TestCert;
  backends: DemoBackend[];
  lb: Lb;
  logs: string[];
  config(extra?: string): Config;
  close(): Promise<void>;
}

/** A CA, a certificate for localhost, two demo backends and an lb serving HTTPS with `extra`. */
async function setup(extra = ""): Promise<Setup> {
  const ca = await makeCa();
  const cert = await ca.leaf("lb", ["localhost", "127.0.0.1"]);
  const backends = [
    await startDemoBackend({ port: 0, index: 1 }),
    await startDemoBackend({ port: 0, index: 2 }),
  ];
  const config = (more = extra) =>
    parseConfig(
      `listen: { port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile}, hsts: 365d } }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends:
${backends.map((b) => `  - url: ${b.url}`).join("\n")}
${more}`,
    );
  const logger = memoryLogger();
  const lb = startLb({ config: config(), logger });
  return {
    ca,
    cert,
    backends,
    lb,
    logs: logger.lines,
    config,
    async close() {
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
      await ca.close();
    },
  };
}

function port(lb: Lb): number {
  return Number(new URL(lb.url).port);
}

/** curl with the test CA; the status, HTTP version and headers of one answer. */
async function curl(s: Setup, args: string[], path = "/"): Promise<{
  status: number;
  version: string;
  headers: string;
  body: string;
}> {
  const url = `https://localhost:${port(s.lb)}${path}`;
  const out = await new Deno.Command("curl", {
    args: [
      "-s",
      "--cacert",
      s.ca.caFile,
      "-D",
      "-",
      "-w",
      "\n%{http_code} %{http_version}",
      ...args,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const [status, version] = text.slice(text.lastIndexOf("\n") + 1).split(" ");
  const headEnd = text.indexOf("\r\n\r\n");
  return {
    status: Number(status),
    version,
    headers: text.slice(0, headEnd).toLowerCase(),
    body: text.slice(headEnd + 4, text.lastIndexOf("\n")),
  };
}

Deno.test("lb serves HTTPS by ALPN: HTTP/2 and HTTP/1.1, X-Forwarded-Proto https, HSTS and Secure sticky cookies", async () => {
  const s = await setup("sticky: { cookie: lb_s }");
  try {
    for (const [flag, version] of [["--http2", "2"], ["--http1.1", "1.1"]]) {
      const r = await curl(s, [flag]);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.version, version);
      assert.equal(JSON.parse(r.body).headers["x-forwarded-proto"], "https");
      assert.match(r.headers, /strict-transport-security: max-age=31536000/);
      assert.match(r.headers, /set-cookie: lb_s=[\w-]+; path=\/; httponly; samesite=lax; secure/);
    }
    // lb's own answers carry HSTS too.
    await Promise.all(s.backends.map((b) => b.close()));
    const own = await curl(s, ["--http1.1"]);
    assert.equal(own.status, 502);
    assert.match(own.headers, /strict-transport-security: max-age=31536000/);
  } finally {
    await s.close();
  }
});

Deno.test("nghttp speaks HTTP/2 through lb and gets every answer", async () => {
  const s = await setup();
  try {
    const url = `https://localhost:${port(s.lb)}/`;
    const out = await new Deno.Command("nghttp", {
      args: ["-v", "-n", "-m", "3", url],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.ok(out.success, text.slice(-500));
    assert.equal((text.match(/:status: 200/g) ?? []).length, 3, text.slice(-500));
  } finally {
    await s.close();
  }
});

Deno.test("plain HTTP sent to the TLS port never reaches a backend", async () => {
  const s = await setup();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: port(s.lb) });
    await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf).catch(() => null);
    conn.close();
    const answer = n ? new TextDecoder().decode(buf.subarray(0, n)) : "";
    assert.doesNotMatch(answer, /^HTTP\/1\.1 200/);
    assert.equal(s.lb.pool.servers.reduce((t, x) => t + x.requests, 0), 0);
  } finally {
    await s.close();
  }
});

Deno.test("the redirect listener answers 308 to https with the path and query, and 404 for an unknown challenge", async () => {
  const s = await setup();
  await s.lb.shutdown(2000);
  const lb = startLb({
    config: { ...s.config(), listen: { ...s.config().listen, redirectHttp: 0 } },
    logger: memoryLogger(),
  });
  try {
    // Raw bytes: fetch would send its own Host.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(lb.redirectUrl!).port),
    });
    await conn.write(
      new TextEncoder().encode(
        "POST /a/b?c=1 HTTP/1.1\r\nHost: example.test:80\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
      ),
    );
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    conn.close();
    assert.match(text, /^HTTP\/1\.1 308 /);
    assert.match(
      text,
      new RegExp(`location: https://example\\.test:${port(lb)}/a/b\\?c=1\r\n`, "i"),
    );
    const challenge = await fetch(`${lb.redirectUrl}/.well-known/acme-challenge/nope`);
    await challenge.body?.cancel();
    assert.equal(challenge.status, 404);
  } finally {
    await lb.shutdown(2000);
    await s.close();
  }
});

Deno.test("a new certificate on reload reaches new connections while HTTP/1.1 and HTTP/2 load loops see no failed request", async () => {
  const s = await setup();
  const next = await s.ca.leaf("lb2", ["localhost", "127.0.0.1"], { cn: "localhost-2" });
  const url = `https://localhost:${port(s.lb)}/`;
  const clients = [
    Deno.createHttpClient({ caCerts: [s.ca.caPem], http2: false }),
    Deno.createHttpClient({ caCerts: [s.ca.caPem], http1: false }),
  ];
  let stop = false;
  const counts = { ok: 0, failed: [] as string[] };
  const loop = async (client: Deno.HttpClient) => {
    while (!stop) {
      try {
        const res = await fetch(url, { client });
        await res.arrayBuffer();
        if (res.status === 200) counts.ok++;
        else counts.failed.push(`status ${res.status}`);
      } catch (e) {
        counts.failed.push((e as Error).message);
      }
    }
  };
  try {
    assert.equal(await servedCn(port(s.lb)), "localhost");
    const loops = [...clients, ...clients, ...clients].map(loop);
    await new Promise((r) => setTimeout(r, 500));
    Deno.copyFileSync(next.certFile, s.cert.certFile);
    Deno.copyFileSync(next.keyFile, s.cert.keyFile);
    const r = await s.lb.reload(s.config());
    assert.ok(r.ok);
    assert.ok(r.changes.some((c) => /traffic certificate replaced/.test(c)), r.changes.join("; "));
    await new Promise((r) => setTimeout(r, 2500)); // past the old server's drain
    assert.equal(await servedCn(port(s.lb)), "localhost-2");
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(counts.failed, []);
    assert.ok(counts.ok > 50, `only ${counts.ok} requests`);
  } finally {
    stop = true;
    for (const c of clients) c.close();
    await s.close();
  }
});

Deno.test("a broken new certificate is refused with one line and the old one stays", async () => {
  const s = await setup();
  const other = await s.ca.leaf("other", ["localhost"]);
  const expired = await s.ca.leaf("expired", ["localhost"], { days: 0 });
  const original = { cert: s.cert.cert, key: s.cert.key };
  try {
    const cases: [string, () => void, RegExp][] = [
      ["a key of another certificate", () => {
        Deno.writeTextFileSync(s.cert.keyFile, other.key);
      }, /the private key does not belong to the certificate/],
      ["an expired certificate", () => {
        Deno.writeTextFileSync(s.cert.certFile, expired.cert);
        Deno.writeTextFileSync(s.cert.keyFile, expired.key);
      }, /expired/],
      ["an unreadable file", () => Deno.removeSync(s.cert.certFile), /cannot read the certificate/],
      ["not PEM", () => Deno.writeTextFileSync(s.cert.certFile, "garbage"), /no PEM certificate/],
    ];
    for (const [what, breakIt, why] of cases) {
      breakIt();
      const before = s.logs.length;
      const r = await s.lb.reload(s.config());
      assert.ok(r.ok, what);
      const errors = s.logs.slice(before).filter((l) => l.includes('"type":"error"'));
      assert.equal(errors.length, 1, what);
      assert.match(errors[0], why, what);
      assert.match(errors[0], /the old one stays/);
      assert.equal(await servedCn(port(s.lb)), "localhost", what);
      Deno.writeTextFileSync(s.cert.certFile, original.cert);
      Deno.writeTextFileSync(s.cert.keyFile, original.key);
    }
  } finally {
    await s.close();
  }
});

Deno.test("one certificate with several names serves each of them by SNI", async () => {
  const ca = await makeCa();
  const cert = await ca.leaf("multi", ["a.test", "b.test", "127.0.0.1"]);
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const lb = startLb({
    config: parseConfig(`listen: { port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends: [{ url: "${backend.url}" }]`),
    logger: memoryLogger(),
  });
  try {
    const p = port(lb);
    for (const name of ["a.test", "b.test"]) {
      const out = await new Deno.Command("curl", {
        args: [
          "-s",
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          "--cacert",
          ca.caFile,
          "--resolve",
          `${name}:${p}:127.0.0.1`,
          `https://${name}:${p}/`,
        ],
        stdout: "piped",
      }).output();
      assert.equal(new TextDecoder().decode(out.stdout), "200", name);
    }
    const c = lb.certificates.get("traffic")!;
    assert.deepEqual(c.names, ["a.test", "b.test", "127.0.0.1"]);
  } finally {
    await lb.shutdown(2000);
    await backend.close();
    await ca.close();
  }
});

Deno.test("a certificate that cannot be used stops lb at start with one line; a key others can read is warned about", async () => {
  const ca = await makeCa();
  const expired = await ca.leaf("expired", ["localhost"], { days: 0 });
  const good = await ca.leaf("good", ["localhost"]);
  const yaml = (c: TestCert) =>
    parseConfig(`listen: { port: 0, tls: { cert: ${c.certFile}, key: ${c.keyFile} } }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }`);
  try {
    await new Promise((r) => setTimeout(r, 1100));
    assert.throws(
      () => startLb({ config: yaml(expired), logger: memoryLogger() }),
      /^Error: listen\.tls: the certificate expired on /,
    );
    Deno.chmodSync(good.keyFile, 0o644);
    const logger = memoryLogger();
    const lb = startLb({ config: yaml(good), logger });
    await lb.shutdown(1000);
    assert.ok(logger.lines.some((l) => /readable by other users \(mode 644\)/.test(l)));
  } finally {
    await ca.close();
  }
});

Deno.test("Chromium loads a page through lb over HTTPS on HTTP/2", async () => {
  const s = await setup();
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox"],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const res = await page.goto(`https://localhost:${port(s.lb)}/page`);
    assert.equal(res?.status(), 200);
    const protocol = await page.evaluate(() =>
      (performance.getEntriesByType("navigation")[0] as unknown as { nextHopProtocol: string })
        .nextHopProtocol
    );
    assert.equal(protocol, "h2");
    assert.match(await page.content(), /backend-\d/);
  } finally {
    await browser.close();
    await s.close();
  }
});

Deno.test("the admin API, /metrics and the dashboard show each listener's certificate; admin.tls serves the admin API over HTTPS", async () => {
  const ca = await makeCa();
  const cert = await ca.leaf("both", ["localhost", "127.0.0.1"]);
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const lb = startLb({
    config: parseConfig(`listen: { port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
admin: { host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
log: { access: false }
health: { enabled: false }
backends: [{ url: "${backend.url}" }]`),
    logger: memoryLogger(),
  });
  const client = Deno.createHttpClient({ caCerts: [ca.caPem] });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox"],
  });
  try {
    assert.match(lb.adminUrl!, /^https:/);
    const admin = lb.adminUrl!.replace("127.0.0.1", "localhost");
    const res = await fetch(`${admin}/api/servers`, { client });
    const body = await res.json();
    assert.ok(Array.isArray(body.tls), JSON.stringify(body).slice(0, 300));
    assert.deepEqual(body.tls.map((c: { listener: string }) => c.listener), ["traffic", "admin"]);
    assert.deepEqual(body.tls[0].names, ["localhost", "127.0.0.1"]);
    assert.ok(
      body.tls[0].daysLeft >= 19 && body.tls[0].daysLeft <= 20,
      String(body.tls[0].daysLeft),
    );
    const metrics = await (await fetch(`${admin}/metrics`, { client })).text();
    const m = /lb_tls_certificate_expiry_seconds\{listener="traffic"\} (\d+)/.exec(metrics);
    assert.ok(
      m && Number(m[1]) > 19 * 86_400 && Number(m[1]) <= 20 * 86_400,
      metrics.slice(0, 300),
    );
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    await page.goto(`${admin}/`);
    await page.waitForSelector('#tls tbody tr[data-listener="traffic"]');
    assert.match(await page.textContent("#tls") ?? "", /localhost, 127\.0\.0\.1/);
  } finally {
    await browser.close();
    client.close();
    await lb.shutdown(2000);
    await backend.close();
    await ca.close();
  }
});

Deno.test("only TLS 1.2 and 1.3 are spoken; a client key others can read is warned about", async () => {
  const s = await setup();
  const client = await s.ca.leaf("client", ["lb-client"]);
  Deno.chmodSync(client.keyFile, 0o640);
  try {
    const p = port(s.lb);
    const hello = async (flag: string) => {
      const c = new Deno.Command("openssl", {
        args: ["s_client", flag, "-connect", `127.0.0.1:${p}`, "-servername", "localhost"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await c.stdin.close();
      const out = await c.output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    };
    assert.match(await hello("-tls1_3"), /New, TLSv1\.3, Cipher is/);
    assert.match(await hello("-tls1_2"), /New, TLSv1\.2, Cipher is/);
    assert.match(await hello("-tls1_1"), /no peer certificate available/);
    const logger = memoryLogger();
    const lb = startLb({
      config: s.config(`upstreamTls: { cert: ${client.certFile}, key: ${client.keyFile} }`),
      logger,
    });
    await lb.shutdown(1000);
    assert.ok(
      logger.lines.some((l) => /client\.key is readable by other users \(mode 640\)/.test(l)),
    );
  } finally {
    await s.close();
  }
});

Deno.test("a reload that points listen.tls at other files swaps the certificate and asks for no restart", async () => {
  const s = await setup();
  const other = await s.ca.leaf("elsewhere", ["localhost", "127.0.0.1"], { cn: "elsewhere" });
  try {
    const moved = s.config().listen;
    const next = {
      ...s.config(),
      listen: { ...moved, tls: { ...moved.tls!, cert: other.certFile, key: other.keyFile } },
    };
    const r = await s.lb.reload(next);
    assert.ok(r.ok);
    assert.deepEqual(r.needsRestart, []);
    assert.ok(r.changes.some((c) => /traffic certificate replaced/.test(c)), r.changes.join("; "));
    await until(
      async () => (await servedCn(port(s.lb))) === "elsewhere",
      "the new certificate",
      5000,
    );
  } finally {
    await s.close();
  }
});

Deno.test("HTTP/1.1 answers over TLS never wait for the client's delayed ACK (buffered answers go as one chunk)", async () => {
  // Deno 2.9.6 keeps Nagle's algorithm on for TLS connections and may send a buffered body
  // apart from its head (a 400-byte body with lb's headers did), so the client's delayed ACK
  // held it ~40 ms; which sizes it splits depends on the head as well, so lb sends every
  // buffered answer as one chunk, which goes out with the head.
  const ca = await makeCa();
  const cert = await ca.leaf("lb", ["localhost", "127.0.0.1"]);
  const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const n = Number(new URL(req.url).searchParams.get("n"));
    return new Response("x".repeat(n), { headers: { "content-type": "text/plain" } });
  });
  const lb = startLb({
    config: parseConfig(
      `listen: { port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends:
  - url: http://127.0.0.1:${backend.addr.port}`,
    ),
    logger: memoryLogger(),
  });
  const client = Deno.createHttpClient({
    caCerts: [await Deno.readTextFile(ca.caFile)],
    http2: false,
  });
  try {
    for (const n of [400, 2000]) {
      const times: number[] = [];
      for (let i = 0; i < 11; i++) {
        const t0 = performance.now();
        const res = await fetch(`https://localhost:${port(lb)}/?n=${n}`, { client });
        assert.equal((await res.text()).length, n);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      // On one kept-alive connection; a delayed ACK makes every answer take ~40 ms.
      assert.ok(times[5] < 25, `${n}-byte answers took ${times.map(Math.round).join(", ")} ms`);
    }
  } finally {
    client.close();
    await lb.shutdown(2000);
    await backend.shutdown();
    await ca.close();
  }
});
