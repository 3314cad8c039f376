/**
 * One of lb's listeners (traffic, admin, the HTTP→HTTPS redirect): `Deno.serve` with one-line
 * errors, plain or with TLS, and a certificate that can change while it runs.
 *
 * `Deno.serve` takes one certificate when it starts and offers no way to change it (no SNI
 * callback in Deno 2.9.6's stable API). So a new certificate gets a new `Deno.serve` on the
 * same port (SO_REUSEPORT), and the old one winds down: for {@link DRAIN_MS} its answers
 * carry `Connection: close`, so each HTTP/1.1 client leaves after a complete response and
 * comes back on a new connection (closing an idle keep-alive connection instead races with
 * the client's next request: measured, 40 of 2,700 wrk requests failed per swap); then it
 * stops accepting, lets requests in flight finish and sends HTTP/2 connections GOAWAY
 * (HTTP/2 drops the Connection field). A TLS listener therefore always binds with
 * SO_REUSEPORT.
 */
import type { Logger } from "./log.ts";
import type { PemPair } from "./tls/certificate.ts";

export interface ListenerOptions {
  /** For messages: "traffic", "the admin API"… */
  what: string;
  host: string;
  port: number;
  handler: Deno.ServeHandler<Deno.NetAddr>;
  logger: Logger;
  /** Share the port with other lb processes (`--workers`). */
  reusePort?: boolean;
  /** HTTPS with this certificate (HTTP/2 and HTTP/1.1 by ALPN). */
  tls?: PemPair;
}

/** How long a replaced TLS server keeps answering, with `Connection: close`, before it stops. */
export const DRAIN_MS = 2000;

/** One `Deno.serve` of a listener and whether it is winding down. */
interface Served {
  server: Deno.HttpServer<Deno.NetAddr>;
  draining: boolean;
}

export class Listener {
  #current: Served;
  #retiring = new Set<Promise<void>>();
  /** Ends a retiring server's drain at once (shutdown does not wait out DRAIN_MS). */
  #stopNow = new Map<Promise<void>, () => void>();
  #pair: PemPair | undefined;
  readonly #opts: ListenerOptions;
  /** The port it listens on (the one the OS chose, for port 0). */
  readonly port: number;
  readonly hostname: string;

  constructor(opts: ListenerOptions) {
    this.#opts = opts;
    // SO_REUSEPORT would let a second lb on the same port share it silently: make sure the
    // port is free first, as a plain bind would.
    const port = opts.tls && !opts.reusePort ? claim(opts) : opts.port;
    this.#current = serve(opts, port, opts.tls);
    this.#pair = opts.tls;
    this.port = this.#current.server.addr.port;
    this.hostname = this.#current.server.addr.hostname;
  }

  get tls(): boolean {
    return this.#pair !== undefined;
  }

  /** The certificate it serves to new connections. */
  get pair(): PemPair | undefined {
    return this.#pair;
  }

  /** `http(s)://host:port`. */
  get url(): string {
    const host = this.hostname.includes(":") ? `[${this.hostname}]` : this.hostname;
    return `${this.tls ? "https" : "http"}://${host}:${this.port}`;
  }

  /**
   * Serves `pair` to new connections from now on: a new server on the same port, then the
   * old one stops accepting and finishes its connections. Throws (and keeps the old
   * certificate) when the new server cannot start.
   */
  swapCertificate(pair: PemPair): void {
    if (!this.tls) throw new Error(`${this.#opts.what} does not serve TLS`);
    const next = serve(this.#opts, this.port, pair);
    const old = this.#current;
    this.#current = next;
    this.#pair = pair;
    old.draining = true;
    const stop = () => old.server.shutdown().catch(() => {});
    let finish!: () => void;
    const done = new Promise<void>((resolve) => {
      finish = () => {
        clearTimeout(timer);
        void stop().then(resolve);
      };
    });
    const timer = setTimeout(finish, DRAIN_MS);
    this.#stopNow.set(done, finish);
    this.#retiring.add(done);
    void done.finally(() => (this.#retiring.delete(done), this.#stopNow.delete(done)));
  }

  /** Stops accepting and lets connections finish; resolves once every server has ended. */
  async shutdown(): Promise<void> {
    for (const stop of this.#stopNow.values()) stop();
    await Promise.all([this.#current.server.shutdown(), ...this.#retiring]);
  }
}

/** A port nobody listens on (the one asked for, or one the OS picks for 0), released again. */
function claim(opts: ListenerOptions): number {
  try {
    const l = Deno.listen({ hostname: opts.host, port: opts.port });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    return port;
  } catch (e) {
    throw listenError(opts, opts.port, e);
  }
}

function listenError(opts: ListenerOptions, port: number, e: unknown): Error {
  const where = `cannot listen for ${opts.what} on ${opts.host}:${port}`;
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(`${where}: the address is already in use`);
  }
  return new Error(`${where}: ${(e as Error).message}`);
}

/** Deno.serve on host:port, with a clear one-line error when the port is taken. */
function serve(opts: ListenerOptions, port: number, tls: PemPair | undefined): Served {
  const { what, host, logger } = opts;
  // Deno's default onError prints a stack trace, e.g. for every response body that fails
  // because a backend died mid-body (already in the access log): one line is enough.
  const onError = (e: unknown) => {
    logger.error(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    return new Response("internal error\n", { status: 500 });
  };
  const reusePort = opts.reusePort === true || tls !== undefined;
  const served = { draining: false } as Served;
  // Only a TLS server is ever replaced, so only it pays for the check.
  const handler: Deno.ServeHandler<Deno.NetAddr> = tls === undefined
    ? opts.handler
    : (req, info) => {
      const res = opts.handler(req, info);
      return served.draining ? closing(res) : res;
    };
  try {
    served.server = Deno.serve(
      { hostname: host, port, reusePort, onListen() {}, onError, ...tls },
      handler,
    );
    return served;
  } catch (e) {
    throw listenError(opts, port, e);
  }
}

/** The answer with `Connection: close`, so an HTTP/1.1 client leaves after reading it. */
function closing(res: Response | Promise<Response>): Response | Promise<Response> {
  if (res instanceof Response) {
    try {
      res.headers.set("connection", "close");
    } catch {
      // immutable headers (a Response.redirect): the client may keep the connection
    }
    return res;
  }
  return res.then(closing);
}
