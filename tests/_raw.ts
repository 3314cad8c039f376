/**
 * Raw-socket helpers for the hostile-input tests: send exact bytes, keep the socket open
 * while reading (Deno.serve answers nothing to a client that half-closes), read with a
 * deadline, and tell a closed connection from one that is merely quiet.
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What came back on one raw connection. */
export interface RawResult {
  /** Every byte received, decoded as latin1-ish UTF-8 (lossy for binary bodies). */
  text: string;
  /** The raw bytes received. */
  bytes: Uint8Array;
  /** True when the peer closed (EOF or reset) before the deadline. */
  closed: boolean;
  /** True when the peer reset the connection. */
  reset: boolean;
}

export interface RawOptions {
  /** Stop reading after this long (ms). Default 3000. */
  timeoutMs?: number;
  /**
   * Stop as soon as this returns true for the text received so far, without waiting for a
   * close (e.g. one full response on a keep-alive connection).
   */
  until?: (text: string) => boolean;
  /** Delay between writing successive parts of `data` when it is an array (ms). */
  gapMs?: number;
}

/** Opens a TCP connection to the `http://host:port` origin of `url`. */
export function connectTo(url: string): Promise<Deno.TcpConn> {
  const u = new URL(url);
  return Deno.connect({ hostname: u.hostname, port: Number(u.port) });
}

/** Reads from `conn` until `until` holds, the peer closes, or the deadline passes. */
export async function readFor(conn: Deno.Conn, opts: RawOptions = {}): Promise<RawResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const chunks: Uint8Array[] = [];
  let total = 0;
  let closed = false;
  let reset = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const read = conn.read(buf).catch((e) => {
        if (
          e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
          e instanceof Deno.errors.ConnectionAborted
        ) {
          reset = true;
          return null;
        }
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) {
          return "timeout" as const;
        }
        throw e;
      });
      const n = await Promise.race([read, timeout]);
      if (n === "timeout") {
        // Unblock the pending read so nothing leaks: closing the conn rejects it.
        break;
      }
      if (n === null) {
        closed = true;
        break;
      }
      chunks.push(buf.slice(0, n));
      total += n;
      if (opts.until && opts.until(dec.decode(concat(chunks, total)))) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const bytes = concat(chunks, total);
  return { text: dec.decode(bytes), bytes, closed, reset };
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/** Writes all of `data` (string or bytes), ignoring a peer that already closed. */
export async function writeAll(conn: Deno.Conn, data: string | Uint8Array): Promise<boolean> {
  let b = typeof data === "string" ? enc.encode(data) : data;
  try {
    while (b.byteLength > 0) {
      const n = await conn.write(b);
      b = b.subarray(n);
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends `data` on a fresh connection and reads the answer until `until`, close or the
 * deadline; then closes the socket. An array is written part by part, `gapMs` apart.
 */
export async function rawExchange(
  url: string,
  data: string | Uint8Array | (string | Uint8Array)[],
  opts: RawOptions = {},
): Promise<RawResult> {
  const conn = await connectTo(url);
  try {
    const parts = Array.isArray(data) ? data : [data];
    const reading = readFor(conn, opts);
    for (let i = 0; i < parts.length; i++) {
      if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      if (!(await writeAll(conn, parts[i]))) break;
    }
    return await reading;
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/** A parsed HTTP/1.x response head. */
export interface ResponseHead {
  version: string;
  status: number;
  reason: string;
  headers: Map<string, string[]>;
  /** Bytes after the head (the start of the body). */
  rest: string;
}

/** Parses the first response head in `text`, or undefined when there is none. */
export function parseHead(text: string): ResponseHead | undefined {
  const end = text.indexOf("\r\n\r\n");
  if (end === -1) return undefined;
  const lines = text.slice(0, end).split("\r\n");
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) return undefined;
  const headers = new Map<string, string[]>();
  for (const l of lines.slice(1)) {
    const c = l.indexOf(":");
    const k = l.slice(0, c).trim().toLowerCase();
    headers.set(k, [...(headers.get(k) ?? []), l.slice(c + 1).trim()]);
  }
  return {
    version: m[1],
    status: Number(m[2]),
    reason: m[3] ?? "",
    headers,
    rest: text.slice(end + 4),
  };
}

/** Every status code of every response head in `text`, in order (pipelined answers). */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})[ \r]/g)].map((m) => Number(m[1]));
}

/** Just enough of a full response: a head, and a body whose framing says it is complete. */
export function hasFullResponse(text: string): boolean {
  const h = parseHead(text);
  if (!h) return false;
  const cl = h.headers.get("content-length")?.[0];
  if (cl !== undefined) return new TextEncoder().encode(h.rest).byteLength >= Number(cl);
  if (h.headers.get("transfer-encoding")?.[0]?.includes("chunked")) {
    return /(^|\r\n)0\r\n\r\n/.test(h.rest);
  }
  return h.status === 204 || h.status === 304;
}

/** A backend that records the exact bytes of every connection and answers each request. */
export interface RecordingBackend {
  url: string;
  port: number;
  /** Raw bytes received, one string per connection, in the order connections arrived. */
  connections: string[];
  /** All bytes received on every connection, concatenated. */
  all(): string;
  /** Number of complete requests (head and body) seen across all connections. */
  requestCount(): number;
  /** Connections the peer (lb) closed or reset. */
  peerClosed(): number;
  close(): Promise<void>;
}

/** A raw TCP server for tests: `serve` runs once per accepted connection. */
export interface TcpBackend {
  port: number;
  url: string;
  /** True once close() has begun: connection errors from then on are the server's doing. */
  readonly closing: boolean;
  /** Stops accepting, closes every open connection and waits for every `serve` to end. */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1, port 0, and runs `serve` for each connection; the connection is
 * closed when `serve` returns or throws (a peer that went away is not an error here).
 */
export function serveTcp(serve: (conn: Deno.TcpConn) => Promise<void>): TcpBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.TcpConn>();
  const tasks = new Set<Promise<void>>();
  let closing = false;
  const run = async (conn: Deno.TcpConn) => {
    try {
      await serve(conn);
    } catch {
      // the peer went away
    } finally {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      const t = run(conn).finally(() => tasks.delete(t));
      tasks.add(t);
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get closing() {
      return closing;
    },
    async close() {
      closing = true;
      listener.close();
      await accepting.catch(() => {});
      for (const c of open) {
        try {
          c.close();
        } catch {
          // closed already
        }
      }
      await Promise.all(tasks);
    },
  };
}

/**
 * What the recording backend does with a complete request: a string is written as the
 * answer; `{ write, close: true }` writes (if anything) then closes the connection;
 * undefined answers nothing and keeps the connection open.
 */
export type Answer = string | { write?: string; close: true } | undefined;

const OK_ANSWER = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

/**
 * A raw `Deno.listen` backend that answers every request it can delimit (by default with a
 * small keep-alive 200), recording the exact bytes. Bodies are delimited by Content-Length
 * or chunked framing (a simple parser: enough to answer; the bytes are what tests inspect).
 */
export function startRecordingBackend(
  respond: (head: string) => Answer = () => OK_ANSWER,
): RecordingBackend {
  const connections: string[] = [];
  let heads = 0;
  let peerClosed = 0;
  const server = serveTcp(async (conn) => {
    const idx = connections.push("") - 1;
    const buf = new Uint8Array(64 * 1024);
    let pending = "";
    try {
      reading: while (true) {
        const n = await conn.read(buf);
        if (n === null) {
          peerClosed++;
          break;
        }
        const s = dec.decode(buf.subarray(0, n), { stream: true });
        connections[idx] += s;
        pending += s;
        while (true) {
          const end = pending.indexOf("\r\n\r\n");
          if (end === -1) break;
          const head = pending.slice(0, end);
          const rest = pending.slice(end + 4);
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          const chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head);
          let bodyEnd: number;
          if (chunked) {
            const z = rest.search(/(^|\r\n)0\r\n\r\n/);
            if (z === -1) break;
            bodyEnd = rest.indexOf("0\r\n\r\n", z) + 5;
          } else if (cl) {
            if (rest.length < Number(cl[1])) break;
            bodyEnd = Number(cl[1]);
          } else bodyEnd = 0;
          heads++;
          pending = rest.slice(bodyEnd);
          const answer = respond(head);
          if (answer === undefined) continue;
          if (typeof answer === "string") {
            await conn.write(enc.encode(answer));
            continue;
          }
          if (answer.write) await conn.write(enc.encode(answer.write));
          break reading;
        }
      }
    } catch {
      if (!server.closing) peerClosed++; // reset by the proxy: the bytes recorded so far are what counts
    }
  });
  return {
    url: server.url,
    port: server.port,
    connections,
    all: () => connections.join(""),
    requestCount: () => heads,
    peerClosed: () => peerClosed,
    close: () => server.close(),
  };
}

/** Polls `fn` until it returns true or `ms` pass; returns the last result. */
export async function waitFor(fn: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return await fn();
}

/**
 * lb.yaml text for a test: listen and admin on port 0, no access log, no health checks,
 * `backends`, then `extra` (more top-level YAML keys; an `admin:` line there replaces the default).
 */
export function testYaml(backends: string[], extra = ""): string {
  return [
    "listen: { host: 127.0.0.1, port: 0 }",
    ...(/^admin:/m.test(extra) ? [] : ["admin: { host: 127.0.0.1, port: 0 }"]),
    "log: { access: false, format: json }",
    "health: { enabled: false }",
    "backends:",
    ...backends.map((u) => `  - url: ${u}`),
    extra,
  ].join("\n");
}
