/**
 * The fail stage: lb's own answer when a request ends in a {@link Failure}, with the
 * status and code the failure table gives it, as JSON with a stable shape.
 */
import { isFull } from "../balancing/availability.ts";
import type { Server } from "../balancing/server.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import type { ProxyContext } from "./context.ts";
import { Failure } from "./failures.ts";
import type { Flight } from "./flight.ts";

/** lb's own error answers: `{"error": {status, code, message}, "requestId"}`. */
export function errorResponse(
  status: number,
  code: string,
  message: string,
  requestId: string,
  extra?: HeadersInit,
): Response {
  const headers = new Headers(extra);
  headers.set("content-type", "application/json");
  headers.set("x-request-id", requestId);
  headers.set("via", "1.1 lb");
  const body = JSON.stringify({ error: { status, code, message }, requestId }) + "\n";
  return new Response(body, { status, headers });
}

/**
 * Ends `f` with `failure` (met at `server`, if a try got that far): records it, logs the
 * backend's failures, and answers as the failure table says.
 */
export function fail(px: ProxyContext, f: Flight, failure: Failure, server?: Server): Response {
  const { status, code, fault, close } = failure.rule;
  // The client's own failures are about the client, whichever server was being tried.
  const message = server && fault !== "client"
    ? `${server.id}: ${failure.message}`
    : failure.message;
  f.finish(status, message);
  if (fault === "upstream" && failure.kind !== "bad_status") {
    px.logger.error(`${f.method} ${f.rec.path} failed: ${message}`, {
      requestId: f.requestId,
      backend: server?.id,
    });
  }
  const headers: Record<string, string> = { ...failure.headers };
  if (close) headers.connection = "close";
  if (px.hsts !== undefined) headers["strict-transport-security"] = px.hsts;
  return errorResponse(status, code, message, f.requestId, headers);
}

/** Why no try could be made: no server available, or every available one is full. */
export function noServer(pool: PoolRuntime): Failure {
  const full = pool.servers.servers.some(isFull);
  const message = full
    ? "every available server is at its connection limit"
    : "no server is available";
  return new Failure("no_server", message, { "retry-after": "1" });
}
