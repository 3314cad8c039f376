/**
 * Header rules of a proxy (RFC 9110 §7.6): hop-by-hop fields never cross lb, in either
 * direction, and lb says who the client was (X-Forwarded-*, Via) only after removing them,
 * so `Connection: x-forwarded-for` cannot erase what lb adds.
 */

/** Always hop-by-hop (RFC 9110 §7.6.1), plus the legacy ones proxies strip too. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** The extra names a Connection header lists (lower-cased), or undefined when there are none. */
function connectionTokens(value: string | null | undefined): Set<string> | undefined {
  if (!value) return undefined;
  let out: Set<string> | undefined;
  for (const t of value.split(",")) {
    const name = t.trim().toLowerCase();
    if (name && name !== "close" && name !== "keep-alive") (out ??= new Set()).add(name);
  }
  return out;
}

export interface ForwardInfo {
  /** The socket peer's address. */
  peer: string;
  /** Whether the socket peer is a trusted proxy whose X-Forwarded-* may be kept. */
  trusted: boolean;
  requestId: string;
  /** `https` when the traffic listener serves TLS, else `http`. */
  proto: string;
  /**
   * Header names with `_`: `keep` forwards them; `drop` and `reject` leave them out (the
   * admit stage refuses the request for `reject`). CGI and WSGI servers fold `_` into `-`,
   * so `Transfer_Encoding` would reach them as a second Transfer-Encoding (nginx's
   * `underscores_in_headers off` drops them too).
   */
  underscores: "drop" | "keep" | "reject";
  /** Set to how many header names with `_` the client sent. */
  underscored: number;
}

const VIA = "1.1 lb";

/**
 * The headers to send upstream: the client's, minus hop-by-hop fields, plus X-Forwarded-*,
 * Via and X-Request-Id. The client's Host is kept as it is.
 */
export function upstreamRequestHeaders(h: Headers, info: ForwardInfo): Record<string, string> {
  const extra = connectionTokens(h.get("connection"));
  const out: Record<string, string> = {};
  let xff: string | undefined;
  let xfh: string | undefined;
  let xfp: string | undefined;
  let via: string | undefined;
  // forEach, not for…of: Deno's pair iterator makes a result object and a [name, value]
  // array for every field (~0.9 KB of garbage per request), forEach hands over the strings.
  h.forEach((value, name) => {
    if (HOP_BY_HOP.has(name) || (extra !== undefined && extra.has(name))) return;
    if (name.includes("_")) {
      info.underscored++;
      if (info.underscores !== "keep") return;
    }
    switch (name) {
      case "x-forwarded-for":
        xff = value;
        return;
      case "x-forwarded-host":
        xfh = value;
        return;
      case "x-forwarded-proto":
        xfp = value;
        return;
      case "forwarded":
      case "x-real-ip":
        if (!info.trusted) return;
        break;
      case "via":
        via = value;
        return;
      case "x-request-id":
        return;
    }
    out[name] = value;
  });
  // From an untrusted peer, client-sent forwarding headers are replaced, not extended.
  out["x-forwarded-for"] = info.trusted && xff ? `${xff}, ${info.peer}` : info.peer;
  out["x-forwarded-proto"] = info.trusted && xfp ? xfp : info.proto;
  const host = info.trusted && xfh ? xfh : h.get("host");
  if (host) out["x-forwarded-host"] = host;
  out["via"] = via ? `${via}, ${VIA}` : VIA;
  out["x-request-id"] = info.requestId;
  return out;
}

/**
 * The backend's response headers for the client, from the field lines http1.ts read
 * ([name, value, …]):
 * hop-by-hop fields removed, repeated fields (Set-Cookie) kept repeated, Via and X-Request-Id
 * added. Returned as [name, value] pairs, which `new Response` takes for less than half the
 * cost of appending to a Headers object.
 */
export function downstreamResponseHeaders(raw: string[], requestId: string): [string, string][] {
  let extra: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === "connection") {
      const t = connectionTokens(raw[i + 1]);
      if (t) { for (const n of t) (extra ??= new Set()).add(n); }
    }
  }
  const out: [string, string][] = [];
  let hasVia = false;
  let hasId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(name) || (extra !== undefined && extra.has(name))) continue;
    if (name === "via") {
      hasVia = true;
      out.push([name, `${raw[i + 1]}, ${VIA}`]);
      continue;
    }
    if (name === "x-request-id") hasId = true;
    out.push([name, raw[i + 1]]);
  }
  if (!hasVia) out.push(["via", VIA]);
  if (!hasId) out.push(["x-request-id", requestId]);
  return out;
}

/**
 * `headers` as `new Response` takes them cheapest: a plain object when no name repeats, else
 * the pairs as they are. Deno converts a list of pairs pair by pair through WebIDL (a new
 * array and iterator for each; ~3.5 KB of garbage per answer, allocation sampling under
 * wrk), and copies an object's properties directly. `__proto__` would set the object's
 * prototype instead of a property, so it keeps the pairs too.
 */
export function responseHeaderInit(
  headers: [string, string][],
): Record<string, string> | [string, string][] {
  const init: Record<string, string> = {};
  for (let i = 0; i < headers.length; i++) {
    const name = headers[i][0];
    if (name === "__proto__" || Object.hasOwn(init, name)) return headers;
    init[name] = headers[i][1];
  }
  return init;
}
