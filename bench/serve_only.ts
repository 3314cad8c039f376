/**
 * `Deno.serve` answering every request by itself with a small JSON body (the size of a demo
 * backend's answer), proxying nothing: the runtime's own cost per connection, the floor
 * beneath every Deno proxy in the memory measurements. Takes `--port` and, so that the
 * benchmark starts it like a lean proxy, ignores `--backend`.
 *
 * Usage: deno run -A bench/serve_only.ts --port 8080
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "8080" },
    backend: { type: "string", multiple: true, default: [] },
  },
});

const body = new TextEncoder().encode(
  JSON.stringify({ backend: "serve-only", method: "GET", path: "/", headers: { host: "x" } }) +
    "\n",
);
const headers = { "content-type": "application/json", "x-backend": "serve-only" };

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: (a) => console.log(`Deno.serve alone listening on http://127.0.0.1:${a.port}`),
}, () => new Response(body, { headers }));

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
