/**
 * Deno's own ceiling for HTTPS on this machine: `Deno.serve` with the benchmark's
 * certificate (HTTP/2 and HTTP/1.1 by ALPN), answering every request itself with JSON
 * describing it, as the demo backends do (backends/demo.ts), and with no upstream at all.
 * What lb reaches over TLS can be no more than this; the distance between the two is lb's
 * own cost, the distance from here to nginx is the runtime's.
 *
 * Usage: deno run -A bench/lean_tls.ts --port 8443 --cert cert.pem --key key.pem
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8443" },
    cert: { type: "string" },
    key: { type: "string" },
  },
});
if (!values.cert || !values.key) {
  console.error("lean_tls: give --cert FILE and --key FILE (PEM)");
  Deno.exit(2);
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  cert: Deno.readTextFileSync(values.cert),
  key: Deno.readTextFileSync(values.key),
  onListen: (a) => console.log(`lean TLS server listening on https://127.0.0.1:${a.port}`),
}, (req) => {
  const url = req.url;
  const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  return new Response(
    JSON.stringify({
      backend: "lean-tls",
      method: req.method,
      path,
      headers: Object.fromEntries(req.headers),
    }),
    { headers: { "content-type": "application/json" } },
  );
});

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
