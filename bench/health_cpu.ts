/**
 * What the active health loop costs at scale: `deno run -A bench/health_cpu.ts
 * [--servers 10000] [--interval 2s] [--seconds 20]`.
 *
 * A child process answers `GET /health` on 2,000 loopback ports; lb (in this process) gets
 * `servers` backends over them, in pools of 2,000 (an origin may appear once per pool), with
 * health checks every `interval`, and no traffic. Prints lb's CPU time per second of wall
 * time and per check, and its RSS. The child's CPU (the backends') is not counted.
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { parseDuration } from "../src/config/units.ts";
import { validateConfig } from "../src/config/load.ts";
import { startLb } from "../src/lb.ts";
import { createLogger } from "../src/log.ts";

const { values } = parseArgs({
  options: {
    servers: { type: "string", default: "10000" },
    interval: { type: "string", default: "2s" },
    seconds: { type: "string", default: "20" },
    child: { type: "boolean", default: false },
  },
});
const PORTS = 2000;

if (values.child) {
  // The backends: one listener per port, each answering 200 to anything.
  const ports: number[] = [];
  for (let i = 0; i < PORTS; i++) {
    const s = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("ok"),
    );
    ports.push(s.addr.port);
  }
  console.log(JSON.stringify(ports));
  await new Promise(() => {}); // until killed
}

const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL(import.meta.url).pathname, "--child"],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
let text = "";
while (!text.includes("\n")) text += (await reader.read()).value ?? "";
const ports: number[] = JSON.parse(text);
const servers = Number(values.servers);
const interval = parseDuration(values.interval!);
const pools: Record<string, unknown> = {};
for (let p = 0; p * PORTS < servers; p++) {
  const n = Math.min(PORTS, servers - p * PORTS);
  pools[`p${p}`] = {
    backends: ports.slice(0, n).map((port) => ({ url: `http://127.0.0.1:${port}` })),
  };
}
const config = validateConfig({
  listen: { host: "127.0.0.1", port: 0 },
  admin: { enabled: false },
  log: { access: false, format: "json" },
  health: { enabled: true, interval, timeout: "1s", path: "/health" },
  pools,
  routes: [{ pool: "p0" }],
}, "bench");
const lines: string[] = [];
const lb = startLb({
  config,
  logger: createLogger({ format: "json", access: false, write: (l) => lines.push(l) }),
});
try {
  await new Promise((r) => setTimeout(r, interval * 1.5)); // past the first round of checks
  const checks = () =>
    lb.pools.list.reduce(
      (n, p) =>
        n + p.servers.servers.reduce((m, s) => m + s.health.passedTotal + s.health.failedTotal, 0),
      0,
    );
  const seconds = Number(values.seconds);
  const cpu0 = process.cpuUsage();
  const checks0 = checks();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const done = checks() - checks0;
  const healthy = lb.pools.list.reduce(
    (n, p) => n + p.servers.servers.filter((s) => s.healthy).length,
    0,
  );
  console.log(
    `${servers} servers, checks every ${values.interval}: ${(done / wall).toFixed(0)} checks/s ` +
      `(${healthy} healthy), lb CPU ${(100 * cpuSeconds / wall).toFixed(1)} % of one core, ` +
      `${(1e6 * cpuSeconds / done).toFixed(0)} µs per check, RSS ${
        (Deno.memoryUsage().rss / 1e6).toFixed(0)
      } MB`,
  );
} finally {
  await lb.shutdown(1000);
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel().catch(() => {});
}
