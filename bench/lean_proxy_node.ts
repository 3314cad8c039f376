/**
 * The lean proxy again, with `node:http` as the upstream client instead of `fetch`: lb uses
 * node:http because fetch decompresses bodies (see src/proxy.ts), and this target isolates
 * what that choice costs. `Deno.serve` handler → `http.request` on a keep-alive agent →
 * the upstream's status, headers and body streamed back. Nothing else.
 *
 * Usage: deno run -A bench/lean_proxy_node.ts --port 8080 --backend http://127.0.0.1:9001 …
 */
import http from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8080" },
    backend: { type: "string", multiple: true, default: [] },
  },
});
if (values.backend.length === 0) {
  console.error("lean_proxy_node: give at least one --backend http://host:port");
  Deno.exit(2);
}
const backends = values.backend.map((b) => new URL(b));
const agent = new http.Agent({ keepAlive: true, scheduling: "lifo" });
let next = 0;

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: (a) => console.log(`lean proxy (node:http) listening on http://127.0.0.1:${a.port}`),
}, (req) => {
  const b = backends[next++ % backends.length];
  const url = req.url;
  const headers: Record<string, string> = {};
  req.headers.forEach((v, k) => headers[k] = v);
  return new Promise<Response>((resolve, reject) => {
    const creq = http.request({
      host: b.hostname,
      port: b.port,
      method: req.method,
      path: url.slice(url.indexOf("/", url.indexOf("//") + 2)),
      headers,
      agent,
      setHost: false,
    }, (res) => {
      const out = new Headers();
      const raw = res.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i].toLowerCase();
        if (k !== "connection" && k !== "keep-alive" && k !== "transfer-encoding") {
          out.append(raw[i], raw[i + 1]);
        }
      }
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          res.on("data", (chunk: Uint8Array) => {
            c.enqueue(chunk);
            if ((c.desiredSize ?? 1) <= 0) res.pause();
          });
          res.on("end", () => c.close());
          res.on("error", (e) => c.error(e));
        },
        pull() {
          res.resume();
        },
        cancel() {
          res.destroy();
        },
      });
      resolve(new Response(body, { status: res.statusCode, headers: out }));
    });
    creq.on("error", reject);
    if (req.body) {
      (async () => {
        for await (const chunk of req.body!) {
          if (!creq.write(chunk)) await new Promise((r) => creq.once("drain", r));
        }
        creq.end();
      })().catch((e) => creq.destroy(e));
    } else creq.end();
  });
});

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
