/**
 * A request body read once from the client and written to one or more upstream tries.
 *
 * While the bytes read stay within `bufferLimit`, every chunk is kept so a retry can replay
 * the body from the start. Past the limit the kept chunks are dropped (constant memory for
 * a 1 GiB upload) and the body can no longer be replayed. `maxBytes` is counted on the
 * stream itself, never trusted from Content-Length.
 *
 * A body that fails throws a {@link Failure}: `body_too_large`, `bad_request_body` (Deno
 * found its chunked framing invalid) or `client_gone` (the connection went away, which
 * Deno reports as BadResource).
 */
import { Failure } from "./failures.ts";

/**
 * Room in a read for the chunked framing around one chunk's data: the CRLF that ends the
 * previous chunk and the next size line (`10000\r\n` for 64 KiB), with a little to spare.
 */
const FRAMING = 16;
/** Most bytes asked of the client per read: 64 KiB of data, and a chunk's framing. */
const READ_BYTES = 64 * 1024 + FRAMING;
/**
 * The first and smallest read of a body of unknown length; later ones follow the client's
 * chunks. Deno parses a chunk-size line only whole within one read, and refuses one longer
 * than 4096 bytes only once a read holds more than that: a smaller read would wait forever
 * on a long line (a 100 KB chunk extension) instead of failing it.
 */
const FIRST_READ_BYTES = 4 * 1024 + FRAMING;

export class BodySource {
  #byob: ReadableStreamBYOBReader | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #chunks: Uint8Array[] = [];
  /** Index (in the whole body's chunk sequence) of #chunks[0]. */
  #base = 0;
  #filling: Promise<void> | undefined;
  #failure: Error | undefined;
  /** The buffer of the chunk last handed out once the body is no longer replayable. */
  #spare: ArrayBuffer | undefined;
  /** Bytes of the next read (the declared length, when small, for the first one). */
  #readSize: number;
  /** A chunked body read with a BYOB reader: reads are sized to its chunks (#sizeTo). */
  #sizing: boolean;
  /** Bytes of the current client chunk read so far, as far as #sizeTo can tell. */
  #run = 0;
  /** True once the client's body has been read to the end. */
  done = false;
  /** Bytes read from the client so far. */
  bytes = 0;
  /** True while every chunk read so far is kept, so the body can be sent again. */
  replayable = true;

  /**
   * `length` is the declared Content-Length, or -1. Deno's request bodies are byte
   * streams: they are read with a BYOB reader into lb's own buffers, and once the body is
   * past `bufferLimit` (handed out once, never replayed) into the same buffer over and
   * over, so a 1 GiB upload allocates almost nothing (measured: RSS +15 MB instead of
   * +71 MB, and twice as fast, for a bare Deno sink).
   */
  constructor(
    stream: ReadableStream<Uint8Array>,
    readonly bufferLimit: number,
    readonly maxBytes: number,
    length = -1,
  ) {
    try {
      this.#byob = stream.getReader({ mode: "byob" });
    } catch {
      this.#reader = stream.getReader(); // not a byte stream
    }
    this.#readSize = length >= 0 ? Math.max(1, Math.min(length, READ_BYTES)) : FIRST_READ_BYTES;
    this.#sizing = length < 0 && this.#byob !== undefined;
  }

  #read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#reader) return this.#reader.read();
    const spare = this.#spare;
    this.#spare = undefined;
    const buf = spare !== undefined ? new Uint8Array(spare) : new Uint8Array(this.#readSize);
    if (!this.#sizing) this.#readSize = READ_BYTES;
    return this.#byob!.read(buf);
  }

  /**
   * Sizes the next read of a chunked body to the client's chunks, after a read of `n` bytes.
   *
   * Deno 2.9's HTTP/1 server answers a read of a chunked body with the data of at most one
   * chunk, and first moves what the socket holds, up to the largest read ever asked on the
   * connection, into a buffer of its own, which it then shifts down by what the read took
   * (a copy of all of it). A read smaller than a chunk with its framing takes a chunk in two
   * (65527 + 9 bytes of a 64 KiB chunk for a 64 KiB read), a read larger than the client's
   * chunks takes one chunk while pulling in more: once lb falls behind the client, that
   * buffer then grows with every read and every read copies all of it, so the upload slows
   * down quadratically (256 MiB in 64 KiB chunks from fetch: 23-33 s instead of 0.5 s) and
   * lb holds the body in memory instead of pushing back on the client. A read of exactly one
   * chunk and its framing takes as much as it pulls in. So reads double while they fill their
   * buffer (inside a chunk larger than the read), and when a chunk ends they grow to its size.
   * They never shrink: Deno's side never gives back what a larger read made it pull in.
   *
   * Limits (of Deno's reader, to be fixed there): chunks of irregular sizes (curl reading a
   * pipe) or under 4 KiB still pull in more than they take when lb is behind; and trailers
   * longer than the current read wait for bytes that never come, like the long line above
   * (the upload's idle deadline then answers 408).
   */
  #sizeTo(n: number): void {
    this.#run += n;
    if (n > this.#readSize - FRAMING) {
      // The read stopped at the end of its buffer, inside a chunk larger than it.
      this.#readSize = Math.min(READ_BYTES, 2 * (this.#readSize - FRAMING) + FRAMING);
      return;
    }
    // The chunk ended with this read (or the client's bytes ran out for now, when #run is
    // only part of a chunk: no harm, as reads only grow).
    this.#readSize = Math.min(READ_BYTES, Math.max(this.#readSize, this.#run + FRAMING));
    this.#run = 0;
  }

  #fill(): Promise<void> {
    return this.#filling ??= this.#read().then(
      (r) => {
        this.#filling = undefined;
        if (r.done) {
          this.done = true;
          return;
        }
        let chunk = r.value;
        this.bytes += chunk.byteLength;
        if (this.#sizing) this.#sizeTo(chunk.byteLength);
        if (this.maxBytes > 0 && this.bytes > this.maxBytes) {
          const message = `request body exceeds ${this.maxBytes} bytes`;
          this.#failure = new Failure("body_too_large", message);
          (this.#byob ?? this.#reader)!.cancel().catch(() => {});
          throw this.#failure;
        }
        if (this.replayable && this.bytes > this.bufferLimit) this.replayable = false;
        // A kept chunk much smaller than its buffer is copied out, so the buffer can go.
        if (this.replayable && chunk.byteLength * 4 < chunk.buffer.byteLength) {
          chunk = chunk.slice();
        }
        this.#chunks.push(chunk);
      },
      (e) => {
        this.#filling = undefined;
        this.#failure ??= clientBodyFailure(e);
        throw this.#failure;
      },
    );
  }

  /**
   * The chunk at position `i` of the body, or null at its end. A body that is no longer
   * replayable hands each chunk out once (it is dropped as it is taken), and its buffer is
   * read into again by the next call: use the chunk before asking for the next one.
   */
  async chunkAt(i: number): Promise<Uint8Array | null> {
    if (this.#failure) throw this.#failure;
    while (i >= this.#base + this.#chunks.length) {
      if (this.done) return null;
      await this.#fill();
    }
    if (i < this.#base) throw new Error("request body can no longer be replayed");
    const chunk = this.#chunks[i - this.#base];
    if (!this.replayable) {
      // Drop everything up to and including this chunk: nobody will ask for it again.
      this.#chunks.splice(0, i - this.#base + 1);
      this.#base = i + 1;
      if (this.#byob && chunk.byteOffset === 0 && chunk.buffer.byteLength === this.#readSize) {
        this.#spare = chunk.buffer as ArrayBuffer;
      }
    }
    return chunk;
  }

  /**
   * Stops reading the client's body (the request is over). A read in flight is let finish
   * first (the client's next bytes, or its leaving, settle it): Deno 2.9.6 never settles a
   * read whose stream was cancelled under it, and that read keeps its 64 KiB buffer for good
   * (5,000 early answers to stalled uploads took RSS from 70 to 497 MB).
   */
  cancel(): void {
    this.#chunks = [];
    this.#spare = undefined;
    const stop = () => {
      this.#chunks = [];
      if (!this.done) (this.#byob ?? this.#reader)!.cancel().catch(() => {});
    };
    if (this.#filling) this.#filling.then(stop, stop);
    else stop();
  }
}

/**
 * What a failed read of the client's body means: Deno reports a connection that went away
 * as BadResource, and bad chunked framing in the middle of a body as a plain Error.
 */
function clientBodyFailure(e: unknown): Failure {
  if (e instanceof Failure) return e;
  const why = e instanceof Error ? e.message : String(e);
  return e instanceof Deno.errors.BadResource
    ? new Failure("client_gone", "client went away mid-body")
    : new Failure("bad_request_body", `client body failed: ${why}`);
}
