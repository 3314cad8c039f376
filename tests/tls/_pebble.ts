/**
 * Test helper: a real pebble (Let's Encrypt's ACME test server, Debian package `pebble`) on
 * loopback ports the OS picked, with pebble-challtestsrv (same package) as its DNS server
 * answering every A query with 127.0.0.1, so pebble's VA fetches http-01 answers for any
 * name from `127.0.0.1:httpPort`. pebble's own HTTPS certificate comes from a throwaway CA
 * made by tests/_certs.ts; clients trust it through `caFile`.
 */
import { join } from "node:path";
import { makePki } from "../_certs.ts";
import { eachLine, freePort, until } from "../_stack.ts";

export interface Pebble {
  /** The ACME directory URL, `https://127.0.0.1:PORT/dir`. */
  directory: string;
  /** The throwaway CA (PEM file) that signed pebble's HTTPS certificate. */
  caFile: string;
  /** The port pebble's VA connects to on 127.0.0.1 for http-01 validation. */
  httpPort: number;
  /** How many lines pebble has logged that match `re`. */
  count(re: RegExp): number;
  /** Everything pebble logged so far. */
  log(): string;
  /** Stops pebble and its DNS server and removes the temp dir. */
  close(): Promise<void>;
}

/**
 * Starts pebble. `alwaysValid` skips challenge validation (PEBBLE_VA_ALWAYS_VALID=1); without
 * it the VA really fetches `http://<domain>:httpPort/.well-known/acme-challenge/<token>`.
 */
export async function startPebble(opts: { alwaysValid: boolean }): Promise<Pebble> {
  const dir = await Deno.makeTempDir({ prefix: "lb-pebble-" });
  const procs: { child: Deno.ChildProcess; done: Promise<void> }[] = [];
  const lines: string[] = [];
  let pkiClose: (() => Promise<void>) | undefined;
  const close = async () => {
    for (const p of procs) {
      try {
        p.child.kill("SIGTERM");
      } catch { /* already gone */ }
      await p.child.status;
      await p.done;
    }
    await Deno.remove(dir, { recursive: true });
    await pkiClose?.();
  };
  try {
    const pki = await makePki();
    pkiClose = () => pki.close();
    const cert = await pki.issue("pebble", "IP:127.0.0.1,DNS:localhost", { days: 2 });
    const caFile = pki.ca.certFile;
    const [acmePort, mgmtPort, httpPort, tlsPort] = [
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ];
    const dnsPort = freeUdpAndTcpPort();
    const dnsLines: string[] = [];
    procs.push(spawn(
      "pebble-challtestsrv",
      [
        ["-dns01", `127.0.0.1:${dnsPort}`],
        ["-management", `127.0.0.1:${freePort()}`],
        ["-http01", ""],
        ["-https01", ""],
        ["-tlsalpn01", ""],
        ["-defaultIPv6", ""],
      ].flat(),
      {},
      dnsLines,
    ));
    await until(
      () => dnsLines.some((l) => l.includes("Starting challenge servers")),
      "challtestsrv",
    );
    const config = join(dir, "pebble.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${acmePort}`,
          managementListenAddress: `127.0.0.1:${mgmtPort}`,
          certificate: cert.certFile,
          privateKey: cert.keyFile,
          httpPort,
          tlsPort,
          ocspResponderURL: "",
          externalAccountBindingRequired: false,
        },
      }),
    );
    const env: Record<string, string> = {
      PEBBLE_VA_NOSLEEP: "1", // no random 0–15 s sleep before each validation
      PEBBLE_WFE_NONCEREJECT: "0", // by default pebble rejects 5% of good nonces at random
      PEBBLE_AUTHZREUSE: "0", // a new order always gets new authorizations to validate
    };
    if (opts.alwaysValid) env.PEBBLE_VA_ALWAYS_VALID = "1";
    procs.push(
      spawn("pebble", ["-config", config, "-dnsserver", `127.0.0.1:${dnsPort}`], env, lines),
    );
    // pebble makes its CA keys as it starts: slow when the suite keeps both CPUs busy.
    await until(() => lines.some((l) => l.includes("Listening on:")), "pebble to listen", 30_000)
      .catch((e) => {
        throw new Error(`${(e as Error).message}; pebble said: ${lines.slice(-5).join(" | ")}`);
      });
    return {
      directory: `https://127.0.0.1:${acmePort}/dir`,
      caFile,
      httpPort,
      count: (re) => lines.filter((l) => re.test(l)).length,
      log: () => lines.join("\n"),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

function spawn(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  lines: string[],
): { child: Deno.ChildProcess; done: Promise<void> } {
  const child = new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  const keep = (l: string) => lines.push(l);
  const done = Promise.all([eachLine(child.stdout, keep), eachLine(child.stderr, keep)]).then(
    () => {},
  );
  return { child, done };
}

/** A port free for both UDP and TCP on 127.0.0.1 (a DNS server listens on both). */
function freeUdpAndTcpPort(): number {
  for (;;) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" }).close();
      return port;
    } catch {
      // taken for UDP: try another
    } finally {
      tcp.close();
    }
  }
}
