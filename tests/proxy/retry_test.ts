import assert from "node:assert/strict";
import { serveTcp } from "../_raw.ts";
import { startDemoBackend } from "../../backends/demo.ts";
import { BodySource } from "../../src/proxy/request_body.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { mayRetry } from "../../src/proxy/failures.ts";
import { backoffMs, RetryBudget } from "../../src/proxy/retry.ts";
import { freePort } from "../_stack.ts";

function lbConfig(urls: string[], extra = ""): Config {
  return parseConfig(
    `listen: { port: 0 }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends:
${urls.map((u) => `  - url: ${u}`).join("\n")}
${extra}`,
  );
}

async function withLb(config: Config, fn: (lb: Lb) => Promise<void>): Promise<void> {
  const lb = startLb({
    config,
    logger: createLogger({ format: "json", access: false, write: () => {} }),
  });
  try {
    await fn(lb);
  } finally {
    await lb.shutdown(2_000);
  }
}

const MiB = 1024 * 1024;

/** 1 MiB in 64 KiB chunks, as a stream, so lb cannot know its size up front. */
function streamedBody(bytes = MiB, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= bytes) return c.close();
      const n = Math.min(chunk, bytes - sent);
      c.enqueue(new Uint8Array(n).fill(97 + ((sent / chunk) % 26)));
      sent += n;
    },
  });
}

/** What a raw backend does once it has read a whole request. */
type Act = (conn: Deno.Conn, nth: number) => Promise<"keep" | "close">;

/**
 * A raw HTTP/1.1 backend on a plain TCP listener, so a test can close or reset a
 * connection where Deno.serve would not. `act` runs after each whole request (head and
 * body, Content-Length or chunked) with the request's number on its connection.
 */
function rawBackend(act: Act) {
  const stats = { connections: 0, requests: 0, bodyBytes: [] as number[] };
  const server = serveTcp(async (conn) => {
    stats.connections++;
    const reader = new RawReader(conn);
    for (let nth = 1;; nth++) {
      const req = await reader.request();
      if (!req) return;
      stats.requests++;
      stats.bodyBytes.push(req.bodyBytes);
      if ((await act(conn, nth)) === "close") return;
    }
  });
  return { stats, url: server.url, close: () => server.close() };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function respond(conn: Deno.Conn, status: number, body: string, extra = ""): Promise<number> {
  return conn.write(
    enc.encode(
      `HTTP/1.1 ${status} X\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`,
    ),
  );
}

/**
 * Answers the first request on each connection with keep-alive, then closes the connection
 * unanswered when a second request arrives on it.
 */
const okThenCloseOnReuse: Act = async (conn, nth) => {
  if (nth > 1) return "close";
  await respond(conn, 200, "ok", "connection: keep-alive\r\n");
  return "keep";
};

/** Reads whole HTTP/1.1 requests (head plus Content-Length or chunked body) off a conn. */
class RawReader {
  #buf = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}

  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  async #line(): Promise<string | null> {
    for (;;) {
      const i = this.#buf.findIndex((b, j) => b === 13 && this.#buf[j + 1] === 10);
      if (i !== -1) {
        const line = dec.decode(this.#buf.subarray(0, i));
        this.#buf = this.#buf.subarray(i + 2);
        return line;
      }
      if (!(await this.#more())) return null;
    }
  }

  async #skip(n: number): Promise<void> {
    while (this.#buf.length < n) if (!(await this.#more())) throw new Error("eof in body");
    this.#buf = this.#buf.subarray(n);
  }

  async request(): Promise<{ head: string[]; bodyBytes: number } | null> {
    const head: string[] = [];
    for (;;) {
      const line = await this.#line();
      if (line === null) return null;
      if (line === "") break;
      head.push(line);
    }
    const header = (name: string) =>
      head.find((h) => h.toLowerCase().startsWith(name + ":"))?.slice(name.length + 1).trim();
    let bodyBytes = 0;
    if (header("transfer-encoding")?.toLowerCase() === "chunked") {
      for (;;) {
        const size = parseInt((await this.#line()) ?? "", 16);
        if (!(size >= 0)) throw new Error("bad chunk size");
        if (size === 0) {
          await this.#line();
          break;
        }
        await this.#skip(size + 2);
        bodyBytes += size;
      }
    } else {
      bodyBytes = Number(header("content-length") ?? 0);
      await this.#skip(bodyBytes);
    }
    return { head, bodyBytes };
  }
}

// ---- pure rules ----

function body(bytes: number, bufferLimit: number): BodySource {
  const b = new BodySource(new Blob([new Uint8Array(bytes)]).stream(), bufferLimit, 0);
  if (bytes > bufferLimit) b.replayable = false; // as if streamed past the limit
  return b;
}

Deno.test("mayRetry: connect, stale and reset for every method; timeouts and statuses only when repeating is safe; never with a body streamed past the limit", () => {
  const small = body(10, 64);
  const big = body(100, 64);
  const always = [
    "connect_failed",
    "connect_timeout",
    "stale_connection",
    "reset_before_response",
  ] as const;
  for (const f of always) {
    assert.equal(mayRetry(f, "POST", null), true, f);
    assert.equal(mayRetry(f, "POST", small), true, f);
    assert.equal(mayRetry(f, "POST", big), false, f);
  }
  for (const f of ["header_timeout", "upload_stalled", "bad_status", "bad_response"] as const) {
    assert.equal(mayRetry(f, "GET", null), true, f);
    assert.equal(mayRetry(f, "PUT", small), true, f);
    assert.equal(mayRetry(f, "POST", small), true, f);
    assert.equal(mayRetry(f, "POST", null), false, f);
    assert.equal(mayRetry(f, "PATCH", null), false, f);
    assert.equal(mayRetry(f, "PUT", big), false, f);
  }
  const never = [
    "client_gone",
    "body_too_large",
    "bad_request_body",
    "client_body_timeout",
  ] as const;
  for (const f of never) assert.equal(mayRetry(f, "GET", null), false, f);
});

Deno.test("backoff is full jitter: uniform below min(max, base × 2^(retry-1))", () => {
  assert.equal(backoffMs(1, 25, 250, () => 0), 0);
  assert.equal(backoffMs(1, 25, 250, () => 0.5), 12.5);
  assert.equal(backoffMs(2, 25, 250, () => 0.5), 25);
  assert.equal(backoffMs(3, 25, 250, () => 0.999), 99.9);
  assert.equal(backoffMs(10, 25, 250, () => 0.999), 249.75);
});

Deno.test("the retry budget allows percent of active requests, never fewer than minConcurrent", () => {
  const b = new RetryBudget(20, 3);
  b.active = 5;
  assert.equal(b.acquire(), true);
  assert.equal(b.acquire(), true);
  assert.equal(b.acquire(), true);
  assert.equal(b.available, false);
  assert.equal(b.acquire(), false);
  b.active = 100; // 20 % of 100
  for (let i = 0; i < 17; i++) assert.equal(b.acquire(), true);
  assert.equal(b.acquire(), false);
  b.release();
  assert.equal(b.available, true);
});

// ---- real servers ----

Deno.test("a POST with a 1 MiB streamed body is not replayed once it reached a backend that then resets", async () => {
  const resets = [
    rawBackend(() => Promise.resolve("close")),
    rawBackend(() => Promise.resolve("close")),
  ];
  try {
    await withLb(lbConfig(resets.map((b) => b.url)), async (lb) => {
      const res = await fetch(`${lb.url}/upload`, {
        method: "POST",
        body: streamedBody(),
        duplex: "half",
      } as RequestInit);
      const err = await res.json();
      assert.equal(res.status, 502);
      assert.equal(err.error.code, "bad_gateway");
      const seen = resets.flatMap((b) => b.stats.bodyBytes);
      assert.deepEqual(seen, [MiB]);
    });
  } finally {
    await Promise.all(resets.map((b) => b.close()));
  }
});

Deno.test("a POST with a 1 MiB streamed body is not replayed after a retryable 503; the 503 reaches the client", async () => {
  const busy = [0, 1].map(() =>
    rawBackend(async (conn) => {
      await respond(conn, 503, "busy");
      return "keep";
    })
  );
  try {
    await withLb(lbConfig(busy.map((b) => b.url)), async (lb) => {
      const res = await fetch(`${lb.url}/upload`, {
        method: "POST",
        body: streamedBody(),
        duplex: "half",
      } as RequestInit);
      assert.equal(res.status, 503);
      assert.equal(await res.text(), "busy");
      assert.deepEqual(busy.flatMap((b) => b.stats.bodyBytes), [MiB]);
    });
  } finally {
    await Promise.all(busy.map((b) => b.close()));
  }
});

Deno.test("a POST refused at connect is retried on another server with its whole 1 MiB body", async () => {
  const echo = await startDemoBackend({ port: 0, index: 2 });
  try {
    // Round-robin tries the closed port first.
    await withLb(lbConfig([`http://127.0.0.1:${freePort()}`, echo.url]), async (lb) => {
      const res = await fetch(`${lb.url}/echo`, {
        method: "POST",
        body: streamedBody(),
        duplex: "half",
      } as RequestInit);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-backend"), "backend-2");
      const got = new Uint8Array(await res.arrayBuffer());
      const want = new Uint8Array(await new Response(streamedBody()).arrayBuffer());
      assert.equal(got.length, MiB);
      assert.deepEqual(got, want);
      assert.equal(lb.pool.servers[0].errors, 1);
    });
  } finally {
    await echo.close();
  }
});

Deno.test("a GET whose connection is reset before any response byte is retried on another server", async () => {
  const reset = rawBackend(() => Promise.resolve("close"));
  const ok = rawBackend(async (conn) => {
    await respond(conn, 200, "fine");
    return "keep";
  });
  try {
    await withLb(lbConfig([reset.url, ok.url]), async (lb) => {
      const res = await fetch(`${lb.url}/x`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "fine");
      assert.equal(reset.stats.requests, 1);
    });
  } finally {
    await reset.close();
    await ok.close();
  }
});

Deno.test("with every backend answering 503, upstream tries stay within the retry budget, and the 503s reach clients", async () => {
  const n = 30;
  let tries = 0;
  const servers = [0, 1, 2].map(() =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
      tries++;
      await new Promise((r) => setTimeout(r, 200));
      return new Response("overloaded", { status: 503, headers: { "retry-after": "7" } });
    })
  );
  try {
    await withLb(
      lbConfig(
        servers.map((s) => `http://127.0.0.1:${s.addr.port}`),
        "retry: { attempts: 3, budgetPercent: 20, minConcurrent: 3 }",
      ),
      async (lb) => {
        const results = await Promise.all(
          Array.from({ length: n }, async () => {
            const res = await fetch(`${lb.url}/x`);
            return {
              status: res.status,
              retryAfter: res.headers.get("retry-after"),
              body: await res.text(),
            };
          }),
        );
        // Without a budget: n × attempts = 90 tries. With it: n first tries, then at most
        // 20 % of the n requests in flight (6) retrying at once, then fewer.
        assert.ok(tries >= n, `${tries} tries`);
        assert.ok(tries <= n + 6 + 6, `${tries} upstream tries for ${n} requests`);
        // The backends' own answer (with its Retry-After) reaches the client, not a made-up 502.
        for (const r of results) {
          assert.deepEqual(r, { status: 503, retryAfter: "7", body: "overloaded" });
        }
      },
    );
  } finally {
    await Promise.all(servers.map((s) => s.shutdown()));
  }
});

Deno.test("a kept-alive connection the backend closes just as it is reused is retried transparently, without spending an attempt", async () => {
  // The first request on each connection is answered with keep-alive; a second one makes
  // the server close the connection unanswered: the race of an idle timeout with reuse.
  const flaky = rawBackend(okThenCloseOnReuse);
  try {
    await withLb(lbConfig([flaky.url], "retry: { attempts: 1 }"), async (lb) => {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${lb.url}/x${i}`);
        assert.equal(res.status, 200, `request ${i}`);
        assert.equal(await res.text(), "ok");
      }
      // Requests 2–5 each met a closed kept-alive connection first.
      assert.equal(flaky.stats.requests, 9);
      assert.equal(flaky.stats.connections, 5);
    });
  } finally {
    await flaky.close();
  }
});

Deno.test({
  name:
    "a streamed POST meeting a kept-alive connection the backend closed is replayed from lb's buffer on a new connection",
}, async () => {
  // A reused connection that dies before any response byte is a stale connection: lb
  // replays the body from its buffer (it is within bufferLimit) on a new connection.
  const flaky = rawBackend(okThenCloseOnReuse);
  try {
    await withLb(lbConfig([flaky.url], "retry: { attempts: 1 }"), async (lb) => {
      const warm = await fetch(`${lb.url}/warm`);
      assert.equal(await warm.text(), "ok");
      const res = await fetch(`${lb.url}/post`, {
        method: "POST",
        body: streamedBody(16 * 1024, 4 * 1024),
        duplex: "half",
      } as RequestInit);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "ok");
      assert.deepEqual(flaky.stats.bodyBytes, [0, 16 * 1024, 16 * 1024]);
    });
  } finally {
    await flaky.close();
  }
});

Deno.test("a 1 MiB streamed POST meeting a kept-alive connection the backend closed after reading it is not replayed", async () => {
  const flaky = rawBackend(okThenCloseOnReuse);
  try {
    await withLb(lbConfig([flaky.url]), async (lb) => {
      const warm = await fetch(`${lb.url}/warm`);
      assert.equal(await warm.text(), "ok");
      const res = await fetch(`${lb.url}/upload`, {
        method: "POST",
        body: streamedBody(),
        duplex: "half",
      } as RequestInit);
      assert.equal(res.status, 502);
      await res.body?.cancel();
      assert.deepEqual(flaky.stats.bodyBytes, [0, MiB]);
    });
  } finally {
    await flaky.close();
  }
});

Deno.test("a backend that closes idle keep-alive connections sooner than timeouts.upstreamIdle causes no 502", async () => {
  const closing = rawBackend(async (conn) => {
    await respond(conn, 200, "ok", "connection: keep-alive\r\n");
    await new Promise((r) => setTimeout(r, 30));
    return "close";
  });
  try {
    await withLb(lbConfig([closing.url], "timeouts: { upstreamIdle: 10s }"), async (lb) => {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${lb.url}/x${i}`);
        assert.equal(res.status, 200, `request ${i}`);
        await res.body?.cancel();
        await new Promise((r) => setTimeout(r, 60)); // the backend's idle close fires
      }
      assert.equal(closing.stats.connections, 5);
    });
  } finally {
    await closing.close();
  }
});
