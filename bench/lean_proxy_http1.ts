/**
 * The lean proxy once more, on lb's own HTTP/1.1 client (src/http1.ts) instead of fetch:
 * `Deno.serve` handler → a pooled `Http1Conn` per backend, round-robin → the upstream's
 * status, headers and body back (small bodies whole, others streamed). No header hygiene,
 * no retries, no timeouts, no logs, no limits: the distance from this target to lb is what
 * lb's features cost on top of its client.
 *
 * Usage: deno run -A bench/lean_proxy_http1.ts --port 8080 --backend http://127.0.0.1:9001 …
 */
import { parseArgs } from "node:util";
import { Http1Conn, latin1Bytes, requestHead } from "../src/proxy/http1.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8080" },
    backend: { type: "string", multiple: true, default: [] },
  },
});
if (values.backend.length === 0) {
  console.error("lean_proxy_http1: give at least one --backend http://host:port");
  Deno.exit(2);
}
const backends = values.backend.map((b) => new URL(b));
const idle: Http1Conn[][] = backends.map(() => []);
const SKIP = new Set(["connection", "keep-alive", "transfer-encoding"]);
let next = 0;

async function handle(req: Request): Promise<Response> {
  const i = next++ % backends.length;
  const b = backends[i];
  let c = idle[i].pop();
  if (c === undefined || !c.claim()) {
    c = new Http1Conn(await Deno.connect({ hostname: b.hostname, port: Number(b.port) }));
  }
  const url = req.url;
  const headers: Record<string, string> = {};
  req.headers.forEach((v, k) => headers[k] = v);
  await c.write(latin1Bytes(requestHead(
    req.method,
    url.slice(url.indexOf("/", url.indexOf("//") + 2)),
    headers,
    false,
    0,
  )));
  const head = await c.readHead(req.method);
  const out: [string, string][] = [];
  const raw = head.rawHeaders;
  for (let j = 0; j < raw.length; j += 2) {
    if (!SKIP.has(raw[j].toLowerCase())) out.push([raw[j], raw[j + 1]]);
  }
  const conn = c;
  const park = () => conn.reusable ? (idle[i].push(conn), conn.park(() => {})) : conn.close();
  if (head.framing === "length" && head.length <= 64 * 1024) {
    const body = new Uint8Array(head.length);
    let at = 0;
    for (let p = await c.readBody(); p !== null; p = await c.readBody()) {
      body.set(p, at);
      at += p.byteLength;
    }
    park();
    return new Response(body, { status: head.status, headers: out });
  }
  const stream = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      const p = await conn.readBody();
      if (p === null) {
        park();
        ctrl.close();
      } else ctrl.enqueue(p);
    },
    cancel: () => conn.close(),
  }, { highWaterMark: 2 });
  return new Response(stream, { status: head.status, headers: out });
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: (a) => console.log(`lean proxy (lb's http1) listening on http://127.0.0.1:${a.port}`),
}, handle);

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
