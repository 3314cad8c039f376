/** WebSockets through lb: a real echo backend, real clients. */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { WebSocket as WsClient, WebSocketServer } from "ws";
import type { Buffer } from "node:buffer";
import { parseConfig } from "../../src/config/load.ts";
import { type LbOptions, startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import { freePort, memoryLogger, until } from "../_stack.ts";
import { serveYaml, startLbProcess } from "../_serve.ts";

/** An lb on port 0 without admin listener, access log or health checks, over `yaml`. */
function wsLb(yaml: string, opts: Partial<LbOptions> = {}) {
  return startLb({
    config: parseConfig(
      `listen: { port: 0 }\nadmin: { enabled: false }\nlog: { access: false }\nhealth: { enabled: false }\n${yaml}`,
    ),
    logger: memoryLogger(),
    ...opts,
  });
}

/** A WebSocket backend: echoes, picks the first offered subprotocol, closes on "close:CODE". */
function wsBackend(name: string) {
  const seen: { closes: [number, string][]; headers: Headers[] } = { closes: [], headers: [] };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response(name);
    seen.headers.push(req.headers);
    const offered = req.headers.get("sec-websocket-protocol")?.split(",")[0]?.trim();
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: offered });
    socket.onmessage = (e) => {
      if (typeof e.data === "string" && e.data.startsWith("close:")) {
        socket.close(Number(e.data.slice(6)), `${name} says bye`);
      } else if (e.data === "who") socket.send(name);
      else socket.send(e.data);
    };
    socket.onclose = (e) => seen.closes.push([e.code, e.reason]);
    return response;
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, server };
}

function open(url: string, protocols?: string[]): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws);
    ws.onerror = (e) => reject(new Error((e as ErrorEvent).message));
  });
}

function next(ws: WebSocket): Promise<MessageEvent> {
  return new Promise((resolve) => (ws.onmessage = resolve));
}

function closed(ws: WebSocket): Promise<CloseEvent> {
  return new Promise((resolve) => (ws.onclose = resolve));
}

Deno.test("a WebSocket through lb: text, binary and 16 MiB messages, the backend's subprotocol, close codes both ways, one access line", async () => {
  const a = wsBackend("a");
  const records: RequestRecord[] = [];
  const lb = wsLb(`backends: [{ url: "${a.url}" }]`, { onRequest: (r) => records.push(r) });
  try {
    const url = lb.url.replace("http", "ws") + "/chat";
    const ws = await open(url, ["v2.chat", "v1.chat"]);
    assert.equal(ws.protocol, "v2.chat");
    ws.send("hello");
    assert.equal((await next(ws)).data, "hello");
    ws.send(new Uint8Array([1, 2, 3]));
    assert.deepEqual(new Uint8Array((await next(ws)).data), new Uint8Array([1, 2, 3]));
    const big = new Uint8Array(16 * 1024 * 1024).map((_, i) => i & 255);
    ws.send(big);
    const echoed = new Uint8Array((await next(ws)).data);
    assert.equal(echoed.byteLength, big.byteLength);
    assert.equal(echoed[12345], big[12345]);
    assert.equal(lb.pool.servers[0].inflight, 1, "an open WebSocket is in flight");
    // The backend's close code reaches the client.
    const done = closed(ws);
    ws.send("close:4321");
    const e = await done;
    assert.deepEqual([e.code, e.reason], [4321, "a says bye"]);
    await until(() => records.length === 1, "the access line");
    assert.equal(records[0].status, 101);
    assert.ok(records[0].bytesOut > 16 * 1024 * 1024);
    assert.equal(lb.pool.servers[0].inflight, 0);
    // The client's close code reaches the backend.
    const ws2 = await open(url);
    const gone = closed(ws2);
    ws2.close(4000, "client leaves");
    await gone;
    await until(
      () => a.seen.closes.some(([c, r]) => c === 4000 && r === "client leaves"),
      "the backend to see 4000",
    );
  } finally {
    await lb.shutdown(2000);
    await a.server.shutdown();
  }
});

Deno.test("a WebSocket whose first server refuses goes to the next; a backend shutting down passes its 1001 to the client", async () => {
  const b = wsBackend("b");
  const dead = `http://127.0.0.1:${freePort()}`;
  const lb = wsLb(`backends: [{ url: "${dead}" }, { url: "${b.url}" }]`);
  try {
    const url = lb.url.replace("http", "ws") + "/";
    for (let i = 0; i < 3; i++) {
      const ws = await open(url);
      ws.send("who");
      assert.equal((await next(ws)).data, "b");
      const c = closed(ws);
      ws.close();
      await c;
    }
    const ws = await open(url);
    const c = closed(ws);
    await b.server.shutdown();
    const e = await c;
    assert.equal(e.code, 1001);
  } finally {
    await lb.shutdown(2000);
  }
});

Deno.test("shutdown closes an open WebSocket with 1001 and tells the backend", async () => {
  const a = wsBackend("a");
  const lb = wsLb(`backends: [{ url: "${a.url}" }]`);
  try {
    const ws = await open(lb.url.replace("http", "ws") + "/");
    const c = closed(ws);
    await lb.shutdown(300);
    const e = await c;
    assert.equal(e.code, 1001);
    await until(() => a.seen.closes.length === 1, "the backend to see the close");
  } finally {
    await lb.shutdown(300);
    await a.server.shutdown();
  }
});

Deno.test("websocketIdle closes a silent WebSocket, and /metrics counts open WebSockets and their bytes", async () => {
  const a = wsBackend("a");
  const lb = wsLb(`timeouts: { websocketIdle: 300ms }
backends: [{ url: "${a.url}", name: srv }]`);
  try {
    const ws = await open(lb.url.replace("http", "ws") + "/");
    ws.send("12345");
    await next(ws);
    const text = await lb.metrics.text();
    assert.match(text, /lb_websockets_open\{pool="default",backend="srv"\} 1/);
    assert.match(text, /lb_websocket_bytes_total\{pool="default",backend="srv",direction="in"\} 5/);
    assert.match(
      text,
      /lb_websocket_bytes_total\{pool="default",backend="srv",direction="out"\} 5/,
    );
    const e = await closed(ws);
    assert.equal(e.code, 1001);
    assert.match(e.reason, /no message for 300ms/);
    await until(() => a.seen.closes.length === 1, "the backend to be closed too");
    await until(
      async () =>
        /lb_websockets_open\{pool="default",backend="srv"\} 0/.test(await lb.metrics.text()),
      "no WebSocket open in /metrics",
    );
  } finally {
    await lb.shutdown(500);
    await a.server.shutdown();
  }
});

Deno.test("a client that stops reading while its backend floods is closed with 1013 and counted, lb's memory bounded", async () => {
  const flood = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    const chunk = new Uint8Array(1024 * 1024);
    socket.onopen = async () => {
      for (let i = 0; i < 200 && socket.readyState === WebSocket.OPEN; i++) {
        socket.send(chunk);
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    return response;
  });
  const lb = wsLb(`backends: [{ url: "http://127.0.0.1:${flood.addr.port}", name: flood }]`);
  // A raw client: the handshake, then it never reads again.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
  try {
    await conn.write(new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 101/);
    await until(
      async () =>
        /lb_websocket_overflows_total\{pool="default",backend="flood"\} 1/.test(
          await lb.metrics.text(),
        ),
      "the overflow to be counted",
      20_000,
    );
    const rss = Deno.memoryUsage().rss;
    assert.ok(rss < 1024 * 1024 * 1024, `rss ${rss}`);
  } finally {
    conn.close();
    await lb.shutdown(500);
    await flood.shutdown();
  }
});

Deno.test("draining a server leaves its WebSockets open until drainTimeout, then closes them with 1001; others stay", async () => {
  const a = wsBackend("a");
  const b = wsBackend("b");
  const lb = wsLb(`drainTimeout: 1500ms
backends: [{ url: "${a.url}", name: a }, { url: "${b.url}", name: b }]`);
  try {
    const url = lb.url.replace("http", "ws") + "/";
    const sockets = [await open(url), await open(url)];
    const names: string[] = [];
    for (const ws of sockets) {
      ws.send("who");
      names.push((await next(ws)).data);
    }
    assert.deepEqual(names.sort(), ["a", "b"]);
    const onA = sockets.find((_, i) => names[i] === "a")!;
    const onB = sockets.find((_, i) => names[i] === "b")!;
    const closedA = closed(onA);
    let bClosed = false;
    onB.onclose = () => (bClosed = true);
    const t0 = Date.now();
    lb.pool.setAdminState(lb.pool.get("a")!, "draining");
    // Still usable while draining.
    onA.send("who");
    assert.equal((await next(onA)).data, "a");
    const e = await closedA;
    assert.equal(e.code, 1001);
    assert.ok(Date.now() - t0 >= 1400, `closed after ${Date.now() - t0}ms, before drainTimeout`);
    assert.equal(bClosed, false);
    onB.send("who");
    assert.equal((await next(onB)).data, "b");
    const c = closed(onB);
    onB.close();
    await c;
  } finally {
    await lb.shutdown(500);
    await a.server.shutdown();
    await b.server.shutdown();
  }
});

Deno.test("a backend killed mid-conversation closes the client with 1011; a malformed upgrade gets lb's 400", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lb_ws_" });
  const script = `${dir}/backend.ts`;
  await Deno.writeTextFile(
    script,
    `const s = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: (a) => console.log(a.port) },
  (req) => { const { socket, response } = Deno.upgradeWebSocket(req); socket.onmessage = (e) => socket.send(e.data); return response; });`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const lb = wsLb(`backends: [{ url: "http://127.0.0.1:${port}" }]`);
  try {
    const ws = await open(lb.url.replace("http", "ws") + "/");
    ws.send("ping?");
    assert.equal((await next(ws)).data, "ping?");
    const c = closed(ws);
    child.kill("SIGKILL");
    assert.equal((await c).code, 1011);
    // A handshake Deno cannot accept (an unknown version) never half-upgrades.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(lb.url).port) });
    await raw.write(new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    ));
    const buf = new Uint8Array(1024);
    const n = await raw.read(buf);
    raw.close();
    assert.doesNotMatch(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 101/);
  } finally {
    await reader.cancel().catch(() => {});
    await child.status;
    await lb.shutdown(500);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a route's websocketOrigins refuses upgrades from other Origins with 403", async () => {
  const a = wsBackend("a");
  const lb = wsLb(`backends: [{ url: "${a.url}" }]
routes: [{ pool: default, websocketOrigins: ["https://app.example.com"] }]`);
  try {
    const port = Number(new URL(lb.url).port);
    const handshake = async (origin: string | undefined) => {
      const raw = await Deno.connect({ hostname: "127.0.0.1", port });
      await raw.write(new TextEncoder().encode(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          (origin ? `Origin: ${origin}\r\n` : "") +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ));
      const buf = new Uint8Array(1024);
      const n = await raw.read(buf);
      raw.close();
      return new TextDecoder().decode(buf.subarray(0, n ?? 0));
    };
    assert.match(await handshake("https://app.example.com"), /^HTTP\/1\.1 101/);
    const evil = await handshake("https://evil.example");
    assert.match(evil, /^HTTP\/1\.1 403/);
    assert.match(evil, /"code":"forbidden"/);
    assert.match(await handshake(undefined), /^HTTP\/1\.1 403/);
  } finally {
    await lb.shutdown(500);
    await a.server.shutdown();
  }
});

Deno.test("1,000 concurrent WebSockets are spread evenly by least-conn and count as in flight", async () => {
  const backends = [wsBackend("a"), wsBackend("b"), wsBackend("c")];
  const lb = wsLb(`limits: { maxConnectionsPerClient: 5000 }
strategy: least-conn
backends: [${backends.map((b, i) => `{ url: "${b.url}", name: s${i} }`).join(", ")}]`);
  const sockets: WebSocket[] = [];
  try {
    const url = lb.url.replace("http", "ws") + "/";
    for (let batch = 0; batch < 10; batch++) {
      sockets.push(...await Promise.all(Array.from({ length: 100 }, () => open(url))));
    }
    const inflight = lb.pool.servers.map((s) => s.inflight);
    assert.equal(inflight.reduce((a, b) => a + b, 0), 1000);
    for (const n of inflight) assert.ok(n >= 330 && n <= 337, inflight.join(", "));
  } finally {
    await Promise.all(sockets.map((ws) => {
      const c = closed(ws);
      ws.close();
      return c;
    }));
    await lb.shutdown(1000);
    await Promise.all(backends.map((b) => b.server.shutdown()));
  }
});

Deno.test("a reload that does not touch a server leaves its WebSockets open; lb serve closes them with 1001 on SIGTERM and exits 0", async () => {
  const a = wsBackend("a");
  const b = wsBackend("b");
  const proc = await startLbProcess(`backends: [{ url: "${a.url}", name: a }]`);
  try {
    const ws = await open(proc.url.replace("http", "ws") + "/");
    ws.send("who");
    assert.equal((await next(ws)).data, "a");
    // Add a server and reload: the open WebSocket on the untouched one goes on.
    await Deno.writeTextFile(
      proc.configPath,
      serveYaml(`backends: [{ url: "${a.url}", name: a }, { url: "${b.url}", name: b }]`),
    );
    proc.kill("SIGHUP");
    await until(() => proc.lines.some((l) => l.kind === "reload"), "the reload");
    ws.send("still there?");
    assert.equal((await next(ws)).data, "still there?");
    const c = closed(ws);
    const { code } = await proc.stop();
    assert.equal((await c).code, 1001);
    assert.equal(code, 0);
  } finally {
    await proc.close().catch(() => {});
    await a.server.shutdown();
    await b.server.shutdown();
  }
});

Deno.test("Chromium opens a WebSocket through lb and exchanges messages", async () => {
  const a = wsBackend("a");
  const lb = wsLb(`backends: [{ url: "${a.url}" }]`);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox"],
  });
  try {
    const page = await browser.newPage();
    const url = lb.url.replace("http", "ws") + "/chat";
    const got = await page.evaluate(async (u: string) => {
      const ws = new WebSocket(u, ["chat.v1"]);
      await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
      const replies: string[] = [];
      for (const m of ["one", "two", "three"]) {
        ws.send(m);
        replies.push(await new Promise<string>((r) => (ws.onmessage = (e) => r(e.data))));
      }
      ws.close(1000, "done");
      return { protocol: ws.protocol, replies };
    }, url);
    assert.deepEqual(got, { protocol: "chat.v1", replies: ["one", "two", "three"] });
    await until(
      () => a.seen.closes.some(([c, r]) => c === 1000 && r === "done"),
      "the page's close",
    );
  } finally {
    await browser.close();
    await lb.shutdown(500);
    await a.server.shutdown();
  }
});

Deno.test("the npm ws package on both ends: a fragmented message arrives whole, pings get pongs, binary and close codes pass", async () => {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((r) => wss.on("listening", r));
  const closes: number[] = [];
  wss.on("connection", (sock: WsClient) => {
    sock.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary && String(data) === "bye") sock.close(4002, "server bye");
      else sock.send(data, { binary: isBinary });
    });
    sock.on("close", (code: number) => closes.push(code));
  });
  const port = (wss.address() as { port: number }).port;
  const lb = wsLb(`backends: [{ url: "http://127.0.0.1:${port}" }]`);
  try {
    const url = lb.url.replace("http", "ws") + "/";
    const c = new WsClient(url);
    await new Promise((r) => c.on("open", r));
    const nextMessage = () =>
      new Promise<[Buffer, boolean]>((r) =>
        c.once("message", (d: Buffer, b: boolean) => r([d, b]))
      );
    c.send("frag-", { fin: false });
    c.send("mented", { fin: true });
    assert.equal(String((await nextMessage())[0]), "frag-mented");
    c.send(new Uint8Array([9, 8, 7]));
    const [bin, isBinary] = await nextMessage();
    assert.equal(isBinary, true);
    assert.deepEqual([...bin], [9, 8, 7]);
    const pong = new Promise((r) => c.once("pong", r));
    c.ping("are you there");
    await pong;
    const closed = new Promise<number>((r) => c.on("close", (code: number) => r(code)));
    c.send("bye");
    assert.equal(await closed, 4002);
    await until(() => closes.includes(4002), "the server's own close");
    // And a client's code reaches a ws server.
    const c2 = new WsClient(url);
    await new Promise((r) => c2.on("open", r));
    c2.close(4003, "client bye");
    await until(() => closes.includes(4003), "the client's close code at the server");
  } finally {
    await lb.shutdown(500);
    await new Promise((r) => wss.close(r));
  }
});
