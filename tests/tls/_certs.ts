/** Test certificates made with openssl in a temp dir: a CA and leaf certificates it signs. */

export interface TestCa {
  dir: string;
  /** PEM of the CA certificate (for clients' trust). */
  caPem: string;
  caFile: string;
  /** Makes a certificate for `names` (DNS names or IPs), signed by the CA; files and PEM. */
  leaf(name: string, names: string[], opts?: { days?: number; cn?: string }): TestCert;
  close(): Promise<void>;
}

export interface TestCert {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  const out = new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .outputSync();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A fresh CA in a temp dir. */
export async function makeCa(): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "lb_tls_" });
  openssl([
    "req",
    "-x509",
    ...EC,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "30",
    "-subj",
    "/CN=lb test CA",
  ], dir);
  let serial = 1;
  return {
    dir,
    caFile: `${dir}/ca.crt`,
    caPem: Deno.readTextFileSync(`${dir}/ca.crt`),
    leaf(name, names, opts = {}) {
      const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
      Deno.writeTextFileSync(`${dir}/${name}.ext`, `subjectAltName=${san}\n`);
      openssl([
        "req",
        ...EC,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        "-subj",
        `/CN=${opts.cn ?? names[0]}`,
      ], dir);
      openssl([
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        String(serial++),
        "-out",
        `${name}.crt`,
        "-days",
        String(opts.days ?? 20),
        "-extfile",
        `${name}.ext`,
      ], dir);
      Deno.chmodSync(`${dir}/${name}.key`, 0o600);
      return {
        certFile: `${dir}/${name}.crt`,
        keyFile: `${dir}/${name}.key`,
        cert: Deno.readTextFileSync(`${dir}/${name}.crt`),
        key: Deno.readTextFileSync(`${dir}/${name}.key`),
      };
    },
    close: () => Deno.remove(dir, { recursive: true }),
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
