/**
 * The client of the chunked-upload benchmark: uploads `--mib` MiB with Deno's `fetch` and a
 * ReadableStream body of `--chunk`-byte chunks (so `Transfer-Encoding: chunked`, framed and
 * paced the way fetch does it), and prints the seconds it took and the bytes the server
 * says it received, as one JSON line.
 *
 * Usage: deno run -A bench/fetch_upload.ts --url http://127.0.0.1:8000/upload --mib 256
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { url: { type: "string" }, mib: { type: "string" }, chunk: { type: "string" } },
});
const total = Number(values.mib ?? 256) * 1024 * 1024;
const chunk = new Uint8Array(Number(values.chunk ?? 65536));
let sent = 0;
const body = new ReadableStream<Uint8Array>({
  pull(c) {
    if (sent >= total) return c.close();
    const n = Math.min(chunk.byteLength, total - sent);
    sent += n;
    c.enqueue(n === chunk.byteLength ? chunk : chunk.subarray(0, n));
  },
});
const t0 = performance.now();
const res = await fetch(values.url!, {
  method: "POST",
  body,
  duplex: "half",
  headers: { "content-type": "application/octet-stream" },
} as RequestInit);
const answer = await res.text();
const seconds = (performance.now() - t0) / 1000;
let bytes = -1;
try {
  bytes = JSON.parse(answer).bytes;
} catch {
  // not the sink's answer: reported as -1
}
console.log(JSON.stringify({ status: res.status, seconds, bytes }));
