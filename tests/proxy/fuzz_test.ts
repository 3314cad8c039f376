/**
 * Request fuzzing: a few thousand randomly mutated raw requests (seeded, so a failure can be
 * replayed, and bounded in time). lb must never crash or fail internally, and must answer
 * each with a well-formed status line, close the connection, or wait for the rest of a
 * request that is merely incomplete.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import { connectTo, readFor, startRecordingBackend, testYaml, writeAll } from "../_raw.ts";
import { prng } from "../_stack.ts";

const SEED = 0x1b_2026;
const MAX_REQUESTS = 3000;
const TIME_BOX_MS = 12_000;
const WORKERS = 24;

const SEEDS = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /path/x?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n",
  "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
  "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  "PUT /x HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
  "GET http://a/abs HTTP/1.1\r\nHost: a\r\n\r\n",
  "DELETE /x HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for, close\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
  "HEAD / HTTP/1.1\r\nHost: a\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\r\n",
  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
];

const NASTY = [
  "\r",
  "\n",
  "\r\n",
  " ",
  "\t",
  ":",
  "\0",
  "\x7f",
  "\xff",
  "%",
  "/",
  "\\",
  "@",
  ",",
  ";",
  "0",
  "-1",
  "chunked",
  "Content-Length: 2\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Host: b\r\n",
  "\r\n\r\n",
  "HTTP/1.1",
  "FFFFFFFFFFFFFFFF",
  "CONNECT",
];

/** One mutated request, as bytes (latin1: every char code is a byte). */
function mutate(r: () => number): Uint8Array {
  let s = SEEDS[Math.floor(r() * SEEDS.length)];
  const rounds = 1 + Math.floor(r() * 4);
  for (let k = 0; k < rounds; k++) {
    const i = Math.floor(r() * (s.length + 1));
    const op = Math.floor(r() * 8);
    if (op === 0) s = s.slice(0, i) + NASTY[Math.floor(r() * NASTY.length)] + s.slice(i);
    else if (op === 1) s = s.slice(0, i) + s.slice(i + 1 + Math.floor(r() * 8));
    else if (op === 2) {
      s = s.slice(0, i) + String.fromCharCode(Math.floor(r() * 256)) + s.slice(i + 1);
    } else if (op === 3) {
      // Duplicate a header line.
      const lines = s.split("\r\n");
      const j = 1 + Math.floor(r() * Math.max(1, lines.length - 3));
      lines.splice(j, 0, lines[j] ?? "");
      s = lines.join("\r\n");
    } else if (op === 4) {
      // Repeat a slice many times (oversized pieces).
      const piece = s.slice(i, i + 1 + Math.floor(r() * 6));
      s = s.slice(0, i) + piece.repeat(1 + Math.floor(r() * 3000)) + s.slice(i);
    } else if (op === 5) s = s.slice(0, i); // truncated
    else if (op === 6) {
      // Splice in a piece of another seed.
      const o = SEEDS[Math.floor(r() * SEEDS.length)];
      const j = Math.floor(r() * o.length);
      s = s.slice(0, i) + o.slice(j, j + Math.floor(r() * 40)) + s.slice(i);
    } else s = s.toLowerCase();
  }
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}

const STATUS_LINE = /^HTTP\/1\.[01] [1-5]\d\d [^\r\n]*\r\n/;

Deno.test("thousands of mutated raw requests never crash lb, and each gets a valid status line, a close, or a wait", async () => {
  const be = startRecordingBackend();
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(testYaml(
      [be.url],
      "admin: { enabled: false }\nlimits: { maxBodyBytes: 64KiB }\ntimeouts: { header: 2s }",
    )),
    onRequest: (r) => recs.push(r),
  });
  const r = prng(SEED);
  const outcomes = { answered: 0, closed: 0, waiting: 0 };
  const statuses = new Map<number, number>();
  const bad: string[] = [];
  let sent = 0;
  const deadline = Date.now() + TIME_BOX_MS;
  try {
    const worker = async () => {
      while (sent < MAX_REQUESTS && Date.now() < deadline && bad.length === 0) {
        const n = sent++;
        const bytes = mutate(r);
        const conn = await connectTo(lb.url);
        try {
          await writeAll(conn, bytes);
          const res = await readFor(conn, {
            timeoutMs: 250,
            until: (t) => t.length > 0 && /\r\n\r\n/.test(t),
          });
          if (res.text.length === 0) {
            if (res.closed) outcomes.closed++;
            else outcomes.waiting++;
            continue;
          }
          const m = STATUS_LINE.exec(res.text);
          if (!m) {
            bad.push(
              `#${n}: ${JSON.stringify(res.text.slice(0, 200))} for ${
                JSON.stringify(new TextDecoder("latin1").decode(bytes).slice(0, 300))
              }`,
            );
            continue;
          }
          outcomes.answered++;
          const code = Number(res.text.slice(9, 12));
          statuses.set(code, (statuses.get(code) ?? 0) + 1);
          if (code === 500) {
            bad.push(
              `#${n}: lb failed internally: ${JSON.stringify(res.text.slice(0, 400))} for ${
                JSON.stringify(new TextDecoder("latin1").decode(bytes).slice(0, 300))
              }`,
            );
          }
        } finally {
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    assert.deepEqual(bad, []);
    assert.ok(sent >= 1000, `only ${sent} requests in the time box`);
    // The mix really exercised both paths: refusals and forwarded requests.
    assert.ok((statuses.get(400) ?? 0) > 50, `statuses: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(200) ?? 0) > 50, `statuses: ${JSON.stringify([...statuses])}`);
    assert.ok(outcomes.answered + outcomes.closed + outcomes.waiting === sent);

    // lb is still healthy: an ordinary request works.
    const res = await fetch(`${lb.url}/after-the-fuzz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok");
  } finally {
    await lb.shutdown(2000);
    await be.close();
  }
});
