/**
 * What lb needs to know about a certificate chain and its key before it serves them: the
 * leaf's names and validity, and that the key belongs to it. Parsed with `node:crypto`'s
 * X509Certificate, which Deno implements.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";

/** A certificate chain (leaf first) and its private key, as PEM text. */
export interface PemPair {
  cert: string;
  key: string;
}

/** The leaf certificate of a chain, as lb reports it (admin API, metrics, logs). */
export interface CertInfo {
  subject: string;
  /** Serial number in upper-case hex, as openssl prints it. */
  serial: string;
  /** The DNS names of the subjectAltName extension, lower-cased, in certificate order. */
  domains: string[];
  /** Every name it is for: DNS names and IP addresses, in certificate order. */
  names: string[];
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 fingerprint of the leaf, to tell certificates apart in logs. */
  fingerprint: string;
}

/** Why a chain or key cannot be used; `message` is one sentence for the log. */
export class CertError extends Error {
  constructor(readonly kind: "unparsable" | "key_mismatch", message: string) {
    super(message);
    this.name = "CertError";
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/**
 * Reads the leaf (the first certificate of `pair.cert`) and checks that `pair.key` is its
 * private key; throws {@link CertError} when either is unreadable or they do not match.
 */
export function certInfo(pair: PemPair): CertInfo {
  const leafPem = PEM_CERT.exec(pair.cert)?.[0];
  if (leafPem === undefined) throw new CertError("unparsable", "no PEM certificate found");
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch (e) {
    throw new CertError("unparsable", `the certificate cannot be read: ${messageOf(e)}`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(pair.key));
  } catch (e) {
    throw new CertError("unparsable", `the private key cannot be read: ${messageOf(e)}`);
  }
  if (!matches) {
    throw new CertError("key_mismatch", "the private key does not belong to the certificate");
  }
  return {
    subject: leaf.subject.replaceAll("\n", ", "),
    serial: leaf.serialNumber.toUpperCase(),
    domains: dnsNames(leaf.subjectAltName),
    names: allNames(leaf.subjectAltName),
    issuer: leaf.issuer.replaceAll("\n", ", "),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    fingerprint: leaf.fingerprint256,
  };
}

/** `DNS:a.example, IP Address:10.0.0.1` → `["a.example", "10.0.0.1"]`. */
function allNames(san: string | undefined): string[] {
  if (san === undefined) return [];
  return san.split(/,\s*/).filter((n) => n.startsWith("DNS:") || n.startsWith("IP Address:"))
    .map((n) => n.replace(/^DNS:|^IP Address:/, ""));
}

/** `DNS:a.example, IP Address:10.0.0.1, DNS:b.example` → `["a.example", "b.example"]`. */
function dnsNames(san: string | undefined): string[] {
  if (san === undefined) return [];
  return san.split(/,\s*/).filter((n) => n.startsWith("DNS:")).map((n) => n.slice(4).toLowerCase());
}

/** True when every one of `domains` is among the certificate's names (exactly, any case). */
export function coversDomains(info: CertInfo, domains: string[]): boolean {
  const names = new Set(info.domains);
  return domains.every((d) => names.has(d.toLowerCase()));
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
