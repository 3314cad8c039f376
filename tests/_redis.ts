/**
 * Test helper: a real `redis-server` on a free loopback port, in a temp directory, without
 * persistence (so a restart comes back empty unless `keep` asks for an RDB snapshot).
 * tests/setup.ts installs Debian's redis-server.
 *
 * @example
 * ```ts
 * const redis = await startRedis();
 * // … lb with cluster.redis: redis.url …
 * await redis.stop();            // as if the machine lost it
 * await redis.start();           // the same port again, empty
 * await redis.close();
 * ```
 */
import { freePort } from "./_stack.ts";

export interface RedisProcess {
  /** `redis://127.0.0.1:PORT/0`. */
  readonly url: string;
  readonly port: number;
  /** Runs one command with redis-cli; resolves to its output, trimmed. */
  cli(...args: string[]): Promise<string>;
  /** Kills the server (SIGKILL: no goodbye to clients); resolves once it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty); resolves once it answers PING. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

export async function startRedis(
  opts: { password?: string; tls?: { certFile: string; keyFile: string; caFile: string } } = {},
): Promise<RedisProcess> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "lb-redis-" });
  let child: Deno.ChildProcess | undefined;
  const auth = opts.password ? ["-a", opts.password, "--no-auth-warning"] : [];
  const tls = opts.tls;
  // With TLS, the port speaks only TLS (the plaintext port is off).
  const listen = tls
    ? [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      tls.certFile,
      "--tls-key-file",
      tls.keyFile,
      "--tls-ca-cert-file",
      tls.caFile,
      "--tls-auth-clients",
      "no",
    ]
    : ["--port", String(port)];
  const cliTls = tls ? ["--tls", "--cacert", tls.caFile] : [];
  const cli = async (...args: string[]) => {
    const out = await new Deno.Command("redis-cli", {
      args: ["-h", "127.0.0.1", "-p", String(port), ...cliTls, ...auth, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  const start = async () => {
    child = new Deno.Command("redis-server", {
      args: [
        ...listen,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        // For DEBUG SLEEP (a Redis that stops answering for a while).
        "--enable-debug-command",
        "yes",
        "--dir",
        dir,
        ...(opts.password ? ["--requirepass", opts.password] : []),
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if ((await cli("PING")) === "PONG") return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
  };
  const stop = async () => {
    if (!child) return;
    const c = child;
    child = undefined;
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
    await c.status;
    await c.stderr.cancel().catch(() => {});
  };
  await start();
  return {
    url: `${tls ? "rediss" : "redis"}://${
      opts.password ? `:${opts.password}@` : ""
    }127.0.0.1:${port}/0`,
    port,
    cli,
    stop,
    start,
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
