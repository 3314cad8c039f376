import assert from "node:assert/strict";
import http from "node:http";
import { gzipSync } from "node:zlib";
import { startDemoBackend } from "../../backends/demo.ts";
import { startLb } from "../../src/lb.ts";
import { memoryLogger, startStack, testConfig, until } from "../_stack.ts";

/** A plain backend whose handler the test writes. */
function rawBackend(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return { server, url: `http://127.0.0.1:${server.addr.port}` };
}

/** GET through node:http, so the test sees raw bytes (fetch would decompress). */
function rawGet(url: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; rawHeaders: string[]; body: Uint8Array }>(
    (resolve, reject) => {
      const agent = new http.Agent({ keepAlive: false });
      const req = http.get(url, { headers, agent }, (res) => {
        const chunks: Uint8Array[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          agent.destroy();
          resolve({
            status: res.statusCode!,
            rawHeaders: res.rawHeaders,
            body: new Uint8Array(Buffer.concat(chunks)),
          });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
    },
  );
}

/** Sends raw bytes and reads until the server closes or `done` says the answer is complete. */
async function rawRequest(port: number, bytes: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(bytes));
    let out = "";
    const buf = new Uint8Array(65536);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      out += new TextDecoder().decode(buf.subarray(0, n));
      const end = out.indexOf("\r\n\r\n");
      const cl = /content-length: (\d+)/i.exec(out);
      if (end !== -1 && cl && out.length >= end + 4 + Number(cl[1])) break;
    }
    return out;
  } finally {
    conn.close();
  }
}

Deno.test("round-robin sends requests to backend-1, then 2, then 3, evenly", async () => {
  const s = await startStack(3);
  try {
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${s.lb.url}/hello`);
      seen.push((await res.json()).backend);
    }
    assert.deepEqual(seen.slice(0, 3), ["backend-1", "backend-2", "backend-3"]);
    for (const b of ["backend-1", "backend-2", "backend-3"]) {
      assert.equal(seen.filter((x) => x === b).length, 10);
    }
  } finally {
    await s.close();
  }
});

Deno.test("method, path, query and body pass through unchanged", async () => {
  const s = await startStack(1);
  try {
    const res = await fetch(`${s.lb.url}/a/b%20c?x=1&y=%2F`, { method: "DELETE" });
    const j = await res.json();
    assert.equal(j.method, "DELETE");
    assert.equal(j.path, "/a/b%20c?x=1&y=%2F");
    const payload = "hello\u0000world".repeat(1000);
    const echo = await fetch(`${s.lb.url}/echo`, { method: "POST", body: payload });
    assert.equal(echo.status, 200);
    assert.equal(await echo.text(), payload);
  } finally {
    await s.close();
  }
});

Deno.test("dot segments in the path reach the backend as the client sent them", async () => {
  const s = await startStack(1);
  try {
    const port = new URL(s.lb.url).port;
    const out = await rawRequest(Number(port), "GET /a/../b/%2e%2e/c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.match(out, /"path":"\/a\/\.\.\/b\/%2e%2e\/c"/);
  } finally {
    await s.close();
  }
});

Deno.test("status, repeated Set-Cookie headers and redirects pass through (redirects are not followed)", async () => {
  const b = rawBackend((req) => {
    const h = new Headers({ location: "/elsewhere", "x-custom": "yes" });
    h.append("set-cookie", "a=1; Path=/");
    h.append("set-cookie", "b=2; HttpOnly");
    return new Response(req.url.endsWith("/redirect") ? null : "teapot", {
      status: req.url.endsWith("/redirect") ? 302 : 418,
      headers: h,
    });
  });
  const lb = startLb({ config: testConfig([b.url]) });
  try {
    const r = await fetch(`${lb.url}/redirect`, { redirect: "manual" });
    await r.body?.cancel();
    assert.equal(r.status, 302);
    assert.equal(r.headers.get("location"), "/elsewhere");
    assert.deepEqual(r.headers.getSetCookie(), ["a=1; Path=/", "b=2; HttpOnly"]);
    const t = await fetch(`${lb.url}/tea`);
    assert.equal(t.status, 418);
    assert.equal(await t.text(), "teapot");
    assert.equal(t.headers.get("x-custom"), "yes");
  } finally {
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("the client's Host reaches the backend unchanged", async () => {
  const s = await startStack(1);
  const client = Deno.createHttpClient({ allowHost: true });
  try {
    const res = await fetch(`${s.lb.url}/h`, { headers: { host: "shop.example:8443" }, client });
    const j = await res.json();
    assert.equal(j.headers.host, "shop.example:8443");
    assert.equal(j.headers["x-forwarded-host"], "shop.example:8443");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("an absolute-form target cannot make lb connect anywhere but the backend", async () => {
  const s = await startStack(1);
  try {
    const port = Number(new URL(s.lb.url).port);
    const out = await rawRequest(
      port,
      "GET http://169.254.169.254/latest/meta-data?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    );
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.match(out, /"backend":"backend-1"/);
    assert.match(out, /"path":"\/latest\/meta-data\?x=1"/);
  } finally {
    await s.close();
  }
});

Deno.test("gzip responses arrive byte-identical with Content-Encoding and length intact", async () => {
  const gz = new Uint8Array(gzipSync(new TextEncoder().encode("compress me ".repeat(500))));
  let acceptEncoding: string | null = null;
  const b = rawBackend((req) => {
    acceptEncoding = req.headers.get("accept-encoding");
    return new Response(gz, {
      headers: { "content-encoding": "gzip", "content-type": "text/plain" },
    });
  });
  const lb = startLb({ config: testConfig([b.url]) });
  try {
    const r = await rawGet(`${lb.url}/file`, { "accept-encoding": "gzip, br;q=0.5" });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, new Uint8Array(gz));
    const headers = new Map<string, string>();
    for (let i = 0; i < r.rawHeaders.length; i += 2) {
      headers.set(r.rawHeaders[i].toLowerCase(), r.rawHeaders[i + 1]);
    }
    assert.equal(headers.get("content-encoding"), "gzip");
    assert.equal(headers.get("content-length"), String(gz.byteLength));
    assert.equal(acceptEncoding, "gzip, br;q=0.5");
    // A client that sends no Accept-Encoding gets none invented for it.
    await rawGet(`${lb.url}/file`);
    assert.equal(acceptEncoding, null);
  } finally {
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("hop-by-hop headers are removed in both directions", async () => {
  let seen: Headers | undefined;
  const b = rawBackend((req) => {
    seen = req.headers;
    return new Response("ok", {
      headers: {
        connection: "x-resp-hop",
        "x-resp-hop": "secret",
        "keep-alive": "timeout=5",
        "x-kept": "1",
      },
    });
  });
  const lb = startLb({ config: testConfig([b.url]) });
  try {
    const port = Number(new URL(lb.url).port);
    const out = await rawRequest(
      port,
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-hop, x-forwarded-for\r\nx-hop: 1\r\n" +
        "Keep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n" +
        "Upgrade: websocket\r\nx-end-to-end: 1\r\nConnection: close\r\n\r\n",
    );
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.ok(seen);
    for (
      const h of ["x-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection", "upgrade"]
    ) {
      assert.equal(seen.get(h), null, `${h} must not reach the backend`);
    }
    assert.equal(seen.get("x-end-to-end"), "1");
    // Named in Connection, yet lb's own X-Forwarded-For is still there.
    assert.equal(seen.get("x-forwarded-for"), "127.0.0.1");
    assert.doesNotMatch(out.toLowerCase(), /x-resp-hop|keep-alive: timeout/);
    assert.match(out.toLowerCase(), /x-kept: 1/);
  } finally {
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("X-Forwarded-*, Via and X-Request-Id are set; a client's request id is kept and returned", async () => {
  const s = await startStack(1);
  try {
    const res = await fetch(`${s.lb.url}/id`, {
      headers: { "x-forwarded-for": "6.6.6.6", via: "1.0 client-proxy" },
    });
    const j = await res.json();
    assert.equal(
      j.headers["x-forwarded-for"],
      "127.0.0.1",
      "an untrusted client's XFF is replaced",
    );
    assert.equal(j.headers["x-forwarded-proto"], "http");
    assert.equal(j.headers["via"], "1.0 client-proxy, 1.1 lb");
    assert.match(j.headers["x-request-id"], /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get("x-request-id"), j.headers["x-request-id"]);
    assert.match(res.headers.get("via") ?? "", /1\.1 lb/);
    const mine = await fetch(`${s.lb.url}/id`, { headers: { "x-request-id": "req-42" } });
    assert.equal((await mine.json()).headers["x-request-id"], "req-42");
    assert.equal(mine.headers.get("x-request-id"), "req-42");
  } finally {
    await s.close();
  }
});

Deno.test("a trusted proxy's X-Forwarded-For is appended to, and its client is the one lb logs", async () => {
  const s = await startStack(1, { trustedProxies: ["127.0.0.0/8"] });
  try {
    const res = await fetch(`${s.lb.url}/t`, { headers: { "x-forwarded-for": "203.0.113.7" } });
    const j = await res.json();
    assert.equal(j.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    await until(() => s.records.length === 1, "the access record");
    assert.equal(s.records[0].client, "203.0.113.7");
  } finally {
    await s.close();
  }
});

Deno.test("502 with a JSON error when the backend cannot be reached", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const lb = startLb({ config: testConfig([`http://127.0.0.1:${port}`]) });
  try {
    const res = await fetch(`${lb.url}/x`);
    assert.equal(res.status, 502);
    const j = await res.json();
    assert.equal(j.error.status, 502);
    assert.equal(j.error.code, "bad_gateway");
    assert.match(j.error.message, /cannot connect/);
    assert.equal(j.requestId, res.headers.get("x-request-id"));
  } finally {
    await lb.shutdown(1000);
  }
});

Deno.test("503 with Retry-After when no backend is available", async () => {
  const s = await startStack(2, { panicMode: false });
  try {
    for (const srv of s.lb.pool.servers) s.lb.pool.setAdminState(srv, "disabled");
    const res = await fetch(`${s.lb.url}/x`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.equal((await res.json()).error.code, "no_server");
  } finally {
    await s.close();
  }
});

Deno.test("504 when the backend does not answer within the header timeout", async () => {
  const s = await startStack(1, { timeouts: { header: "200ms" } }, { latencyMs: 3000 });
  try {
    const t0 = performance.now();
    const res = await fetch(`${s.lb.url}/slow`);
    assert.equal(res.status, 504);
    assert.equal((await res.json()).error.code, "gateway_timeout");
    assert.ok(performance.now() - t0 < 2500, "answered at the timeout, not when the backend did");
  } finally {
    await s.close();
  }
});

Deno.test("a server-sent event stream reaches the client event by event", async () => {
  const s = await startStack(1);
  try {
    const t0 = performance.now();
    const res = await fetch(`${s.lb.url}/sse?events=4&intervalMs=300`);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = performance.now() - t0;
    assert.match(new TextDecoder().decode(first.value), /data: \{"n":1\}/);
    let rest = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      rest += new TextDecoder().decode(r.value);
    }
    const lastAt = performance.now() - t0;
    assert.match(rest, /"n":4/);
    assert.ok(
      lastAt - firstAt > 600,
      `first event at ${firstAt}ms, end at ${lastAt}ms: events were buffered`,
    );
  } finally {
    await s.close();
  }
});

Deno.test("a 256 MiB upload and a 256 MiB download pass through lb whole, every byte in place", async () => {
  // Byte j of the upload is j % 251 (a prime, so no chunk size lines up with it); the demo
  // backend's /stream sends a-z repeating. A reused or reordered buffer breaks the pattern.
  let received = 0;
  let misplaced = -1;
  const sink = rawBackend(async (req) => {
    for await (const c of req.body!) {
      for (let i = 0; i < c.byteLength; i++) {
        if (c[i] !== (received + i) % 251 && misplaced === -1) misplaced = received + i;
      }
      received += c.byteLength;
    }
    return new Response(String(received));
  });
  const source = await startDemoBackend({ port: 0, index: 2 });
  const total = 256 * 1024 * 1024;
  const up = startLb({ config: testConfig([sink.url]) });
  const down = startLb({ config: testConfig([source.url]) });
  try {
    const res = await fetch(`${up.url}/upload`, {
      method: "POST",
      body: patterned(total),
      duplex: "half",
    } as RequestInit);
    assert.equal(await res.text(), String(total));
    assert.equal(misplaced, -1, `upload byte ${misplaced} is not where it was sent`);
    // The same with a Content-Length (fetch sends one for a buffer): lb frames it that way.
    const sized = new Uint8Array(64 * 1024 * 1024);
    for (let i = 0; i < sized.length; i++) sized[i] = i % 251;
    received = 0;
    const res2 = await fetch(`${up.url}/upload`, { method: "POST", body: sized });
    assert.equal(await res2.text(), String(sized.length));
    assert.equal(misplaced, -1, `upload byte ${misplaced} is not where it was sent`);
    const got = await fetch(`${down.url}/stream?bytes=${total}`);
    let n = 0;
    for await (const c of got.body!) {
      for (let i = 0; i < c.byteLength; i++) {
        if (c[i] !== 97 + (n + i) % 26 && misplaced === -1) misplaced = n + i;
      }
      n += c.byteLength;
    }
    assert.equal(n, total);
    assert.equal(misplaced, -1, `download byte ${misplaced} is not where the backend sent it`);
  } finally {
    await up.shutdown(1000);
    await down.shutdown(1000);
    await sink.server.shutdown();
    await source.close();
  }
});

Deno.test("an upload slower than timeouts.header gets its answer; one whose client stalls for timeouts.idle gets 408, and the backend is not blamed", async () => {
  const sink = rawBackend(async (req) => {
    let n = 0;
    for await (const c of req.body!) n += c.byteLength;
    return new Response(String(n));
  });
  // The header deadline starts once the request is sent: a 1.2 s upload beats a 300 ms one.
  const lb = startLb({
    config: testConfig([sink.url], {
      timeouts: { header: 300, idle: 600 },
      retry: { attempts: 1 },
    }),
  });
  /** `chunks` chunks of 1 KiB, one every `everyMs`, then (with `stallMs`) a pause first. */
  const trickle = (chunks: number, everyMs: number, stallMs = 0) => {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        if (sent === chunks) return c.close();
        await new Promise((r) => setTimeout(r, sent === 1 && stallMs ? stallMs : everyMs));
        sent++;
        c.enqueue(new Uint8Array(1024));
      },
    }, { highWaterMark: 0 });
  };
  try {
    const slow = await fetch(`${lb.url}/slow`, {
      method: "POST",
      body: trickle(12, 100),
      duplex: "half",
    } as RequestInit);
    assert.equal(slow.status, 200);
    assert.equal(await slow.text(), String(12 * 1024));

    const stalled = await fetch(`${lb.url}/stalled`, {
      method: "POST",
      body: trickle(3, 10, 2000),
      duplex: "half",
    } as RequestInit);
    // The client went silent, not the backend: nginx's client_body_timeout answers 408 too.
    assert.equal(stalled.status, 408);
    const err = (await stalled.json()).error;
    assert.equal(err.code, "request_timeout");
    assert.match(err.message, /request body made no progress for 600ms: the client sent nothing/);
    assert.equal(lb.pool.servers[0].errors, 0, "a silent client is not the server's failure");
  } finally {
    await lb.shutdown(1000);
    await sink.server.shutdown();
  }
});

/** `total` bytes where byte j is j % 251, in chunks of 61,000 bytes made on demand. */
function patterned(total: number): ReadableStream<Uint8Array> {
  let produced = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (produced >= total) return c.close();
      const chunk = new Uint8Array(Math.min(61_000, total - produced));
      for (let i = 0; i < chunk.length; i++) chunk[i] = (produced + i) % 251;
      produced += chunk.length;
      c.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

/** A body of `total` bytes made on demand; `onPull` sees how many bytes have been produced. */
function generated(total: number, onPull: (produced: number) => void): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024).fill(97);
  let produced = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (produced >= total) return c.close();
      produced += chunk.byteLength;
      onPull(produced);
      c.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

Deno.test("a download is read from the backend only as fast as the client reads it", async () => {
  let produced = 0;
  const b = rawBackend(() => new Response(generated(512 * 1024 * 1024, (n) => produced = n)));
  const lb = startLb({ config: testConfig([b.url]) });
  try {
    const res = await fetch(`${lb.url}/big`);
    const reader = res.body!.getReader();
    let read = 0;
    while (read < 1024 * 1024) read += (await reader.read()).value!.byteLength;
    // The client stops reading. Whatever lb buffered would show up as bytes produced.
    await new Promise((r) => setTimeout(r, 500));
    const settled = produced;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(produced, settled, "the backend kept producing while nobody read");
    assert.ok(
      settled < 32 * 1024 * 1024,
      `lb read ${(settled / 1048576).toFixed(1)} MiB ahead of the client`,
    );
    await reader.cancel();
  } finally {
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("an upload is read from the client only as fast as the backend reads it", async () => {
  let backendRead = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const b = rawBackend(async (req) => {
    const reader = req.body!.getReader();
    while (backendRead < 1024 * 1024) backendRead += (await reader.read()).value!.byteLength;
    await released; // the backend stops reading
    await reader.cancel();
    return new Response("enough");
  });
  const lb = startLb({ config: testConfig([b.url]) });
  let produced = 0;
  try {
    const res = fetch(`${lb.url}/up`, {
      method: "POST",
      body: generated(512 * 1024 * 1024, (n) => produced = n),
      duplex: "half",
    } as RequestInit);
    await until(() => backendRead >= 1024 * 1024, "the backend to read 1 MiB");
    await new Promise((r) => setTimeout(r, 500));
    const settled = produced;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(produced, settled, "the client kept sending while nobody read");
    assert.ok(
      settled < 32 * 1024 * 1024,
      `lb accepted ${(settled / 1048576).toFixed(1)} MiB the backend never read`,
    );
    release();
    const r = await res;
    await r.body?.cancel();
  } finally {
    release();
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("a client that disconnects aborts its upstream request", async () => {
  let cancelled = false;
  const b = rawBackend(() =>
    new Response(
      new ReadableStream({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 20));
          c.enqueue(new Uint8Array(1024));
        },
        cancel() {
          cancelled = true;
        },
      }),
    )
  );
  const lb = startLb({ config: testConfig([b.url]) });
  try {
    const ctrl = new AbortController();
    const res = await fetch(`${lb.url}/endless`, { signal: ctrl.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ctrl.abort();
    await reader.closed.catch(() => {});
    await until(() => cancelled, "the backend's stream to be cancelled");
    assert.equal(lb.pool.servers[0].inflight, 0);
  } finally {
    await lb.shutdown(1000);
    await b.server.shutdown();
  }
});

Deno.test("a backend that dies mid-body aborts the client's response instead of ending it cleanly", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serve = (async () => {
    for await (const c of l) {
      const buf = new Uint8Array(4096);
      await c.read(buf);
      // Over 64 KiB, so lb streams it rather than reading it whole first.
      await c.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\npartial"),
      );
      c.close();
    }
  })();
  const lb = startLb({ config: testConfig([`http://127.0.0.1:${(l.addr as Deno.NetAddr).port}`]) });
  try {
    const res = await fetch(`${lb.url}/cut`);
    assert.equal(res.status, 200);
    await assert.rejects(res.arrayBuffer());
  } finally {
    await lb.shutdown(1000);
    l.close();
    await serve.catch(() => {});
  }
});

Deno.test("each proxied request is recorded with backend, status, tries and bytes", async () => {
  const backend = await startDemoBackend({ port: 0, index: 7 });
  const records: {
    backend?: string;
    status: number;
    tries: number;
    bytesOut: number;
    bytesIn: number;
  }[] = [];
  const lb = startLb({ config: testConfig([backend.url]), onRequest: (r) => records.push(r) });
  try {
    const res = await fetch(`${lb.url}/echo`, { method: "POST", body: "12345" });
    assert.equal(await res.text(), "12345");
    await until(() => records.length === 1, "one record");
    assert.equal(records[0].status, 200);
    assert.equal(records[0].backend, "127.0.0.1:" + backend.port);
    assert.equal(records[0].tries, 1);
    assert.equal(records[0].bytesIn, 5);
    assert.equal(records[0].bytesOut, 5);
  } finally {
    await lb.shutdown(1000);
    await backend.close();
  }
});

Deno.test("a bug in the request path (here: a throwing onRequest) is one log line and a 500 JSON answer, and lb goes on serving", async () => {
  const be = await startDemoBackend({ port: 0, index: 1 });
  const logger = memoryLogger();
  let boom = true;
  const lb = startLb({
    config: testConfig([be.url]),
    logger,
    onRequest: () => {
      if (boom) throw new Error("observer exploded");
    },
  });
  try {
    const res = await fetch(lb.url + "/x", { headers: { "x-request-id": "req-1" } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.deepEqual(body.error, {
      status: 500,
      code: "internal",
      message: "lb failed to handle this request",
    });
    assert.equal(body.requestId, "req-1");
    const errors = logger.lines.filter((l) => l.includes("unexpected error: observer exploded"));
    assert.equal(errors.length, 1);
    assert.ok(!logger.lines.some((l) => l.includes("    at ")), "no stack trace in the log");
    boom = false;
    const ok = await fetch(lb.url + "/x");
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
});

Deno.test("a request body written in several pieces never waits for the backend's delayed ACK (Nagle's algorithm is off for it)", async () => {
  // A chunked upload is several writes; with Nagle's algorithm on, each small one after the
  // first waits for the backend's delayed ACK (~40 ms): lb sets TCP_NODELAY on its upstream
  // connections. (Measured: 43-45 ms per upload here without it.)
  const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const n = (await req.arrayBuffer()).byteLength; // the whole body before the answer
    return new Response(String(n));
  });
  const lb = startLb({ config: testConfig([`http://127.0.0.1:${backend.addr.port}`]) });
  try {
    const times: number[] = [];
    for (let i = 0; i < 9; i++) {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (const piece of ["first ", "second ", "third"]) {
            c.enqueue(new TextEncoder().encode(piece));
          }
          c.close();
        },
      });
      const t0 = performance.now();
      const res = await fetch(lb.url + "/upload", { method: "POST", body });
      assert.equal(await res.text(), "18");
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    // Over one kept-alive upstream connection; with Nagle on, ~40 ms or more each.
    assert.ok(times[4] < 25, `uploads took ${times.map(Math.round).join(", ")} ms`);
  } finally {
    await lb.shutdown(1000);
    await backend.shutdown();
  }
});
