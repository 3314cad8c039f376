/**
 * The HTTP/1.1 client's own work for one exchange, without sockets: write a request head,
 * read a response head and a small body (`deno bench bench/http1_bench.ts`). The connection
 * is a fake whose reads hand back a canned response at once, so what is measured is lb's
 * parsing and encoding only, the part of a request's CPU that lb (not the runtime) decides.
 */
import { Http1Conn, latin1Bytes, parseResponseHead, requestHead } from "../src/proxy/http1.ts";

const BODY = '{"backend":"backend-1","port":19301,"method":"GET","path":"/"}';
const RESPONSE = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-backend: backend-1\r\n" +
    `content-length: ${BODY.length}\r\ndate: Sat, 05 Dec 2026 02:11:59 GMT\r\n\r\n${BODY}`,
);
const HEAD_TEXT = new TextDecoder().decode(RESPONSE).split("\r\n\r\n")[0];
const REQUEST_HEADERS: Record<string, string> = {
  host: "127.0.0.1:8080",
  "user-agent": "wrk",
  accept: "*/*",
  "x-forwarded-for": "127.0.0.1",
  "x-forwarded-proto": "http",
  "x-forwarded-host": "127.0.0.1:8080",
  via: "1.1 lb",
  "x-request-id": "0f7c4e9a-3a1b-4c55-9d1e-2b7f1b9c0a11",
};

/** A connection that answers every read with the canned response, whole. */
class CannedConn {
  read(p: Uint8Array): Promise<number | null> {
    p.set(RESPONSE);
    return Promise.resolve(RESPONSE.length);
  }
  write(p: Uint8Array): Promise<number> {
    return Promise.resolve(p.byteLength);
  }
  close() {}
}

const conn = new Http1Conn(new CannedConn() as unknown as Deno.Conn);
let sink = 0;

Deno.bench("one exchange: request head out, response head and body in", async () => {
  await conn.write(latin1Bytes(requestHead("GET", "/", REQUEST_HEADERS, false, 0)));
  const head = await conn.readHead("GET");
  const body = await conn.readBody();
  sink += head.status + (body?.byteLength ?? 0);
});

Deno.bench("request head: build and encode", () => {
  sink += latin1Bytes(requestHead("GET", "/", REQUEST_HEADERS, false, 0)).byteLength;
});

Deno.bench("response head: parse (from a string)", () => {
  sink += parseResponseHead(HEAD_TEXT, "GET").status;
});

globalThis.addEventListener("unload", () => {
  if (sink === 0) console.log("nothing measured");
});
