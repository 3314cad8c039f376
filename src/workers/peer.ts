/**
 * One end of the channel between a `--workers` parent and one of its workers: JSON lines
 * over a Unix socket, each line a request (`{id, type, …}`) or the answer to one
 * (`{id, reply}` or `{id, error}`). Either end may ask; answers may come in any order.
 */
const enc = new TextEncoder();

/** Answers the other end's requests: `type` and the request's fields. */
export type Answerer = (type: string, body: Record<string, unknown>) => Promise<unknown>;

interface Waiting {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Peer {
  #next = 1;
  #waiting = new Map<number, Waiting>();
  #closed = false;
  #writing: Promise<unknown> = Promise.resolve();
  /** Settles when the other end has gone (or `close` was called). */
  readonly done: Promise<void>;

  constructor(readonly conn: Deno.Conn, answer: Answerer) {
    this.done = this.#read(answer).catch(() => {}).finally(() => this.#end());
  }

  /** Asks the other end; rejects after `timeoutMs`, or when the channel closes. */
  ask(type: string, body: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error("the channel is closed"));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`no answer to "${type}" within ${timeoutMs}ms`));
      }, timeoutMs);
      this.#waiting.set(id, { resolve, reject, timer });
      this.#send({ ...body, id, type });
    });
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  #send(message: Record<string, unknown>): void {
    const line = enc.encode(JSON.stringify(message) + "\n");
    this.#writing = this.#writing.then(async () => {
      let off = 0;
      while (off < line.length) off += await this.conn.write(line.subarray(off));
    }).catch(() => this.close());
  }

  async #read(answer: Answerer): Promise<void> {
    let buf = "";
    for await (const chunk of this.conn.readable.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.#take(line, answer);
      }
    }
  }

  #take(line: string, answer: Answerer): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line);
    } catch {
      return; // not a line this channel writes
    }
    const id = m.id as number;
    if (typeof m.type === "string") {
      answer(m.type, m).then(
        (reply) => this.#send({ id, reply }),
        (e) => this.#send({ id, error: (e as Error).message }),
      );
      return;
    }
    const w = this.#waiting.get(id);
    if (!w) return;
    this.#waiting.delete(id);
    clearTimeout(w.timer);
    if (typeof m.error === "string") w.reject(new Error(m.error));
    else w.resolve(m.reply);
  }

  #end(): void {
    this.#closed = true;
    for (const w of this.#waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new Error("the channel closed"));
    }
    this.#waiting.clear();
    this.close();
  }
}
