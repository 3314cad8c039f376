/**
 * The respond stage: the backend's answer goes to the client, with hop-by-hop headers
 * removed and Via and X-Request-Id added. No body (HEAD, 204, 304); a small body of known
 * length read whole first, as nginx's proxy_buffering does; anything else streamed with
 * backpressure. The try's report waits for the body, so a body cut short counts against
 * the server.
 */
import type { Server } from "../balancing/server.ts";
import { report } from "./attempt.ts";
import type { ProxyContext } from "./context.ts";
import { fail } from "./fail.ts";
import { Failure } from "./failures.ts";
import type { Flight } from "./flight.ts";
import { downstreamResponseHeaders, responseHeaderInit } from "./headers.ts";
import { answerHeaders } from "./route.ts";
import type { UpstreamResponse } from "./upstream.ts";

/** Responses with a Content-Length up to this are read whole before answering. */
const BUFFER_SMALL_BODY = 64 * 1024;

/** `ok`: whether the status itself counts as a success (5xx does with outlier.on5xx off). */
export async function respond(
  px: ProxyContext,
  f: Flight,
  server: Server,
  res: UpstreamResponse,
  ttfb: number,
  ok: boolean,
): Promise<Response> {
  const { status } = res;
  const headers = downstreamResponseHeaders(res.rawHeaders, f.requestId);
  if (f.route !== undefined) answerHeaders(f, server, headers);
  if (f.method === "HEAD" || status === 204 || status === 304) {
    f.pool.upstream.discard(res);
    report(f.pool, server, ok, ttfb);
    f.finish(status);
    return new Response(null, { status, headers: responseHeaderInit(headers) });
  }
  const declared = res.contentLength;
  if (declared !== undefined && declared <= BUFFER_SMALL_BODY) {
    const body = await f.pool.upstream.collect(res, declared);
    report(f.pool, server, ok && !(body instanceof Failure), ttfb);
    if (body instanceof Failure) return fail(px, f, body, server);
    f.finish(status, undefined, body.byteLength);
    if (!px.secure) return new Response(body, { status, headers: responseHeaderInit(headers) });
    const chunked = responseHeaderInit(withoutLength(headers));
    return new Response(oneChunk(body), { status, headers: chunked });
  }
  if (f.body !== null && !f.body.done) {
    const refused = await afterUpload(px, f, server, res, ttfb);
    if (refused) return refused;
  }
  const stream = f.pool.upstream.stream(res, (bytes, failure) => {
    report(f.pool, server, ok && (failure === undefined || !failure.blamesServer), ttfb);
    const clientGone = failure?.kind === "client_gone";
    f.finish(clientGone ? failure.rule.status : status, failure?.message, bytes);
  });
  return new Response(stream, { status, headers: responseHeaderInit(headers) });
}

/**
 * A streamed answer that came while the client is still uploading goes out only once the
 * upload has ended: Deno.serve 2.9.6 never closes a client connection whose streamed
 * response ends while a read of its request body is pending (the client's close wakes the
 * response writer, never the parked read), so streaming both ways at once leaked a socket in
 * CLOSE-WAIT for every client that left mid-upload. nginx, by default, reads the whole body
 * before it even asks the backend. Resolves lb's own answer when the upload failed instead.
 */
async function afterUpload(
  px: ProxyContext,
  f: Flight,
  server: Server,
  res: UpstreamResponse,
  ttfb: number,
): Promise<Response | undefined> {
  const up = await f.pool.upstream.uploaded(res);
  if (up === "sent") return undefined;
  // Stopped: the backend no longer takes the body (it closed its side); its answer is all
  // there is, and no read of the client's body may stay pending while it streams.
  if (up === "stopped") return void f.body!.cancel();
  f.pool.upstream.discard(res); // closed already: this only lets go of it
  // lb held the answer back, so a stall now is not the server's failure.
  report(f.pool, server, true, ttfb);
  return fail(px, f, up, server);
}

/**
 * A buffered body as a one-chunk stream without Content-Length (so chunked), for the TLS
 * listener: Deno 2.9.6 leaves Nagle's algorithm on for the TLS connections `Deno.serve`
 * accepts, and writes a body of known length apart from the head there, so it waited for the
 * client's delayed ACK: 43 ms for every HTTP/1.1 answer from about 500 bytes to 64 KiB
 * (curl and wrk on loopback, 450 req/s instead of 15,000). A chunked body goes out with the
 * head. HTTP/2 answers over 2 KB still wait (see the README's known limits).
 */
function oneChunk(body: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.enqueue(body);
      c.close();
    },
  });
}

function withoutLength(headers: [string, string][]): [string, string][] {
  return headers.filter(([name]) => name !== "content-length");
}
