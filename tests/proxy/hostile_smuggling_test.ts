/**
 * Request smuggling (RFC 9112 §6.1, §6.3, §11.2), sent as raw bytes to a real lb in front of
 * a raw backend that records every byte it receives.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import {
  parseHead,
  rawExchange,
  type RawResult,
  type RecordingBackend,
  startRecordingBackend,
  statuses,
  testYaml,
  waitFor,
} from "../_raw.ts";

/** A request that would be a second, hidden request if someone framed the body differently. */
const HIDDEN = "GET /hidden HTTP/1.1\r\nHost: a\r\n\r\n";
/** A pipelined request sent right after the malicious one, on the same connection. */
const AFTER = "GET /after HTTP/1.1\r\nHost: a\r\n\r\n";

async function withLb(
  fn: (
    send: (raw: string | string[], responses?: number) => Promise<RawResult>,
    be: RecordingBackend,
    recs: RequestRecord[],
  ) => Promise<void>,
) {
  const be = startRecordingBackend();
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(testYaml([be.url], "admin: { enabled: false }")),
    onRequest: (r) => recs.push(r),
  });
  try {
    await fn(
      (raw, responses) =>
        rawExchange(lb.url, raw, {
          timeoutMs: 1500,
          gapMs: 50,
          until: responses
            ? (text) => statuses(text).length >= responses && text.endsWith("ok")
            : undefined,
        }),
      be,
      recs,
    );
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
}

/** The smuggling attempts lb must refuse: each body hides HIDDEN under some other framing. */
const REFUSED: [string, string | string[]][] = [
  [
    "CL.TE: Content-Length and Transfer-Encoding together",
    `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${
      5 + HIDDEN.length
    }\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "TE.CL: Transfer-Encoding first, then a short Content-Length",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${
      HIDDEN.length.toString(16)
    }\r\n${HIDDEN}\r\n0\r\n\r\n`,
  ],
  [
    "Transfer-Encoding: chunked, chunked",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding: xchunked",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding: gzip, chunked",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding split over two lines (gzip, then chunked)",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding with a space before the colon",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding on HTTP/1.0",
    `POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding continued by obs-fold",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
  ],
  [
    "Transfer-Encoding: identity",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n${HIDDEN}`,
  ],
  [
    "two different Content-Length values",
    `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
  ],
  [
    "a Content-Length list of different values",
    `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0, ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
  ],
  ["Content-Length: +3", `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc${HIDDEN}`],
  ["Content-Length: 45x", `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 45x\r\n\r\n${HIDDEN}`],
  ["Content-Length: -1", `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n${HIDDEN}`],
  [
    "a Content-Length beyond 2^64",
    `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n${HIDDEN}`,
  ],
  [
    "a chunk size that overflows 64 bits",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\n${HIDDEN}\r\n0\r\n\r\n`,
  ],
  [
    "a chunk with more data than its size says",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc${HIDDEN}\r\n0\r\n\r\n`,
  ],
  [
    "a chunk with more data than its size says, after a good chunk already forwarded",
    [
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
      `3\r\nabc${HIDDEN}\r\n0\r\n\r\n`,
    ],
  ],
  [
    "a 100 KB chunk extension",
    `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;${
      "x".repeat(100_000)
    }\r\nabc\r\n0\r\n\r\n`,
  ],
];

Deno.test("every smuggling variant is refused and the backend never sees a complete request", async (t) => {
  await withLb(async (send, be) => {
    for (const [name, raw] of REFUSED) {
      await t.step(name, async () => {
        const before = be.requestCount();
        const parts = Array.isArray(raw) ? [...raw] : [raw];
        parts[parts.length - 1] += AFTER;
        const r = await send(parts);
        const st = statuses(r.text);
        // Either a 400 (Deno's or lb's) or, for broken chunk framing, a silent close.
        if (st.length > 0) {
          assert.equal(st[0], 400, `${name}: status ${st[0]}\n${r.text}`);
        } else assert.ok(r.closed, `${name}: neither an answer nor a close`);
        // The connection ends, or every further request on it is refused too.
        assert.ok(
          r.closed || st.every((s) => s === 400),
          `${name}: the connection went on serving: ${st}`,
        );
        const head = parseHead(r.text);
        if (head && !r.closed) assert.equal(head.headers.get("connection")?.[0], "close");
        assert.equal(be.requestCount(), before, `${name}: a complete request reached the backend`);
        assert.ok(!be.all().includes("/hidden"), `${name}: the hidden request reached the backend`);
        assert.ok(!be.all().includes("/after"), `${name}: the follow-up reached the backend`);
      });
    }
  });
});

Deno.test("identical duplicate Content-Length headers reach the backend as one", async () => {
  await withLb(async (send, be) => {
    const r = await send(
      "POST /dup HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
      1,
    );
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    await waitFor(() => be.requestCount() === 1);
    const seen = be.all();
    assert.equal([...seen.matchAll(/\r\ncontent-length:/gi)].length, 1, seen);
    assert.match(seen, /\r\ncontent-length: 3\r\n/i);
    assert.ok(!/transfer-encoding/i.test(seen), seen);
    assert.ok(seen.endsWith("\r\n\r\nabc"), seen);
  });
});

Deno.test("a chunked body reaches the backend with exactly one framing", async () => {
  await withLb(async (send, be) => {
    const r = await send(
      "POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      1,
    );
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    await waitFor(() => be.requestCount() === 1);
    const seen = be.all();
    assert.equal([...seen.matchAll(/\r\ntransfer-encoding:/gi)].length, 1, seen);
    assert.ok(!/content-length/i.test(seen), seen);
    const body = seen.slice(seen.indexOf("\r\n\r\n") + 4);
    // Whatever chunk sizes lb picks, the de-chunked body is the client's.
    let decoded = "";
    let rest = body;
    for (;;) {
      const nl = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, nl), 16);
      if (size === 0) break;
      decoded += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    assert.equal(decoded, "abcde");
  });
});

Deno.test("a chunked body with a zero-size chunk and a pipelined request yields two requests, not one hidden", async () => {
  await withLb(async (send, be) => {
    const r = await send(
      "POST /one HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
        "GET /two HTTP/1.1\r\nHost: a\r\n\r\n",
      2,
    );
    assert.deepEqual(statuses(r.text), [200, 200], r.text);
    await waitFor(() => be.requestCount() === 2);
    const seen = be.all();
    // Each arrives as its own request with its own head: no body carries the other.
    assert.match(seen, /^POST \/one HTTP\/1\.1\r\n/m);
    assert.match(seen, /^GET \/two HTTP\/1\.1\r\n/m);
    assert.equal(be.requestCount(), 2);
  });
});
