/**
 * HTTPS to backends through a real lb: trust (`ca`), names (`serverName`), client
 * certificates (mTLS), health checks, per-pool settings and reloads. Certificates come from
 * a throwaway CA made with openssl; the backends are `Deno.serve` with a certificate, and
 * `node:https` where a backend must see SNI or demand a client certificate (Deno.serve and
 * Deno.listenTls cannot ask for one).
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { ConfigError, validateConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { type CertPair, makePki } from "../_certs.ts";
import { assertEventually, call, memoryLogger } from "../_stack.ts";

const pki = await makePki();
const ca = pki.ca;
const ipCert = await pki.issue("backend-ip", "IP:127.0.0.1");
const namedCert = await pki.issue("backend-named", "DNS:backend.test");
const client = await pki.issue("lb-client", "DNS:lb-client", { clientAuth: true });
const selfSigned = await pki.selfSigned("self-signed", "IP:127.0.0.1");

/** An HTTPS Deno.serve backend that names itself and counts its connections (by client port). */
function httpsBackend(name: string, pair: CertPair) {
  const ports = new Set<number>();
  let requests = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: pair.cert, key: pair.key, onListen() {} },
    async (req, info) => {
      requests++;
      ports.add(info.remoteAddr.port);
      if (new URL(req.url).pathname === "/slow") await new Promise((r) => setTimeout(r, 200));
      const body = req.body ? (await req.arrayBuffer()).byteLength : 0;
      return Response.json({ backend: name, body });
    },
  );
  return {
    url: `https://127.0.0.1:${server.addr.port}`,
    get connections() {
      return ports.size;
    },
    get requests() {
      return requests;
    },
    close: () => server.shutdown(),
  };
}

/**
 * A node:https backend: it records the SNI name and client certificate of each request and
 * counts TLS connections; with `requireClient`, it refuses a client without a certificate
 * from the CA.
 */
async function nodeBackend(pair: CertPair, requireClient: boolean) {
  const seen: { sni: string | false; client: string | undefined }[] = [];
  let connections = 0;
  const server = https.createServer({
    cert: pair.cert,
    key: pair.key,
    ca: [ca.cert],
    requestCert: requireClient,
    rejectUnauthorized: requireClient,
  }, (req, res) => {
    // Node's `servername` (the SNI name) is missing from @types/node's TLSSocket.
    const s = req.socket as TLSSocket & { servername: string | false };
    seen.push({ sni: s.servername, client: s.getPeerCertificate()?.subject?.CN });
    res.end("hello");
  });
  server.on("secureConnection", () => connections++);
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    seen,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function config(raw: Record<string, unknown>): Config {
  return validateConfig({
    listen: { host: "127.0.0.1", port: 0 },
    admin: { enabled: false },
    log: { access: false, format: "json" },
    health: { enabled: false },
    retry: { backoffBase: "1ms", backoffMax: "2ms" },
    ...raw,
  }, "test");
}

const get = async (lb: Lb, path = "/") => {
  const res = await fetch(lb.url + path);
  return { status: res.status, json: await res.json() };
};

Deno.test("a backend whose certificate chains to upstreamTls.ca answers, over one kept-alive TLS connection", async () => {
  const be = httpsBackend("trusted", ipCert);
  const lb = startLb({
    config: config({ backends: [{ url: be.url }], upstreamTls: { ca: ca.certFile } }),
    logger: memoryLogger(),
  });
  try {
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await get(lb), { status: 200, json: { backend: "trusted", body: 0 } });
    }
    // A body goes out over TLS too (more than one write: 200 KiB, chunked by the client).
    const upload = new Blob([new Uint8Array(200 * 1024)]).stream();
    const res = await fetch(lb.url, { method: "POST", body: upload });
    assert.deepEqual(await res.json(), { backend: "trusted", body: 200 * 1024 });
    assert.equal(be.requests, 6);
    assert.equal(be.connections, 1, "every request reused the first TLS connection");
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
});

Deno.test("a backend lb cannot verify gets no traffic: 502 saying its certificate was refused, or the request fails over", async () => {
  const untrusted = httpsBackend("untrusted", selfSigned);
  const trusted = httpsBackend("trusted", ipCert);
  const alone = startLb({
    config: config({ backends: [{ url: untrusted.url }] }),
    logger: memoryLogger(),
  });
  const pair = startLb({
    config: config({
      backends: [{ url: untrusted.url }, { url: trusted.url }],
      upstreamTls: { ca: ca.certFile },
      outlier: { enabled: false },
    }),
    logger: memoryLogger(),
  });
  try {
    const { status, json } = await get(alone);
    assert.equal(status, 502);
    assert.equal(json.error.code, "bad_gateway");
    assert.match(json.error.message, /TLS handshake failed: the backend's certificate was refused/);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await get(pair), { status: 200, json: { backend: "trusted", body: 0 } });
    }
    assert.equal(untrusted.requests, 0, "not one request reached the untrusted backend");
    assert.ok(pair.pool.servers[0].errors > 0, "it was tried, and failed at the handshake");
  } finally {
    await alone.shutdown(1000);
    await pair.shutdown(1000);
    await untrusted.close();
    await trusted.close();
  }
});

Deno.test("serverName is what lb sends in SNI and verifies, while it connects to the URL's address", async () => {
  const be = await nodeBackend(namedCert, false);
  const byHost = startLb({
    config: config({ backends: [{ url: be.url }], upstreamTls: { ca: ca.certFile } }),
    logger: memoryLogger(),
  });
  const byName = startLb({
    config: config({
      backends: [{ url: be.url }],
      upstreamTls: { ca: ca.certFile, serverName: "backend.test" },
    }),
    logger: memoryLogger(),
  });
  try {
    const refused = await get(byHost);
    assert.equal(refused.status, 502);
    assert.match(refused.json.error.message, /not valid for name "127\.0\.0\.1"/);
    const res = await fetch(byName.url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello");
    assert.deepEqual(be.seen, [{ sni: "backend.test", client: undefined }]);
  } finally {
    await byHost.shutdown(1000);
    await byName.shutdown(1000);
    await be.close();
  }
});

Deno.test("a backend that demands a client certificate gets upstreamTls.cert (with serverName), and refuses lb without it", async () => {
  const be = await nodeBackend(namedCert, true);
  const withCert = startLb({
    config: config({
      backends: [{ url: be.url }],
      upstreamTls: {
        ca: ca.certFile,
        serverName: "backend.test",
        cert: client.certFile,
        key: client.keyFile,
      },
    }),
    logger: memoryLogger(),
  });
  const without = startLb({
    config: config({
      backends: [{ url: be.url }],
      upstreamTls: { ca: ca.certFile, serverName: "backend.test" },
    }),
    logger: memoryLogger(),
  });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(withCert.url);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "hello");
    }
    assert.deepEqual(be.seen, Array(3).fill({ sni: "backend.test", client: "lb-client" }));
    assert.equal(be.connections, 1, "the mTLS connection was kept alive and reused");
    const { status, json } = await get(without);
    assert.equal(status, 502);
    assert.equal(json.error.code, "bad_gateway");
    assert.match(json.error.message, /TLS failed after the handshake: the backend refused lb/);
    assert.equal(be.seen.length, 3, "the backend answered nothing without a certificate");
  } finally {
    await withCert.shutdown(1000);
    await without.shutdown(1000);
    await be.close();
  }
});

Deno.test("the connect timeout covers the TLS handshake, with a client certificate or without", async () => {
  // Takes TCP connections and never says a word of TLS.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of silent) held.push(c);
  })();
  const url = `https://127.0.0.1:${silent.addr.port}`;
  const lbs = [{}, { cert: client.certFile, key: client.keyFile }].map((upstreamTls) =>
    startLb({
      config: config({
        backends: [{ url }],
        upstreamTls,
        timeouts: { connect: "150ms" },
        retry: { attempts: 1 },
      }),
      logger: memoryLogger(),
    })
  );
  try {
    for (const lb of lbs) {
      const t0 = performance.now();
      const { status, json } = await get(lb);
      assert.equal(status, 502);
      assert.match(
        json.error.message,
        /no connection to https:\/\/127\.0\.0\.1:\d+ within 1\d\dms/,
      );
      assert.ok(performance.now() - t0 < 1000);
    }
  } finally {
    for (const lb of lbs) await lb.shutdown(1000);
    silent.close();
    await accepting.catch(() => {});
    for (const c of held) c.close();
  }
});

Deno.test("health checks use the pool's TLS settings: an untrusted https backend is marked unhealthy", async () => {
  const trusted = httpsBackend("trusted", ipCert);
  const untrusted = httpsBackend("untrusted", selfSigned);
  const lb = startLb({
    config: config({
      backends: [{ url: trusted.url, name: "trusted" }, { url: untrusted.url, name: "untrusted" }],
      upstreamTls: { ca: ca.certFile },
      health: { interval: "50ms", fall: 1, rise: 1, path: "/" },
    }),
    logger: memoryLogger(),
  });
  try {
    const [good, bad] = lb.pool.servers;
    await assertEventually(() => !bad.healthy, 3000, "the untrusted backend to be unhealthy");
    assert.match(bad.health.detail!, /certificate was refused/);
    await assertEventually(() => good.health.passedTotal > 0, 3000, "a passed check");
    assert.equal(good.healthy, true);
    assert.equal(untrusted.requests, 0, "a refused certificate gets no check request either");
  } finally {
    await lb.shutdown(1000);
    await trusted.close();
    await untrusted.close();
  }
});

Deno.test("an https backend added through the admin API is reached with its pool's upstreamTls", async () => {
  const first = httpsBackend("first", ipCert);
  const added = httpsBackend("added", ipCert);
  const lb = startLb({
    config: config({
      backends: [{ url: first.url }],
      upstreamTls: { ca: ca.certFile },
      admin: { enabled: true, host: "127.0.0.1", port: 0 },
    }),
    logger: memoryLogger(),
  });
  try {
    const r = await call(lb.adminUrl!, "POST", "/api/servers", { url: added.url, name: "added" });
    assert.equal(r.status, 201);
    assert.equal(r.json.url, added.url);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const { status, json } = await get(lb);
      assert.equal(status, 200);
      seen.add(json.backend);
    }
    assert.deepEqual([...seen].sort(), ["added", "first"]);
  } finally {
    await lb.shutdown(1000);
    await first.close();
    await added.close();
  }
});

Deno.test("a pool's upstreamTls overrides the top level's, and two pools never share a connection to one origin", async () => {
  const be = httpsBackend("shared", ipCert);
  const lb = startLb({
    config: config({
      // The top level trusts only Deno's roots; pool "trusting" adds the test CA.
      pools: {
        trusting: { upstreamTls: { ca: ca.certFile }, backends: [{ url: be.url }] },
        strict: { backends: [{ url: be.url }] },
      },
      routes: [{ match: { path: "/trusting" }, pool: "trusting" }, { pool: "strict" }],
    }),
    logger: memoryLogger(),
  });
  try {
    assert.equal((await get(lb, "/trusting")).status, 200);
    assert.equal(lb.pools.get("trusting")!.upstream.idleConnections, 1);
    // Had the strict pool taken the trusting pool's verified connection, this would be a 200.
    const { status, json } = await get(lb, "/other");
    assert.equal(status, 502);
    assert.match(json.error.message, /certificate was refused/);
    assert.equal(be.requests, 1);
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
});

Deno.test("a reload reads the TLS files again and reuses no connection made under the old settings; one it cannot read refuses the reload", async () => {
  const be = httpsBackend("trusted", ipCert);
  const caCopy = `${pki.dir}/reloaded-ca.pem`;
  await Deno.writeTextFile(caCopy, selfSigned.cert); // not the backend's CA, yet
  const base = config({ backends: [{ url: be.url }], upstreamTls: { ca: caCopy } });
  const lb = startLb({ config: base, logger: memoryLogger() });
  try {
    assert.equal((await get(lb)).status, 502);
    await Deno.writeTextFile(caCopy, ca.cert); // same path, new contents
    const r = await lb.reload(base);
    assert.ok(r.ok, r.problems.join("; "));
    assert.deepEqual(r.changes, ["upstreamTls changed: new connections use it"]);
    assert.equal((await get(lb)).status, 200);
    const missing = config({
      backends: [{ url: be.url }],
      upstreamTls: { ca: `${pki.dir}/nowhere.pem` },
    });
    const refused = await lb.reload(missing);
    assert.equal(refused.ok, false);
    assert.match(refused.problems[0], /upstreamTls\.ca: cannot read .*nowhere\.pem: no such file/);
    assert.equal((await get(lb)).status, 200);
    // A connection busy when the settings change is not kept for later requests: made
    // under the old settings, it would let a request skip the new ones.
    const slow = fetch(`${lb.url}/slow`);
    await assertEventually(() => be.requests === 3, 2000, "the slow request at the backend");
    const wrongName = config({
      backends: [{ url: be.url }],
      upstreamTls: { ca: caCopy, serverName: "elsewhere.test" },
    });
    assert.ok((await lb.reload(wrongName)).ok);
    assert.equal((await slow).status, 200);
    const after = await get(lb);
    assert.equal(after.status, 502);
    assert.match(after.json.error.message, /not valid for name "elsewhere\.test"/);
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
});

Deno.test("upstreamTls files that cannot be used stop lb from starting, each named by its field", () => {
  const start = (upstreamTls: Record<string, string>) => () =>
    startLb({
      config: config({ backends: [{ url: "https://127.0.0.1:1" }], upstreamTls }),
      logger: memoryLogger(),
    });
  assert.throws(
    start({ ca: `${pki.dir}/nowhere.pem` }),
    (e) => e instanceof ConfigError && /^upstreamTls\.ca: cannot read /.test(e.problems[0]),
  );
  assert.throws(
    start({ ca: client.keyFile }),
    /upstreamTls\.ca: holds no PEM certificate/,
  );
  assert.throws(
    start({ cert: client.certFile, key: ipCert.keyFile }),
    /upstreamTls\.key: is not the key of the certificate in upstreamTls\.cert/,
  );
});

Deno.test("cleanup: the throwaway CA", async () => {
  await pki.close();
});
