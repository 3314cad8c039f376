/**
 * lb's own HTTP/1.1 client (src/http1.ts) and the connection pool on top of it
 * (src/proxy.ts `Upstream`): the strict response-head parser, the request head lb writes,
 * body framing on a real socket, keep-alive reuse, and what reaches the backend and the
 * client through a real lb.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import {
  ConnectionClosed,
  Http1Conn,
  latin1,
  latin1Bytes,
  MAX_HEAD_BYTES,
  parseResponseHead,
  ProtocolError,
  requestHead,
  type ResponseHead,
} from "../../src/proxy/http1.ts";
import { startLb } from "../../src/lb.ts";
import { freePort } from "../_stack.ts";
import { Upstream, type UpstreamResponse } from "../../src/proxy/upstream.ts";
import { Failure } from "../../src/proxy/failures.ts";
import { ServerPool } from "../../src/balancing/pool.ts";
import type { Server } from "../../src/balancing/server.ts";
import {
  hasFullResponse,
  parseHead,
  rawExchange,
  serveTcp,
  startRecordingBackend,
  testYaml,
  waitFor,
} from "../_raw.ts";

// ---------------------------------------------------------------------------------------
// parseResponseHead: pure

/** Parses a head given as lines (joined with CRLF, without the final empty line). */
function parse(lines: string[], method = "GET"): ResponseHead {
  return parseResponseHead(lines.join("\r\n"), method);
}

Deno.test("parseResponseHead reads a 200 OK with its headers, length framing and keep-alive", () => {
  const h = parse(["HTTP/1.1 200 OK", "Content-Type: text/plain", "Content-Length: 5"]);
  assert.deepEqual(h, {
    status: 200,
    statusText: "OK",
    rawHeaders: ["Content-Type", "text/plain", "Content-Length", "5"],
    framing: "length",
    length: 5,
    keepAlive: true,
  });
});

Deno.test("parseResponseHead accepts an empty reason phrase, with or without the space", () => {
  for (const line of ["HTTP/1.1 204 ", "HTTP/1.1 204"]) {
    const h = parse([line, "X-A: 1"]);
    assert.equal(h.status, 204, line);
    assert.equal(h.statusText, "", line);
    assert.equal(h.framing, "none", line);
    assert.equal(h.keepAlive, true, line);
    assert.deepEqual(h.rawHeaders, ["X-A", "1"], line);
  }
  assert.equal(parse(["HTTP/1.1 404 Not  Found\tHere"]).statusText, "Not  Found\tHere");
});

Deno.test("parseResponseHead keeps repeated Set-Cookie lines separate, in order, with their name case", () => {
  const h = parse([
    "HTTP/1.1 200 OK",
    "Set-Cookie: a=1; Path=/",
    "X-Between: y",
    "set-cookie: b=2, c=3",
    "SET-COOKIE: d=4",
    "Content-Length: 0",
  ]);
  assert.deepEqual(h.rawHeaders, [
    "Set-Cookie",
    "a=1; Path=/",
    "X-Between",
    "y",
    "set-cookie",
    "b=2, c=3",
    "SET-COOKIE",
    "d=4",
    "Content-Length",
    "0",
  ]);
});

Deno.test("parseResponseHead trims only SP and HTAB around a value, never obs-text like 0xA0", () => {
  const h = parse([
    "HTTP/1.1 200 OK",
    "X-Ows: \t  spaced value \t ",
    "X-Nbsp-End: v\xa0",
    "X-Nbsp-Start:\xa0v",
    "X-Nbsp-Both: \xa0 v \xa0\t",
    "X-Empty:",
    "X-Blank: \t ",
    "X-Latin: caf\xe9\xff",
    "Content-Length: 0",
  ]);
  assert.deepEqual(h.rawHeaders, [
    "X-Ows",
    "spaced value",
    "X-Nbsp-End",
    "v\xa0",
    "X-Nbsp-Start",
    "\xa0v",
    "X-Nbsp-Both",
    "\xa0 v \xa0",
    "X-Empty",
    "",
    "X-Blank",
    "",
    "X-Latin",
    "caf\xe9\xff",
    "Content-Length",
    "0",
  ]);
});

Deno.test("parseResponseHead frames HEAD, 1xx, 204 and 304 responses as bodiless whatever they announce", () => {
  const cases: [string, string, string[]][] = [
    ["HEAD", "HTTP/1.1 200 OK", ["Content-Length: 5"]],
    ["HEAD", "HTTP/1.1 200 OK", ["Transfer-Encoding: chunked"]],
    ["HEAD", "HTTP/1.1 200 OK", []],
    ["GET", "HTTP/1.1 204 No Content", ["Content-Length: 5"]],
    ["GET", "HTTP/1.1 304 Not Modified", ["Content-Length: 500"]],
    ["GET", "HTTP/1.1 304 Not Modified", ["Transfer-Encoding: chunked"]],
    ["GET", "HTTP/1.1 100 Continue", []],
    ["GET", "HTTP/1.1 103 Early Hints", ["Link: </a.css>; rel=preload"]],
  ];
  for (const [method, status, fields] of cases) {
    const h = parse([status, ...fields], method);
    const what = `${method} ${status} ${fields}`;
    assert.equal(h.framing, "none", what);
    assert.equal(h.length, 0, what);
    // A bodiless response never needs the connection to close to delimit it.
    assert.equal(h.keepAlive, true, what);
  }
});

Deno.test("parseResponseHead frames chunked, length and close-delimited bodies", () => {
  const chunked = parse(["HTTP/1.1 200 OK", "Transfer-Encoding: Chunked"]);
  assert.equal(chunked.framing, "chunked");
  assert.equal(chunked.keepAlive, true);

  const length = parse(["HTTP/1.1 201 Created", "content-length: 12"], "POST");
  assert.equal(length.framing, "length");
  assert.equal(length.length, 12);
  assert.equal(length.keepAlive, true);

  const zero = parse(["HTTP/1.1 200 OK", "Content-Length: 0"]);
  assert.equal(zero.framing, "length");
  assert.equal(zero.length, 0);

  const big = parse(["HTTP/1.1 200 OK", "Content-Length: 999999999999999"]);
  assert.equal(big.length, 999_999_999_999_999);

  // Neither length nor chunked: the body ends when the backend closes, so no reuse.
  const close = parse(["HTTP/1.1 200 OK", "Content-Type: text/plain"]);
  assert.equal(close.framing, "close");
  assert.equal(close.length, 0);
  assert.equal(close.keepAlive, false);
});

Deno.test("parseResponseHead takes identical duplicate Content-Lengths as one", () => {
  const list = parse(["HTTP/1.1 200 OK", "Content-Length: 5, 5"]);
  assert.equal(list.framing, "length");
  assert.equal(list.length, 5);
  const lines = parse(["HTTP/1.1 200 OK", "Content-Length: 5", "content-length: 5"]);
  assert.equal(lines.framing, "length");
  assert.equal(lines.length, 5);
  // Both lines are still reported as received.
  assert.deepEqual(lines.rawHeaders, ["Content-Length", "5", "content-length", "5"]);
});

Deno.test("parseResponseHead turns keep-alive off for Connection: close in any case or list, and for HTTP/1.0", () => {
  const cl = "Content-Length: 0";
  const off: string[][] = [
    ["HTTP/1.1 200 OK", "Connection: close", cl],
    ["HTTP/1.1 200 OK", "connection: CLOSE", cl],
    ["HTTP/1.1 200 OK", "Connection: Keep-Alive, Close", cl],
    ["HTTP/1.1 200 OK", "Connection: x-foo ,\tclose , x-bar", cl],
    ["HTTP/1.1 200 OK", "Connection: x-foo", "Connection: close", cl],
    ["HTTP/1.0 200 OK", cl],
    ["HTTP/1.0 200 OK", "Connection: x-foo", cl],
    ["HTTP/1.0 200 OK", "Connection: close", cl],
    // keep-alive asked for, but the body is close-delimited.
    ["HTTP/1.0 200 OK", "Connection: keep-alive"],
  ];
  for (const lines of off) assert.equal(parse(lines).keepAlive, false, lines.join(" | "));
  const on: string[][] = [
    ["HTTP/1.1 200 OK", cl],
    ["HTTP/1.1 200 OK", "Connection: keep-alive", cl],
    ["HTTP/1.1 200 OK", "Connection: x-closed", cl],
    ["HTTP/1.0 200 OK", "Connection: keep-alive", cl],
    ["HTTP/1.0 200 OK", "connection: Keep-Alive", cl],
    ["HTTP/1.0 200 OK", "Connection: x-foo, keep-alive", cl],
  ];
  for (const lines of on) assert.equal(parse(lines).keepAlive, true, lines.join(" | "));
});

// RFC 9112 §9.3: with "close" present the connection does not persist, whatever else is said.
Deno.test({
  name: "parseResponseHead lets Connection: close win over keep-alive on HTTP/1.0",

  fn() {
    const cl = "Content-Length: 0";
    assert.equal(parse(["HTTP/1.0 200 OK", "Connection: close, keep-alive", cl]).keepAlive, false);
    assert.equal(
      parse(["HTTP/1.0 200 OK", "Connection: close", "Connection: keep-alive", cl]).keepAlive,
      false,
    );
  },
});

Deno.test("parseResponseHead rejects a status line that is not HTTP/1.0 or 1.1 with a status from 100 to 999", () => {
  const bad = [
    "HTTP/2.0 200 OK",
    "HTTP/1.2 200 OK",
    "HTTP/2 200 OK",
    "HTTP/0.9 200 OK",
    "http/1.1 200 OK",
    "HTTP/1.1 099 Low",
    "HTTP/1.1 000",
    "HTTP/1.1 2000 OK",
    "HTTP/1.1 2000",
    "HTTP/1.1 20 OK",
    "HTTP/1.1 20x OK",
    "HTTP/1.1  200 OK",
    "HTTP/1.1 200 O\x00K",
    "HTTP/1.1 200 O\nK",
    " HTTP/1.1 200 OK",
    "",
  ];
  for (const line of bad) {
    assert.throws(
      () => parseResponseHead(`${line}\r\nContent-Length: 0`, "GET"),
      ProtocolError,
      JSON.stringify(line),
    );
  }
  // The edges that are valid.
  assert.equal(parse(["HTTP/1.1 100 Continue"]).status, 100);
  assert.equal(parse(["HTTP/1.0 999 Custom", "Content-Length: 0"]).status, 999);
});

Deno.test("parseResponseHead rejects every Content-Length that is not one plain decimal number", () => {
  const bad: string[][] = [
    ["Content-Length: 5", "Content-Length: 6"],
    ["Content-Length: 5, 6"],
    ["Content-Length: 5, 5", "Content-Length: 4"],
    ["Content-Length: +5"],
    ["Content-Length: -1"],
    ["Content-Length: 5x"],
    ["Content-Length: 0x5"],
    ["Content-Length: 5 5"],
    ["Content-Length: 1234567890123456"],
    ["Content-Length:"],
    ["Content-Length: 5,"],
  ];
  for (const fields of bad) {
    assert.throws(() => parse(["HTTP/1.1 200 OK", ...fields]), ProtocolError, fields.join(" | "));
  }
});

Deno.test("parseResponseHead rejects Content-Length with Transfer-Encoding and any coding but one chunked", () => {
  const bad: string[][] = [
    ["Content-Length: 5", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: chunked", "Content-Length: 5"],
    ["Transfer-Encoding: gzip, chunked"],
    ["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: chunked, chunked"],
    ["Transfer-Encoding: identity"],
    ["Transfer-Encoding: xchunked"],
  ];
  for (const fields of bad) {
    assert.throws(() => parse(["HTTP/1.1 200 OK", ...fields]), ProtocolError, fields.join(" | "));
  }
  // Even where no body follows, the head itself is refused.
  assert.throws(
    () => parse(["HTTP/1.1 200 OK", "Content-Length: 5", "Transfer-Encoding: chunked"], "HEAD"),
    ProtocolError,
  );
});

Deno.test("parseResponseHead rejects obs-fold, malformed names and control bytes in values", () => {
  const bad: [string, string[]][] = [
    ["obs-fold with a space", ["X-A: one", " two"]],
    ["obs-fold with a tab", ["X-A: one", "\ttwo"]],
    ["obs-fold holding a colon", ["X-A: one", " X-B: two"]],
    ["space before the colon", ["Content-Length : 5"]],
    ["tab before the colon", ["X-A\t: 1"]],
    ["empty header name", [": value"]],
    ["no colon at all", ["X-A value"]],
    ["space inside the name", ["X A: 1"]],
    ["non-token byte in the name", ["X-\xe9: 1"]],
    ["NUL in a value", ["X-A: a\x00b"]],
    ["NUL at the end of a value", ["X-A: ab\x00"]],
    ["bare CR in a value", ["X-A: a\rb"]],
    ["bare CR at the end of a value", ["X-A: ab\r"]],
    ["bare LF in a value", ["X-A: a\nb"]],
    ["bare LF at the end of a value", ["X-A: ab\n"]],
    ["DEL in a value", ["X-A: a\x7fb"]],
    ["ESC in a value", ["X-A: a\x1bb"]],
  ];
  for (const [what, fields] of bad) {
    assert.throws(
      () => parse(["HTTP/1.1 200 OK", ...fields, "Content-Length: 0"]),
      ProtocolError,
      what,
    );
  }
});

// ---------------------------------------------------------------------------------------
// requestHead: pure

Deno.test("requestHead writes the request line and headers exactly, and no framing without a body", () => {
  assert.equal(
    requestHead("GET", "/a/b?c=1&d=%20", { host: "example", "x-a": "1" }, false, 0),
    "GET /a/b?c=1&d=%20 HTTP/1.1\r\nhost: example\r\nx-a: 1\r\n\r\n",
  );
  // A Content-Length the client sent (GET with a body Deno dropped) is not announced.
  assert.equal(
    requestHead("GET", "/", { host: "h", "content-length": "3", accept: "*/*" }, false, 0),
    "GET / HTTP/1.1\r\nhost: h\r\naccept: */*\r\n\r\n",
  );
  assert.equal(requestHead("DELETE", "/x", {}, false, -1), "DELETE /x HTTP/1.1\r\n\r\n");
});

Deno.test("requestHead replaces the given content-length with its own framing for a body", () => {
  assert.equal(
    requestHead("POST", "/p", { host: "h", "content-length": "999", "x-b": "2" }, true, 11),
    "POST /p HTTP/1.1\r\nhost: h\r\nx-b: 2\r\ncontent-length: 11\r\n\r\n",
  );
  assert.equal(
    requestHead("PUT", "/p", { "content-length": "7" }, true, 0),
    "PUT /p HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
  );
  assert.equal(
    requestHead("POST", "/c", { host: "h", "content-length": "5" }, true, -1),
    "POST /c HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n",
  );
});

// ---------------------------------------------------------------------------------------
// latin1 / latin1Bytes: pure

Deno.test("latin1 and latin1Bytes round-trip every byte from 0 to 255", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const s = latin1(all);
  assert.equal(s.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(s.charCodeAt(i), i, `byte ${i}`);
  assert.deepEqual(latin1Bytes(s), all);
  // ASCII-only strings take the TextEncoder path; the result is the same bytes.
  assert.deepEqual(
    latin1Bytes("GET / HTTP/1.1\r\n"),
    new TextEncoder().encode("GET / HTTP/1.1\r\n"),
  );
  assert.deepEqual(latin1Bytes("caf\xe9"), new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
});

Deno.test("latin1 converts a 20,000-byte input whole, across its 8192-byte slices", () => {
  const bytes = Uint8Array.from({ length: 20_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
  const s = latin1(bytes);
  assert.equal(s.length, 20_000);
  for (let i = 0; i < bytes.length; i++) {
    if (s.charCodeAt(i) !== bytes[i]) {
      assert.fail(`char ${i} is ${s.charCodeAt(i)}, not ${bytes[i]}`);
    }
  }
  assert.deepEqual(latin1Bytes(s), bytes);
});

// ---------------------------------------------------------------------------------------
// Http1Conn against a raw TCP server

/**
 * One answer of a {@link scriptedBackend}: a string written at once, or parts written
 * `gapMs` apart, after which the backend may close the connection.
 */
type Reply = string | { parts: string[]; gapMs?: number; close?: boolean };

interface ScriptedBackend {
  port: number;
  url: string;
  /** Connections accepted. */
  connections(): number;
  /** Request heads received, over all connections. */
  requests(): number;
  close(): Promise<void>;
}

/**
 * A raw `Deno.listen` backend that answers the n-th request head on each connection with
 * `replies[n]` (the last one repeats), written as exact bytes (one byte per char, so
 * `\xe9` is the byte 0xE9). The recording backend of _raw.ts writes its answers as UTF-8
 * in one piece; these tests need single bytes above 0x7F and paced writes.
 */
function scriptedBackend(replies: Reply[]): ScriptedBackend {
  let connections = 0;
  let requests = 0;
  const server = serveTcp(async (conn) => {
    connections++;
    conn.setNoDelay(true);
    const buf = new Uint8Array(64 * 1024);
    let pending = "";
    let n = 0;
    for (;;) {
      const read = await conn.read(buf);
      if (read === null) return;
      pending += latin1(buf.subarray(0, read));
      let end;
      while ((end = pending.indexOf("\r\n\r\n")) !== -1) {
        pending = pending.slice(end + 4);
        requests++;
        const reply = replies[Math.min(n++, replies.length - 1)];
        const { parts, gapMs = 0, close = false } = typeof reply === "string"
          ? { parts: [reply] }
          : reply;
        for (let i = 0; i < parts.length; i++) {
          if (i > 0 && gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
          const bytes = latin1Bytes(parts[i]);
          for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
        }
        if (close) return;
      }
    }
  });
  return {
    port: server.port,
    url: server.url,
    connections: () => connections,
    requests: () => requests,
    close: () => server.close(),
  };
}

/** Connects an Http1Conn to a scripted backend, runs `fn`, then closes both. */
async function withConn(
  replies: Reply[],
  fn: (c: Http1Conn, be: ScriptedBackend) => Promise<void>,
): Promise<void> {
  const be = scriptedBackend(replies);
  const c = new Http1Conn(await Deno.connect({ hostname: "127.0.0.1", port: be.port }));
  try {
    await fn(c, be);
  } finally {
    c.close();
    await be.close();
  }
}

/** Sends a bodiless request on `c` and reads the response head. */
async function request(c: Http1Conn, method = "GET", path = "/"): Promise<ResponseHead> {
  await c.write(latin1Bytes(requestHead(method, path, { host: "t" }, false, 0)));
  return await c.readHead(method);
}

/** Reads the current response's body to its end, as latin1 text. */
async function body(c: Http1Conn): Promise<string> {
  let s = "";
  for (let piece = await c.readBody(); piece !== null; piece = await c.readBody()) {
    s += latin1(piece);
  }
  return s;
}

/** What `p` rejects with (the test fails when it resolves). */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail("expected a rejection");
}

const OK2 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

Deno.test("Http1Conn reads a chunked body with extensions and trailers to exactly its data, and the connection carries another request", async () => {
  const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "5;name=value\r\nhello\r\n" +
    '6 ; a="quoted;" ;b\r\n world\r\n' +
    "A\r\n0123456789\r\n" +
    "0;last=1\r\nX-Trailer: t\r\nX-Checksum: 42\r\n\r\n";
  await withConn([chunked, OK2], async (c, be) => {
    const h = await request(c);
    assert.equal(h.framing, "chunked");
    assert.equal(await body(c), "hello world0123456789");
    assert.equal(c.bodyDone, true);
    assert.equal(c.reusable, true, "trailers left unread, or keep-alive lost");
    // Trailers are dropped, never reported as headers.
    assert.deepEqual(h.rawHeaders, ["Transfer-Encoding", "chunked"]);
    const second = await request(c, "GET", "/2");
    assert.equal(second.status, 200);
    assert.equal(await body(c), "ok");
    assert.equal(c.reusable, true);
    assert.equal(be.connections(), 1);
    assert.equal(be.requests(), 2);
  });
});

Deno.test("Http1Conn skips a 100 Continue and a 103 Early Hints before the final 200", async () => {
  const reply = {
    parts: [
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\nbody",
    ],
    gapMs: 20,
  };
  await withConn([reply], async (c) => {
    const h = await request(c);
    assert.equal(h.status, 200);
    assert.deepEqual(h.rawHeaders, ["X-Final", "yes", "Content-Length", "4"]);
    assert.equal(await body(c), "body");
    assert.equal(c.reusable, true);
  });
});

Deno.test("Http1Conn refuses a 101 Switching Protocols with a ProtocolError", async () => {
  const reply = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
    "Connection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  await withConn([reply], async (c) => {
    await assert.rejects(request(c), ProtocolError);
  });
});

Deno.test("Http1Conn reads a close-delimited body to EOF and does not reuse the connection", async () => {
  const reply = {
    parts: ["HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ", "second part"],
    gapMs: 30,
    close: true,
  };
  await withConn([reply], async (c) => {
    const h = await request(c);
    assert.equal(h.framing, "close");
    assert.equal(h.keepAlive, false);
    assert.equal(await body(c), "first part, second part");
    assert.equal(c.bodyDone, true);
    assert.equal(c.reusable, false);
  });
});

Deno.test("Http1Conn does not reuse a connection with bytes after a Content-Length body", async () => {
  await withConn([`${OK2}HTTP/1.1 200 OK\r\n`], async (c) => {
    const h = await request(c);
    assert.equal(h.framing, "length");
    assert.equal(await body(c), "ok");
    assert.equal(c.bodyDone, true);
    assert.equal(c.reusable, false);
  });
  // Control: the same answer without the extra bytes leaves it reusable.
  await withConn([OK2], async (c) => {
    await request(c);
    assert.equal(await body(c), "ok");
    assert.equal(c.reusable, true);
  });
});

Deno.test("Http1Conn refuses a chunk whose data is longer than its size line says", async () => {
  const reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "3\r\nabcdef\r\n0\r\n\r\n";
  await withConn([reply], async (c) => {
    await request(c);
    await assert.rejects(body(c), ProtocolError);
    assert.equal(c.reusable, false);
  });
});

Deno.test("Http1Conn refuses a response head larger than 64 KiB", async () => {
  // A head that never ends: refused once more than MAX_HEAD_BYTES are buffered.
  const endless = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES + 1024)}`;
  await withConn([endless], async (c) => {
    await assert.rejects(request(c), ProtocolError);
  });
  // Many ordinary fields adding up to well over the limit, the end of the head included.
  const fields = Array.from({ length: 4000 }, (_, i) => `X-F${i}: ${"v".repeat(40)}\r\n`);
  const many = `HTTP/1.1 200 OK\r\n${fields.join("")}Content-Length: 0\r\n\r\n`;
  assert.ok(many.length > 2 * MAX_HEAD_BYTES);
  await withConn([many], async (c) => {
    await assert.rejects(request(c), ProtocolError);
  });
});

// The limit holds for a head that arrives whole in one read, too.
Deno.test({
  name: "Http1Conn refuses a complete response head of 70 KiB sent in one write",

  async fn() {
    const head = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70 * 1024)}\r\nContent-Length: 0\r\n\r\n`;
    await withConn([head], async (c) => {
      await assert.rejects(request(c), ProtocolError);
    });
  },
});

Deno.test("Http1Conn refuses a chunk-size line that never ends within 4 KiB", async () => {
  const reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    `3;${"x".repeat(100_000)}\r\nabc\r\n0\r\n\r\n`;
  await withConn([reply], async (c) => {
    await request(c);
    await assert.rejects(body(c), ProtocolError);
  });
});

// The line limit holds for a line that arrives whole in one read, too.
Deno.test({
  name: "Http1Conn refuses a complete 10,000-byte chunk-size line sent in one write",

  async fn() {
    const reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `3;${"x".repeat(10_000)}\r\nabc\r\n0\r\n\r\n`;
    await withConn([reply], async (c) => {
      await request(c);
      await assert.rejects(body(c), ProtocolError);
    });
  },
});

Deno.test("Http1Conn parses a head and body that arrive one byte at a time", async () => {
  const text = "HTTP/1.1 200 OK\r\nX-Slow: yes\r\nContent-Length: 5\r\n\r\nslow!";
  await withConn([{ parts: [...text], gapMs: 2 }], async (c) => {
    const h = await request(c);
    assert.equal(h.status, 200);
    assert.deepEqual(h.rawHeaders, ["X-Slow", "yes", "Content-Length", "5"]);
    assert.equal(await body(c), "slow!");
    assert.equal(c.reusable, true);
  });
});

Deno.test("Http1Conn reports EOF before any byte as ConnectionClosed with beforeResponse true", async () => {
  await withConn([{ parts: [], close: true }], async (c) => {
    const err = await failure(request(c));
    assert.ok(err instanceof ConnectionClosed, String(err));
    assert.equal(err.beforeResponse, true);
    assert.equal(c.reusable, false);
  });
});

Deno.test("Http1Conn reports EOF in the middle of a head as ConnectionClosed with beforeResponse false", async () => {
  await withConn([{ parts: ["HTTP/1.1 200 OK\r\nContent-Le"], close: true }], async (c) => {
    const err = await failure(request(c));
    assert.ok(err instanceof ConnectionClosed, String(err));
    assert.equal(err.beforeResponse, false);
    assert.equal(c.reusable, false);
  });
});

// ---------------------------------------------------------------------------------------
// Upstream: the keep-alive pool

const UPSTREAM_OPTIONS = {
  connectTimeout: 2000,
  headerTimeout: 3000,
  idleTimeout: 3000,
  poolIdleTimeout: 30_000,
};

/** The Server object lb would build for `url`. */
function serverFor(url: string): Server {
  return new ServerPool([{ url }]).servers[0];
}

/** One GET through `up`; fails the test unless response headers arrive. */
async function tryGet(up: Upstream, server: Server, path: string): Promise<UpstreamResponse> {
  const signal = new AbortController().signal;
  const r = await up.try(server, {
    method: "GET",
    path,
    headers: { host: "t" },
    body: null,
    signal,
  });
  if (!r.ok) assert.fail(`${path}: ${r.failure.kind}: ${r.failure.message}`);
  return r.res;
}

/** Reads a response's body whole (its Content-Length is known) as text. */
async function collectText(up: Upstream, res: UpstreamResponse): Promise<string> {
  assert.notEqual(res.contentLength, undefined);
  const b = await up.collect(res, res.contentLength!);
  if (b instanceof Failure) assert.fail(b.message);
  return latin1(b);
}

Deno.test("Upstream sends three sequential GETs over one kept-alive connection and keeps it idle", async () => {
  const be = startRecordingBackend();
  const up = new Upstream(UPSTREAM_OPTIONS);
  try {
    const server = serverFor(be.url);
    assert.equal(up.idleConnections, 0);
    assert.equal(await collectText(up, await tryGet(up, server, "/1")), "ok");
    assert.equal(up.idleConnections, 1);
    // discard() drains a small body in the background before parking the connection.
    up.discard(await tryGet(up, server, "/2"));
    assert.ok(await waitFor(() => up.idleConnections === 1), "discarded response not pooled");
    assert.equal(await collectText(up, await tryGet(up, server, "/3")), "ok");
    assert.equal(up.idleConnections, 1);
    assert.equal(be.connections.length, 1, `connections: ${JSON.stringify(be.connections)}`);
    assert.equal(be.requestCount(), 3);
    assert.deepEqual(
      [...be.connections[0].matchAll(/^GET (\S+) HTTP\/1\.1\r\n/gm)].map((m) => m[1]),
      ["/1", "/2", "/3"],
    );
  } finally {
    up.close();
    await be.close();
  }
  assert.equal(up.idleConnections, 0);
});

Deno.test("Upstream drops an idle connection the backend closes, without waiting for a request", async () => {
  const be = startRecordingBackend();
  const up = new Upstream(UPSTREAM_OPTIONS);
  let beOpen = true;
  try {
    const server = serverFor(be.url);
    assert.equal(await collectText(up, await tryGet(up, server, "/")), "ok");
    assert.equal(up.idleConnections, 1);
    // The backend goes away: it closes every connection it holds, the idle one included.
    beOpen = false;
    await be.close();
    assert.ok(
      await waitFor(() => up.idleConnections === 0, 2000),
      `still ${up.idleConnections} idle after the backend closed`,
    );
  } finally {
    up.close();
    if (beOpen) await be.close();
  }
});

Deno.test("Upstream does not pool a connection whose response says Connection: close", async () => {
  // The backend itself keeps the connection open: only the header says it will not serve more.
  const be = startRecordingBackend(() =>
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
  );
  const up = new Upstream(UPSTREAM_OPTIONS);
  try {
    const server = serverFor(be.url);
    assert.equal(await collectText(up, await tryGet(up, server, "/1")), "ok");
    assert.equal(up.idleConnections, 0);
    up.discard(await tryGet(up, server, "/2"));
    assert.equal(await collectText(up, await tryGet(up, server, "/3")), "ok");
    assert.equal(up.idleConnections, 0);
    assert.equal(be.connections.length, 3);
    assert.equal(be.requestCount(), 3);
    // lb closed each connection itself.
    assert.ok(await waitFor(() => be.peerClosed() === 3), `peer closed ${be.peerClosed()}`);
  } finally {
    up.close();
    await be.close();
  }
});

// ---------------------------------------------------------------------------------------
// Through a real lb

/** Starts lb in front of `backendUrl`, runs `fn` with lb's URL, then shuts lb down. */
async function withLb(backendUrl: string, fn: (lbUrl: string) => Promise<void>): Promise<void> {
  const lb = startLb({
    config: parseConfig(testYaml([backendUrl], "admin: { enabled: false }")),
    onRequest: () => {},
  });
  try {
    await fn(lb.url);
  } finally {
    await lb.shutdown(1000);
  }
}

/** The body of a chunked message, whatever chunk sizes the sender picked. */
function dechunk(body: string): string {
  let out = "";
  let rest = body;
  for (;;) {
    const nl = rest.indexOf("\r\n");
    assert.notEqual(nl, -1, `no chunk-size line in ${JSON.stringify(rest)}`);
    const size = parseInt(rest.slice(0, nl), 16);
    assert.ok(!Number.isNaN(size), `bad chunk size in ${JSON.stringify(rest)}`);
    if (size === 0) {
      assert.equal(rest.slice(nl), "\r\n\r\n", "trailers or bytes after the last chunk");
      return out;
    }
    out += rest.slice(nl + 2, nl + 2 + size);
    assert.equal(rest.slice(nl + 2 + size, nl + 4 + size), "\r\n");
    rest = rest.slice(nl + 4 + size);
  }
}

Deno.test("a GET that arrives with Content-Length: 3 and a body reaches the backend with neither", async () => {
  const be = startRecordingBackend();
  try {
    await withLb(be.url, async (lbUrl) => {
      const r = await rawExchange(
        lbUrl,
        "GET /g HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        { timeoutMs: 3000, until: hasFullResponse },
      );
      assert.equal(parseHead(r.text)?.status, 200, r.text);
      assert.ok(await waitFor(() => be.requestCount() === 1), be.all());
      const seen = be.all();
      assert.match(seen, /^GET \/g HTTP\/1\.1\r\n/);
      assert.doesNotMatch(seen, /\r\ncontent-length:/i);
      assert.doesNotMatch(seen, /\r\ntransfer-encoding:/i);
      // The head is all there is: no body bytes after it.
      assert.equal(seen.indexOf("\r\n\r\n"), seen.length - 4, JSON.stringify(seen));
    });
  } finally {
    await be.close();
  }
});

Deno.test("a POST with a chunked body and no Content-Length reaches the backend chunked with the same bytes", async () => {
  const be = startRecordingBackend();
  const sent = "first piece;" + "x".repeat(3000) + ";last piece";
  try {
    await withLb(be.url, async (lbUrl) => {
      const r = await rawExchange(
        lbUrl,
        [
          "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
          `c\r\n${sent.slice(0, 12)}\r\n`,
          `${(sent.length - 12).toString(16)}\r\n${sent.slice(12)}\r\n0\r\n\r\n`,
        ],
        { timeoutMs: 3000, gapMs: 30, until: hasFullResponse },
      );
      assert.equal(parseHead(r.text)?.status, 200, r.text);
      assert.ok(await waitFor(() => be.requestCount() === 1), be.all());
      const seen = be.all();
      const end = seen.indexOf("\r\n\r\n");
      const head = seen.slice(0, end);
      assert.match(head, /^POST \/p HTTP\/1\.1\r\n/);
      assert.equal([...head.matchAll(/\r\ntransfer-encoding: chunked(\r\n|$)/gi)].length, 1, head);
      assert.doesNotMatch(head, /\r\ncontent-length:/i);
      assert.equal(dechunk(seen.slice(end + 4)), sent);
    });
  } finally {
    await be.close();
  }
});

Deno.test("a response header value with bytes 0x80-0xFF reaches the client byte for byte", async () => {
  const value = "caf\xe9 na\xefve \xa0\xff\x80\xa0";
  const be = scriptedBackend([
    `HTTP/1.1 200 OK\r\nX-Latin: ${value}\r\nSet-Cookie: a=\xe9\r\nSet-Cookie: b=2\r\n` +
    "Content-Length: 2\r\n\r\nok",
  ]);
  try {
    await withLb(be.url, async (lbUrl) => {
      const r = await rawExchange(lbUrl, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", {
        timeoutMs: 3000,
        until: hasFullResponse,
      });
      const text = latin1(r.bytes);
      assert.match(text, /^HTTP\/1\.1 200 /, text);
      const got = /\r\nx-latin: ([^\r]*)\r\n/i.exec(text)?.[1];
      assert.equal(got, value, `x-latin arrived as ${JSON.stringify(got)}`);
      assert.deepEqual(
        [...text.matchAll(/\r\nset-cookie: ([^\r]*)/gi)].map((m) => m[1]),
        ["a=\xe9", "b=2"],
      );
      assert.ok(text.endsWith("\r\n\r\nok"), text);
    });
  } finally {
    await be.close();
  }
});

Deno.test("a small POST reaches the backend with head and body in one write", async () => {
  // One write (one segment on loopback) means a backend that answers without reading the
  // body still has all of it, so it keeps the connection (Deno.serve closes it otherwise).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const firstReads: string[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(65536);
      const n = await conn.read(buf);
      firstReads.push(latin1(buf.subarray(0, n ?? 0)));
      await conn.write(
        latin1Bytes("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"),
      );
      conn.close();
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  // lb in its own process, so the backend can read between two writes if lb made two.
  const lbPort = freePort();
  const lb = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/main.ts",
      "serve",
      "--port",
      String(lbPort),
      "--backend",
      `http://127.0.0.1:${port}`,
      "--admin-port",
      "0",
      "--log-format",
      "json",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const up = await waitFor(
      () =>
        fetch(`http://127.0.0.1:${lbPort}/up`).then(async (r) => {
          await r.body?.cancel();
          return true;
        }, () => false),
      15_000,
    );
    assert.ok(up, "lb did not start");
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`http://127.0.0.1:${lbPort}/form`, {
        method: "POST",
        body: `field=${i}`,
      });
      assert.equal(await res.text(), "ok");
    }
    // Health checks (GET /health) and the start-up probe (GET /up) come here too.
    const posts = firstReads.filter((r) => r.startsWith("POST "));
    assert.equal(posts.length, 5);
    for (const [i, r] of posts.entries()) {
      assert.ok(
        r.endsWith(`\r\n\r\nfield=${i}`),
        `request ${i}'s first read: ${JSON.stringify(r)}`,
      );
    }
  } finally {
    lb.kill("SIGTERM");
    await lb.status;
    listener.close();
    await serving.catch(() => {});
  }
});
