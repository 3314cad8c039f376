/**
 * The TLS tests' CA: tests/_certs.ts's throwaway PKI, with certificates named by their DNS
 * names and IPs, and what a server presents read back with openssl.
 */
import { type CertPair, makePki } from "../_certs.ts";

export interface TestCa {
  dir: string;
  /** PEM of the CA certificate (for clients' trust). */
  caPem: string;
  caFile: string;
  /** A certificate for `names` (DNS names or IPs), signed by the CA, its key mode 0600. */
  leaf(name: string, names: string[], opts?: { days?: number; cn?: string }): Promise<TestCert>;
  close(): Promise<void>;
}

export type TestCert = CertPair;

/** A fresh CA in a temp dir. */
export async function makeCa(): Promise<TestCa> {
  const pki = await makePki();
  return {
    dir: pki.dir,
    caPem: pki.ca.cert,
    caFile: pki.ca.certFile,
    async leaf(name, names, opts = {}) {
      const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
      const cert = await pki.issue(name, san, { days: opts.days ?? 20, cn: opts.cn ?? names[0] });
      Deno.chmodSync(cert.keyFile, 0o600);
      return cert;
    },
    close: () => pki.close(),
  };
}

/** The subject CN a TLS server presents at host:port for `servername` (openssl s_client). */
export async function servedCn(port: number, servername = "localhost"): Promise<string> {
  const p = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", servername],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  await p.stdin.close();
  const out = new TextDecoder().decode((await p.output()).stdout);
  return /subject=.*?CN\s*=\s*([^\n,/]+)/.exec(out)?.[1]?.trim() ?? "";
}
