/**
 * `deno task bench`: lb beside nginx, HAProxy and the leanest Deno proxy, measured with wrk
 * in one interleaved run on this machine. See `--help`.
 *
 * Every target proxies to the same three demo backends (backends/demo.ts, no added
 * latency), which run in their own process so that no target shares an event loop with
 * them. Each round visits every target once, in a rotated order, so drift on a noisy
 * machine affects all of them alike; the table shows medians over the rounds. Results go
 * to bench/results/bench-<timestamp>.json and bench/results/latest.json.
 */
import { parseArgs } from "node:util";
import { type BenchCert, lbConfig, type Upstream } from "./_configs.ts";
import { type ChunkedResult, measureChunkedUploads } from "./_chunked.ts";
import { measureWebSockets, type WebSocketResult } from "./_websocket.ts";
import { measureMemory } from "./_memory.ts";
import {
  ClosedError,
  cpuSecondsOf,
  freePort,
  lastLine,
  type Proc,
  Procs,
  waitForOutput,
  waitForPort,
} from "./_procs.ts";
import { peerMissing, startHaproxy, startNginx } from "./_peers.ts";
import { formatProfile, summarizeProfile } from "./_profile.ts";
import {
  addRatios,
  checkTargets,
  fmtInt,
  fmtMs,
  formatChecks,
  formatMarkdown,
  formatTable,
  formatTlsMarkdown,
  formatTlsTables,
  type MemoryResult,
  type Round,
  summarize,
  type TargetResult,
  TWO_THREAD_IDS,
} from "./_report.ts";
import { H2_STREAMS, negotiatedLine, startTlsTargets, TLS_KINDS, type TlsKind } from "./_tls.ts";
import { haveWrk, runWrk, type WrkResult } from "./_wrk.ts";
import { plotSvg } from "./_plot.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const RESULTS = `${ROOT}/bench/results`;

/** The strategies issue 7 asks for; those lb does not know yet are skipped with a note. */
const WANTED_STRATEGIES = [
  "round-robin",
  "weighted-round-robin",
  "least-conn",
  "fastest",
  "p2c",
  "random",
  "consistent-hash",
  "maglev",
];

const USAGE =
  `Usage: deno task bench [--quick] [--only LIST] [--duration 5s] [--rounds N] [--profile]

Measures lb beside nginx, HAProxy and the leanest Deno proxy with wrk (-t1 -c50) against
three demo backends, in interleaved rounds; the same over HTTPS with one throwaway
certificate (keep-alive, a new TLS connection per request, and HTTP/2 with h2load -m10);
then lb's memory at 1,000 connections and with 1 GiB bodies, and the time to the first
byte of a streamed response. Prints the tables and writes
bench/results/bench-<timestamp>.json and bench/results/latest.json.

Flags:
  --quick             3 s per run, 1 round (about 4 minutes)
  --duration D        length of each measured run, like 5s or 1m (default 10s; --quick 3s)
  --rounds N          rounds through all targets (default 3, or 2 if 3 would pass 9 minutes;
                      --quick 1)
  --connections N     wrk connections for the table (default 50)
  --only LIST         comma list of what to run: direct, lean, lean-node, lean-http1, nginx, haproxy,
                      lb (every plain HTTP lb target), lb:STRATEGY, lb:round-robin+log,
                      lb:round-robin+workers (lb --workers 2 and one lb, nginx with 2
                      workers and 1, all at wrk -t2 -c100), lb:round-robin+routes, mem,
                      ttfb, chunked;
                      over HTTPS: tls (every TLS target), lb:tls, nginx:tls, haproxy:tls,
                      lean:tls (the lean fetch proxy), deno:tls (Deno.serve answering
                      itself)
  --backends WHERE    subprocess (default): the demo backends in their own process;
                      inproc: in this runner's process
  --profile           run only lb round-robin, under --cpu-prof, for one run; print the
                      profile's path and where the time went
  -h, --help          show this help

Environment: LB_BENCH_V8_FLAGS="--max-semi-space-size=8 …" runs every lb process with
those V8 flags (for trying heap settings against the same peers).

Needs wrk (Debian: apt-get install wrk). nginx and HAProxy are measured when installed
(apt-get install nginx-light haproxy), the TLS targets when openssl is, HTTP/2 when h2load
is (apt-get install openssl nghttp2-client); each is skipped with a note otherwise.
`;

export interface Settings {
  duration: number;
  rounds: number;
  roundsExplicit: boolean;
  connections: number;
  quick: boolean;
  only?: string[];
  backends: "subprocess" | "inproc";
  profile: boolean;
}

export class UsageError extends Error {}

/** The command line, checked; "help" for -h. Throws UsageError with a one-line reason. */
export function parseSettings(argv: string[]): Settings | "help" {
  const args = argv[0] === "--" ? argv.slice(1) : argv;
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        duration: { type: "string" },
        rounds: { type: "string" },
        connections: { type: "string" },
        only: { type: "string" },
        backends: { type: "string", default: "subprocess" },
        profile: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]);
  }
  const v = parsed.values;
  if (v.help) return "help";
  let duration = v.quick ? 3 : 10;
  if (v.duration !== undefined) {
    const m = /^(\d+)(s|m)?$/.exec(v.duration.trim());
    if (!m || Number(m[1]) < 1) {
      throw new UsageError(`--duration must be whole seconds like 5s or 1m, got "${v.duration}"`);
    }
    duration = Number(m[1]) * (m[2] === "m" ? 60 : 1);
  }
  const int = (s: string | undefined, flag: string, min: number, max: number) => {
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < min || n > max) {
      throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${s}"`);
    }
    return n;
  };
  const rounds = int(v.rounds, "--rounds", 1, 20);
  if (v.backends !== "subprocess" && v.backends !== "inproc") {
    throw new UsageError(`--backends must be subprocess or inproc, got "${v.backends}"`);
  }
  let only: string[] | undefined;
  if (v.only !== undefined) {
    only = v.only.split(",").map((s) => s.trim()).filter(Boolean);
    const known =
      /^(direct|lean|lean-node|lean-http1|nginx|haproxy|lb|lb:[a-z0-9-]+(\+log|\+workers|\+routes)?|mem|ttfb|chunked|ws|tls|(lb|nginx|haproxy|lean|deno):tls)$/;
    const bad = only.find((t) => !known.test(t));
    if (bad !== undefined || only.length === 0) {
      throw new UsageError(
        `--only takes a comma list of direct, lean, lean-node, lean-http1, nginx, haproxy, lb, lb:STRATEGY, lb:round-robin+log, lb:round-robin+workers, lb:round-robin+routes, mem, ttfb, chunked, ws, tls, lb:tls, nginx:tls, haproxy:tls, lean:tls, deno:tls; got "${
          bad ?? v.only
        }"`,
      );
    }
  }
  return {
    duration,
    rounds: rounds ?? (v.quick ? 1 : 3),
    roundsExplicit: rounds !== undefined,
    connections: int(v.connections, "--connections", 1, 10_000) ?? 50,
    quick: v.quick,
    only,
    backends: v.backends,
    profile: v.profile,
  };
}

/**
 * Whether target `id` was asked for: `lb` selects every plain `lb:…`; `lb:round-robin`
 * itself only. A TLS target (`…:tls`) answers to its own id and to `tls` alone, so the ids
 * that came before it (`lb`, `lean`, `nginx`) still select what they did.
 */
export function selected(id: string, only: string[] | undefined): boolean {
  if (!only) return true;
  if (id.endsWith(":tls")) return only.some((t) => t === id || t === "tls");
  return only.some((t) => id === t || id.startsWith(t + ":"));
}

// ---------------------------------------------------------------------------------------
// Machine

async function commandOutput(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    return text.trim() || undefined;
  } catch {
    return undefined;
  }
}

async function machineInfo() {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const nginx = (await commandOutput("nginx", ["-v"]))?.match(/nginx\/([\d.]+)/)?.[1];
  const haproxy = (await commandOutput("haproxy", ["-v"]))?.match(/version ([\d.]+)/)?.[1];
  const wrk = (await commandOutput("wrk", ["-v"]))?.match(/wrk (?:debian\/)?(\d[\w.+~-]*)/)?.[1];
  const curl = (await commandOutput("curl", ["--version"]))?.match(/curl ([\d.]+)/)?.[1];
  const h2load = (await commandOutput("h2load", ["--version"]))?.match(/nghttp2\/([\d.]+)/)?.[1];
  const openssl = (await commandOutput("openssl", ["version"]))?.match(/OpenSSL ([\w.]+)/)?.[1];
  const commit = await commandOutput("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const dirty = await commandOutput("git", ["-C", ROOT, "status", "--porcelain"]);
  return {
    nproc: navigator.hardwareConcurrency,
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown CPU",
    memoryGiB: Math.round(memKb / 1024 / 1024 * 10) / 10,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    nginx: nginx ?? null,
    haproxy: haproxy ?? null,
    wrk: wrk ?? null,
    curl: curl ?? null,
    h2load: h2load ?? null,
    /** The system OpenSSL (nginx's, HAProxy's and the load generators'; Deno has rustls). */
    openssl: openssl ?? null,
    commit: commit ? `${commit}${dirty ? " (uncommitted changes)" : ""}` : null,
    loadAverageAtStart: await loadAverage(),
    cpuBusyBeforeStart: await cpuBusy(1000),
    /** Share of all CPU time used by processes the benchmark did not start, during the run. */
    otherCpuDuringRun: null as number | null,
    loadAverageAtEnd: null as number | null,
  };
}

/** The 1-minute load average: other work on the machine shows up as noise. */
async function loadAverage(): Promise<number | null> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  const n = Number(text.split(" ")[0]);
  return text && Number.isFinite(n) ? n : null;
}

/** Share of all CPUs' time spent busy over `ms` (from /proc/stat), or null. */
async function cpuBusy(ms: number): Promise<number | null> {
  const read = async () => {
    const line = (await Deno.readTextFile("/proc/stat").catch(() => "")).split("\n")[0];
    const f = line.split(/\s+/).slice(1).map(Number);
    if (f.length < 5 || f.some((n) => !Number.isFinite(n))) return null;
    const idle = f[3] + f[4]; // idle + iowait
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = await read();
  await new Promise((r) => setTimeout(r, ms));
  const b = await read();
  if (!a || !b || b.total === a.total) return null;
  return Math.round((1 - (b.idle - a.idle) / (b.total - a.total)) * 100) / 100;
}

/** Pids of other benchmark runs on this machine (they would skew each other's numbers). */
function otherBenchmarks(): number[] {
  const out: number[] = [];
  try {
    for (const e of Deno.readDirSync("/proc")) {
      const pid = Number(e.name);
      if (!Number.isInteger(pid) || pid === Deno.pid) continue;
      try {
        const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
        if (cmd.some((a) => a.endsWith("bench/run.ts")) && cmd.includes("run")) out.push(pid);
      } catch {
        // Gone, or not ours to read.
      }
    }
  } catch {
    // No /proc.
  }
  return out;
}

interface Ticks {
  /** All CPUs' busy and total time, and this process's own plus its reaped children's. */
  busy: number;
  total: number;
  ours: number;
}

/** CPU clock ticks from /proc/stat and /proc/self/stat (the same unit, USER_HZ). */
function cpuTicks(): Ticks | null {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].split(/\s+/).slice(1)
      .map(Number);
    const self = Deno.readTextFileSync("/proc/self/stat");
    // After "pid (comm) ": state is field 3; utime, stime, cutime, cstime are fields 14-17.
    const g = self.slice(self.lastIndexOf(")") + 2).split(" ").map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - f[3] - f[4], total, ours: g[11] + g[12] + g[13] + g[14] };
  } catch {
    return null;
  }
}

function othersShare(a: Ticks | null, b: Ticks | null): number | null {
  if (!a || !b || b.total <= a.total) return null;
  const others = (b.busy - a.busy) - (b.ours - a.ours);
  return Math.round(Math.max(0, others / (b.total - a.total)) * 100) / 100;
}

type Machine = Awaited<ReturnType<typeof machineInfo>>;

function machineLine(m: Machine): string {
  return `machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB, ${m.os}; Deno ${m.deno}, ` +
    `nginx ${m.nginx ?? "-"}, HAProxy ${m.haproxy ?? "-"}, wrk ${m.wrk ?? "-"}, ` +
    `h2load ${m.h2load ?? "-"}, OpenSSL ${m.openssl ?? "-"}; ` +
    `nothing pinned: wrk, the proxy and the backends share the ${m.nproc} CPUs`;
}

// ---------------------------------------------------------------------------------------
// Processes under test

interface Running {
  id: string;
  label: string;
  port: number;
  proc?: Proc;
  skipped?: string;
  /** The TLS measurement this row is (bench/_tls.ts); none: wrk over plain HTTP. */
  kind?: TlsKind;
  /** One run of `seconds`; default wrk over plain HTTP. */
  measure?(seconds: number): Promise<WrkResult>;
}

/**
 * `--workers 2` as issue 16 measures it: with two wrk threads and 100 connections, beside lb
 * as one process and nginx with two workers under the same load (one wrk thread cannot keep
 * two processes busy).
 */
async function addWorkerTargets(
  procs: Procs,
  dir: string,
  upstreams: Upstream[],
  add: (r: Running, start: () => Promise<{ proc: Proc; port: number }>) => void,
): Promise<void> {
  const twoThreads = (r: Running): Running => {
    r.measure = (seconds) =>
      runWrk(procs, {
        url: `http://127.0.0.1:${r.port}/`,
        threads: 2,
        connections: 100,
        duration: seconds,
      });
    return r;
  };
  const lb = (workers?: number) => () =>
    startLb(procs, dir, upstreams, { strategy: "round-robin", accessLog: false, workers });
  const [w2, w1, nginx2, nginx1] = TWO_THREAD_IDS;
  add(twoThreads({ id: w2, label: "lb round-robin, --workers 2 (wrk -t2 -c100)", port: 0 }), lb(2));
  add(twoThreads({ id: w1, label: "lb round-robin, 1 process (wrk -t2 -c100)", port: 0 }), lb());
  const missing = await peerMissing("nginx");
  for (const [id, workers] of [[nginx2, 2], [nginx1, 1]] as const) {
    const label = `nginx (${workers} worker${workers > 1 ? "s" : ""}, wrk -t2 -c100)`;
    // A missing nginx skips its rows (add() notes why), not the run.
    add(twoThreads({ id, label, port: 0 }), () => {
      if (missing) throw new Error(missing);
      return startNginx(procs, dir, upstreams, undefined, workers, `-t2w${workers}`);
    });
  }
}

/** Starts the three demo backends; returns their addresses and a closer. */
async function startBackends(
  procs: Procs,
  mode: Settings["backends"],
): Promise<{ upstreams: Upstream[]; proc?: Proc; close(): Promise<void> }> {
  if (mode === "inproc") {
    const { startDemoBackends } = await import("../backends/demo.ts");
    const list = await startDemoBackends({ count: 3, port: 0 });
    return {
      upstreams: list.map((b) => ({ host: "127.0.0.1", port: b.port })),
      close: async () => void await Promise.all(list.map((b) => b.close())),
    };
  }
  const proc = procs.spawn("backends", Deno.execPath(), [
    "run",
    "-A",
    "src/main.ts",
    "backends",
    "--count",
    "3",
    "--port",
    "0",
  ], { cwd: ROOT });
  const found = await waitForOutput(
    proc,
    /backend-\d+ listening on http:\/\/127\.0\.0\.1:(\d+)/,
    3,
  );
  return {
    upstreams: found.map((m) => ({ host: "127.0.0.1", port: Number(m[1]) })),
    proc,
    close: () => procs.stop(proc),
  };
}

interface LbStart {
  strategy: string;
  /** Default: the demo backends. */
  upstreams?: Upstream[];
  accessLog: boolean;
  generousLimits?: boolean;
  cpuProfDir?: string;
  /** `lb serve --workers N` (processes sharing the port). */
  workers?: number;
  /** A routing table of this many routes (only the last matches). */
  routes?: number;
  /** Serve HTTPS with this certificate. */
  tls?: BenchCert;
}

/** Starts `lb serve` as a subprocess with a generated config; resolves once it listens. */
async function startLb(
  procs: Procs,
  dir: string,
  upstreams: Upstream[],
  o: LbStart,
): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const name = `lb-${o.strategy}${o.accessLog ? "-log" : ""}${o.workers ? `-w${o.workers}` : ""}${
    o.routes ? `-r${o.routes}` : ""
  }${o.tls ? "-tls" : ""}-${port}`;
  const cfgPath = `${dir}/${name}.yaml`;
  await Deno.writeTextFile(
    cfgPath,
    lbConfig({
      port,
      strategy: o.strategy,
      backends: o.upstreams ?? upstreams,
      accessLog: o.accessLog,
      generousLimits: o.generousLimits,
      routes: o.routes,
      tls: o.tls,
    }),
  );
  const prof = o.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", o.cpuProfDir] : [];
  const v8 = Deno.env.get("LB_BENCH_V8_FLAGS");
  const proc = procs.spawn(name, Deno.execPath(), [
    "run",
    "-A",
    ...prof,
    ...(v8 ? [`--v8-flags=${v8.trim().split(/\s+/).join(",")}`] : []),
    "src/main.ts",
    "serve",
    "--config",
    cfgPath,
    ...(o.workers ? ["--workers", String(o.workers)] : []),
  ], { cwd: ROOT });
  try {
    await waitForPort(proc, port);
  } catch (e) {
    await procs.stop(proc);
    // lb's own one-line error, e.g. an unknown strategy, without the JSON wrapping.
    const line = (e as Error).message.replace(/^.*?exited before listening: /, "");
    throw new Error(line.replace(/^lb: /, ""));
  }
  return { proc, port };
}

async function startTargets(
  procs: Procs,
  dir: string,
  upstreams: Upstream[],
  s: Settings,
  strategies: Set<string> | undefined,
  notes: string[],
): Promise<Running[]> {
  const out: Running[] = [];
  const want = (id: string) => selected(id, s.only);
  const lbArgs = (u: Upstream[]) => u.flatMap((b) => ["--backend", `http://${b.host}:${b.port}`]);

  if (want("direct")) {
    out.push({ id: "direct", label: "direct to one backend", port: upstreams[0].port });
  }
  const starts: Promise<void>[] = [];
  const add = (r: Running, start: () => Promise<{ proc: Proc; port: number }>) => {
    out.push(r);
    starts.push(
      start().then(({ proc, port }) => {
        r.proc = proc;
        r.port = port;
      }).catch((e) => {
        r.skipped = (e as Error).message;
      }),
    );
  };
  for (
    const [id, label, file] of [
      ["lean", "lean Deno proxy (fetch)", "bench/lean_proxy.ts"],
      ["lean-node", "lean Deno proxy (node:http)", "bench/lean_proxy_node.ts"],
      ["lean-http1", "lean Deno proxy (lb's http1)", "bench/lean_proxy_http1.ts"],
    ] as const
  ) {
    if (!want(id)) continue;
    add({ id, label, port: 0 }, async () => {
      const port = freePort();
      const proc = procs.spawn(id, Deno.execPath(), [
        "run",
        "-A",
        file,
        "--port",
        String(port),
        ...lbArgs(upstreams),
      ], { cwd: ROOT });
      await waitForPort(proc, port);
      return { proc, port };
    });
  }
  for (
    const [id, label, start] of [
      ["nginx", "nginx (1 worker)", startNginx],
      ["haproxy", "HAProxy (1 thread)", startHaproxy],
    ] as const
  ) {
    if (!want(id)) continue;
    const r: Running = { id, label, port: 0 };
    const missing = await peerMissing(id);
    if (missing) {
      r.skipped = missing;
      out.push(r);
    } else add(r, () => start(procs, dir, upstreams));
  }
  const lbTargets: [string, string, string, boolean, number?, number?][] = [];
  // A strategy named in --only (lb:NAME) is measured even when issue 7 does not list it.
  const named = (s.only ?? []).filter((t) => /^lb:[a-z0-9-]+$/.test(t) && t !== "lb:tls")
    .map((t) => t.slice(3));
  for (const st of new Set([...WANTED_STRATEGIES, ...named])) {
    lbTargets.push([`lb:${st}`, `lb ${st}`, st, false]);
    if (st === "round-robin") {
      lbTargets.push(["lb:round-robin+log", "lb round-robin + access log", st, true]);
      lbTargets.push(["lb:round-robin+routes", "lb round-robin, 100 routes", st, false, 0, 100]);
    }
  }
  if (want("lb:round-robin+workers")) await addWorkerTargets(procs, dir, upstreams, add);
  for (const [id, label, strategy, accessLog, workers, routes] of lbTargets) {
    if (!want(id)) continue;
    const r: Running = { id, label, port: 0 };
    if (strategies && !strategies.has(strategy)) {
      r.skipped = `lb has no strategy "${strategy}" yet`;
      notes.push(`${label}: skipped, src/strategies/mod.ts does not list "${strategy}"`);
      out.push(r);
      continue;
    }
    add(r, () => startLb(procs, dir, upstreams, { strategy, accessLog, workers, routes }));
  }
  const tls = startTlsTargets({
    procs,
    dir,
    root: ROOT,
    upstreams,
    connections: s.connections,
    want,
    startLb: (cert) =>
      startLb(procs, dir, upstreams, { strategy: "round-robin", accessLog: false, tls: cert }),
  });
  await Promise.all(starts);
  out.push(...await tls);
  for (const r of out) {
    // A TLS server whose three rows were skipped for one reason gets one note.
    const server = out.filter((o) => o.kind && o.id.split("/")[0] === r.id.split("/")[0]);
    const name = r.kind && server.every((o) => o.skipped === r.skipped)
      ? `${r.label} over TLS`
      : rowName(r);
    if (r.skipped && !notes.some((n) => n.startsWith(name))) {
      notes.push(`${name}: skipped, ${r.skipped}`);
    }
  }
  return out;
}

/** A row's label, with its TLS measurement when it has one. */
function rowName(r: { label: string; kind?: TlsKind }): string {
  return r.kind ? `${r.label}, ${TLS_KINDS.find((k) => k.kind === r.kind)!.name}` : r.label;
}

// ---------------------------------------------------------------------------------------
// The run

async function measureThroughput(
  procs: Procs,
  targets: Running[],
  s: Settings,
): Promise<TargetResult[]> {
  const results = new Map<string, TargetResult>(
    targets.map((t) => [t.id, {
      id: t.id,
      label: t.label,
      kind: t.kind,
      skipped: t.skipped,
      rounds: [],
    }]),
  );
  const live = () => targets.filter((t) => !results.get(t.id)!.skipped);
  const warmup = s.quick ? 1 : 2;
  const warmed = new Set<string>();
  const measure = (t: Running, seconds: number) =>
    t.measure?.(seconds) ?? runWrk(procs, {
      url: `http://127.0.0.1:${t.port}/`,
      threads: 1,
      connections: s.connections,
      duration: seconds,
    });
  for (let round = 0; round < s.rounds; round++) {
    const list = live();
    // Rotate the order each round so no target always runs right after another.
    const order = list.map((_, i) => list[(i + round) % list.length]);
    for (const t of order) {
      const res = results.get(t.id)!;
      const head = `  round ${round + 1}/${s.rounds}  ${rowName(t).padEnd(50)}`;
      try {
        if (!warmed.has(t.id)) {
          await measure(t, warmup);
          warmed.add(t.id);
        }
        const cpu0 = t.proc && cpuSecondsOf(t.proc.pid);
        const r: Round = await measure(t, s.duration);
        const cpu1 = t.proc && cpuSecondsOf(t.proc.pid);
        if (cpu0 !== undefined && cpu1 !== undefined && r.requests > 0) {
          r.cpuUs = (cpu1 - cpu0) / r.requests * 1e6;
        }
        res.rounds.push(r);
        const latency = "meanMs" in r
          ? `mean ${fmtMs(r.meanMs as number).padStart(8)}`
          : `p50 ${fmtMs(r.p50).padStart(8)}  p99 ${fmtMs(r.p99).padStart(8)}`;
        console.log(
          `${head} ${fmtInt(r.requestsPerSec).padStart(7)} req/s  ${latency}${
            r.cpuUs === undefined ? "" : `  CPU ${r.cpuUs.toFixed(0).padStart(4)}µs/req`
          }${r.errors ? `  ${r.errors} errors` : ""}`,
        );
      } catch (e) {
        if (procs.closed) throw e;
        const why = t.proc?.exited ? `crashed: ${await lastLine(t.proc)}` : (e as Error).message;
        res.skipped = why;
        console.log(`${head.trimEnd()}: ${why}`);
      }
    }
  }
  for (const r of results.values()) summarize(r);
  const list = [...results.values()];
  addRatios(list);
  return list;
}

async function runProfile(procs: Procs, dir: string, upstreams: Upstream[], s: Settings) {
  const profDir = `${RESULTS}/prof`;
  await Deno.mkdir(profDir, { recursive: true });
  const before = new Set<string>();
  for await (const e of Deno.readDir(profDir)) before.add(e.name);
  const { proc, port } = await startLb(procs, dir, upstreams, {
    strategy: "round-robin",
    accessLog: false,
    cpuProfDir: profDir,
  });
  const url = `http://127.0.0.1:${port}/`;
  console.log(
    `profiling lb round-robin (--cpu-prof) for ${s.duration}s with wrk -t1 -c${s.connections}…`,
  );
  await runWrk(procs, { url, threads: 1, connections: s.connections, duration: 2 });
  const r = await runWrk(procs, {
    url,
    threads: 1,
    connections: s.connections,
    duration: s.duration,
  });
  console.log(
    `lb round-robin under the profiler: ${fmtInt(r.requestsPerSec)} req/s, p50 ${
      fmtMs(r.p50)
    }, p99 ${fmtMs(r.p99)} (the profiler slows it down)`,
  );
  // lb writes the profile when it exits: SIGTERM lets it drain and exit normally.
  await procs.stop(proc, 30_000);
  let newest: string | undefined;
  let newestTime = 0;
  for await (const e of Deno.readDir(profDir)) {
    if (before.has(e.name) || !e.name.endsWith(".cpuprofile")) continue;
    const st = await Deno.stat(`${profDir}/${e.name}`);
    if ((st.mtime?.getTime() ?? 0) >= newestTime) {
      newest = `${profDir}/${e.name}`;
      newestTime = st.mtime?.getTime() ?? 0;
    }
  }
  if (!newest) throw new Error(`lb wrote no profile into ${profDir}: ${await lastLine(proc)}`);
  const summary = formatProfile(summarizeProfile(JSON.parse(await Deno.readTextFile(newest))));
  await Deno.writeTextFile(newest.replace(/\.cpuprofile$/, ".txt"), summary + "\n");
  console.log(`\n${summary}\n`);
  console.log(`profile: ${newest}`);
  console.log(
    `(open it in Chrome DevTools → Performance → Load profile, or https://www.speedscope.app)`,
  );
}

async function main(argv: string[]): Promise<number> {
  let s: Settings | "help";
  try {
    s = parseSettings(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`bench: ${e.message}\nRun 'deno task bench --help' for usage.`);
      return 2;
    }
    throw e;
  }
  if (s === "help") {
    console.log(USAGE);
    return 0;
  }
  if (!(await haveWrk())) {
    console.error("bench: wrk is not installed; install it with: apt-get install wrk");
    return 1;
  }

  const dir = await Deno.makeTempDir({ prefix: "lb-bench-" });
  const procs = new Procs(dir);
  let closeBackends: (() => Promise<void>) | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    cleaning ??= (async () => {
      await procs.stopAll(3000, true);
      await closeBackends?.().catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const onSignal = () => {
    if (cleaning) Deno.exit(130); // a second Ctrl-C: leave at once
    console.error("\nbench: interrupted; stopping every process it started…");
    void cleanup().finally(() => Deno.exit(130));
  };
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);

  try {
    const started = new Date();
    const machine = await machineInfo();
    console.log(machineLine(machine));
    const cpuAtStart = cpuTicks();
    const concurrent = otherBenchmarks();
    if (concurrent.length) {
      console.log(
        `warning: another benchmark is running (pid ${
          concurrent.join(", ")
        }); both will measure each other's load`,
      );
    }
    const backends = await startBackends(procs, s.backends);
    closeBackends = backends.close;
    const { upstreams } = backends;
    console.log(
      `backends: 3 demo backends (${
        s.backends === "inproc" ? "in this process" : "own process"
      }) on ports ${upstreams.map((u) => u.port).join(", ")}`,
    );

    if (s.profile) {
      await runProfile(procs, dir, upstreams, s);
      return 0;
    }

    const notes: string[] = [];
    let strategies: Set<string> | undefined;
    try {
      const mod = await import("../src/balancing/strategies/registry.ts");
      strategies = new Set<string>(mod.STRATEGY_NAMES);
    } catch (e) {
      notes.push(
        `could not read src/strategies/mod.ts (${(e as Error).message.split("\n")[0]}); ` +
          "strategies lb does not know will fail to start and be skipped",
      );
    }
    const targets = await startTargets(procs, dir, upstreams, s, strategies, notes);
    const measured = targets.filter((t) => !t.skipped).length;
    const memPlanned = selected("mem", s.only);
    const memSeconds = memPlanned ? (s.quick ? 25 : 45) : 0;
    const estimate = (r: number) =>
      measured * (r * (s.duration + 0.3) + (s.quick ? 1 : 2)) + memSeconds;
    if (!s.roundsExplicit && s.rounds > 2 && estimate(s.rounds) > 540) s.rounds = 2;
    console.log(
      `wrk -t1 -c${s.connections} -d${s.duration}s, ${s.rounds} round${
        s.rounds === 1 ? "" : "s"
      } through ${measured} targets; about ${Math.ceil(estimate(s.rounds) / 60)} min`,
    );
    if (targets.some((t) => t.kind)) {
      console.log(
        `HTTPS: one EC P-256 certificate for every TLS target; HTTP/2 with h2load -t1 -c${s.connections} -m${H2_STREAMS} -D${s.duration}`,
      );
    }
    for (const n of notes) console.log(`  note: ${n}`);

    const results = await measureThroughput(procs, targets, s);
    // Free the CPUs for the memory runs: only the backends keep running.
    await Promise.all(targets.map((t) => t.proc && procs.stop(t.proc)));

    let memory: MemoryResult = { notes: [] };
    if (memPlanned || selected("ttfb", s.only)) {
      memory = await measureMemory({
        procs,
        dir,
        root: ROOT,
        upstreams,
        quick: s.quick,
        connections: memPlanned,
        ttfb: selected("ttfb", s.only),
        startLb: (o) => startLb(procs, dir, upstreams, o),
      });
    }
    // lb round-robin in front of other upstreams, with limits that let the load through.
    const lbFor = (ups: Upstream[]) =>
      startLb(procs, dir, upstreams, {
        strategy: "round-robin",
        accessLog: false,
        generousLimits: true,
        upstreams: ups,
      });
    let chunked: ChunkedResult | undefined;
    if (selected("chunked", s.only)) {
      chunked = await measureChunkedUploads({
        procs,
        root: ROOT,
        quick: s.quick,
        startLb: lbFor,
      });
    }
    let websockets: WebSocketResult | undefined;
    if (selected("ws", s.only)) {
      websockets = await measureWebSockets({
        procs,
        dir,
        root: ROOT,
        quick: s.quick,
        startLb: lbFor,
      });
    }
    const checks = checkTargets(results, memory, chunked, websockets);
    machine.loadAverageAtEnd = await loadAverage();
    // Every process the benchmark started must have exited (and been reaped) for its CPU
    // time to count as ours; what remains is other work on the machine.
    await cleanup();
    const others = othersShare(cpuAtStart, cpuTicks());
    machine.otherCpuDuringRun = others;
    const stillConcurrent = [...new Set([...concurrent, ...otherBenchmarks()])];
    if (stillConcurrent.length) {
      notes.push(
        `another benchmark ran at the same time (pid ${stillConcurrent.join(", ")})`,
      );
    }
    if (others !== null && others > 0.1) {
      notes.push(
        `other processes used ${
          Math.round(others * 100)
        }% of the CPUs during the run: the numbers are noisy; compare ratios, and rerun when the machine is quiet`,
      );
    }
    if (machine.cpuBusyBeforeStart !== null && machine.cpuBusyBeforeStart > 0.2) {
      notes.push(
        `other work kept the CPUs ${
          Math.round(machine.cpuBusyBeforeStart * 100)
        }% busy in the second before the run (load average ${machine.loadAverageAtStart}): expect noise; compare ratios, and rerun when the machine is quiet`,
      );
    }

    const line = machineLine(machine);
    console.log(`\n${line}`);
    console.log(
      `wrk -t1 -c${s.connections} -d${s.duration}s, median of ${s.rounds} round${
        s.rounds === 1 ? "" : "s"
      }; ± is the spread of req/s between rounds; ratios are medians of per-round ratios\n`,
    );
    const plain = results.filter((r) => !r.kind);
    if (plain.length || !results.some((r) => r.kind)) console.log(formatTable(plain));
    if (results.some((r) => r.kind)) {
      console.log(`\nHTTPS and HTTP/2 (vs nginx, vs lean: nginx and the lean proxy over TLS):\n`);
      console.log(formatTlsTables(results, s.connections));
      const agreed = negotiatedLine(results);
      if (agreed) notes.unshift(agreed);
    }
    if (memory.connections || memory.download || memory.upload || memory.ttfb) {
      console.log(`\nmemory and streaming (lb round-robin, fresh process for each):`);
      for (const l of memoryLines(memory)) console.log(`  ${l}`);
    }
    if (chunked) {
      console.log(
        `\nchunked uploads from a fetch client (${chunked.mib} MiB, median of ${chunked.runs}):`,
      );
      for (const l of chunkedLines(chunked)) console.log(`  ${l}`);
    }
    if (websockets) {
      console.log(
        `\nWebSockets (${websockets.connections} connections, 64-byte echo, ${websockets.seconds} s each):`,
      );
      for (const l of webSocketLines(websockets)) console.log(`  ${l}`);
    }
    for (
      const n of [
        ...notes,
        ...memory.notes,
        ...(chunked?.notes ?? []),
        ...(websockets?.notes ?? []),
      ]
    ) {
      console.log(`  note: ${n}`);
    }
    console.log(`\ntargets (informational; the benchmark never fails on speed):`);
    console.log(formatChecks(checks));

    await Deno.mkdir(RESULTS, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, "-");
    const json = {
      version: 1,
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      args: argv,
      settings: {
        wrk: `-t1 -c${s.connections} -d${s.duration}s --latency`,
        h2load: `-t1 -c${s.connections} -m${H2_STREAMS} -D${s.duration}`,
        rounds: s.rounds,
        quick: s.quick,
        only: s.only ?? null,
        backends: s.backends,
      },
      machine,
      machineLine: line,
      targets: results,
      memory,
      chunked,
      websockets,
      checks,
      notes: [...notes, ...memory.notes],
      markdown: formatMarkdown(results),
      markdownTls: formatTlsMarkdown(results),
    };
    const text = JSON.stringify(json, null, 2) + "\n";
    const path = `${RESULTS}/bench-${stamp}.json`;
    await Deno.writeTextFile(path, text);
    await Deno.writeTextFile(`${RESULTS}/latest.json`, text);
    await Deno.writeTextFile(`${RESULTS}/bench.svg`, plotSvg(results, line));
    console.log(`\nresults: ${path} (also bench/results/latest.json, and bench.svg: the plot)`);
    return 0;
  } catch (e) {
    if (e instanceof ClosedError || procs.closed) return 130;
    console.error(`bench: ${(e as Error).message}`);
    return 1;
  } finally {
    await cleanup();
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
  }
}

function chunkedLines(c: ChunkedResult): string[] {
  const lean = c.seconds.find((t) => t.label === "lean proxy (fetch)")?.seconds;
  return c.seconds.map((t) => {
    if (t.seconds === undefined) return `${t.label}: did not finish`;
    const vsLean = lean
      ? `, ${Math.round((lean / t.seconds) * 100)}% of the lean proxy's speed`
      : "";
    return `${t.label}: ${t.seconds.toFixed(2)} s (${t.mbPerSec!.toFixed(0)} MB/s)${vsLean}`;
  });
}

function memoryLines(m: MemoryResult): string[] {
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  const out: string[] = [];
  const c = m.connections;
  if (c) {
    out.push(
      `${fmtInt(c.connections)} keep-alive connections (wrk -t2 -c${c.connections}): peak RSS ${
        mb(c.peakHwm)
      } (VmHWM; idle before ${mb(c.idleRss)}), ${
        fmtInt(c.requestsPerSec)
      } req/s, ${c.errors} errors${
        (c.references ?? []).map((r) =>
          `; ${r.label}: ${mb(r.peakHwm)} (idle ${mb(r.idleRss)}), ${
            fmtInt(r.requestsPerSec)
          } req/s`
        ).join("")
      }`,
    );
  }
  if (m.idle) {
    const n = m.idle.connections;
    const each = (before: number, after: number) => ((after - before) / n / 1024).toFixed(1);
    out.push(
      `${fmtInt(n)} idle keep-alive connections (1 s after opening them / settled): ${
        m.idle.targets.map((t) =>
          `${t.label} ${mb(t.rssBefore)} → ${mb(t.rssAfter)} (${
            each(t.rssBefore, t.rssAfter)
          } KiB each) / ${mb(t.rssSettled ?? t.rssAfter)} (${
            each(t.rssBefore, t.rssSettled ?? t.rssAfter)
          } KiB)`
        ).join("; ")
      }`,
    );
  }
  for (
    const [what, b] of [
      ["1 GiB download (GET /stream)", m.download],
      ["1 GiB upload (POST to a sink)", m.upload],
    ] as const
  ) {
    if (!b) continue;
    out.push(
      `${what}: ${b.complete ? `HTTP ${b.status}` : `INCOMPLETE after ${mb(b.bytes)}`}, ${
        b.seconds.toFixed(1)
      } s (${(b.bytes / b.seconds / 1e6).toFixed(0)} MB/s), RSS ${mb(b.rssBefore)} → peak ${
        mb(b.peakSampled)
      } (+${mb(b.rise)})${
        (b.references ?? []).map((ref) =>
          `; ${ref.label}: ${ref.seconds.toFixed(1)} s, RSS +${mb(ref.rise)}${
            ref.complete ? "" : " (incomplete)"
          }`
        ).join("")
      }`,
    );
  }
  if (m.ttfb) {
    out.push(
      `time to first body byte of ${m.ttfb.path}: through lb ${fmtMs(m.ttfb.viaLbMs)}, direct ${
        fmtMs(m.ttfb.directMs)
      } (median of ${m.ttfb.samples})`,
    );
  }
  return out;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

/** The WebSocket rows: messages per second, round trip, and lb's RSS with idle connections. */
export function webSocketLines(w: WebSocketResult): string[] {
  const out = w.rows.map((r) =>
    r.skipped
      ? `${r.label.padEnd(20)} skipped: ${r.skipped}`
      : `${r.label.padEnd(20)} ${
        Math.round(r.messagesPerSec!).toLocaleString("en-US").padStart(8)
      } msg/s` +
        `  p50 ${r.p50!.toFixed(2)}ms  p99 ${r.p99!.toFixed(2)}ms`
  );
  if (w.idle) {
    const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
    out.push(
      `lb with ${w.idle.connections.toLocaleString("en-US")} idle WebSockets: RSS ${
        mb(w.idle.rss)
      } ` +
        `(${mb(w.idle.rssBefore)} before; ${
          ((w.idle.rss - w.idle.rssBefore) / w.idle.connections / 1024).toFixed(1)
        } KiB each)`,
    );
  }
  return out;
}
