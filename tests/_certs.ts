/**
 * Test helper: a throwaway CA and certificates made with `openssl` in a temp dir (no
 * network), for TLS between lb and test backends. EC P-256 keys, valid for a day.
 */

/** A certificate and its key: PEM text, and the files that hold them. */
export interface CertPair {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  dir: string;
  /** The CA (a CA certificate: basicConstraints CA:TRUE). */
  ca: CertPair;
  /** Issues a certificate signed by the CA for `san` (e.g. `IP:127.0.0.1`, `DNS:a.test`). */
  issue(
    name: string,
    san: string,
    opts?: { clientAuth?: boolean; days?: number; cn?: string },
  ): Promise<CertPair>;
  /** A self-signed certificate (a CA certificate, as `openssl req -x509` makes by default). */
  selfSigned(name: string, san: string): Promise<CertPair>;
  close(): Promise<void>;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function pair(dir: string, name: string): Promise<CertPair> {
  const certFile = `${dir}/${name}.pem`;
  const keyFile = `${dir}/${name}.key`;
  return {
    cert: await Deno.readTextFile(certFile),
    key: await Deno.readTextFile(keyFile),
    certFile,
    keyFile,
  };
}

/** Makes a CA in a new temp dir. */
export async function makePki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "lb-pki-" });
  const selfSigned = async (name: string, san: string) => {
    await openssl(
      dir,
      "req",
      "-x509",
      ...EC,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=${san}`,
    );
    return await pair(dir, name);
  };
  const ca = await selfSigned("ca", "DNS:test-ca");
  let serial = 1;
  return {
    dir,
    ca,
    async issue(name, san, opts = {}) {
      await openssl(
        dir,
        "req",
        "-new",
        ...EC,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        "-subj",
        `/CN=${opts.cn ?? name}`,
      );
      const ext = [`subjectAltName=${san}`, "basicConstraints=critical,CA:FALSE"];
      if (opts.clientAuth) ext.push("extendedKeyUsage=clientAuth");
      await Deno.writeTextFile(`${dir}/${name}.ext`, ext.join("\n") + "\n");
      await openssl(
        dir,
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        String(serial++),
        "-days",
        String(opts.days ?? 1),
        "-out",
        `${name}.pem`,
        "-extfile",
        `${name}.ext`,
      );
      return await pair(dir, name);
    },
    selfSigned,
    close: () => Deno.remove(dir, { recursive: true }),
  };
}
