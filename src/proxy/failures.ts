/**
 * The failure table: every way a try or a request can fail, and in one place what follows
 * from it — the status and error code lb answers with, whose fault it is, and whether the
 * try may be repeated on another server (after Pingora's `Error { etype, esource, retry }`
 * and Caddy's `statusError`). Code that meets a failure makes a {@link Failure} with a
 * kind; nothing decides anything from a message's text.
 */

/** Whose fault a failure is: the client's, the backend's, or lb's own (its pool, its limits). */
export type Fault = "client" | "upstream" | "lb";

/**
 * When a failed try may be repeated on another server (the body must still be replayable):
 * - `always`: nothing reached a server's application (refused, reset before any response);
 * - `safe`: repeating is safe: an idempotent method (RFC 9110 §9.2.2), or a body small
 *   enough to have been kept whole, which lb sends again byte for byte;
 * - `never`: the failure is not the server's, or the request is over.
 */
export type Retry = "always" | "safe" | "never";

export interface FailureRule {
  /** What the client gets when this failure ends the request. */
  status: number;
  /** lb's error code in the JSON body. */
  code: string;
  fault: Fault;
  retry: Retry;
  /** The answer closes the connection (the request's framing cannot be trusted). */
  close?: true;
}

const rule = (
  status: number,
  code: string,
  fault: Fault,
  retry: Retry,
  close?: true,
): FailureRule => ({ status, code, fault, retry, ...(close && { close }) });

/** Every failure lb knows. The status is what answers the request if no retry saves it. */
export const FAILURES = {
  // Refused before any server was chosen (guard.ts, concurrency.ts).
  bad_request: rule(400, "bad_request", "client", "never", true),
  method_not_allowed: rule(405, "method_not_allowed", "client", "never", true),
  uri_too_long: rule(414, "uri_too_long", "client", "never", true),
  headers_too_large: rule(431, "headers_too_large", "client", "never", true),
  overloaded: rule(503, "overloaded", "lb", "never", true),
  /** No route matches the request (routing/router.ts). */
  no_route: rule(404, "no_route", "client", "never"),
  /** Over the route's rate limit (routing/rate_limit.ts). */
  rate_limited: rule(429, "rate_limited", "client", "never"),
  /** A WebSocket upgrade from an Origin the route does not allow. */
  origin_refused: rule(403, "forbidden", "client", "never"),
  no_server: rule(503, "no_server", "lb", "never"),
  // One try, before any response byte (upstream.ts).
  connect_failed: rule(502, "bad_gateway", "upstream", "always"),
  connect_timeout: rule(502, "bad_gateway", "upstream", "always"),
  /** A kept-alive connection the backend had closed: the pool's luck, not the server's fault. */
  stale_connection: rule(502, "bad_gateway", "lb", "always"),
  reset_before_response: rule(502, "bad_gateway", "upstream", "always"),
  header_timeout: rule(504, "gateway_timeout", "upstream", "safe"),
  /** The backend stopped taking the request body. */
  upload_stalled: rule(504, "gateway_timeout", "upstream", "safe"),
  bad_response: rule(502, "bad_gateway", "upstream", "safe"),
  /** The backend answered with a status in `retry.on`, and nothing was left to try. */
  bad_status: rule(502, "bad_gateway", "upstream", "safe"),
  // The client's side of a try.
  body_too_large: rule(413, "payload_too_large", "client", "never", true),
  bad_request_body: rule(400, "bad_request", "client", "never", true),
  /** The client went silent in the middle of its body (nginx's client_body_timeout). */
  client_body_timeout: rule(408, "request_timeout", "client", "never", true),
  client_gone: rule(499, "client_closed", "client", "never"),
  // The response body, after its head (the status may already be on its way).
  response_cut: rule(502, "bad_gateway", "upstream", "never"),
  response_idle: rule(502, "bad_gateway", "upstream", "never"),
  bad_response_body: rule(502, "bad_gateway", "upstream", "never"),
  internal: rule(500, "internal", "lb", "never"),
} as const satisfies Record<string, FailureRule>;

export type FailureKind = keyof typeof FAILURES;

/**
 * One failure: its kind (which decides everything) and a sentence for people. An Error, so
 * a stage deep down (the request body, say) can throw it up to the try that handles it.
 */
export class Failure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    /** Headers for lb's answer (Retry-After, Allow). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  get rule(): FailureRule {
    return FAILURES[this.kind];
  }

  /** Whether the server is to blame (it counts as its error and towards ejection). */
  get blamesServer(): boolean {
    return FAILURES[this.kind].fault === "upstream";
  }
}

/** RFC 9110 §9.2.2: methods whose repetition has the same effect as one request. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Whether a try that failed with `kind` may be repeated on another server. A body streamed
 * past `retry.bufferLimit` (`replayable` false) is never sent twice, whatever the failure.
 */
export function mayRetry(
  kind: FailureKind,
  method: string,
  body: { replayable: boolean } | null,
): boolean {
  if (body !== null && !body.replayable) return false;
  const retry = FAILURES[kind].retry;
  return retry === "always" || (retry === "safe" && (IDEMPOTENT.has(method) || body !== null));
}

/** Whether a try that failed this way reached a server at all (so retrying it adds load). */
export function reachedServer(kind: FailureKind): boolean {
  return kind !== "connect_failed" && kind !== "connect_timeout";
}
