/**
 * Faults from backends and clients: a silent backend (504, nobody else blocked), invalid
 * response framing (502), a backend that dies mid-body (the client connection is aborted),
 * a client that leaves mid-upload (the upstream request is cancelled, nothing in CLOSE-WAIT).
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import {
  type Answer,
  connectTo,
  parseHead,
  rawExchange,
  readFor,
  type RecordingBackend,
  startRecordingBackend,
  testYaml,
  waitFor,
  writeAll,
} from "../_raw.ts";

const FAST = "retry: { attempts: 1 }\ntimeouts: { header: 300ms, idle: 300ms }";

async function withLb(
  respond: (head: string) => Answer,
  fn: (url: string, be: RecordingBackend, recs: RequestRecord[]) => Promise<void>,
  extra = FAST,
) {
  const be = startRecordingBackend(respond);
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(testYaml([be.url], `admin: { enabled: false }\n${extra}`)),
    onRequest: (r) => recs.push(r),
  });
  try {
    await fn(lb.url, be, recs);
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;
const answered = { timeoutMs: 3000, until: (t: string) => /\r\n\r\n[\s\S]*\}\n$/.test(t) };

Deno.test("a backend that never answers gets 504 after timeouts.header, and other requests go on meanwhile", async () => {
  await withLb(
    (head) =>
      head.startsWith("GET /silent") ? undefined : "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    async (url, _be, recs) => {
      const silent = rawExchange(url, get("/silent"), answered);
      const others: Promise<number>[] = [];
      for (let i = 0; i < 20; i++) {
        others.push(
          fetch(`${url}/fast/${i}`).then(async (r) => {
            await r.text();
            return r.status;
          }),
        );
      }
      assert.deepEqual(await Promise.all(others), Array(20).fill(200));
      // The fast ones finished while the silent one was still waiting.
      assert.equal(recs.filter((r) => r.path === "/silent").length, 0);
      const r = await silent;
      const head = parseHead(r.text);
      assert.equal(head?.status, 504, r.text);
      assert.match(head!.rest, /gateway_timeout/);
    },
  );
});

const BAD_RESPONSES: [string, string][] = [
  [
    "two different Content-Length values",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
  ],
  [
    "Content-Length with Transfer-Encoding",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  ],
  ["an obs-folded header", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"],
  ["a bare CR inside a header", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok"],
  ["no status line at all", "HELLO THERE\r\n\r\n"],
  ["a malformed status code", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"],
  [
    "a bad chunk size",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
  ],
];

Deno.test("a backend response with invalid framing becomes 502", async (t) => {
  for (const [name, bad] of BAD_RESPONSES) {
    await t.step(name, async () => {
      await withLb(() => ({ write: bad, close: true }), async (url) => {
        // Read until lb's JSON error body is complete, or the connection closes.
        const r = await rawExchange(url, get("/"), answered);
        const head = parseHead(r.text);
        if (head?.status === 200) {
          // A head that parsed fine was forwarded before the broken body showed: then the
          // body must be cut off and the connection closed, never a complete response.
          assert.equal(name, "a bad chunk size", `${name}: forwarded as 200`);
          assert.ok(r.closed, "the connection stayed open");
          assert.ok(!/(^|\r\n)0\r\n\r\n$/.test(head.rest), "the broken body was completed");
          return;
        }
        assert.equal(head?.status, 502, `${name}:\n${r.text}`);
      });
    });
  }
});

Deno.test("a backend that dies mid-body makes lb abort the client connection, never completing the body", async (t) => {
  const cases: [string, string][] = [
    [
      // Over 64 KiB, so lb streams it rather than reading it whole first.
      "Content-Length body cut short",
      "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + "x".repeat(100),
    ],
    [
      "chunked body without its last chunk",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + "x".repeat(100) + "\r\n",
    ],
  ];
  for (const [name, partial] of cases) {
    await t.step(name, async () => {
      await withLb(() => ({ write: partial, close: true }), async (url, _be, recs) => {
        const r = await rawExchange(url, get("/"), { timeoutMs: 3000 });
        assert.ok(r.closed, "the client connection stayed open");
        const head = parseHead(r.text);
        assert.equal(head?.status, 200, r.text);
        const cl = head!.headers.get("content-length")?.[0];
        if (cl !== undefined) assert.ok(head!.rest.length < Number(cl), "the body looks complete");
        else assert.ok(!/(^|\r\n)0\r\n\r\n$/.test(head!.rest), "the chunked body was terminated");
        await waitFor(() => recs.length === 1);
        assert.equal(recs[0].error, "upstream closed mid-body");
      });
    });
  }
});

Deno.test("a small body that a backend cuts short is answered 502, since lb reads small bodies whole first", async () => {
  await withLb(
    () => ({
      write: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + "x".repeat(100),
      close: true,
    }),
    async (url, _be, recs) => {
      const r = await rawExchange(url, get("/"), { timeoutMs: 3000 });
      const head = parseHead(r.text);
      assert.equal(head?.status, 502, r.text);
      assert.doesNotMatch(head!.rest, /xxxx/, "none of the cut body reached the client");
      await waitFor(() => recs.length === 1);
      assert.match(recs[0].error ?? "", /upstream closed mid-body/);
    },
  );
});

/** Sockets in CLOSE-WAIT on any of `ports` (either end). */
async function closeWait(ports: number[]): Promise<string[]> {
  const filter = ports.map((p) => `sport = :${p} or dport = :${p}`).join(" or ");
  const out = await new Deno.Command("ss", {
    args: ["-tnH", "state", "close-wait", `( ${filter} )`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim());
}

Deno.test("a client that disconnects mid-upload cancels the upstream request and leaves nothing in CLOSE-WAIT", async () => {
  await withLb(
    () => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    async (url, be, recs) => {
      const lbPort = Number(new URL(url).port);
      const conn = await connectTo(url);
      await writeAll(
        conn,
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" +
          "x".repeat(64 * 1024),
      );
      // Wait until the upload is flowing to the backend (well past 1 KB), then leave.
      assert.ok(await waitFor(() => (be.connections[0]?.length ?? 0) > 16 * 1024, 3000));
      conn.close();
      assert.ok(
        await waitFor(() => be.peerClosed() === 1, 5000),
        "the upstream connection was not closed after the client left",
      );
      assert.ok(await waitFor(() => recs.length === 1, 3000));
      assert.equal(recs[0].status, 499);
      let stuck: string[] = [];
      const gone = await waitFor(
        async () => (stuck = await closeWait([lbPort, be.port])).length === 0,
        5000,
      );
      assert.ok(gone, `sockets left in CLOSE-WAIT:\n${stuck.join("\n")}`);
    },
    "timeouts: { header: 10s, idle: 10s }",
  );
});

Deno.test("a client that disconnects while waiting for a slow response cancels the upstream request", async () => {
  await withLb(
    () => undefined,
    async (url, be, recs) => {
      const conn = await connectTo(url);
      await writeAll(conn, get("/slow"));
      const reading = readFor(conn, { timeoutMs: 300 });
      await reading;
      conn.close();
      assert.ok(await waitFor(() => be.peerClosed() === 1, 5000), "the upstream request lived on");
      assert.ok(await waitFor(() => recs.length === 1, 3000));
      assert.equal(recs[0].status, 499);
      let stuck: string[] = [];
      const gone = await waitFor(
        async () => (stuck = await closeWait([Number(new URL(url).port), be.port])).length === 0,
        5000,
      );
      assert.ok(gone, `sockets left in CLOSE-WAIT:\n${stuck.join("\n")}`);
    },
    "timeouts: { header: 10s, idle: 10s }",
  );
});
