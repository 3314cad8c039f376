/**
 * nginx and HAProxy as the benchmark runs them: a generated config (bench/_configs.ts) in
 * the run's temp dir, one process each, ready once its port accepts connections. Plain HTTP
 * and HTTPS instances have files of their own, so both can run at once.
 */
import { type BenchCert, haproxyConfig, nginxConfig, type Upstream } from "./_configs.ts";
import { freePort, type Proc, type Procs, waitForPort } from "./_procs.ts";

export type Peer = "nginx" | "haproxy";

const INSTALL: Record<Peer, { args: string[]; hint: string }> = {
  nginx: { args: ["-v"], hint: "nginx is not installed (apt-get install nginx-light)" },
  haproxy: { args: ["-v"], hint: "HAProxy is not installed (apt-get install haproxy)" },
};

/** Why `peer` cannot be measured (not installed, with the package to install), or undefined. */
export async function peerMissing(peer: Peer): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(peer, {
      args: INSTALL[peer].args,
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success ? undefined : INSTALL[peer].hint;
  } catch {
    return INSTALL[peer].hint;
  }
}

/** Starts nginx (HTTPS with HTTP/2 when `tls` is given; `workers` processes) on a free port. */
export async function startNginx(
  procs: Procs,
  dir: string,
  upstreams: Upstream[],
  tls?: BenchCert,
  workers = 1,
  tag = "",
): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const name = (tls ? "nginx-tls" : "nginx") + tag;
  const conf = `${dir}/${name}.conf`;
  await Deno.writeTextFile(conf, nginxConfig(dir, port, upstreams, tls, workers, tag));
  const proc = procs.spawn(name, "nginx", [
    "-p",
    dir,
    "-e",
    `${dir}/${name}-error.log`,
    "-c",
    conf,
  ]);
  return { proc, port: await ready(procs, proc, port) };
}

/** Starts HAProxy (HTTPS with HTTP/2 when `tls` is given) on a free port. */
export async function startHaproxy(
  procs: Procs,
  dir: string,
  upstreams: Upstream[],
  tls?: BenchCert,
): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const name = tls ? "haproxy-tls" : "haproxy";
  const conf = `${dir}/${name}.cfg`;
  await Deno.writeTextFile(conf, haproxyConfig(port, upstreams, tls));
  const proc = procs.spawn(name, "haproxy", ["-db", "-f", conf]);
  return { proc, port: await ready(procs, proc, port) };
}

async function ready(procs: Procs, proc: Proc, port: number): Promise<number> {
  try {
    await waitForPort(proc, port);
  } catch (e) {
    await procs.stop(proc);
    throw e;
  }
  return port;
}
