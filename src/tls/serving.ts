/**
 * The certificates of lb's listeners from their files: read and checked at start (a broken
 * one stops lb with one line), and read again on every reload (SIGHUP, --watch), when a new
 * one is checked and swapped in for new connections, or refused with one line while the one
 * in use stays.
 */
import type { CertFiles } from "../config/tls.ts";
import type { Config } from "../config/schema.ts";
import type { Listener } from "../listener.ts";
import type { Logger } from "../log.ts";
import {
  CertificateError,
  type Certificates,
  keyFileWarning,
  type PemPair,
  readPair,
} from "./certificate.ts";

/** Which config section names a listener's certificate (for messages). */
function sectionOf(listener: string): string {
  return listener === "admin" ? "admin.tls" : "listen.tls";
}

/** A listener's certificate from its files at start; throws one line when it cannot be used. */
export function startCertificate(
  certs: Certificates,
  logger: Logger,
  listener: string,
  files: CertFiles,
): PemPair {
  const warning = keyFileWarning(files.key);
  if (warning) logger.event("tls", `warning: ${warning}`, { listener, key: files.key });
  try {
    const pair = readPair(files);
    certs.accept(listener, pair, "start");
    return pair;
  } catch (e) {
    if (!(e instanceof CertificateError)) throw e;
    throw new Error(`${sectionOf(listener)}: ${e.message}`);
  }
}

/**
 * On reload: each listener whose certificate comes from files gets them read again; a
 * changed certificate is checked and swapped in. Returns the lines that say what changed;
 * a refused certificate is logged as an error and changes nothing.
 */
export function reloadCertificates(
  certs: Certificates,
  logger: Logger,
  listeners: { traffic?: Listener; admin?: { listener: Listener } },
  config: Config,
): string[] {
  const out: string[] = [];
  const files: [string, Listener | undefined, CertFiles | undefined][] = [
    [
      "traffic",
      listeners.traffic,
      config.listen.tls?.cert ? config.listen.tls as CertFiles : undefined,
    ],
    ["admin", listeners.admin?.listener, config.admin.tls],
  ];
  for (const [name, listener, f] of files) {
    if (!listener?.tls || !f) continue;
    try {
      const pair = readPair(f);
      if (pair.cert === listener.pair?.cert && pair.key === listener.pair?.key) continue;
      const info = certs.accept(name, pair, "reload", () => listener.swapCertificate(pair));
      out.push(`${name} certificate replaced (${info.names.join(", ")})`);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      logger.error(
        `${sectionOf(name)}: the new certificate is refused, the old one stays: ${why}`,
        {
          kind: "tls",
          listener: name,
        },
      );
    }
  }
  return out;
}
