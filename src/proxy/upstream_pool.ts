/**
 * Keep-alive connections to backends: idle ones per backend (last in, first out), the busy
 * ones (so shutdown can close them), and the one decision of whether a connection whose
 * exchange is over goes back to the pool or is closed.
 */
import type { Http1Conn } from "./http1.ts";
import type { Watchdog } from "./timers.ts";
import type { Sending } from "./upstream_send.ts";

/** Idle connections kept per backend at most; more are closed as they come back. */
const MAX_IDLE_PER_BACKEND = 1024;

/** One request on one connection: the state that decides whether the connection is reused. */
export class Exchange {
  /** Settles when the request (head and body) has been written, or its writing stopped. */
  writing: Promise<void> = Promise.resolve();
  /** What the upload is waiting on, and why the client's body failed if it did. */
  readonly upload: Sending = { phase: "backend" };
  /** The whole request went out. */
  sent = false;
  /** The last piece of the request body is being written. */
  lastWrite = false;
  released = false;
  /** Runs once the whole request has been written. */
  onSent: (() => void) | undefined;

  constructor(readonly key: string, readonly conn: Http1Conn, readonly watchdog: Watchdog) {}
}

export class ConnectionPool {
  #idle = new Map<string, Http1Conn[]>();
  #busy = new Set<Http1Conn>();
  #pruneTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** `idleTimeout`: idle connections are closed after this (ms), below backends' keep-alive. */
  constructor(readonly idleTimeout: number) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** Idle pooled connections, over all backends. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /** The most recently parked live connection to `key`, claimed for a new exchange. */
  take(key: string): Http1Conn | undefined {
    const list = this.#idle.get(key);
    if (list === undefined) return undefined;
    let c = list.pop();
    while (c !== undefined && !c.claim()) c = list.pop();
    return c;
  }

  /** Counts `c` as carrying an exchange until it is released. */
  hold(c: Http1Conn): void {
    this.#busy.add(c);
  }

  /**
   * Ends an exchange: its connection goes back to the pool when the response was read to
   * the end (`clean`), the request was fully written and both sides allow keep-alive;
   * otherwise it is closed.
   */
  release(ex: Exchange, clean: boolean): void {
    if (ex.released) return;
    ex.released = true;
    const c = ex.conn;
    const keep = () => ex.sent && c.reusable && !this.#closed;
    if (clean && !ex.sent && ex.lastWrite && c.reusable) {
      // The answer came while the body's last bytes were still being handed to the socket.
      ex.writing.then(() => this.#settle(ex.key, c, keep()));
      return;
    }
    // Otherwise a response that came before the whole body went out ends the connection.
    this.#settle(ex.key, c, clean && keep());
  }

  /** Drops `c` from the busy set and closes it (a try that failed). */
  drop(c: Http1Conn): void {
    this.#busy.delete(c);
    c.close();
  }

  #settle(key: string, c: Http1Conn, reuse: boolean): void {
    this.#busy.delete(c);
    if (reuse) this.#park(key, c);
    else c.close();
  }

  #park(key: string, c: Http1Conn): void {
    let list = this.#idle.get(key);
    if (list === undefined) this.#idle.set(key, list = []);
    if (this.#closed || list.length >= MAX_IDLE_PER_BACKEND) return c.close();
    list.push(c);
    c.park(() => {
      const i = list.indexOf(c);
      if (i !== -1) list.splice(i, 1);
    });
    if (this.#pruneTimer === undefined) {
      const every = Math.max(50, Math.min(1000, this.idleTimeout / 4));
      this.#pruneTimer = setInterval(() => this.#prune(), every);
    }
  }

  /** Closes connections idle for longer than idleTimeout; the timer stops when none are left. */
  #prune(): void {
    const now = performance.now();
    let left = 0;
    for (const [key, list] of this.#idle) {
      const keep = list.filter((c) => {
        if (c.closed) return false;
        if (now - c.idleSince < this.idleTimeout) return true;
        c.close();
        return false;
      });
      if (keep.length === 0) this.#idle.delete(key);
      else this.#idle.set(key, keep);
      left += keep.length;
    }
    if (left === 0) {
      clearInterval(this.#pruneTimer);
      this.#pruneTimer = undefined;
    }
  }

  /** Closes every idle connection (busy ones go on; the caller keeps them from coming back). */
  closeIdle(): void {
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
  }

  /** Stops the pruning timer and closes every connection, idle or busy. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#pruneTimer);
    this.#pruneTimer = undefined;
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
    for (const c of this.#busy) c.close();
    this.#busy.clear();
  }
}
