/**
 * Opens `--count` keep-alive connections to `--url`, sends one GET on each, reads its answer
 * whole, then holds every connection open and silent: what a server keeps per idle
 * keep-alive connection is its RSS now minus before. Prints `ready N` once all answered (or
 * `failed: …` and exits 1), and closes them all on SIGTERM.
 *
 * Usage: deno run -A bench/idle_clients.ts --url http://127.0.0.1:8080/ --count 10000
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { url: { type: "string" }, count: { type: "string", default: "10000" } },
});
const url = new URL(values.url ?? "http://127.0.0.1:8080/");
const count = Number(values.count);
const BATCH = 200;
const request = new TextEncoder().encode(
  `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: idle-clients\r\n\r\n`,
);

/** One connection with its first answer read to the end (Content-Length framing). */
async function open(): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  await conn.write(request);
  const buf = new Uint8Array(64 * 1024);
  let got = 0;
  for (;;) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error(`the server closed a connection after ${got} bytes`);
    got += n;
    const text = new TextDecoder().decode(buf.subarray(0, got));
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) continue;
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
    if (!m) throw new Error("an answer without Content-Length");
    if (got >= end + 4 + Number(m[1])) return conn;
  }
}

const conns: Deno.TcpConn[] = [];
const closeAll = () => {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // already closed by the server
    }
  }
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", closeAll);
try {
  while (conns.length < count) {
    const n = Math.min(BATCH, count - conns.length);
    conns.push(...await Promise.all(Array.from({ length: n }, open)));
  }
} catch (e) {
  console.log(`failed: ${e instanceof Error ? e.message : String(e)} (${conns.length} open)`);
  Deno.exit(1);
}
console.log(`ready ${conns.length}`);
// Held until SIGTERM (the timer only keeps the process alive).
setInterval(() => {}, 1 << 30);
