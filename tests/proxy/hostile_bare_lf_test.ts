/**
 * A chunked request body framed with bare LF (`5\nhello\n0\n\n`). Deno.serve neither yields
 * nor rejects such a body: its stream stays pending until the client sends more bytes or
 * closes. lb has written the request head to a backend by then; the header timeout only
 * starts once the request is sent. What ends the wait is the upload's idle deadline
 * (timeouts.idle), and since lb was waiting on the client, not on the backend, the answer
 * is the client's 408 (RFC 9110 §15.5.9, nginx's client_body_timeout), not a 504 that
 * blames the backend, and the request is not retried on other backends.
 */
import assert from "node:assert/strict";
import { ServerPool } from "../../src/balancing/pool.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import { BodySource } from "../../src/proxy/request_body.ts";
import { Upstream } from "../../src/proxy/upstream.ts";
import {
  hasFullResponse,
  parseHead,
  rawExchange,
  type RecordingBackend,
  serveTcp,
  startRecordingBackend,
  testYaml,
} from "../_raw.ts";

/** The header timeout these tests must beat by far: the old code's wait, or longer. */
const HEADER_TIMEOUT_MS = 30_000;

async function withLb(
  fn: (
    url: string,
    bes: RecordingBackend[],
    recs: RequestRecord[],
    errors: () => number,
  ) => Promise<void>,
) {
  const bes = [startRecordingBackend(), startRecordingBackend()];
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(
      testYaml(
        bes.map((b) => b.url),
        "admin: { enabled: false }\nretry: { attempts: 3 }\ntimeouts: { header: 30s, idle: 300ms }",
      ),
    ),
    onRequest: (r) => recs.push(r),
  });
  try {
    await fn(lb.url, bes, recs, () => lb.pool.servers.reduce((n, s) => n + s.errors, 0));
  } finally {
    await lb.shutdown(1000);
    for (const b of bes) await b.close();
  }
}

const HEAD = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

const BODIES: [string, string][] = [
  ["a chunked body framed with bare LF", "5\nhello\n0\n\n"],
  ["a chunked body whose last-chunk line ends in bare LF", "5\r\nhello\r\n0\n\n"],
  ["a valid chunked body that stops after its first chunk", "5\r\nhello\r\n"],
];

for (const [name, body] of BODIES) {
  Deno.test(`${name} is answered 408 by lb after timeouts.idle, without blaming or retrying a backend`, async () => {
    await withLb(async (url, bes, recs, errors) => {
      const started = performance.now();
      // The client keeps its socket open and sends nothing more.
      const r = await rawExchange(url, HEAD + body, {
        timeoutMs: HEADER_TIMEOUT_MS / 3,
        until: hasFullResponse,
      });
      const head = parseHead(r.text);
      assert.equal(head?.status, 408, r.text);
      assert.ok(performance.now() - started < HEADER_TIMEOUT_MS, "not before the header timeout");
      // lb's own answer about the client's body, and the connection ends with it.
      assert.equal(JSON.parse(head!.rest).error.code, "request_timeout");
      assert.match(head!.rest, /request body made no progress for 300ms: the client sent nothing/);
      // Deno adds a close of its own while the request body is unfinished: a list, still close.
      const connection = head!.headers.get("connection") ?? [];
      assert.ok(connection.length > 0 && connection.every((v) => v === "close"), `${connection}`);
      assert.equal(recs.length, 1);
      assert.equal(recs[0].status, 408);
      assert.equal(recs[0].tries, 1, "the request was retried on another backend");
      // One backend got lb's head (and what body came), none a complete request, and no
      // backend is charged with the client's silence.
      assert.equal(bes.reduce((n, b) => n + b.connections.length, 0), 1);
      for (const b of bes) assert.equal(b.requestCount(), 0, b.all());
      assert.equal(errors(), 0);
    });
  });
}

Deno.test("Upstream: an upload the backend stops taking is still the backend's timeout, a silent client body the client's", async () => {
  // A backend that reads nothing at all: lb's writes stall once the socket buffers are full.
  const be = serveTcp(async (conn) => {
    await conn.read(new Uint8Array(1)); // one byte of the head, then nothing more
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (be.closing) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    });
  });
  const up = new Upstream({
    connectTimeout: 2000,
    headerTimeout: HEADER_TIMEOUT_MS,
    idleTimeout: 300,
    poolIdleTimeout: 30_000,
  });
  const server = new ServerPool([{ url: be.url }]).servers[0];
  const signal = new AbortController().signal;
  const headers = { host: "t" };
  const endless = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(new Uint8Array(1 << 20)),
  });
  const silent = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) });
  const bodies = [new BodySource(endless, 0, 0), new BodySource(silent, 0, 0)];
  try {
    const post = (body: BodySource) => ({ method: "POST", path: "/", headers, body, signal });
    const stalled = await up.try(server, post(bodies[0]));
    assert.ok(!stalled.ok && stalled.failure.kind === "upload_stalled", JSON.stringify(stalled));
    assert.match(stalled.failure.message, /made no progress for 300ms: the backend took nothing/);
    assert.equal(stalled.failure.rule.status, 504);
    const quiet = await up.try(server, post(bodies[1]));
    assert.ok(!quiet.ok && quiet.failure.kind === "client_body_timeout", JSON.stringify(quiet));
    assert.equal(quiet.failure.rule.status, 408);
  } finally {
    for (const b of bodies) b.cancel();
    up.close();
    await be.close();
  }
});
