/**
 * lb's memory and streaming: peak RSS at 1,000 keep-alive connections, RSS while a 1 GiB
 * body goes each way, and the time to the first byte of a streamed response. Each
 * measurement uses a fresh lb process so that its RSS and VmHWM (the peak) are its own.
 * The 1 GiB transfers also run through the lean node:http proxy, so that what Deno itself
 * holds can be told apart from what lb adds.
 */
import type { Upstream } from "./_configs.ts";
import {
  fdLimit,
  freePort,
  memoryOf,
  type Proc,
  type Procs,
  sampleRss,
  sleep,
  waitForOutput,
  waitForPort,
} from "./_procs.ts";
import { type BodyResult, median, type MemoryResult } from "./_report.ts";
import { runWrk } from "./_wrk.ts";

const GIB = 1024 ** 3;
const TTFB_PATH = "/sse?events=5&intervalMs=200";

export interface MemoryOptions {
  procs: Procs;
  dir: string;
  /** The repository root (cwd for `deno run`). */
  root: string;
  upstreams: Upstream[];
  quick: boolean;
  /** The 1,000-connection and 1 GiB runs. */
  connections: boolean;
  ttfb: boolean;
  startLb(o: {
    strategy: string;
    accessLog: boolean;
    generousLimits?: boolean;
    upstreams?: Upstream[];
  }): Promise<{ proc: Proc; port: number }>;
}

export async function measureMemory(o: MemoryOptions): Promise<MemoryResult> {
  const out: MemoryResult = { notes: [] };
  const fresh = (upstreams?: Upstream[]) =>
    o.startLb({ strategy: "round-robin", accessLog: false, generousLimits: true, upstreams });
  const direct = `http://127.0.0.1:${o.upstreams[0].port}`;
  const maxTime = o.quick ? 45 : 90;

  if (o.connections) {
    const { proc, port } = await fresh();
    try {
      const r = await manyConnections(o, proc, port);
      out.connections = { connections: 1000, ...r };
      console.log(`  1,000 connections: peak RSS ${mb(r.peakHwm)}`);
    } finally {
      await o.procs.stop(proc);
    }
    for (const lean of CONNECTION_REFERENCES) {
      const { proc, port } = await startLean(o, lean, o.upstreams);
      try {
        const r = await manyConnections(o, proc, port);
        (out.connections.references ??= []).push({ label: lean.label, ...r });
      } finally {
        await o.procs.stop(proc);
      }
    }
    out.idle = await idleConnections(o, fresh);
  }

  if (o.ttfb) {
    const { proc, port } = await fresh();
    const lb = `http://127.0.0.1:${port}`;
    try {
      const n = o.quick ? 5 : 15;
      const viaLb: number[] = [];
      const straight: number[] = [];
      await firstByteMs(lb + TTFB_PATH); // connections and JIT warm-up
      await firstByteMs(direct + TTFB_PATH);
      for (let i = 0; i < n; i++) {
        viaLb.push(await firstByteMs(lb + TTFB_PATH));
        straight.push(await firstByteMs(direct + TTFB_PATH));
      }
      out.ttfb = {
        viaLbMs: median(viaLb),
        directMs: median(straight),
        samples: n,
        path: TTFB_PATH,
      };
      if (out.ttfb.viaLbMs > 150) {
        out.notes.push(
          `the first event took ${out.ttfb.viaLbMs.toFixed(0)} ms through lb: it looks buffered`,
        );
      }
      console.log(
        `  time to first byte: lb ${out.ttfb.viaLbMs.toFixed(2)} ms, direct ${
          out.ttfb.directMs.toFixed(2)
        } ms`,
      );
    } finally {
      await o.procs.stop(proc);
    }
  }

  if (o.connections) {
    // Uploads go to a sink that reads and counts the body (see bench/sink.ts).
    const { proc: sink, port: sinkPort } = await startSink(o);
    try {
      const file = `${o.dir}/upload.bin`;
      // Sparse: 1 GiB of zeros that takes no disk and goes out with a Content-Length.
      const f = await Deno.open(file, { create: true, write: true, truncate: true });
      await f.truncate(GIB);
      f.close();
      const downloadArgs = (base: string) => [`${base}/stream?bytes=${GIB}`];
      const uploadArgs = (base: string) => [
        "-X",
        "POST",
        "-T",
        file,
        "-H",
        "Expect:",
        "-H",
        "content-type: application/octet-stream",
        `${base}/upload`,
      ];
      const sinkUp = [{ host: "127.0.0.1", port: sinkPort }];
      out.download = await bodyRun(o, "download", () => fresh(), downloadArgs, maxTime);
      out.upload = await bodyRun(o, "upload", () => fresh(sinkUp), uploadArgs, maxTime);
      for (const lean of LEAN_PROXIES) {
        (out.download.references ??= []).push(
          await leanRun(o, lean, "download", o.upstreams, downloadArgs, maxTime),
        );
        (out.upload.references ??= []).push(
          await leanRun(o, lean, "upload", sinkUp, uploadArgs, maxTime),
        );
      }
      for (const [k, b] of [["download", out.download], ["upload", out.upload]] as const) {
        if (b && !b.complete) {
          out.notes.push(
            `the 1 GiB ${k} through lb did not finish in ${maxTime} s (${
              mb(b.bytes)
            } went through)`,
          );
        }
      }
    } finally {
      await o.procs.stop(sink);
    }
  }
  return out;
}

/** 1 s of warm-up at 50 connections, then 5 s at 1,000 (wrk -t2), with RSS and VmHWM. */
async function manyConnections(o: MemoryOptions, proc: Proc, port: number) {
  const url = `http://127.0.0.1:${port}/`;
  await runWrk(o.procs, { url, threads: 1, connections: 50, duration: 1 });
  const idle = memoryOf(proc.pid)?.rss ?? 0;
  const sampler = sampleRss(proc.pid);
  const r = await runWrk(o.procs, { url, threads: 2, connections: 1000, duration: 5 });
  const sampled = sampler.stop();
  return {
    idleRss: idle,
    peakHwm: memoryOf(proc.pid)?.hwm ?? 0,
    peakSampled: sampled.peak,
    requestsPerSec: r.requestsPerSec,
    errors: r.errors,
  };
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

/** Time from sending a request to the first chunk of its body, in ms. */
async function firstByteMs(url: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url);
  const reader = res.body!.getReader();
  await reader.read();
  const ms = performance.now() - t0;
  await reader.cancel();
  return ms;
}

interface Curl {
  status: number;
  bytes: number;
  seconds: number;
  complete: boolean;
}

/** One transfer with curl; `bytes` counts the upload for uploads, the download otherwise. */
async function curl(
  procs: Procs,
  kind: "download" | "upload",
  args: string[],
  maxTime: number,
): Promise<Curl> {
  const { status, output } = await procs.run("curl", "curl", [
    "-sS",
    "--max-time",
    String(maxTime),
    "-o",
    "/dev/null",
    "-w",
    "\n%{http_code} %{size_upload} %{size_download} %{time_total}\n",
    ...args,
  ]);
  const m = /^(\d{3}) (\d+) (\d+) ([\d.]+)$/m.exec(output);
  if (!m) throw new Error(`curl failed: ${output.trim().split("\n")[0] || `exit ${status.code}`}`);
  const bytes = Number(kind === "upload" ? m[2] : m[3]);
  return {
    status: Number(m[1]),
    bytes,
    seconds: Number(m[4]),
    complete: status.success && bytes === GIB && m[1] === "200",
  };
}

/** 1 GiB one way through a fresh lb, sampling its RSS every 50 ms. */
async function bodyRun(
  o: MemoryOptions,
  kind: "download" | "upload",
  start: () => Promise<{ proc: Proc; port: number }>,
  args: (base: string) => string[],
  maxTime: number,
): Promise<BodyResult> {
  const { proc, port } = await start();
  try {
    const base = `http://127.0.0.1:${port}`;
    await curl(o.procs, "download", [`${base}/`], 10); // first request: JIT, connections
    const before = memoryOf(proc.pid)?.rss ?? 0;
    const sampler = sampleRss(proc.pid);
    const r = await curl(o.procs, kind, args(base), maxTime);
    const { peak } = sampler.stop();
    console.log(
      `  1 GiB ${kind}: ${r.complete ? "" : "INCOMPLETE "}${r.seconds.toFixed(1)} s, RSS +${
        mb(peak - before)
      }`,
    );
    return {
      bytes: r.bytes,
      complete: r.complete,
      status: r.status,
      rssBefore: before,
      peakSampled: peak,
      rise: peak - before,
      seconds: r.seconds,
    };
  } finally {
    await o.procs.stop(proc);
  }
}

const LEAN_PROXIES = [
  { label: "lean proxy (fetch)", file: "bench/lean_proxy.ts" },
  { label: "lean proxy (node:http)", file: "bench/lean_proxy_node.ts" },
];
/** lb's own client alone and Deno.serve proxying nothing: the runtime's share of lb's memory. */
const RUNTIME_REFERENCES = [
  { label: "lean proxy (lb's http1)", file: "bench/lean_proxy_http1.ts" },
  { label: "Deno.serve alone", file: "bench/serve_only.ts" },
];
/** What the 1,000-connection run measures beside lb. */
const CONNECTION_REFERENCES = [...LEAN_PROXIES, ...RUNTIME_REFERENCES];

/** How long the idle connections are held before the settled RSS is read. */
const IDLE_SETTLE_MS = 40_000;

/**
 * RSS of lb, the lean http1 proxy and `Deno.serve` alone holding `n` idle keep-alive
 * connections (one request each, then silence; bench/idle_clients.ts opens them from its own
 * process): 10,000, or what `ulimit -n` allows (each end holds one descriptor per connection).
 */
async function idleConnections(
  o: MemoryOptions,
  fresh: () => Promise<{ proc: Proc; port: number }>,
): Promise<NonNullable<MemoryResult["idle"]>> {
  const n = Math.min(o.quick ? 2000 : 10_000, fdLimit() - 200);
  const targets: [string, () => Promise<{ proc: Proc; port: number }>][] = [
    ["lb", fresh],
    ...RUNTIME_REFERENCES.map((r) =>
      [r.label, () => startLean(o, r, o.upstreams)] as [string, typeof fresh]
    ),
  ];
  const out: NonNullable<MemoryResult["idle"]> = { connections: n, targets: [] };
  for (const [label, start] of targets) {
    const { proc, port } = await start();
    await sleep(500);
    const before = memoryOf(proc.pid)?.rss ?? 0;
    const client = o.procs.spawn("idle-clients", Deno.execPath(), [
      "run",
      "-A",
      "bench/idle_clients.ts",
      "--url",
      `http://127.0.0.1:${port}/`,
      "--count",
      String(n),
    ], { cwd: o.root });
    try {
      const [m] = await waitForOutput(client, /^(ready \d+|failed: .*)$/m, 1, 120_000);
      if (m[1].startsWith("failed")) throw new Error(`${label}: ${m[1]}`);
      await sleep(1000);
      const after = memoryOf(proc.pid)?.rss ?? 0;
      // Then left idle: V8 shrinks a heap it stops using after ~10-30 s of quiet (measured: lb
      // 317 MB at 1 s, 251 MB from ~30 s on), so "holding idle connections" is read once that
      // has had time to happen, beside the figure right after the burst that opened them.
      await sleep(o.quick ? 5_000 : IDLE_SETTLE_MS);
      const settled = memoryOf(proc.pid)?.rss ?? 0;
      out.targets.push({ label, rssBefore: before, rssAfter: after, rssSettled: settled });
      console.log(
        `  ${n} idle connections, ${label}: ${mb(before)} → ${mb(after)}, ${mb(settled)} settled`,
      );
    } finally {
      await o.procs.stop(client);
      await o.procs.stop(proc);
    }
  }
  return out;
}

/** Starts bench/sink.ts (reads and counts upload bodies) on a free port. */
export async function startSink(o: Pick<MemoryOptions, "procs" | "root">) {
  const port = freePort();
  const proc = o.procs.spawn("sink", Deno.execPath(), [
    "run",
    "-A",
    "bench/sink.ts",
    "--port",
    String(port),
  ], { cwd: o.root });
  try {
    await waitForOutput(proc, /sink listening/, 1);
  } catch (e) {
    await o.procs.stop(proc);
    throw e;
  }
  return { proc, port };
}

/** Starts a lean proxy (`file` with `args`) on a free port in front of `upstreams`. */
export async function startLean(
  o: Pick<MemoryOptions, "procs" | "root">,
  lean: { file: string },
  upstreams: Upstream[],
  args: string[] = [],
): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = o.procs.spawn("lean", Deno.execPath(), [
    "run",
    "-A",
    lean.file,
    "--port",
    String(port),
    ...upstreams.flatMap((u) => ["--backend", `http://${u.host}:${u.port}`]),
    ...args,
  ], { cwd: o.root });
  try {
    await waitForPort(proc, port);
  } catch (e) {
    await o.procs.stop(proc);
    throw e;
  }
  return { proc, port };
}

/** The same transfer through a fresh lean proxy. */
async function leanRun(
  o: MemoryOptions,
  lean: typeof LEAN_PROXIES[number],
  kind: "download" | "upload",
  upstreams: Upstream[],
  args: (base: string) => string[],
  maxTime: number,
): Promise<NonNullable<BodyResult["references"]>[number]> {
  const { proc, port } = await startLean(o, lean, upstreams);
  try {
    const base = `http://127.0.0.1:${port}`;
    await curl(o.procs, "download", [`${base}/`], 10);
    const before = memoryOf(proc.pid)?.rss ?? 0;
    const sampler = sampleRss(proc.pid);
    const r = await curl(o.procs, kind, args(base), maxTime);
    const { peak } = sampler.stop();
    return {
      label: lean.label,
      seconds: r.seconds,
      rise: peak - before,
      complete: r.complete,
    };
  } finally {
    await o.procs.stop(proc);
  }
}
