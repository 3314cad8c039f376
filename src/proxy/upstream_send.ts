/**
 * Writing one request to a backend connection: the head, then the body with the framing
 * lb chose (the client's Content-Length, or chunked). A small body goes out with the head;
 * chunked framing costs two writes per chunk.
 */
import { Failure } from "./failures.ts";
import { latin1Bytes, requestHead } from "./http1.ts";
import type { BodySource } from "./request_body.ts";
import type { Exchange } from "./upstream_pool.ts";

/** A request body up to this size (by its Content-Length) is written with the head. */
const COALESCE_LIMIT = 16 * 1024;
const LAST_CHUNK = latin1Bytes("0\r\n\r\n");
const LAST_CHUNK_AFTER_DATA = latin1Bytes("\r\n0\r\n\r\n");

/**
 * What a send is doing now: waiting for the client's next body bytes, or for the backend
 * to take the last ones. The upload's idle deadline blames the side it waits on: the
 * client (408, nginx's client_body_timeout) or the backend (504).
 */
export type SendPhase = "client" | "backend";

/** One request being written; `failure` holds why the client's body failed, if it did. */
export interface Sending {
  phase: SendPhase;
  failure?: Failure;
}

/** The upload fell silent: the client stopped sending, or the backend stopped taking it. */
export function uploadTimeout(phase: SendPhase, ms: number): Failure {
  const what = `the request body made no progress for ${ms}ms`;
  return phase === "client"
    ? new Failure("client_body_timeout", `${what}: the client sent nothing`)
    : new Failure("upload_stalled", `${what}: the backend took nothing`);
}

/**
 * Writes the request. Never rejects: a client body failure is kept in `ex.upload.failure`
 * and closes the connection; a write failure (the backend closed) is left for the response
 * side to report.
 */
export async function sendRequest(
  ex: Exchange,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: BodySource | null,
): Promise<void> {
  const c = ex.conn;
  const state = ex.upload;
  try {
    state.phase = "backend";
    if (body === null) {
      ex.lastWrite = true;
      await c.write(latin1Bytes(requestHead(method, path, headers, false, 0)));
      ex.sent = true;
      return;
    }
    const declared = headers["content-length"];
    const length = declared === undefined ? -1 : Number(declared);
    const head = latin1Bytes(requestHead(method, path, headers, true, length));
    const next = length >= 0 && length <= COALESCE_LIMIT
      ? await sendSmall(ex, head, body, length)
      : (await c.write(head), 0);
    if (next < 0) return;
    if (!(await sendRest(ex, body, next, length))) return;
    ex.sent = true;
    if (!c.closed) ex.onSent?.();
  } catch (e) {
    if (e instanceof Failure) {
      state.failure = e;
      c.close();
    }
    // Otherwise the backend closed or reset the connection: the read side reports it.
  }
}

/** The client's chunk `i`: while lb waits for it, a stall is the client's. */
async function clientChunk(ex: Exchange, body: BodySource, i: number): Promise<Uint8Array | null> {
  ex.upload.phase = "client";
  const chunk = await body.chunkAt(i);
  ex.upload.phase = "backend";
  ex.watchdog.activity++; // the client's progress: a stall from here on is the backend's
  return chunk;
}

/**
 * A small body goes out in the same write as the head: one syscall instead of two, and a
 * backend that answers without reading the body still finds all of it there (Deno.serve,
 * for one, closes the connection after answering when it does not). Returns the index of
 * the next chunk to send, or -1 when the connection closed meanwhile.
 */
async function sendSmall(
  ex: Exchange,
  head: Uint8Array,
  body: BodySource,
  length: number,
): Promise<number> {
  const c = ex.conn;
  const first = await clientChunk(ex, body, 0);
  if (c.closed) return -1;
  if (first !== null && first.byteLength === length) {
    const both = new Uint8Array(head.byteLength + length);
    both.set(head);
    both.set(first, head.byteLength);
    ex.lastWrite = true; // Content-Length bytes are the whole body
    await c.write(both);
  } else {
    await c.write(head);
    if (first !== null && first.byteLength > 0) await c.write(first);
  }
  ex.watchdog.activity++;
  return 1;
}

/**
 * The body from chunk `from` on; chunked framing puts each chunk's closing CRLF with the
 * next size line. False when the connection closed before the end.
 */
async function sendRest(
  ex: Exchange,
  body: BodySource,
  from: number,
  length: number,
): Promise<boolean> {
  const c = ex.conn;
  let open = false;
  for (let i = from;; i++) {
    const chunk = await clientChunk(ex, body, i);
    if (c.closed) return false;
    if (chunk === null) {
      ex.lastWrite = true;
      if (length < 0) await c.write(open ? LAST_CHUNK_AFTER_DATA : LAST_CHUNK);
      return true;
    }
    if (chunk.byteLength === 0) continue;
    if (length >= 0) await c.write(chunk);
    else {
      const size = chunk.byteLength.toString(16);
      await c.write(latin1Bytes(open ? `\r\n${size}\r\n` : `${size}\r\n`));
      await c.write(chunk);
      open = true;
    }
    ex.watchdog.activity++;
  }
}
