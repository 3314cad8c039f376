/**
 * The benchmark's HTTPS side: one throwaway certificate per run, made with openssl in the
 * run's temp dir and given to every TLS target, so lb, nginx and HAProxy sign and encrypt
 * with the same key.
 */
import type { BenchCert } from "./_configs.ts";

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
