/**
 * Request checks before a request is proxied: what Deno.serve lets through but a proxy
 * must not forward (SECURITY.md lists what Deno 2.9 rejects on its own and what lb adds).
 *
 * Deno.serve already answers 400 and closes for: Content-Length with Transfer-Encoding,
 * `chunked, chunked`, unknown codings (`xchunked`, `identity`), Transfer-Encoding on
 * HTTP/1.0, obs-fold, differing or malformed Content-Length, duplicate Host, control bytes
 * in header values, and bad chunk framing (closed without an answer). What reaches the
 * handler and is handled here:
 * - `Transfer-Encoding: gzip, chunked` (or the same over two lines): 400. lb forwards the
 *   body de-chunked, so a coding below `chunked` would silently change the body's meaning.
 * - `Content-Length: 3` twice: reaches the handler as `3, 3`; normalised to `3` upstream.
 * - Host missing, empty, or not a host[:port] (spaces, `@`, `/`, non-ASCII): 400
 *   (RFC 9112 §3.2). Deno puts a missing Host into `req.url` as `localhost:<port>`.
 * - absolute-form targets (`GET http://169.254.169.254/x HTTP/1.1`) and HTTP/2 requests:
 *   the path goes to a configured backend as usual; the authority of the target replaces
 *   Host (RFC 9112 §3.2.2, RFC 9113 §8.3.1), so one authority reaches the backend.
 * - CONNECT: 405 (lb is not a forward proxy).
 * - limits: target over `maxUriBytes` → 414, headers to forward over `maxHeaderBytes` → 431,
 *   declared Content-Length over `maxBodyBytes` → 413 (streamed bodies are counted again
 *   in body.ts, so a chunked body cannot get past the limit).
 *
 * Refusals carry `Connection: close` (the failure table says so), and the connection should end there. Deno 2.9.6 closes
 * it itself when the request body has not fully arrived (lb never reads it), but otherwise
 * ignores a response's `Connection: close` and goes on parsing what follows as new requests
 * (the bytes a client sends after a CONNECT, say). So the guard also remembers the refused
 * connection (peer address and port) for {@link POISON_MS}: any further request on it is
 * refused as well and never reaches a backend.
 */

import { Failure } from "./failures.ts";

export interface GuardLimits {
  /** Longest request target (path and query) in bytes; 0 = no limit. */
  maxUriBytes: number;
  /** Largest header section (names, values, separators) in bytes; 0 = no limit. */
  maxHeaderBytes: number;
  /** Largest body; a larger declared Content-Length is refused at once. 0 = no limit. */
  maxBodyBytes: number;
}

/** Methods lb forwards (for the Allow header of its 405). Any other token is forwarded too. */
const ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/**
 * host [":" port] with a DNS-like name, an IPv4 address or a bracketed IPv6 literal. Stricter
 * than RFC 3986's reg-name (no sub-delims, no pct-encoding): a Host like `a,b` or `a;b` is
 * valid syntax that backends parse in different ways, so lb refuses it.
 */
const HOST =
  /^(?:[A-Za-z0-9_~-](?:[A-Za-z0-9._~-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$/;

/** The authority of `req.url` (Deno builds it from the target, :authority, or Host). */
function authorityOf(url: string): string {
  const start = url.indexOf("//") + 2;
  const end = url.indexOf("/", start);
  return end === -1 ? url.slice(start) : url.slice(start, end);
}

function validHost(h: string): boolean {
  const m = HOST.exec(h);
  return m !== null && (m[1] === undefined || Number(m[1]) <= 65535);
}

/** How long a refused connection stays refused (ms). Pipelined follow-ups arrive at once. */
export const POISON_MS = 10_000;
/** At most this many refused connections are remembered (the oldest are forgotten first). */
const POISON_MAX = 10_000;

/** Checks one request; see {@link createGuard}. */
export type Guard = (
  req: Request,
  peer: Deno.NetAddr | undefined,
  upstream: Record<string, string>,
) => Failure | undefined;

/**
 * Builds the request check for one lb. It returns the Failure to answer with (and not
 * forward), or undefined when the request may be forwarded; in that case `upstream` (the
 * headers lb is about to send, built from `req.headers`) is amended in place where Deno's
 * view needs normalising: Host from an absolute-form target or HTTP/2 :authority, and a
 * duplicated Content-Length.
 *
 * @example
 * ```ts
 * const guard = createGuard(config.limits);
 * // per request:
 * const refused = guard(req, info.remoteAddr, headers);
 * if (refused) return fail(px, flight, refused);
 * ```
 */
export function createGuard(
  limits: GuardLimits,
  now: () => number = Date.now,
  opts: { tls?: boolean } = {},
): Guard {
  const tls = opts.tls === true;
  /** "address|port" of refused connections → until when they stay refused. */
  const poisoned = new Map<string, number>();
  return (req, peer, upstream) => {
    const key = peer ? `${peer.hostname}|${peer.port}` : undefined;
    if (key !== undefined && poisoned.size > 0) {
      const until = poisoned.get(key);
      if (until !== undefined) {
        if (until > now()) {
          return new Failure(
            "bad_request",
            "an earlier request on this connection was refused: open a new connection",
          );
        }
        poisoned.delete(key);
      }
    }
    const refused = checkMethod(req) ?? checkHost(req.url, upstream, tls) ??
      checkFraming(req.headers, upstream) ?? checkLimits(req.url, upstream, limits);
    if (refused && key !== undefined) {
      poisoned.delete(key);
      poisoned.set(key, now() + POISON_MS);
      if (poisoned.size > POISON_MAX) poisoned.delete(poisoned.keys().next().value!);
    }
    return refused;
  };
}

function checkMethod(req: Request): Failure | undefined {
  if (req.method !== "CONNECT") return undefined;
  const message = "CONNECT is not supported: lb is not a forward proxy";
  return new Failure("method_not_allowed", message, { allow: ALLOW });
}

/**
 * Host (RFC 9112 §3.2); Deno has already refused two Host lines. `tls`: on a TLS listener
 * most requests are HTTP/2, whose :authority Deno puts in the URL without a Host header, so
 * `localhost:<port>` there is a client's own authority (Deno reports an HTTP/1.1 request
 * without Host the same way, and the two cannot be told apart).
 */
function checkHost(
  url: string,
  upstream: Record<string, string>,
  tls: boolean,
): Failure | undefined {
  const authority = authorityOf(url);
  // Host and Content-Length are read from `upstream` (a plain object, cheaper than Headers).
  const host = upstream["host"] ?? null;
  if (host === null) {
    // No Host line: Deno fills req.url with localhost:<port>. An absolute-form target or an
    // HTTP/2 :authority names the authority instead; anything else is a request without one.
    if (!tls && (authority.startsWith("localhost:") || authority === "localhost")) {
      return new Failure("bad_request", "the request has no Host header");
    }
  } else if (!validHost(host)) {
    const message = host === ""
      ? "the Host header is empty"
      : "the Host header is not a valid host[:port]";
    return new Failure("bad_request", message);
  }
  if (host !== null && host.toLowerCase() === authority.toLowerCase()) return undefined;
  if (!validHost(authority)) {
    return new Failure("bad_request", "the request target's authority is not a valid host[:port]");
  }
  // Absolute-form or HTTP/2: the target's authority wins over Host; forward only that one.
  const xfh = upstream["x-forwarded-host"];
  if (xfh === undefined || xfh === (host ?? undefined)) upstream["x-forwarded-host"] = authority;
  upstream["host"] = authority;
  return undefined;
}

/**
 * Framing. Deno refuses every Transfer-Encoding except a final `chunked` after other
 * codings; lb de-chunks and re-frames the body, so anything but plain `chunked` is refused.
 */
function checkFraming(h: Headers, upstream: Record<string, string>): Failure | undefined {
  const te = h.get("transfer-encoding");
  const cl = upstream["content-length"] ?? null;
  if (te !== null) {
    if (te.trim().toLowerCase() !== "chunked") {
      return new Failure(
        "bad_request",
        `Transfer-Encoding "${te}" is not supported: send the body chunked or with Content-Length`,
      );
    }
    if (cl !== null) {
      return new Failure("bad_request", "Content-Length and Transfer-Encoding are both present");
    }
  }
  if (cl === null) return undefined;
  const parts = cl.split(",");
  const first = parts[0].trim();
  // RFC 9110 §8.6: a list of identical values may be treated as one; anything else is an error.
  if (!/^\d{1,15}$/.test(first) || parts.some((p) => p.trim() !== first)) {
    return new Failure("bad_request", "the Content-Length header is malformed");
  }
  if (parts.length > 1) upstream["content-length"] = first;
  return undefined;
}

function checkLimits(
  url: string,
  upstream: Record<string, string>,
  limits: GuardLimits,
): Failure | undefined {
  const pathAt = url.indexOf("/", url.indexOf("//") + 2);
  if (limits.maxUriBytes > 0 && pathAt !== -1 && url.length - pathAt > limits.maxUriBytes) {
    const message = `the request target is longer than ${limits.maxUriBytes} bytes`;
    return new Failure("uri_too_long", message);
  }
  if (limits.maxHeaderBytes > 0) {
    // Counted on the headers lb is about to forward (iterating a Deno Headers object costs
    // microseconds; the plain object is already built). Hop-by-hop fields are not in it.
    let bytes = 0;
    for (const name in upstream) bytes += name.length + upstream[name].length + 4;
    if (bytes > limits.maxHeaderBytes) {
      const message = `the request headers are larger than ${limits.maxHeaderBytes} bytes`;
      return new Failure("headers_too_large", message);
    }
  }
  const declared = upstream["content-length"];
  if (limits.maxBodyBytes > 0 && declared !== undefined && Number(declared) > limits.maxBodyBytes) {
    const message = `the request body is larger than ${limits.maxBodyBytes} bytes`;
    return new Failure("body_too_large", message);
  }
  return undefined;
}
