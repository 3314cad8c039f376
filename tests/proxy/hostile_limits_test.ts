/**
 * Size limits (414, 431, 413 counted on the stream) and concurrency caps (503), against a
 * real lb from a parsed lb.yaml.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import {
  parseHead,
  rawExchange,
  type RecordingBackend,
  startRecordingBackend,
  statuses,
  testYaml,
  waitFor,
} from "../_raw.ts";

const LIMITS = `admin: { enabled: false }
limits: { maxUriBytes: 1KiB, maxHeaderBytes: 4KiB, maxBodyBytes: 1KiB }`;

async function withLb(
  fn: (url: string, be: RecordingBackend, recs: RequestRecord[]) => Promise<void>,
) {
  const be = startRecordingBackend();
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(testYaml([be.url], LIMITS)),
    onRequest: (r) => recs.push(r),
  });
  try {
    await fn(lb.url, be, recs);
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
}

const oneAnswer = { timeoutMs: 2000, until: (t: string) => statuses(t).length >= 1 };

Deno.test("a request target over limits.maxUriBytes gets 414 and reaches no backend", async () => {
  await withLb(async (url, be, recs) => {
    const ok = await rawExchange(
      url,
      `GET /${"a".repeat(1000)} HTTP/1.1\r\nHost: a\r\n\r\n`,
      oneAnswer,
    );
    assert.equal(statuses(ok.text)[0], 200, "a target under the limit is forwarded");
    const r = await rawExchange(
      url,
      `GET /${"a".repeat(1100)} HTTP/1.1\r\nHost: a\r\n\r\n`,
      oneAnswer,
    );
    assert.equal(statuses(r.text)[0], 414, r.text);
    assert.equal(be.requestCount(), 1);
    await waitFor(() => recs.length === 2);
    assert.equal(recs[1].status, 414);
  });
});

Deno.test("headers over limits.maxHeaderBytes get 431 and reach no backend", async () => {
  await withLb(async (url, be) => {
    const big = `X-Big: ${"v".repeat(5000)}\r\n`;
    const r = await rawExchange(url, `GET / HTTP/1.1\r\nHost: a\r\n${big}\r\n`, oneAnswer);
    assert.equal(statuses(r.text)[0], 431, r.text);
    const many = Array.from({ length: 60 }, (_, i) => `X-H${i}: ${"v".repeat(80)}\r\n`).join("");
    const r2 = await rawExchange(url, `GET / HTTP/1.1\r\nHost: a\r\n${many}\r\n`, oneAnswer);
    assert.equal(statuses(r2.text)[0], 431, r2.text);
    assert.equal(be.requestCount(), 0);
  });
});

Deno.test("a declared Content-Length over limits.maxBodyBytes gets 413 before any byte is forwarded", async () => {
  await withLb(async (url, be) => {
    const r = await rawExchange(
      url,
      `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n${"x".repeat(100)}`,
      oneAnswer,
    );
    const head = parseHead(r.text);
    assert.equal(head?.status, 413, r.text);
    assert.equal(head?.headers.get("connection")?.[0], "close");
    assert.equal(be.all(), "");
  });
});

Deno.test("a chunked body over limits.maxBodyBytes gets 413, counted on the stream, and never arrives whole", async () => {
  await withLb(async (url, be, recs) => {
    const chunk = `100\r\n${"x".repeat(256)}\r\n`;
    const r = await rawExchange(
      url,
      [
        "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk.repeat(3),
        chunk.repeat(3),
        "0\r\n\r\n",
      ],
      { ...oneAnswer, gapMs: 50 },
    );
    assert.equal(statuses(r.text)[0], 413, r.text);
    await waitFor(() => recs.length === 1);
    assert.equal(recs[0].status, 413);
    // The backend may have seen the first KiB, but never a complete request.
    assert.equal(be.requestCount(), 0);
    assert.ok(!be.all().includes("0\r\n\r\n"), "the body was completed upstream");
  });
});

Deno.test("requests past limits.maxConnectionsPerClient get 503 at once, others from that client later succeed", async () => {
  const slow = await startDemoBackend({ port: 0, index: 1, latencyMs: 400 });
  const lb = startLb({
    config: parseConfig(testYaml(
      [slow.url],
      `admin: { enabled: false }
trustedProxies: ["127.0.0.1/32"]
limits: { maxConnections: 100, maxConnectionsPerClient: 2 }`,
    )),
  });
  try {
    const get = async (xff: string) => {
      const res = await fetch(`${lb.url}/x`, { headers: { "x-forwarded-for": xff } });
      const body = await res.text();
      return { status: res.status, body };
    };
    // Three at once from one client (as told by a trusted proxy): one is turned away.
    const same = await Promise.all([get("10.0.0.1"), get("10.0.0.1"), get("10.0.0.1")]);
    const codes = same.map((r) => r.status).sort();
    assert.deepEqual(codes, [200, 200, 503], JSON.stringify(same));
    assert.match(same.find((r) => r.status === 503)!.body, /10\.0\.0\.1/);
    // Three at once from three clients: all served.
    const spread = await Promise.all([get("10.0.0.1"), get("10.0.0.2"), get("10.0.0.3")]);
    assert.deepEqual(spread.map((r) => r.status), [200, 200, 200]);
  } finally {
    await lb.shutdown(1000);
    await slow.close();
  }
});

Deno.test("requests past limits.maxConnections get 503, and the count goes back down", async () => {
  const slow = await startDemoBackend({ port: 0, index: 1, latencyMs: 400 });
  const lb = startLb({
    config: parseConfig(testYaml(
      [slow.url],
      "admin: { enabled: false }\nlimits: { maxConnections: 2 }",
    )),
  });
  try {
    const get = async () => {
      const res = await fetch(`${lb.url}/x`);
      await res.body?.cancel();
      return { status: res.status, retryAfter: res.headers.get("retry-after") };
    };
    const burst = await Promise.all([get(), get(), get(), get()]);
    assert.deepEqual(burst.map((r) => r.status).sort(), [200, 200, 503, 503]);
    assert.ok(burst.filter((r) => r.status === 503).every((r) => r.retryAfter === "1"));
    // Slots are given back when responses complete.
    assert.deepEqual((await Promise.all([get(), get()])).map((r) => r.status), [200, 200]);
  } finally {
    await lb.shutdown(1000);
    await slow.close();
  }
});
