/**
 * A request body read once from the client and written to one or more upstream tries.
 *
 * While the bytes read stay within `bufferLimit`, every chunk is kept so a retry can replay
 * the body from the start. Past the limit the kept chunks are dropped (constant memory for
 * a 1 GiB upload) and the body can no longer be replayed. `maxBytes` is counted on the
 * stream itself, never trusted from Content-Length.
 */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}

/** The client's body failed: it went away, or (`malformed`) its framing was invalid. */
export class ClientBodyError extends Error {
  constructor(message: string, readonly malformed: boolean) {
    super(message);
  }
}

export class BodySource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[] = [];
  /** Index (in the whole body's chunk sequence) of #chunks[0]. */
  #base = 0;
  #filling: Promise<void> | undefined;
  #failure: Error | undefined;
  /** True once the client's body has been read to the end. */
  done = false;
  /** Bytes read from the client so far. */
  bytes = 0;
  /** True while every chunk read so far is kept, so the body can be sent again. */
  replayable = true;

  constructor(
    stream: ReadableStream<Uint8Array>,
    readonly bufferLimit: number,
    readonly maxBytes: number,
  ) {
    this.#reader = stream.getReader();
  }

  /** Whether any byte has been handed to a try. */
  get started(): boolean {
    return this.bytes > 0 || this.done;
  }

  #fill(): Promise<void> {
    return this.#filling ??= this.#reader.read().then(
      (r) => {
        this.#filling = undefined;
        if (r.done) {
          this.done = true;
          return;
        }
        this.bytes += r.value.byteLength;
        if (this.maxBytes > 0 && this.bytes > this.maxBytes) {
          this.#failure = new BodyTooLargeError(this.maxBytes);
          this.#reader.cancel().catch(() => {});
          throw this.#failure;
        }
        if (this.replayable && this.bytes > this.bufferLimit) this.replayable = false;
        this.#chunks.push(r.value);
      },
      (e) => {
        this.#filling = undefined;
        const why = String((e as Error)?.message ?? e);
        // Deno reports bad chunked framing in the middle of a body as "invalid HTTP/1 request".
        this.#failure ??= new ClientBodyError(
          `client body failed: ${why}`,
          /invalid|malformed/i.test(why),
        );
        throw this.#failure;
      },
    );
  }

  /**
   * The chunk at position `i` of the body, or null at its end. A body that is no longer
   * replayable hands each chunk out once (it is dropped as it is taken).
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
    }
    return chunk;
  }

  /** Stops reading the client's body (the request is over). */
  cancel(): void {
    this.#chunks = [];
    if (!this.done) this.#reader.cancel().catch(() => {});
  }
}
