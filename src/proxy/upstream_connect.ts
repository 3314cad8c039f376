/**
 * Opening a connection to a backend: TCP to an http:// one, TLS to an https:// one with its
 * pool's settings (upstream_tls.ts). The try (upstream.ts) and the health checks both
 * connect here, so they trust and present the same.
 *
 * What Deno 2.9.6 offers a TLS client, measured (README, "TLS to backends"):
 * - `Deno.startTls(tcp, {hostname, caCerts, alpnProtocols})` upgrades a connection lb made
 *   itself, so lb connects to the URL's address (with an AbortSignal, and TCP_NODELAY set)
 *   while `hostname` is only the name sent in SNI and verified. It takes no client
 *   certificate: `cert` and `key` passed to it are dropped.
 * - `Deno.connectTls` takes `cert` and `key`, and verifies `hostname` unless the options
 *   carry `Symbol.for("unstableServerName")` (Deno's own, not in its types), which lb uses
 *   for serverName. It has no AbortSignal and its connection no `setNoDelay`: Nagle's
 *   algorithm stays on (an exchange of two small writes and a read: 44 ms instead of 0.04).
 * So lb upgrades its own TCP connection, and uses connectTls only for a client certificate.
 * - Both return before the handshake, which Deno does lazily: lb awaits `handshake()` here,
 *   within the connect deadline, so a certificate lb refuses fails the connect and not one
 *   byte of a request reaches a server lb does not trust.
 * - `caCerts` add to Deno's root store (Mozilla's, or the system's with
 *   DENO_TLS_CA_STORE=system); no option trusts them alone. Nothing skips verification for
 *   one connection (only the process-wide --unsafely-ignore-certificate-errors).
 */
import { DEFAULT_TLS, type TlsClientSettings } from "./upstream_tls.ts";

/** Where a backend is and whether it speaks TLS (a Server is one). */
export interface Endpoint {
  readonly url: string;
  readonly hostname: string;
  readonly port: number;
  readonly tls: boolean;
}

/** Deno's key for connectTls's SNI and verification name (deno ext/net/02_tls.js). */
const SERVER_NAME = Symbol.for("unstableServerName");
/** lb speaks HTTP/1.1 only; a backend that insists on another protocol refuses the handshake. */
const ALPN = ["http/1.1"];

/** A TLS handshake failed: lb refused the backend's certificate, or the backend refused lb. */
class TlsHandshakeError extends Error {}

/**
 * What went wrong in a TLS session, for people. Deno raises every TLS error as InvalidData
 * with rustls's own sentence, and only that sentence tells which side refused ("invalid
 * peer certificate: …" when lb refused the backend's; "received fatal alert: …" when the
 * backend refused lb): it picks the words here and decides nothing.
 */
export function tlsProblem(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (msg.startsWith("invalid peer certificate")) {
    return `the backend's certificate was refused (${msg})`;
  }
  if (msg.startsWith("received fatal alert")) return `the backend refused lb (${msg})`;
  return msg;
}

/** Opens connections with one pool's TLS settings. */
export class Connector {
  readonly #caCerts: string[];

  constructor(readonly tls: TlsClientSettings = DEFAULT_TLS) {
    this.#caCerts = [...tls.caCerts];
  }

  /**
   * A connection to `to`, its TLS handshake done. Rejects with the runtime's error (refused,
   * unreachable, aborted by `signal`) or a TlsHandshakeError.
   */
  async open(to: Endpoint, signal: AbortSignal): Promise<Deno.Conn> {
    if (!to.tls) {
      const tcp = await Deno.connect({ hostname: to.hostname, port: to.port, signal });
      tcp.setNoDelay(true);
      return tcp;
    }
    const conn = this.tls.cert === undefined
      ? await this.#upgrade(to, signal)
      : await untilAborted(this.#connectWithCertificate(to), signal);
    await handshake(conn, signal);
    return conn;
  }

  /** TCP as for plaintext, then TLS on it: SNI and verification by serverName or the host. */
  async #upgrade(to: Endpoint, signal: AbortSignal): Promise<Deno.TlsConn> {
    const tcp = await Deno.connect({ hostname: to.hostname, port: to.port, signal });
    tcp.setNoDelay(true);
    try {
      return await Deno.startTls(tcp, {
        hostname: this.tls.serverName ?? to.hostname,
        caCerts: this.#caCerts,
        alpnProtocols: ALPN,
      });
    } catch (e) {
      closeQuietly(tcp);
      throw e;
    }
  }

  /** mTLS: only connectTls presents a client certificate (see the top of this file). */
  #connectWithCertificate(to: Endpoint): Promise<Deno.TlsConn> {
    const opts: Deno.ConnectTlsOptions & Deno.TlsCertifiedKeyPem & { [SERVER_NAME]?: string } = {
      hostname: to.hostname,
      port: to.port,
      caCerts: this.#caCerts,
      alpnProtocols: ALPN,
      cert: this.tls.cert!,
      key: this.tls.key!,
    };
    if (this.tls.serverName !== undefined) opts[SERVER_NAME] = this.tls.serverName;
    return Deno.connectTls(opts);
  }
}

/**
 * `pending`, or a rejection as soon as `signal` aborts (connectTls takes no signal): a
 * connection that comes after that is closed.
 */
function untilAborted(pending: Promise<Deno.TlsConn>, signal: AbortSignal): Promise<Deno.TlsConn> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      pending.then(closeQuietly, () => {});
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Completes the handshake; `signal` cuts it short by closing the connection. */
async function handshake(conn: Deno.TlsConn, signal: AbortSignal): Promise<void> {
  const stop = () => closeQuietly(conn);
  if (signal.aborted) stop();
  signal.addEventListener("abort", stop, { once: true });
  try {
    await conn.handshake();
  } catch (e) {
    stop();
    throw signal.aborted ? e : new TlsHandshakeError(`TLS handshake failed: ${tlsProblem(e)}`);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}
