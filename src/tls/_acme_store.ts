/**
 * The ACME manager's files in the `acme.storage` directory, so a restart reuses the account
 * and serves the certificate it already has without asking the CA:
 *
 * - `account.json` (0600): the directory URL the account belongs to, its URL and its key.
 * - `key.pem` (0600) and `cert.pem` (0644): the certificate's private key and its chain.
 *
 * Every write is atomic (a temp file in the same directory, fsync, rename, fsync of the
 * directory), so a crash leaves the old file or the new one, never half of one. The key is
 * written before the chain; a crash between the two leaves a pair that does not match,
 * which the manager's check refuses like any other unusable certificate.
 */
import { join } from "node:path";
import type { PemPair } from "./cert_info.ts";

/** An ACME account: the CA it was registered with, its URL there and its key (PEM). */
export interface AcmeAccount {
  directory: string;
  url: string;
  key: string;
}

const ACCOUNT = "account.json";
const CERT = "cert.pem";
const KEY = "key.pem";

/** Reads and writes the files of one storage directory. */
export class AcmeStorage {
  constructor(readonly dir: string) {}

  /** Creates the directory (mode 0700) if it is missing. */
  async open(): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The stored account, or undefined if there is none; throws if the file is corrupt. */
  async readAccount(): Promise<AcmeAccount | undefined> {
    const text = await readIfExists(join(this.dir, ACCOUNT));
    if (text === undefined) return undefined;
    let a: Partial<AcmeAccount>;
    try {
      a = JSON.parse(text);
    } catch {
      a = {};
    }
    if (typeof a.directory !== "string" || typeof a.url !== "string" || typeof a.key !== "string") {
      throw new Error(
        `${join(this.dir, ACCOUNT)} is not an account file lb wrote; move it away to ` +
          `register a new account`,
      );
    }
    return { directory: a.directory, url: a.url, key: a.key };
  }

  async writeAccount(a: AcmeAccount): Promise<void> {
    await writeAtomic(this.dir, ACCOUNT, JSON.stringify(a, null, 2) + "\n", 0o600);
  }

  /** The stored chain and key, or undefined if either file is missing. */
  async readCertificate(): Promise<PemPair | undefined> {
    const [cert, key] = await Promise.all([
      readIfExists(join(this.dir, CERT)),
      readIfExists(join(this.dir, KEY)),
    ]);
    return cert === undefined || key === undefined ? undefined : { cert, key };
  }

  async writeCertificate(pair: PemPair): Promise<void> {
    await writeAtomic(this.dir, KEY, pair.key, 0o600);
    await writeAtomic(this.dir, CERT, pair.cert, 0o644);
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Writes `dir/name` so that readers see the old content or all of the new, never a part. */
async function writeAtomic(dir: string, name: string, text: string, mode: number): Promise<void> {
  const tmp = join(dir, `.${name}.${crypto.randomUUID()}.tmp`);
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    const bytes = new TextEncoder().encode(text);
    for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
    // The mode given at creation is cut by the umask; the files must have exactly `mode`.
    await Deno.chmod(tmp, mode);
    await file.sync();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  try {
    await Deno.rename(tmp, join(dir, name));
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  // The rename is durable only once the directory entry is on disk.
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}
