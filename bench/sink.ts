/**
 * An upload sink for the benchmark: reads every request body to the end, counts it, and
 * answers `{"bytes":N}`. The demo backends' `POST /echo` sends the body back as it
 * arrives, which makes a 1 GiB upload also a 1 GiB download (and, with curl, runs at a
 * few MB/s even without lb in between); this measures the upload alone.
 *
 * Usage: deno run -A bench/sink.ts --port 9100
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port ?? 0),
  onListen: (a) => console.log(`sink listening on http://127.0.0.1:${a.port}`),
}, async (req) => {
  let bytes = 0;
  if (req.body) { for await (const chunk of req.body) bytes += chunk.byteLength; }
  return Response.json({ bytes });
});

Deno.addSignalListener("SIGTERM", () => server.shutdown().then(() => Deno.exit(0)));
