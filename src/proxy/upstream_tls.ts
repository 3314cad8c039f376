/**
 * Each pool's `upstreamTls` with its files read: what its TLS connections to https://
 * backends trust and present. The files are read when lb starts and again at every reload
 * (a renewed CA or client certificate is taken up by a reload), and checked then: a file
 * that is missing, holds no certificate, or a key that does not match its certificate stops
 * the start or the reload with the field named, instead of failing every request later.
 */
import { X509Certificate } from "node:crypto";
import { CertError, certInfo } from "../tls/cert_info.ts";
import { ConfigError, configRelative, formatPath, readProblem } from "../config/load.ts";
import { resolvePools } from "../config/pools.ts";
import type { Config } from "../config/schema.ts";
import type { UpstreamTls } from "../config/tls.ts";

/** A pool's TLS client settings, files read (the same for every https backend of the pool). */
export interface TlsClientSettings {
  /** PEM CA certificates trusted besides Deno's root store (`ca`); empty: the roots alone. */
  readonly caCerts: readonly string[];
  /** The name sent in SNI and verified (`serverName`); undefined: each backend URL's host. */
  readonly serverName?: string;
  /** The client certificate chain and its key, PEM (`cert`, `key`): mTLS. */
  readonly cert?: string;
  readonly key?: string;
}

/** No files: verify against Deno's roots by the URL's host, no client certificate. */
export const DEFAULT_TLS: TlsClientSettings = { caCerts: [] };

/** Whether two settings trust and present the same (file contents compared, not paths). */
export function sameTls(a: TlsClientSettings, b: TlsClientSettings): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * Reads every pool's upstreamTls files (paths relative to the config file, `source`).
 * Throws a ConfigError naming each field whose file cannot be used.
 */
export function readUpstreamTls(
  config: Config,
  source: string | undefined,
): Map<string, TlsClientSettings> {
  const problems = new Set<string>();
  const out = new Map<string, TlsClientSettings>();
  for (const pool of resolvePools(config)) {
    const own = config.pools?.[pool.name]?.upstreamTls;
    // A problem is named where the path was written: the pool's section or the top level's.
    const field = (k: keyof UpstreamTls) =>
      formatPath(
        own?.[k] !== undefined ? ["pools", pool.name, "upstreamTls", k] : ["upstreamTls", k],
      );
    out.set(
      pool.name,
      readPoolTls(pool.upstreamTls, source, (k, problem) => {
        problems.add(`${field(k)}: ${problem}`);
      }),
    );
  }
  if (problems.size) throw new ConfigError(source ?? "config", [...problems]);
  return out;
}

/** One pool's settings, its files read and checked; `problem` hears of each that fails. */
function readPoolTls(
  cfg: UpstreamTls,
  source: string | undefined,
  problem: (field: keyof UpstreamTls, what: string) => void,
): TlsClientSettings {
  const read = (k: "ca" | "cert" | "key"): string | undefined => {
    const path = cfg[k];
    if (path === undefined) return undefined;
    const where = configRelative(path, source);
    try {
      return Deno.readTextFileSync(where);
    } catch (e) {
      problem(k, `cannot read ${where}: ${readProblem(e)}`);
    }
  };
  const ca = read("ca");
  const cert = read("cert");
  const key = read("key");
  const caBad = ca === undefined ? undefined : certificatesProblem(ca);
  if (caBad) problem("ca", caBad);
  const certBad = cert === undefined ? undefined : certificatesProblem(cert);
  if (certBad) problem("cert", certBad);
  const keyBad = cert === undefined || key === undefined || certBad
    ? undefined
    : keyProblem(cert, key);
  if (keyBad) problem("key", keyBad);
  return {
    caCerts: ca === undefined ? [] : [ca],
    ...(cfg.serverName !== undefined && { serverName: cfg.serverName }),
    ...(cert !== undefined && key !== undefined && { cert, key }),
  };
}

/** Why `pem` is not a list of certificates (undefined when it is). */
function certificatesProblem(pem: string): string | undefined {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)";
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (e) {
      return `certificate ${i + 1} cannot be read: ${(e as Error).message}`;
    }
  }
}

/** Why `key` is not the private key of the first certificate of `cert` (undefined when it is). */
function keyProblem(cert: string, key: string): string | undefined {
  try {
    certInfo({ cert, key });
  } catch (e) {
    if (!(e instanceof CertError)) throw e;
    return e.kind === "key_mismatch"
      ? "is not the key of the certificate in upstreamTls.cert"
      : e.message;
  }
}
