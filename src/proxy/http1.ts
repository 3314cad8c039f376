/**
 * HTTP/1.1 on the wire, from the client side: one connection to a backend (`Http1Conn`),
 * the request head lb writes, and a strict reader of the response head and body framing
 * (RFC 9112). upstream.ts decides what to send where and when to give up; this file only
 * speaks the protocol.
 *
 * Why lb has its own client instead of `fetch` or `node:http`:
 * - Deno's fetch decompresses every gzip or br response unless the request's
 *   Accept-Encoding is exactly `identity`, keeping `Content-Encoding` on the decoded body
 *   (denoland/deno#12291), and invents Accept, Accept-Language and User-Agent headers. A
 *   proxy must pass bytes and headers through untouched.
 * - node:http (and undici) run on Deno's Node compatibility sockets and streams. Measured
 *   in one run on a 2-core machine, a proxy that only forwards did about 9-10k req/s with
 *   them, 13-14k with fetch, and 19-22k with a client on `Deno.connect` like this one.
 *
 * The reader refuses what RFC 9112 lets a recipient refuse and what a proxy must not pass
 * on: a status line that is not `HTTP/1.x NNN`, obs-folded lines, bare CR or LF, control
 * bytes in a field, a field name that is not a token, differing Content-Lengths,
 * Content-Length with Transfer-Encoding, a Transfer-Encoding other than `chunked`, bad
 * chunk sizes, and a head larger than {@link MAX_HEAD_BYTES}. Any of these is a
 * {@link ProtocolError}, which lb answers with 502.
 */

/** The backend broke HTTP/1.1: lb answers 502 and drops the connection. */
export class ProtocolError extends Error {}

/** The connection closed (or was reset) before the response was complete. */
export class ConnectionClosed extends Error {
  constructor(message: string, readonly beforeResponse: boolean) {
    super(message);
  }
}

/** Largest response head lb accepts (nginx's `proxy_buffer_size` is 4-8 KiB). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** The connection's own read buffer; heads and small bodies are read into it. */
const BUFFER_BYTES = 16 * 1024;
/** Body bytes are read straight into fresh buffers of up to this size. */
const BODY_CHUNK = 64 * 1024;
/** Longest chunk-size line (size, extensions) or trailer line lb reads. */
const MAX_LINE = 4096;

/** How a response body ends (RFC 9112 §6.3). */
export type Framing = "none" | "length" | "chunked" | "close";

export interface ResponseHead {
  status: number;
  statusText: string;
  /** Field lines as received: [name, value, name, value, …], repeated fields repeated. */
  rawHeaders: string[];
  framing: Framing;
  /** The Content-Length, for `length` framing. */
  length: number;
  /** Whether the connection may carry another request once this response has ended. */
  keepAlive: boolean;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible ASCII, obs-text, SP and HTAB (RFC 9110 §5.5); no CR, LF or NUL. */
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// deno-lint-ignore no-control-regex
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

const decoder = new TextDecoder();

/** Bytes as a string, one char per byte (latin1), as HTTP/1.1 field values are. */
export function latin1(bytes: Uint8Array): string {
  // All-ASCII bytes (nearly every head) decode natively, 4× faster than fromCharCode; a byte
  // above 0x7F either joins a multi-byte sequence (fewer chars than bytes) or becomes U+FFFD,
  // so either shows and the bytes are mapped one by one instead.
  const ascii = decoder.decode(bytes);
  if (ascii.length === bytes.length && !ascii.includes("\uFFFD")) return ascii;
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + 8192) as unknown as number[],
    );
  }
  return s;
}

/** `s` from `from` on, without leading and trailing SP and HTAB (RFC 9110 §5.6.3 OWS). */
function trimOws(s: string, from: number): string {
  let a = from;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return s.slice(a, b);
}

const encoder = new TextEncoder();

/** A string of chars up to 0xFF as bytes, one per char (TextEncoder would write UTF-8). */
export function latin1Bytes(s: string): Uint8Array<ArrayBuffer> {
  // UTF-8 of a string with any char above 0x7F is longer than the string: only then map it.
  const utf8 = encoder.encode(s);
  if (utf8.length === s.length) return utf8;
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** What the field lines say about framing and the connection. */
interface Fields {
  rawHeaders: string[];
  /** Content-Length, or -1. */
  length: number;
  chunked: boolean;
  close: boolean;
  keepAlive: boolean;
}

/**
 * Parses a response head (status line and field lines, without the final CRLF CRLF).
 * `method` decides whether a body follows (HEAD never has one). Throws ProtocolError.
 */
export function parseResponseHead(head: string, method: string): ResponseHead {
  const lines = head.split("\r\n");
  const m = STATUS_LINE.exec(lines[0]);
  if (m === null) {
    throw new ProtocolError(`invalid status line ${JSON.stringify(lines[0].slice(0, 64))}`);
  }
  const status = Number(m[2]);
  const f = parseFields(lines);
  if (f.chunked && f.length !== -1) {
    throw new ProtocolError("Content-Length together with Transfer-Encoding");
  }
  // HTTP/1.0 closes unless it says keep-alive; `close` wins over any keep-alive (RFC 9112 §9.3).
  let close = f.close || (m[1] === "0" && !f.keepAlive);
  let framing: Framing;
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) framing = "none";
  else if (f.chunked) framing = "chunked";
  else if (f.length !== -1) framing = "length";
  else {
    framing = "close";
    close = true;
  }
  return {
    status,
    statusText: m[3] ?? "",
    rawHeaders: f.rawHeaders,
    framing,
    length: framing === "length" ? f.length : 0,
    keepAlive: !close,
  };
}

/** The field lines after the status line, checked one by one. */
function parseFields(lines: string[]): Fields {
  const f: Fields = { rawHeaders: [], length: -1, chunked: false, close: false, keepAlive: false };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new ProtocolError(
        line[0] === " " || line[0] === "\t" ? "obs-folded header line" : "malformed header line",
      );
    }
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new ProtocolError(`invalid header name ${JSON.stringify(name)}`);
    const value = trimOws(line, colon + 1);
    // The name is a token and trimOws takes only SP and HTAB, so this covers the whole line:
    // a CR or LF left in it after the split on CRLF is a bare one.
    if (BAD_VALUE.test(value)) {
      throw new ProtocolError(`control character in header ${name}`);
    }
    f.rawHeaders.push(name, value);
    // Only three names matter for framing; their lengths rule out the others cheaply.
    if (name.length === 10 && name.toLowerCase() === "connection") connection(f, value);
    else if (name.length === 14 && name.toLowerCase() === "content-length") contentLength(f, value);
    else if (name.length === 17 && name.toLowerCase() === "transfer-encoding") {
      if (f.chunked || value.toLowerCase() !== "chunked") {
        throw new ProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(value)}`);
      }
      f.chunked = true;
    }
  }
  return f;
}

function connection(f: Fields, value: string): void {
  for (const t of value.split(",")) {
    const tok = t.trim().toLowerCase();
    if (tok === "close") f.close = true;
    else if (tok === "keep-alive") f.keepAlive = true;
  }
}

const DIGITS = /^\d{1,15}$/;

/** RFC 9110 §8.6: a list of identical values may be taken as one value; differing ones not. */
function contentLength(f: Fields, value: string): void {
  if (f.length === -1 && DIGITS.test(value)) {
    f.length = Number(value);
    return;
  }
  for (const part of value.split(",")) {
    const v = part.trim();
    if (!DIGITS.test(v)) throw new ProtocolError("malformed Content-Length");
    const n = Number(v);
    if (f.length !== -1 && n !== f.length) {
      throw new ProtocolError("differing Content-Length values");
    }
    f.length = n;
  }
}

/**
 * The request head lb writes: request line, `headers` (lower-case names, as a Headers
 * object yields them, already cleaned of hop-by-hop fields), and the framing lb itself
 * chose (`length` bytes, or chunked when `length` is -1 and `hasBody`). A `content-length`
 * or `transfer-encoding` in `headers` is left out.
 */
export function requestHead(
  method: string,
  target: string,
  headers: Record<string, string>,
  hasBody: boolean,
  length: number,
): string {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const name in headers) {
    if (name === "content-length" || name === "transfer-encoding") continue;
    head += `${name}: ${headers[name]}\r\n`;
  }
  if (hasBody) {
    head += length >= 0 ? `content-length: ${length}\r\n` : "transfer-encoding: chunked\r\n";
  }
  return head + "\r\n";
}

/** Where in `buf[from, to)` the head ends (index of the CRLF CRLF), or -1. */
function headEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(from, 3); i < to; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
      return i - 3;
    }
  }
  return -1;
}

/**
 * One keep-alive connection to a backend. One exchange at a time: write a request, read
 * its response head, then its body; `reusable` says whether another may follow.
 *
 * While the connection waits in the pool a read is kept pending on it (`watch`), so a
 * backend that closes an idle connection is noticed at once (`onIdleClose`), and the
 * next response's first bytes arrive through that same read: no extra work per request.
 */
export class Http1Conn {
  #buf = new Uint8Array(BUFFER_BYTES);
  #start = 0;
  #end = 0;
  /** A read into #buf[#end…] in flight. */
  #pending: Promise<number | null> | null = null;
  #closed = false;
  #idleClose: (() => void) | null = null;
  /**
   * Parked, or claimed with no byte of the next request written yet: whatever the backend
   * sends now answers no request of lb's.
   */
  #unasked = false;

  // Body state of the current response.
  #framing: Framing = "none";
  /** Bytes left: of a `length` body, or of the current chunk. */
  #left = 0;
  /** Chunked: the body's last chunk and trailers have been read. */
  #bodyDone = true;
  /** The last response's head announced keep-alive, and its body was read to the end. */
  #keepAlive = false;

  /** When it last went idle (performance.now()). */
  idleSince = 0;

  /** `conn`: TCP, or TLS to an https:// backend (only read, write and close are used). */
  constructor(readonly conn: Deno.Conn) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether the last exchange ended cleanly and the connection can carry another. */
  get reusable(): boolean {
    return !this.#closed && this.#keepAlive && this.#bodyDone && this.#start === this.#end;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#idleClose = null;
    try {
      this.conn.close();
    } catch {
      // already closed by the runtime
    }
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    // From here on the backend may answer: bytes arriving now can be the response.
    this.#unasked = false;
    let off = 0;
    while (off < bytes.length) {
      off += await this.conn.write(off === 0 ? bytes : bytes.subarray(off));
    }
  }

  /**
   * Parks the connection in the pool: keeps a read pending so that a backend that closes it,
   * or sends anything while it waits, is seen at once. `onDrop` runs when that happens (the
   * connection is closed first).
   *
   * The pending read outlives the parking: the next exchange reads its response through it.
   * So it is guarded for both phases. Bytes that arrive while parked, or after the connection
   * was claimed but before the first byte of its next request was written (a request whose
   * body has not arrived yet), answer no request of lb's: they can only be a stray or spoofed
   * response, and must never be read as the answer to the next request. The first then drops
   * the connection, the second fails the read as closed before a response (a stale
   * connection, which lb retries on a new one).
   */
  park(onDrop: () => void): void {
    this.idleSince = performance.now();
    this.#idleClose = onDrop;
    this.#unasked = true;
    const guarded = this.#read().then((n) => {
      if (n === null || n > 0) {
        if (this.#idleClose !== null) this.#dropIdle();
        else if (n !== null && this.#unasked) {
          this.close();
          throw new ConnectionClosed("the backend sent bytes before the request", true);
        }
      }
      return n;
    }, (e) => {
      if (this.#idleClose !== null) this.#dropIdle();
      throw e;
    });
    guarded.catch(() => {}); // a dropped connection's read is awaited by nobody
    this.#pending = guarded;
  }

  /**
   * Takes a parked connection for a new exchange. False (and the connection is closed)
   * when it is no longer usable: closed, or holding bytes that arrived while it was idle.
   */
  claim(): boolean {
    if (this.#closed) return false;
    if (this.#start !== this.#end) {
      this.close();
      return false;
    }
    this.#idleClose = null;
    return true;
  }

  #dropIdle(): void {
    const cb = this.#idleClose;
    this.#idleClose = null;
    this.close();
    cb?.();
  }

  /** The read in flight, or a new one into the free end of #buf. */
  #read(): Promise<number | null> {
    if (this.#pending !== null) return this.#pending;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
    }
    const p = this.conn.read(this.#buf.subarray(this.#end));
    this.#pending = p;
    return p;
  }

  /** Reads more bytes into #buf; false at end of stream. */
  async #fill(): Promise<boolean> {
    const p = this.#read();
    let n: number | null;
    try {
      n = await p;
    } finally {
      this.#pending = null;
    }
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /**
   * Reads the next response head, skipping interim (1xx) responses. Throws ProtocolError
   * for a broken head, ConnectionClosed when the stream ends before a whole head, and the
   * runtime's error when the connection fails.
   */
  async readHead(method: string): Promise<ResponseHead> {
    let scanned = this.#start;
    let gotAny = this.#end > this.#start;
    for (;;) {
      const end = headEnd(this.#buf, scanned, this.#end);
      if (end === -1) {
        if (this.#end - this.#start > MAX_HEAD_BYTES) {
          throw new ProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`);
        }
        scanned = Math.max(this.#start, this.#end - 3);
        const before = this.#start;
        if (!(await this.#fill())) {
          this.#keepAlive = false;
          throw new ConnectionClosed(
            gotAny
              ? "connection closed in the response head"
              : "connection closed before a response",
            !gotAny,
          );
        }
        // #fill may have moved the unread bytes to the front of the buffer.
        scanned -= before - this.#start;
        gotAny = true;
        continue;
      }
      if (end - this.#start > MAX_HEAD_BYTES) {
        throw new ProtocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`);
      }
      const head = parseResponseHead(latin1(this.#buf.subarray(this.#start, end)), method);
      this.#start = end + 4;
      if (head.status < 200) {
        if (head.status === 101) throw new ProtocolError("unexpected 101 Switching Protocols");
        scanned = this.#start;
        continue; // 100 Continue, 103 Early Hints: the real response follows.
      }
      this.#framing = head.framing;
      this.#keepAlive = head.keepAlive;
      this.#left = head.length;
      this.#bodyDone = head.framing === "none" || (head.framing === "length" && head.length === 0);
      return head;
    }
  }

  /** Whether the current response's body has been read to its end. */
  get bodyDone(): boolean {
    return this.#bodyDone;
  }

  /**
   * The next piece of the current response's body (a buffer of its own, which the caller
   * may keep), or null at its end. Throws ConnectionClosed when the backend stops early,
   * ProtocolError on bad chunk framing.
   */
  async readBody(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#bodyDone) return null;
    switch (this.#framing) {
      case "length": {
        const piece = await this.#data(this.#left, false);
        this.#left -= piece.byteLength;
        if (this.#left === 0) this.#bodyDone = true;
        return piece;
      }
      case "close": {
        if (this.#start === this.#end) {
          const buf = new Uint8Array(BODY_CHUNK);
          const n = await this.conn.read(buf);
          if (n === null) {
            this.#bodyDone = true;
            return null;
          }
          return buf.subarray(0, n);
        }
        const piece = this.#buf.slice(this.#start, this.#end);
        this.#start = this.#end;
        return piece;
      }
      case "chunked":
        for (;;) {
          if (this.#left > 0) {
            const piece = await this.#data(this.#left, true);
            this.#left -= piece.byteLength;
            if (this.#left === 0) await this.#crlf();
            return piece;
          }
          const size = await this.#chunkSize();
          if (size === 0) {
            await this.#trailers();
            this.#bodyDone = true;
            return null;
          }
          this.#left = size;
        }
      default:
        return null;
    }
  }

  /**
   * The rest of a Content-Length body when all of it is already in the buffer (a small body
   * usually arrives with its head), so it is taken without a read, a timer or an await;
   * null when it is not (read it with readBody()).
   */
  takeBufferedBody(): Uint8Array<ArrayBuffer> | null {
    if (this.#bodyDone || this.#framing !== "length") return null;
    const left = this.#left;
    if (this.#end - this.#start < left) return null;
    const piece = this.#buf.slice(this.#start, this.#start + left);
    this.#start += left;
    this.#left = 0;
    this.#bodyDone = true;
    return piece;
  }

  /** Up to `max` body bytes: what is buffered, else a read straight into a new buffer. */
  async #data(max: number, chunked: boolean): Promise<Uint8Array<ArrayBuffer>> {
    const buffered = this.#end - this.#start;
    if (buffered > 0) {
      const take = Math.min(buffered, max);
      const piece = this.#buf.slice(this.#start, this.#start + take);
      this.#start += take;
      return piece;
    }
    const buf = new Uint8Array(Math.min(max, BODY_CHUNK));
    const n = await this.conn.read(buf);
    if (n === null) {
      this.#keepAlive = false;
      throw new ConnectionClosed(
        chunked ? "connection closed in a chunk" : "connection closed mid-body",
        false,
      );
    }
    return n === buf.length ? buf : buf.subarray(0, n);
  }

  /** One CRLF-terminated line from the buffer (chunk-size or trailer line), without it. */
  async #line(): Promise<string> {
    let scanned = this.#start;
    for (;;) {
      for (let i = scanned; i < this.#end; i++) {
        if (this.#buf[i] === 10) {
          if (i === this.#start || this.#buf[i - 1] !== 13) {
            throw new ProtocolError("bare LF in chunked framing");
          }
          if (i - this.#start > MAX_LINE) throw new ProtocolError("chunk line too long");
          const line = latin1(this.#buf.subarray(this.#start, i - 1));
          this.#start = i + 1;
          return line;
        }
      }
      if (this.#end - this.#start > MAX_LINE) throw new ProtocolError("chunk line too long");
      const before = this.#start;
      scanned = this.#end;
      if (!(await this.#fill())) {
        this.#keepAlive = false;
        throw new ConnectionClosed("connection closed in chunked framing", false);
      }
      scanned -= before - this.#start;
    }
  }

  async #chunkSize(): Promise<number> {
    const line = await this.#line();
    const semi = line.indexOf(";");
    const hex = (semi === -1 ? line : line.slice(0, semi)).trimEnd();
    if (!/^[0-9A-Fa-f]{1,13}$/.test(hex)) {
      throw new ProtocolError(`bad chunk size ${JSON.stringify(hex.slice(0, 20))}`);
    }
    return parseInt(hex, 16);
  }

  async #crlf(): Promise<void> {
    if ((await this.#line()) !== "") throw new ProtocolError("chunk data longer than its size");
  }

  /** Trailer fields after the last chunk are read and dropped (Deno.serve cannot send them). */
  async #trailers(): Promise<void> {
    let bytes = 0;
    for (;;) {
      const line = await this.#line();
      if (line === "") return;
      bytes += line.length;
      if (bytes > MAX_HEAD_BYTES) throw new ProtocolError("trailers too large");
    }
  }
}
