/**
 * Header rules against hostile clients: Host, absolute-form targets, CONNECT, forwarding
 * headers from untrusted and trusted peers, hop-by-hop tricks, HTTP/2 prior knowledge.
 * Raw bytes to a real lb in front of a raw backend that records what it received.
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

interface Ctx {
  url: string;
  be: RecordingBackend;
  recs: RequestRecord[];
  /** Sends raw bytes; waits for one full answer or a close. */
  send(raw: string): Promise<RawResult>;
  /** The head of the last request the backend received (lower-cased names). */
  lastSeen(): { line: string; headers: Map<string, string[]> };
}

async function withLb(extraYaml: string, fn: (c: Ctx) => Promise<void>) {
  const be = startRecordingBackend();
  const recs: RequestRecord[] = [];
  const lb = startLb({
    config: parseConfig(testYaml([be.url], `admin: { enabled: false }\n${extraYaml}`)),
    onRequest: (r) => recs.push(r),
  });
  const send = (raw: string) =>
    rawExchange(lb.url, raw, {
      timeoutMs: 2000,
      until: (t) => {
        const h = parseHead(t);
        if (!h) return false;
        const cl = Number(h.headers.get("content-length")?.[0] ?? -1);
        return cl >= 0 && h.rest.length >= cl;
      },
    });
  const lastSeen = () => {
    const all = be.all();
    const heads = [...all.matchAll(/(?<=^|\n)([A-Z]+ \S+ HTTP\/1\.1)\r\n([\s\S]*?)\r\n\r\n/g)];
    const m = heads.at(-1);
    assert.ok(m, `the backend received no request:\n${all}`);
    const headers = new Map<string, string[]>();
    for (const l of m[2].split("\r\n")) {
      const c = l.indexOf(":");
      const k = l.slice(0, c).toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), l.slice(c + 1).trim()]);
    }
    return { line: m[1], headers };
  };
  try {
    await fn({ url: lb.url, be, recs, send, lastSeen });
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
}

Deno.test("a Host that is missing, duplicated, empty or not host[:port] gets 400 and reaches no backend", async (t) => {
  await withLb("", async ({ send, be }) => {
    const cases: [string, string][] = [
      ["missing on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n"],
      ["missing on HTTP/1.0", "GET / HTTP/1.0\r\n\r\n"],
      ["duplicated", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"],
      ["duplicated with the same value", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"],
      ["empty", "GET / HTTP/1.1\r\nHost: \r\n\r\n"],
      ["with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"],
      ["with a control byte", "GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n"],
      ["with a tab inside", "GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n"],
      ["with userinfo", "GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n"],
      ["with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"],
      ["with a comma", "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"],
      ["with a port past 65535", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"],
      ["with a non-numeric port", "GET / HTTP/1.1\r\nHost: a:http\r\n\r\n"],
      ["with a non-ASCII byte", "GET / HTTP/1.1\r\nHost: caf\xe9.example\r\n\r\n"],
    ];
    for (const [name, raw] of cases) {
      await t.step(name, async () => {
        const before = be.requestCount();
        const res = await send(raw);
        assert.equal(statuses(res.text)[0], 400, `${name}:\n${res.text}`);
        assert.equal(be.requestCount(), before, `${name}: reached the backend`);
      });
    }
  });
});

Deno.test("an absolute-form target reaches only the configured backend, with its path and one Host", async () => {
  await withLb("", async ({ send, be, lastSeen }) => {
    const r = await send("GET http://169.254.169.254/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n");
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    let seen = lastSeen();
    assert.equal(seen.line, "GET / HTTP/1.1");
    assert.deepEqual(seen.headers.get("host"), ["169.254.169.254"]);

    // A Host that disagrees with the target: the target's authority wins (RFC 9112 §3.2.2).
    const r2 = await send(
      "GET http://169.254.169.254/latest/meta-data?x=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    );
    assert.equal(parseHead(r2.text)?.status, 200, r2.text);
    seen = lastSeen();
    assert.equal(seen.line, "GET /latest/meta-data?x=1 HTTP/1.1");
    assert.deepEqual(seen.headers.get("host"), ["169.254.169.254"]);
    assert.deepEqual(seen.headers.get("x-forwarded-host"), ["169.254.169.254"]);
    assert.equal(be.requestCount(), 2);

    // Userinfo in the target's authority is refused.
    const before = be.requestCount();
    const r3 = await send("GET http://user:pw@evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(statuses(r3.text)[0], 400, r3.text);
    assert.equal(be.requestCount(), before);
  });
});

Deno.test("routing by host uses the authority the backend will see, not a Host that disagrees with the target", async () => {
  const routes = "routes:\n  - match: { host: a.example }\n    pool: default";
  await withLb(routes, async ({ send, be, lastSeen }) => {
    const r = await send("GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert.equal(parseHead(r.text)?.status, 404, r.text);
    assert.match(r.text, /"code":"no_route"/);
    assert.equal(be.requestCount(), 0);
    const r2 = await send("GET http://a.example/y HTTP/1.1\r\nHost: b.example\r\n\r\n");
    assert.equal(parseHead(r2.text)?.status, 200, r2.text);
    assert.deepEqual(lastSeen().headers.get("host"), ["a.example"]);
  });
});

Deno.test("with path routes, a path spelled another way takes the route of its normal form and reaches the backend in that form", async () => {
  const routes = [
    "routes:",
    "  - match: { path: /static/ }",
    "    pool: default",
    "    headers: { request: { set: { x-route: static } } }",
    "  - pool: default",
  ].join("\n");
  await withLb(routes, async ({ send, lastSeen }) => {
    const cases: [string, string, string | undefined][] = [
      ["/static/../admin", "/admin", undefined],
      ["/%73tatic/a?x=/../", "/static/a?x=/../", "static"],
      ["/x/%2e%2e/static/b", "/static/b", "static"],
      ["/static%2F..%2Fadmin", "/static%2F..%2Fadmin", undefined],
    ];
    for (const [target, seenPath, route] of cases) {
      const r = await send(`GET ${target} HTTP/1.1\r\nHost: a.example\r\n\r\n`);
      assert.equal(parseHead(r.text)?.status, 200, r.text);
      const seen = lastSeen();
      assert.equal(seen.line, `GET ${seenPath} HTTP/1.1`, target);
      assert.deepEqual(seen.headers.get("x-route"), route && [route], target);
    }
  });
});

Deno.test("CONNECT gets 405 with Allow, and the bytes tunnelled after it reach no backend", async () => {
  await withLb("", async ({ url, be }) => {
    const res = await rawExchange(
      url,
      "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n" +
        "GET /tunnelled HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
      { timeoutMs: 2000, until: (t) => statuses(t).length >= 2 },
    );
    // The tunnelled request is refused too: the connection is dead to lb.
    assert.deepEqual(statuses(res.text), [405, 400], res.text);
    const head = parseHead(res.text);
    assert.equal(head?.status, 405, res.text);
    assert.match(head!.headers.get("allow")?.[0] ?? "", /GET/);
    assert.equal(head!.headers.get("connection")?.[0], "close");
    assert.equal(be.requestCount(), 0);
    assert.ok(!be.all().includes("/tunnelled"));
  });
});

const SPOOF = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n" +
  "X-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n";

Deno.test("forwarding headers from an untrusted client are replaced, and lb's client is the socket peer", async () => {
  await withLb("", async ({ send, lastSeen, recs }) => {
    const r = await send(`GET /who HTTP/1.1\r\nHost: app.example\r\n${SPOOF}\r\n`);
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    const h = lastSeen().headers;
    assert.deepEqual(h.get("x-forwarded-for"), ["127.0.0.1"]);
    assert.deepEqual(h.get("x-forwarded-host"), ["app.example"]);
    assert.deepEqual(h.get("x-forwarded-proto"), ["http"]);
    assert.equal(h.get("forwarded"), undefined);
    assert.equal(h.get("x-real-ip"), undefined);
    await waitFor(() => recs.length === 1);
    assert.equal(recs[0].client, "127.0.0.1");
  });
});

Deno.test("forwarding headers from a trusted proxy are kept and extended, and the client comes from X-Forwarded-For", async () => {
  await withLb('trustedProxies: ["127.0.0.1/32"]', async ({ send, lastSeen, recs }) => {
    const r = await send(`GET /who HTTP/1.1\r\nHost: app.example\r\n${SPOOF}\r\n`);
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    const h = lastSeen().headers;
    assert.deepEqual(h.get("x-forwarded-for"), ["6.6.6.6, 127.0.0.1"]);
    assert.deepEqual(h.get("x-forwarded-host"), ["evil.example"]);
    assert.deepEqual(h.get("x-forwarded-proto"), ["https"]);
    assert.deepEqual(h.get("forwarded"), ["for=6.6.6.6;proto=https"]);
    await waitFor(() => recs.length === 1);
    assert.equal(recs[0].client, "6.6.6.6");
  });
});

Deno.test("Connection: x-forwarded-for cannot erase the X-Forwarded-For lb adds", async () => {
  await withLb("", async ({ send, lastSeen }) => {
    const r = await send(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-forwarded-for, x-request-id, via\r\n" +
        "X-Forwarded-For: 6.6.6.6\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
        "Proxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n",
    );
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    const h = lastSeen().headers;
    assert.deepEqual(h.get("x-forwarded-for"), ["127.0.0.1"]);
    assert.deepEqual(h.get("via"), ["1.1 lb"]);
    assert.equal(h.get("x-request-id")?.length, 1);
    for (const hop of ["keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"]) {
      assert.equal(h.get(hop), undefined, `${hop} crossed lb`);
    }
  });
});

const UNDERSCORED = "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" +
  "Transfer_Encoding: chunked\r\nX_Forwarded_For: 6.6.6.6\r\nX-Plain: yes\r\n\r\nhello";

Deno.test("header names with an underscore are dropped by default and counted, so a CGI server never sees Transfer_Encoding", async () => {
  await withLb("", async ({ send, lastSeen, recs }) => {
    const r = await send(UNDERSCORED);
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    const h = lastSeen().headers;
    assert.equal(h.get("transfer_encoding"), undefined);
    assert.equal(h.get("x_forwarded_for"), undefined);
    assert.equal(h.get("transfer-encoding"), undefined);
    assert.deepEqual(h.get("content-length"), ["5"]);
    assert.deepEqual(h.get("x-plain"), ["yes"]);
    await waitFor(() => recs.length === 1);
    assert.equal(recs[0].droppedHeaders, 2);
  });
});

Deno.test("underscoreHeaders: keep forwards them; reject refuses the request with 400 before any backend", async () => {
  await withLb("underscoreHeaders: keep", async ({ send, lastSeen }) => {
    const r = await send(UNDERSCORED);
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    assert.deepEqual(lastSeen().headers.get("transfer_encoding"), ["chunked"]);
  });
  await withLb("underscoreHeaders: reject", async ({ send, be }) => {
    const r = await send(UNDERSCORED);
    const head = parseHead(r.text);
    assert.equal(head?.status, 400, r.text);
    assert.match(head!.rest, /underscores are refused/);
    assert.equal(be.all(), "", "no backend saw the request");
  });
});

Deno.test("odd paths reach the backend exactly as the client sent them", async () => {
  await withLb("", async ({ send, lastSeen }) => {
    const path = "/a/../b/%2e%2e/%2F/c\\d//e;x?q=%00&r=../..";
    const r = await send(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assert.equal(parseHead(r.text)?.status, 200, r.text);
    assert.equal(lastSeen().line, `GET ${path} HTTP/1.1`);
  });
});

Deno.test("HTTP/2 prior knowledge is served with the same header rules, Host taken from :authority", async () => {
  await withLb("", async ({ url, lastSeen }) => {
    const out = await new Deno.Command("nghttp", {
      args: ["-v", "-H", "x-forwarded-for: 6.6.6.6", "-H", "host: evil.example", `${url}/h2?x=1`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    assert.match(text, /:status: 200/);
    const seen = lastSeen();
    assert.equal(seen.line, "GET /h2?x=1 HTTP/1.1");
    assert.deepEqual(seen.headers.get("host"), [new URL(url).host]);
    assert.deepEqual(seen.headers.get("x-forwarded-for"), ["127.0.0.1"]);
  });
});
