/**
 * Run by `deno task test` before the suite: makes sure the real tools the tests drive are
 * here (Chromium for the dashboard, promtool for metrics, slowhttptest, nghttp, ss, nginx
 * and HAProxy for the benchmark configs, h2load for its HTTP/2 runs, pebble with its
 * pebble-challtestsrv and openssl for the ACME tests, redis-server for the cluster tests). On a Debian machine as root it
 * installs what is missing with apt-get; elsewhere it names the packages and exits 1, so a
 * test never silently skips a tool.
 */
const TOOLS: [command: string, pkg: string][] = [
  ["/usr/bin/chromium", "chromium"],
  ["promtool", "prometheus"],
  ["slowhttptest", "slowhttptest"],
  ["nghttp", "nghttp2-client"],
  ["h2load", "nghttp2-client"],
  ["ss", "iproute2"],
  ["nginx", "nginx-light"],
  ["haproxy", "haproxy"],
  ["pebble", "pebble"],
  ["pebble-challtestsrv", "pebble"],
  ["openssl", "openssl"],
  ["redis-server", "redis-server"],
];

async function has(cmd: string): Promise<boolean> {
  if (cmd.startsWith("/")) {
    try {
      return (await Deno.stat(cmd)).isFile;
    } catch {
      return false;
    }
  }
  const r = await new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd}`],
    stdout: "null",
    stderr: "null",
  })
    .output();
  return r.success;
}

async function run(cmd: string, args: string[]): Promise<boolean> {
  const r = await new Deno.Command(cmd, {
    args,
    stdout: "inherit",
    stderr: "inherit",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).output();
  return r.success;
}

const missing: string[] = [];
for (const [cmd, pkg] of TOOLS) {
  if (!missing.includes(pkg) && !(await has(cmd))) missing.push(pkg);
}
if (missing.length > 0) {
  const canApt = Deno.uid?.() === 0 && await has("apt-get");
  if (!canApt) {
    console.error(
      `tests need these Debian packages: ${missing.join(" ")}; install them ` +
        `(sudo apt-get install ${missing.join(" ")}) and run again`,
    );
    Deno.exit(1);
  }
  console.error(`setup: installing ${missing.join(" ")} with apt-get`);
  const ok = await run("apt-get", ["update", "-qq"]) &&
    await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing]);
  if (!ok) {
    console.error(`setup: apt-get could not install ${missing.join(" ")}`);
    Deno.exit(1);
  }
}
