/**
 * Chunked uploads from fetch clients: `--mib` MiB sent with Deno's fetch and a
 * ReadableStream body (64 KiB chunks, so `Transfer-Encoding: chunked`) to a sink that only
 * counts the bytes (bench/sink.ts): directly, through the lean fetch proxy, and through lb.
 * Issue 11 found such uploads 40-65× slower through lb than directly, while curl's were
 * not; the ratio to the lean proxy is what to watch.
 */
import type { Upstream } from "./_configs.ts";
import { startLean, startSink } from "./_memory.ts";
import { type Proc, type Procs, waitForOutput } from "./_procs.ts";
import { median } from "./_report.ts";

export interface ChunkedResult {
  mib: number;
  runs: number;
  /** Median seconds per target; `undefined` when a target did not finish. */
  seconds: { label: string; seconds: number | undefined; mbPerSec: number | undefined }[];
  notes: string[];
}

export interface ChunkedOptions {
  procs: Procs;
  root: string;
  quick: boolean;
  startLb(upstreams: Upstream[]): Promise<{ proc: Proc; port: number }>;
}

/** The lean proxies that forward request bodies (lean_proxy_http1.ts sends heads only). */
const LEAN = [{ label: "lean proxy (fetch)", file: "bench/lean_proxy.ts" }];

export async function measureChunkedUploads(o: ChunkedOptions): Promise<ChunkedResult> {
  const mib = o.quick ? 64 : 256;
  const runs = o.quick ? 1 : 3;
  const out: ChunkedResult = { mib, runs, seconds: [], notes: [] };
  const { proc: sink, port: sinkPort } = await startSink(o);
  const upstreams = [{ host: "127.0.0.1", port: sinkPort }];
  try {
    const targets: [string, () => Promise<{ proc?: Proc; port: number }>][] = [
      ["direct to the sink", () => Promise.resolve({ port: sinkPort })],
      ...LEAN.map((l) =>
        [l.label, () => startLean(o, l, upstreams)] as [
          string,
          () => Promise<{ proc: Proc; port: number }>,
        ]
      ),
      ["lb round-robin", () => o.startLb(upstreams)],
    ];
    for (const [label, start] of targets) {
      const { proc, port } = await start();
      try {
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t = await upload(o, `http://127.0.0.1:${port}/upload`, mib);
          if (t === undefined) {
            out.notes.push(`the ${mib} MiB chunked upload through ${label} did not finish`);
            break;
          }
          times.push(t);
        }
        const seconds = times.length === runs ? median(times) : undefined;
        const mbPerSec = seconds ? (mib * 1024 * 1024) / seconds / 1e6 : undefined;
        out.seconds.push({ label, seconds, mbPerSec });
        console.log(`  chunked upload, ${label}: ${seconds?.toFixed(2) ?? "–"} s`);
      } finally {
        if (proc) await o.procs.stop(proc);
      }
    }
  } finally {
    await o.procs.stop(sink);
  }
  return out;
}

/** One upload by a fetch client in its own process; seconds, or undefined past 120 s. */
async function upload(o: ChunkedOptions, url: string, mib: number): Promise<number | undefined> {
  const p = o.procs.spawn("fetch-upload", Deno.execPath(), [
    "run",
    "-A",
    "bench/fetch_upload.ts",
    "--url",
    url,
    "--mib",
    String(mib),
  ], { cwd: o.root });
  const found = await waitForOutput(p, /\{"status".*\}/, 1, 120_000).catch(() => undefined);
  await o.procs.stop(p);
  if (found === undefined) return undefined;
  const r = JSON.parse(found[0][0]);
  return r.status === 200 && r.bytes === mib * 1024 * 1024 ? r.seconds : undefined;
}
