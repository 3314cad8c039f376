/**
 * Certificates lb serves: read from files (or handed over by ACME), and checked before they
 * are used, so a broken one (unreadable, not PEM, a key that does not match, expired) is
 * refused with one line and the one in use stays.
 */
import { readProblem } from "../config/load.ts";
import { CertError, type CertInfo, certInfo, type PemPair } from "./cert_info.ts";

export type { CertInfo, PemPair };

/** A certificate lb will not use: one line saying why. */
export class CertificateError extends Error {}

/** The leaf's details, or a CertificateError when `pair` cannot be served at `now`. */
export function checkPair(pair: PemPair, now = Date.now()): CertInfo {
  let info: CertInfo;
  try {
    info = certInfo(pair);
  } catch (e) {
    if (e instanceof CertError) throw new CertificateError(e.message);
    throw e;
  }
  if (info.notAfter.getTime() <= now) {
    throw new CertificateError(`the certificate expired on ${info.notAfter.toISOString()}`);
  }
  if (info.notBefore.getTime() > now + 60_000) {
    throw new CertificateError(
      `the certificate is not valid before ${info.notBefore.toISOString()}`,
    );
  }
  return info;
}

/** Reads a cert/key pair from files; a CertificateError naming the file that cannot be read. */
export function readPair(files: { cert: string; key: string }): PemPair {
  const read = (what: string, path: string) => {
    try {
      return Deno.readTextFileSync(path);
    } catch (e) {
      throw new CertificateError(`cannot read the ${what} file ${path}: ${readProblem(e)}`);
    }
  };
  return { cert: read("certificate", files.cert), key: read("key", files.key) };
}

/** A warning when a key file can be read by other users (mode bits beyond 0600), else undefined. */
export function keyFileWarning(path: string): string | undefined {
  try {
    const mode = Deno.statSync(path).mode;
    if (mode === null || (mode & 0o077) === 0) return undefined;
    const octal = (mode & 0o777).toString(8);
    return `the key file ${path} is readable by other users (mode ${octal}); chmod 600 it`;
  } catch {
    return undefined; // unreadable files are refused when read
  }
}

/** Days before expiry from which lb warns (an event, once a day). */
export const EXPIRY_WARNING_DAYS = 14;
const DAY = 86_400_000;

/**
 * The certificates lb serves, by listener ("traffic", "admin"): what the API, the dashboard
 * and `lb_tls_certificate_expiry_seconds` show, and the daily warning when one has less than
 * {@link EXPIRY_WARNING_DAYS} days left.
 */
export class Certificates {
  #byListener = new Map<string, CertInfo>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly log: { event(kind: string, message: string, fields?: Record<string, unknown>): void },
  ) {}

  /**
   * Checks `pair`, lets `serve` put it in service, then records it for `listener`; throws a
   * CertificateError to refuse it (or what `serve` threw), recording nothing.
   */
  accept(
    listener: string,
    pair: PemPair,
    why: string,
    serve: () => void = () => {},
    now = Date.now(),
  ): CertInfo {
    const info = checkPair(pair, now);
    serve();
    this.#byListener.set(listener, info);
    const until = info.notAfter.toISOString().slice(0, 10);
    this.log.event(
      "tls",
      `${listener} certificate (${why}): ${info.names.join(", ")} until ${until}`,
      {
        listener,
        why,
        names: info.names,
        notAfter: info.notAfter.toISOString(),
        fingerprint: info.fingerprint,
      },
    );
    this.#warnIfExpiring(listener, info, now);
    this.#timer ??= setInterval(() => this.checkExpiry(), DAY);
    return info;
  }

  get(listener: string): CertInfo | undefined {
    return this.#byListener.get(listener);
  }

  /** Every listener's certificate, for the API and metrics. */
  list(): (CertInfo & { listener: string })[] {
    return [...this.#byListener].map(([listener, info]) => ({ listener, ...info }));
  }

  /** Warns about each certificate that expires within the warning window. */
  checkExpiry(now = Date.now()): void {
    for (const [listener, info] of this.#byListener) this.#warnIfExpiring(listener, info, now);
  }

  #warnIfExpiring(listener: string, info: CertInfo, now: number): void {
    const days = (info.notAfter.getTime() - now) / DAY;
    if (days >= EXPIRY_WARNING_DAYS) return;
    this.log.event(
      "tls",
      `${listener} certificate expires in ${
        Math.max(0, Math.floor(days))
      } days (${info.notAfter.toISOString()})`,
      { listener, expiring: true, notAfter: info.notAfter.toISOString() },
    );
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
