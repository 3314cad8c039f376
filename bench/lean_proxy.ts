/**
 * The floor to beat: the leanest Deno reverse proxy. A `Deno.serve` handler that only
 * `fetch`es the upstream (round-robin over the backends, one shared HTTP client) and
 * returns its response. No header hygiene, no retries, no logs, no limits: every feature
 * lb adds on top of this is what the benchmark prices.
 *
 * Usage: deno run -A bench/lean_proxy.ts --port 8080 --backend http://127.0.0.1:9001 …
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8080" },
    backend: { type: "string", multiple: true, default: [] },
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

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: (a) => console.log(`lean proxy (fetch) listening on http://127.0.0.1:${a.port}`),
}, (req) => {
  const origin = backends[next++ % backends.length];
  const url = req.url;
  const target = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  return fetch(origin + target, {
    method: req.method,
    headers: req.headers,
    body: req.body,
    redirect: "manual",
    client,
  });
});

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
