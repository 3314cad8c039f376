/**
 * A backend that sends a second, unsolicited response on a keep-alive connection some time
 * after the first (late or misframed bytes): lb must never hand those bytes to the next
 * client as its answer. While the connection waits in the pool they drop it; once lb has
 * taken it for a request whose body has not arrived yet (nothing written), they must not
 * be read as that request's response either: the request goes out on a fresh connection.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { ConnectionClosed, Http1Conn } from "../../src/proxy/http1.ts";
import {
  connectTo,
  hasFullResponse,
  parseHead,
  readFor,
  serveTcp,
  testYaml,
  writeAll,
} from "../_raw.ts";
import { assertEventually } from "../_stack.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const SPOOF = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nx-conn: spoof\r\n\r\nSPOOF\n";

/** One backend connection, as the test sees it. */
interface BackendConn {
  index: number;
  /** Each whole request received (head and Content-Length body). */
  requests: string[];
  /** lb closed the connection. */
  closedByLb: boolean;
  /** Writes the unsolicited second response now. */
  sendLate(): Promise<void>;
}

/**
 * A raw backend that answers every request with `ok\n` (Content-Length: 3, and an
 * `x-conn` header naming the connection). With `lateMs`, every connection also writes
 * {@link SPOOF} that long after its first answer; without it, when the test says so.
 */
function lateBackend(lateMs?: number) {
  const conns: BackendConn[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const server = serveTcp(async (conn) => {
    const bc: BackendConn = {
      index: conns.length + 1,
      requests: [],
      closedByLb: false,
      sendLate: async () => {
        await conn.write(enc.encode(SPOOF));
      },
    };
    conns.push(bc);
    const buf = new Uint8Array(64 * 1024);
    let pending = "";
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) {
          bc.closedByLb = true;
          return;
        }
        pending += dec.decode(buf.subarray(0, n));
        for (;;) {
          const end = pending.indexOf("\r\n\r\n");
          if (end === -1) break;
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(pending.slice(0, end));
          const total = end + 4 + (cl ? Number(cl[1]) : 0);
          if (pending.length < total) break;
          bc.requests.push(pending.slice(0, total));
          pending = pending.slice(total);
          await conn.write(
            enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\nx-conn: ${bc.index}\r\n\r\nok\n`),
          );
          if (bc.requests.length === 1 && lateMs !== undefined) {
            const t = setTimeout(() => {
              timers.delete(t);
              bc.sendLate().catch(() => {});
            }, lateMs);
            timers.add(t);
          }
        }
      }
    } catch {
      if (!server.closing) bc.closedByLb = true; // reset by lb
    }
  });
  return {
    url: server.url,
    conns,
    async close() {
      for (const t of timers) clearTimeout(t);
      await server.close();
    },
  };
}

async function withLb(
  backend: ReturnType<typeof lateBackend>,
  fn: (lb: Lb) => Promise<void>,
): Promise<void> {
  const lb = startLb({
    config: parseConfig(
      testYaml(
        [backend.url],
        "admin: { enabled: false }\nretry: { attempts: 1 }\ntimeouts: { header: 5s, upstreamIdle: 30s }",
      ),
    ),
  });
  try {
    await fn(lb);
  } finally {
    await lb.shutdown(1000);
    await backend.close();
  }
}

async function get(url: string): Promise<{ status: number; conn: string | null; body: string }> {
  const res = await fetch(url);
  return { status: res.status, conn: res.headers.get("x-conn"), body: await res.text() };
}

Deno.test("late bytes on a pooled connection drop it: the next requests get fresh answers, never the late response", async () => {
  const backend = lateBackend(300);
  await withLb(backend, async (lb) => {
    for (let round = 1; round <= 3; round++) {
      const r = await get(`${lb.url}/round/${round}`);
      assert.deepEqual(r, { status: 200, conn: String(round), body: "ok\n" });
      // ~300 ms later the backend writes the spoofed response on that connection.
      await assertEventually(
        () => backend.conns[round - 1]?.closedByLb === true,
        3000,
        `lb to drop connection ${round} once the late response arrived`,
      );
    }
    const last = await get(`${lb.url}/after`);
    assert.deepEqual(last, { status: 200, conn: "4", body: "ok\n" });
    for (const c of backend.conns) assert.equal(c.requests.length, 1, `connection ${c.index}`);
  });
});

Deno.test("late bytes after lb took a pooled connection for a request still waiting for its body are not its response", async () => {
  const backend = lateBackend();
  await withLb(backend, async (lb) => {
    assert.deepEqual(await get(`${lb.url}/first`), { status: 200, conn: "1", body: "ok\n" });
    const client = await connectTo(lb.url);
    try {
      let seen = "";
      const reading = readFor(client, {
        timeoutMs: 5000,
        until: (t) => {
          seen = t;
          return hasFullResponse(t);
        },
      });
      // The head only: lb takes the pooled connection, then waits for the body.
      await writeAll(client, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
      await assertEventually(
        () => lb.pool.servers[0].inflight === 1,
        3000,
        "lb to start the try (it takes the pooled connection at once)",
      );
      await backend.conns[0].sendLate();
      // lb closes the connection the late bytes came on (the old code instead answered the
      // client with them, before a byte of the request was written).
      await assertEventually(
        () => backend.conns[0].closedByLb || seen !== "",
        3000,
        "lb to react to the late bytes",
      );
      await writeAll(client, "hello");
      const r = await reading;
      const head = parseHead(r.text);
      assert.ok(!r.text.includes("SPOOF"), `the late response reached the client:\n${r.text}`);
      assert.equal(head?.status, 200, r.text);
      assert.deepEqual(head!.headers.get("x-conn"), ["2"]);
      assert.equal(head!.rest, "ok\n");
      // Nothing of the POST went out on the connection that carried the late bytes.
      assert.equal(backend.conns[0].requests.length, 1);
      assert.match(backend.conns[0].requests[0], /^GET \/first /);
      assert.equal(backend.conns.length, 2);
      assert.match(backend.conns[1].requests[0], /^POST \/upload [^]*\r\n\r\nhello$/);
    } finally {
      client.close();
    }
  });
});

/** An Http1Conn and the server side of its connection. */
async function connPair(): Promise<{ c: Http1Conn; server: Deno.TcpConn; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port }),
      listener.accept(),
    ]);
    const c = new Http1Conn(client);
    return {
      c,
      server,
      close() {
        c.close();
        try {
          server.close();
        } catch {
          // closed already
        }
      },
    };
  } finally {
    listener.close();
  }
}

Deno.test("Http1Conn: bytes that arrive after claim() but before the request is written are not read as its response", async () => {
  const { c, server, close } = await connPair();
  try {
    let dropped = false;
    c.park(() => dropped = true);
    assert.ok(c.claim()); // taken from the pool; the request (waiting for its body) is not written yet
    await server.write(enc.encode(SPOOF));
    await assert.rejects(
      () => c.readHead("POST"),
      (e) => e instanceof ConnectionClosed && e.beforeResponse,
    );
    assert.ok(c.closed);
    assert.equal(dropped, false); // it had left the pool: no pool callback
  } finally {
    close();
  }
});

Deno.test("Http1Conn: once the request is being written, the response read through the parked read is taken", async () => {
  const { c, server, close } = await connPair();
  try {
    c.park(() => {});
    assert.ok(c.claim());
    await c.write(enc.encode("GET / HTTP/1.1\r\nhost: t\r\n\r\n"));
    const buf = new Uint8Array(1024);
    assert.ok((await server.read(buf)) !== null);
    await server.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"));
    const head = await c.readHead("GET");
    assert.equal(head.status, 200);
    assert.deepEqual(await c.readBody(), enc.encode("ok\n"));
    assert.ok(c.reusable);
  } finally {
    close();
  }
});

Deno.test("Http1Conn: bytes while parked drop the connection", async () => {
  const { c, server, close } = await connPair();
  try {
    let dropped = false;
    c.park(() => dropped = true);
    await server.write(enc.encode(SPOOF));
    await assertEventually(() => dropped, 3000, "the parked connection to be dropped");
    assert.ok(c.closed);
  } finally {
    close();
  }
});
