/**
 * The floor to beat: the leanest Deno reverse proxy. A `Deno.serve` handler that only
 * `fetch`es the upstream (round-robin over the backends, one shared HTTP client) and
 * returns its response. No header hygiene, no retries, no logs, no limits: every feature
 * lb adds on top of this is what the benchmark prices.
 *
 * With `--cert` and `--key` (PEM files) it serves HTTPS, HTTP/2 and HTTP/1.1 by ALPN, as
 * lb's TLS listener does: the floor for lb's TLS targets. There it sends each answer as one
 * chunk, as lb does and for the same reason: Deno 2.9.6 leaves Nagle's algorithm on for the
 * TLS connections `Deno.serve` accepts, so a body that follows its head in a second write
 * waits for the client's delayed ACK (wrk: p50 44 ms, 1,100 req/s instead of 20,000). A
 * floor that waits 40 ms per answer would measure nothing.
 *
 * Usage: deno run -A bench/lean_proxy.ts --port 8080 --backend http://127.0.0.1:9001 …
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8080" },
    backend: { type: "string", multiple: true, default: [] },
    cert: { type: "string" },
    key: { type: "string" },
  },
});
const backends = values.backend;
if (backends.length === 0) {
  console.error("lean_proxy: give at least one --backend http://host:port");
  Deno.exit(2);
}

// allowHost: forward the client's Host, as a proxy does (fetch would set it from the URL).
const client = Deno.createHttpClient({ allowHost: true });
let next = 0;
const tls = values.cert && values.key
  ? { cert: Deno.readTextFileSync(values.cert), key: Deno.readTextFileSync(values.key) }
  : {};
const scheme = "cert" in tls ? "https" : "http";

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  ...tls,
  onListen: (a) => console.log(`lean proxy (fetch) listening on ${scheme}://127.0.0.1:${a.port}`),
}, (req) => {
  const origin = backends[next++ % backends.length];
  const url = req.url;
  const target = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  const answer = fetch(origin + target, {
    method: req.method,
    headers: req.headers,
    body: req.body,
    redirect: "manual",
    client,
  });
  return scheme === "https" ? answer.then(oneChunk) : answer;
});

/** The answer read whole and sent as a single chunk (no Content-Length), with its head. */
async function oneChunk(answer: Response): Promise<Response> {
  const body = new Uint8Array(await answer.arrayBuffer());
  const headers = new Headers(answer.headers);
  headers.delete("content-length");
  return new Response(
    new ReadableStream({
      start(c) {
        c.enqueue(body);
        c.close();
      },
    }),
    { status: answer.status, headers },
  );
}

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
