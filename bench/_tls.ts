/**
 * The benchmark's HTTPS side: one throwaway certificate per run, made with openssl in the
 * run's temp dir and given to every TLS target, so lb, nginx and HAProxy sign and encrypt
 * with the same key; the TLS servers (`--only tls`), and their three measurements:
 *
 * - HTTPS keep-alive: wrk over HTTP/1.1, as the plain table but through TLS;
 * - new TLS connections: wrk with `Connection: close`, so each request opens a connection
 *   and shakes hands. wrk keeps the session when it reconnects (`SSL_clear` after a clean
 *   shutdown), so these are resumed TLS 1.3 handshakes (a PSK with an X25519 exchange, no
 *   certificate or signature), as a returning browser makes; every server here resumes;
 * - HTTP/2: h2load with `-m 10` streams on each connection.
 */
import type { BenchCert, Upstream } from "./_configs.ts";
import { h2loadFeatures, type H2loadResult, runH2load } from "./_h2load.ts";
import { startLean } from "./_memory.ts";
import { type Peer, peerMissing, startHaproxy, startNginx } from "./_peers.ts";
import type { Proc, Procs } from "./_procs.ts";
import type { TargetResult } from "./_report.ts";
import { runWrk, type WrkResult } from "./_wrk.ts";

/**
 * An EC P-256 certificate for localhost and 127.0.0.1, valid 30 days (so lb logs no
 * expiry warning), as `cert.pem`, `key.pem` and both in `cert+key.pem` for HAProxy.
 * Throws with openssl's last line when it fails, or when openssl is not installed.
 */
export async function makeCertificate(dir: string): Promise<BenchCert> {
  const cert = `${dir}/cert.pem`;
  const key = `${dir}/key.pem`;
  const pem = `${dir}/cert+key.pem`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("openssl is not installed (apt-get install openssl)");
    }
    throw e;
  }
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    throw new Error(`openssl could not make the certificate: ${text}`);
  }
  await Deno.writeTextFile(pem, await Deno.readTextFile(cert) + await Deno.readTextFile(key));
  return { cert, key, pem };
}

/** The three measurements of every TLS target. */
export type TlsKind = "keepalive" | "new-conn" | "h2";

/** Concurrent streams per HTTP/2 connection (h2load -m). */
export const H2_STREAMS = 10;

/** The measurements in the order each round runs them and the tables show them. */
export const TLS_KINDS: readonly { kind: TlsKind; name: string; tool(c: number): string }[] = [
  { kind: "keepalive", name: "HTTPS keep-alive", tool: (c) => `wrk -t1 -c${c}` },
  {
    kind: "new-conn",
    name: "new TLS connections",
    tool: (c) => `wrk -t1 -c${c} -H "Connection: close"`,
  },
  { kind: "h2", name: "HTTP/2", tool: (c) => `h2load -t1 -c${c} -m${H2_STREAMS}` },
];

/** The TLS servers: what `--only` calls them, and their label in the tables. */
export const TLS_SERVERS = [
  ["deno:tls", "Deno.serve answering itself"],
  ["lean:tls", "lean Deno proxy (fetch)"],
  ["nginx:tls", "nginx (1 worker)"],
  ["haproxy:tls", "HAProxy (1 thread)"],
  ["lb:tls", "lb round-robin"],
] as const;

/** One measurement of one TLS server: a row of the tables. */
export interface TlsRow {
  /** `<server>/<kind>`, like `lb:tls/h2`. */
  id: string;
  label: string;
  kind: TlsKind;
  port: number;
  proc?: Proc;
  skipped?: string;
  /** One run of `seconds`. */
  measure(seconds: number): Promise<WrkResult>;
}

export interface TlsTargetOptions {
  procs: Procs;
  dir: string;
  root: string;
  upstreams: Upstream[];
  /** wrk's connections and h2load's clients. */
  connections: number;
  /** Whether `--only` asked for a server id. */
  want(id: string): boolean;
  startLb(cert: BenchCert): Promise<{ proc: Proc; port: number }>;
}

/**
 * Starts every TLS server asked for, with one certificate made for the run, and returns
 * three rows for each. A server that cannot start, or a missing openssl, skips its rows;
 * a missing h2load skips the HTTP/2 rows.
 */
export async function startTlsTargets(o: TlsTargetOptions): Promise<TlsRow[]> {
  const servers = TLS_SERVERS.filter(([id]) => o.want(id));
  if (servers.length === 0) return [];
  let cert: BenchCert | undefined;
  let noCert: string | undefined;
  try {
    cert = await makeCertificate(o.dir);
  } catch (e) {
    noCert = (e as Error).message;
  }
  const h2load = await h2loadFeatures();
  const byServer = servers.map(([id, label]) =>
    TLS_KINDS.map(({ kind }) => {
      const row = tlsRow(o, `${id}/${kind}`, label, kind, h2load);
      if (kind === "h2" && !h2load) {
        row.skipped = "h2load is not installed (apt-get install nghttp2-client)";
      }
      return row;
    })
  );
  await Promise.all(servers.map(async ([id], i) => {
    const rows = byServer[i];
    const peer: Peer | undefined = id === "nginx:tls"
      ? "nginx"
      : id === "haproxy:tls"
      ? "haproxy"
      : undefined;
    const skip = noCert ?? (peer && await peerMissing(peer));
    if (skip) return void rows.forEach((r) => r.skipped = skip);
    try {
      const { proc, port } = await startTlsServer(o, id, cert!);
      for (const r of rows) Object.assign(r, { proc, port });
    } catch (e) {
      for (const r of rows) r.skipped = (e as Error).message;
    }
  }));
  return byServer.flat();
}

function tlsRow(
  o: TlsTargetOptions,
  id: string,
  label: string,
  kind: TlsKind,
  h2load: { duration: boolean } | undefined,
): TlsRow {
  const row: TlsRow = {
    id,
    label,
    kind,
    port: 0,
    measure(duration: number) {
      const url = `https://127.0.0.1:${row.port}/`;
      if (kind === "h2") {
        return runH2load(o.procs, {
          url,
          clients: o.connections,
          streams: H2_STREAMS,
          duration,
          hasDuration: h2load?.duration ?? false,
        });
      }
      return runWrk(o.procs, {
        url,
        threads: 1,
        connections: o.connections,
        duration,
        headers: kind === "new-conn" ? ["Connection: close"] : [],
      });
    },
  };
  return row;
}

function startTlsServer(
  o: TlsTargetOptions,
  id: string,
  cert: BenchCert,
): Promise<{ proc: Proc; port: number }> {
  const files = ["--cert", cert.cert, "--key", cert.key];
  switch (id) {
    case "deno:tls":
      return startLean(o, { file: "bench/lean_tls.ts" }, [], files);
    case "lean:tls":
      return startLean(o, { file: "bench/lean_proxy.ts" }, o.upstreams, files);
    case "nginx:tls":
      return startNginx(o.procs, o.dir, o.upstreams, cert);
    case "haproxy:tls":
      return startHaproxy(o.procs, o.dir, o.upstreams, cert);
    default:
      return o.startLb(cert);
  }
}

/**
 * What each server's TLS came to, as h2load saw it in its first HTTP/2 run: one line, so
 * a table that compares TLS 1.2 with 1.3, or two ciphers, says so.
 */
export function negotiatedLine(results: TargetResult[]): string | undefined {
  const parts = results.filter((r) => r.kind === "h2").flatMap((r) => {
    const n = (r.rounds[0] as H2loadResult | undefined)?.negotiated;
    return n ? [`${r.label}: ${n.protocol} ${n.cipher} ${n.key.replace(/ \d+ bits$/, "")}`] : [];
  });
  return parts.length ? `TLS as agreed with h2load: ${parts.join("; ")}` : undefined;
}
