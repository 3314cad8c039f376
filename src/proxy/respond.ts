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
import { downstreamResponseHeaders } from "./headers.ts";
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
  if (f.method === "HEAD" || status === 204 || status === 304) {
    px.upstream.discard(res);
    report(px, server, ok, ttfb);
    f.finish(status);
    return new Response(null, { status, headers });
  }
  const declared = res.contentLength;
  if (declared !== undefined && declared <= BUFFER_SMALL_BODY) {
    const body = await px.upstream.collect(res, declared);
    report(px, server, ok && !(body instanceof Failure), ttfb);
    if (body instanceof Failure) return fail(px, f, body, server);
    f.finish(status, undefined, body.byteLength);
    return new Response(body, { status, headers });
  }
  const stream = px.upstream.stream(res, (bytes, failure) => {
    report(px, server, ok && (failure === undefined || !failure.blamesServer), ttfb);
    const clientGone = failure?.kind === "client_gone";
    f.finish(clientGone ? failure.rule.status : status, failure?.message, bytes);
  });
  return new Response(stream, { status, headers });
}
