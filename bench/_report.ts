/** The benchmark's results: the tables, the targets of issue 7, and number formatting. */
import type { ChunkedResult } from "./_chunked.ts";
import type { WebSocketResult } from "./_websocket.ts";
import type { H2loadResult } from "./_h2load.ts";
import { TLS_KINDS, type TlsKind } from "./_tls.ts";
import type { WrkResult } from "./_wrk.ts";

/** One measured run of a target. */
export type Round = (WrkResult | H2loadResult) & {
  /**
   * CPU time the target's own processes used per answered request, in µs (the backends'
   * not included): unlike req/s, it does not depend on what else shares the CPUs.
   */
  cpuUs?: number;
};

export interface TargetResult {
  id: string;
  label: string;
  /** Why it was not measured (tool missing, failed to start…). */
  skipped?: string;
  /** Which TLS measurement (see bench/_tls.ts); none for the plain HTTP table. */
  kind?: TlsKind;
  rounds: Round[];
  /** Medians over the rounds (`meanMs`: h2load's mean time per request, its only latency). */
  median?: {
    requestsPerSec: number;
    p50: number;
    p99: number;
    errors: number;
    meanMs?: number;
    cpuUs?: number;
  };
  /** (max − min) / median of req/s over the rounds: the run's noise. */
  spread?: number;
  /** Filled by `addRatios`. */
  ratios?: { vsNginx?: number; vsLean?: number; p99VsNginx?: number };
}

export interface MemoryResult {
  connections?: {
    connections: number;
    idleRss: number;
    peakHwm: number;
    peakSampled: number;
    requestsPerSec: number;
    errors: number;
    /** The same run against the lean proxies, for comparison. */
    references?: { label: string; idleRss: number; peakHwm: number; requestsPerSec: number }[];
  };
  /** RSS holding `connections` idle keep-alive connections: lb and the references. */
  idle?: {
    connections: number;
    /** RSS before, 1 s after the last connection answered, and after ~40 s idle. */
    targets: { label: string; rssBefore: number; rssAfter: number; rssSettled?: number }[];
  };
  download?: BodyResult;
  upload?: BodyResult;
  ttfb?: { viaLbMs: number; directMs: number; samples: number; path: string };
  notes: string[];
}

export interface BodyResult {
  /** Bytes that went through (curl's count). */
  bytes: number;
  /** False when the transfer did not finish within the time limit. */
  complete: boolean;
  status: number;
  rssBefore: number;
  peakSampled: number;
  /** peakSampled − rssBefore. */
  rise: number;
  seconds: number;
  /** The same transfer through the lean proxies, for comparison. */
  references?: { label: string; seconds: number; rise: number; complete: boolean }[];
}

export interface Check {
  name: string;
  status: "PASS" | "MISS" | "SKIP";
  detail: string;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Fills `median` and `spread` from the rounds. */
export function summarize(t: TargetResult): void {
  if (t.rounds.length === 0) return;
  const rps = t.rounds.map((r) => r.requestsPerSec);
  const m = median(rps);
  t.median = {
    requestsPerSec: m,
    p50: median(t.rounds.map((r) => r.p50)),
    p99: median(t.rounds.map((r) => r.p99)),
    errors: t.rounds.reduce((a, r) => a + r.errors, 0),
  };
  const optional = (xs: (number | undefined)[]) =>
    xs.every((x) => x !== undefined && Number.isFinite(x)) ? median(xs as number[]) : undefined;
  t.median.meanMs = optional(t.rounds.map((r) => "meanMs" in r ? r.meanMs : undefined));
  t.median.cpuUs = optional(t.rounds.map((r) => r.cpuUs));
  t.spread = t.rounds.length > 1 ? (Math.max(...rps) - Math.min(...rps)) / m : undefined;
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
export const fmtMs = (ms: number) =>
  !Number.isFinite(ms) ? "-" : ms < 1 ? `${(ms * 1000).toFixed(0)}µs` : `${ms.toFixed(2)}ms`;
export const fmtMB = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
const fmtPct = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "-" : `${(x * 100).toFixed(0)}%`;

/**
 * Fills each target's ratios to nginx and to the lean proxy, in the same measurement: a
 * TLS row is compared with nginx's and the lean proxy's row of its kind. When both ran the
 * same rounds, a ratio is the median of the per-round ratios: targets of one round ran
 * minutes apart at most, so load that comes and goes on the machine cancels out better
 * than in a ratio of medians.
 */
export function addRatios(results: TargetResult[]): void {
  const find = (id: string) => results.find((r) => r.id === id && r.median);
  for (const t of results) {
    if (!t.median) continue;
    // The two-wrk-thread rows (--workers) compare with nginx's one worker under that load.
    const nginx = find(TWO_THREADS.has(t.id) ? "nginx+workers@1" : refId("nginx", t.kind));
    // The lean proxy runs at one wrk thread only: no ratio for the two-thread rows.
    const lean = TWO_THREADS.has(t.id) ? undefined : find(refId("lean", t.kind));
    // h2load gives no p99: no ratio rather than NaN.
    const p99 = nginx ? ratio(t, nginx, "p99") : NaN;
    t.ratios = {
      vsNginx: nginx ? ratio(t, nginx, "requestsPerSec") : undefined,
      vsLean: lean ? ratio(t, lean, "requestsPerSec") : undefined,
      p99VsNginx: Number.isFinite(p99) ? p99 : undefined,
    };
  }
}

/**
 * The rows measured with two wrk threads and 100 connections: lb with --workers 2 and as one
 * process, nginx with 2 workers and with 1 (how much a second worker can add on this machine).
 */
export const TWO_THREAD_IDS = [
  "lb:round-robin+workers",
  "lb:round-robin+workers@1",
  "nginx+workers",
  "nginx+workers@1",
] as const;
const TWO_THREADS = new Set<string>(TWO_THREAD_IDS);

/** The id of nginx's or the lean proxy's row in the measurement `kind` (none: plain HTTP). */
export function refId(who: "nginx" | "lean", kind?: TlsKind): string {
  return kind ? `${who}:tls/${kind}` : who;
}

function ratio(a: TargetResult, b: TargetResult, key: "requestsPerSec" | "p99"): number {
  if (a.rounds.length === b.rounds.length) {
    return median(a.rounds.map((r, i) => r[key] / b.rounds[i][key]));
  }
  return a.median![key] / b.median![key];
}

const fmtUs = (us: number | undefined) =>
  us === undefined || !Number.isFinite(us) ? "-" : `${us.toFixed(0)}µs`;
const fmtX = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "-" : `${x.toFixed(2)}×`;

/**
 * The results table: ratios of req/s to nginx and to the lean proxy, and of p99 to nginx's;
 * with `cpu`, the target's CPU time per request too.
 */
export function formatTable(results: TargetResult[], o: { cpu?: boolean } = {}): string {
  if (results.length === 0) return "(no throughput targets selected)";
  const head = [
    "target",
    "req/s",
    "±",
    "p50",
    "p99",
    "errors",
    ...(o.cpu ? ["CPU/req"] : []),
    "vs nginx",
    "vs lean",
    "p99/nginx",
  ];
  const rows: string[][] = results.map((r) => {
    if (!r.median) return [r.label, `skipped: ${r.skipped ?? "no result"}`];
    const m = r.median;
    return [
      r.label,
      fmtInt(m.requestsPerSec),
      r.spread === undefined ? "" : fmtPct(r.spread),
      fmtMs(m.p50),
      fmtMs(m.p99),
      String(m.errors),
      ...(o.cpu ? [fmtUs(m.cpuUs)] : []),
      fmtPct(r.ratios?.vsNginx),
      fmtPct(r.ratios?.vsLean),
      fmtX(r.ratios?.p99VsNginx),
    ];
  });
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.filter((r) => r.length > 2).map((r) => r[i].length))
  );
  const line = (cells: string[]) =>
    cells.length === 2
      ? `${cells[0].padEnd(widths[0])}  ${cells[1]}`
      : cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

/**
 * The HTTPS and HTTP/2 tables, one for each measurement, each compared with nginx and the
 * lean proxy over TLS, with each target's CPU time per request; h2load's mean time per
 * request stands under the HTTP/2 table, as it prints no percentiles.
 */
export function formatTlsTables(results: TargetResult[], connections: number): string {
  const out: string[] = [];
  for (const k of TLS_KINDS) {
    const rows = results.filter((r) => r.kind === k.kind);
    if (rows.length === 0) continue;
    out.push(`${k.name} (${k.tool(connections)}):`, formatTable(rows, { cpu: true }));
    const means = rows.filter((r) => r.median?.meanMs !== undefined);
    if (means.length) {
      out.push(
        `  h2load prints no percentiles; its mean time per request: ${
          means.map((r) => `${r.label} ${fmtMs(r.median!.meanMs!)}`).join(", ")
        }`,
      );
    }
    out.push("");
  }
  return out.join("\n").trimEnd();
}

/** The plain HTTP table as Markdown, for the README. */
export function formatMarkdown(results: TargetResult[]): string {
  const out = [
    "| target | req/s | ± | p50 | p99 | errors | vs nginx | vs lean | p99 / nginx |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results.filter((r) => !r.kind)) out.push(`| ${r.label} | ${markdownCells(r)} |`);
  return out.join("\n");
}

/** The TLS tables as one Markdown table with a column for the measurement. */
export function formatTlsMarkdown(results: TargetResult[]): string {
  const out = [
    "| measurement | target | req/s | ± | p50 | p99 | errors | CPU/req | vs nginx | vs lean | p99 / nginx |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const k of TLS_KINDS) {
    for (const r of results.filter((r) => r.kind === k.kind)) {
      out.push(`| ${k.name} | ${r.label} | ${markdownCells(r, true)} |`);
    }
  }
  return out.join("\n");
}

function markdownCells(r: TargetResult, cpu = false): string {
  if (!r.median) return `skipped: ${r.skipped ?? "no result"} | | | | | | |${cpu ? " |" : ""} |`;
  const m = r.median;
  return [
    fmtInt(m.requestsPerSec),
    r.spread === undefined ? "" : fmtPct(r.spread),
    fmtMs(m.p50),
    fmtMs(m.p99),
    m.errors,
    ...(cpu ? [fmtUs(m.cpuUs)] : []),
    fmtPct(r.ratios?.vsNginx),
    fmtPct(r.ratios?.vsLean),
    fmtX(r.ratios?.p99VsNginx),
  ].join(" | ");
}

/** A list of checks and the function that adds one (undefined `ok`: skipped, with why). */
function checkList() {
  const checks: Check[] = [];
  const check = (name: string, ok: boolean | undefined, detail: string) =>
    checks.push({ name, status: ok === undefined ? "SKIP" : ok ? "PASS" : "MISS", detail });
  return { checks, check };
}

/** A target's result by id, when it was measured. */
function measured(results: TargetResult[]) {
  return (id: string) => results.find((r) => r.id === id && r.median);
}

/** Issue 7's and issue 16's targets, judged on this run's numbers (call `addRatios` first). */
export function checkTargets(
  results: TargetResult[],
  mem: MemoryResult,
  chunked?: ChunkedResult,
  websockets?: WebSocketResult,
): Check[] {
  const get = measured(results);
  const lean = get("lean");
  const nginx = get("nginx");
  const rr = get("lb:round-robin");
  // One lb process per strategy: the access-log, --workers and TLS rows are not strategies.
  const strategies = results.filter((r) =>
    r.id.startsWith("lb:") && !r.id.includes("+") && !r.kind && r.median
  );
  const { checks, check } = checkList();

  {
    const name = "lb round-robin ≥ 95% of the lean proxy's req/s";
    const r = rr?.ratios?.vsLean;
    if (!rr || !lean || r === undefined) {
      check(name, undefined, "needs lb:round-robin and lean in the same run");
    } else {
      check(
        name,
        r >= 0.95,
        `${fmtPct(r)} (${fmtInt(rr.median!.requestsPerSec)} vs ${
          fmtInt(lean.median!.requestsPerSec)
        } req/s)`,
      );
    }
  }
  checks.push(...throughputChecks(results, strategies));
  {
    const name = "lb with 100 routes within 5% of one route's req/s";
    const routed = get("lb:round-robin+routes");
    if (!rr || !routed) check(name, undefined, "needs lb:round-robin and lb:round-robin+routes");
    else {
      const r = ratio(routed, rr, "requestsPerSec");
      check(name, r >= 0.95, `${fmtPct(r)} (median of per-round ratios)`);
    }
  }
  {
    const name = "lb round-robin p99 ≤ 1.5 × nginx's p99";
    const r = rr?.ratios?.p99VsNginx;
    if (!rr || !nginx || r === undefined) {
      check(name, undefined, "needs lb:round-robin and nginx in the same run");
    } else {
      const worst = strategies.reduce((a, b) =>
        (a.ratios?.p99VsNginx ?? 0) >= (b.ratios?.p99VsNginx ?? 0) ? a : b
      );
      check(
        name,
        r <= 1.5,
        `${fmtMs(rr.median!.p99)} vs ${fmtMs(nginx.median!.p99)} (${
          fmtX(r)
        }); worst strategy: ${worst.label} ${fmtMs(worst.median!.p99)} (${
          fmtX(worst.ratios?.p99VsNginx)
        })`,
      );
    }
  }
  {
    const c = mem.connections;
    const name = `peak RSS ≤ 150 MB at ${c?.connections ?? 1000} connections`;
    if (!c) check(name, undefined, "memory runs not measured");
    else check(name, c.peakHwm <= 150e6, `VmHWM ${fmtMB(c.peakHwm)} (idle ${fmtMB(c.idleRss)})`);
  }
  {
    const lb = mem.idle?.targets.find((t) => t.label === "lb");
    const name = `RSS ≤ 300 MB at ${fmtInt(mem.idle?.connections ?? 10_000)} idle connections`;
    // Judged once V8 has had the time an idle server gets to shrink its heap.
    const held = lb && (lb.rssSettled ?? lb.rssAfter);
    if (!lb || held === undefined) check(name, undefined, "memory runs not measured");
    else {
      check(
        name,
        held <= 300e6,
        `${fmtMB(held)} after ~40 s idle, ${fmtMB(lb.rssAfter)} at 1 s (${
          fmtMB(lb.rssBefore)
        } before)`,
      );
    }
  }
  {
    const name = "a 1 GiB body raises RSS by < 32 MB";
    const parts = [mem.upload && ["upload", mem.upload], mem.download && ["download", mem.download]]
      .filter(Boolean) as [string, BodyResult][];
    if (parts.length === 0) check(name, undefined, "memory runs not measured");
    else {
      check(
        name,
        parts.every(([, b]) => b.rise < 32e6),
        parts.map(([k, b]) => `${k} +${fmtMB(b.rise)}`).join(", "),
      );
    }
  }
  {
    const name = "chunked uploads from a fetch client through lb ≥ 80% of the lean proxy's speed";
    const time = (label: string) => chunked?.seconds.find((t) => t.label === label)?.seconds;
    const lb = time("lb round-robin");
    const lean = time("lean proxy (fetch)");
    if (!lb || !lean) check(name, undefined, chunked ? "a run did not finish" : "not measured");
    else {check(
        name,
        lean / lb >= 0.8,
        `${Math.round((lean / lb) * 100)}% (${lb.toFixed(2)} s vs ${lean.toFixed(2)} s)`,
      );}
  }
  checks.push(...tlsChecks(results));
  {
    const name = "WebSocket messages per second ≥ 50% of nginx's";
    const lb = websockets?.rows.find((r) => r.label.startsWith("lb") && r.messagesPerSec);
    const nginx = websockets?.rows.find((r) => r.label.startsWith("nginx") && r.messagesPerSec);
    if (!lb || !nginx) check(name, undefined, "needs lb and nginx WebSocket rows (--only ws)");
    else {
      const r = lb.messagesPerSec! / nginx.messagesPerSec!;
      check(
        name,
        r >= 0.5,
        `${fmtPct(r)} (p99 ${lb.p99!.toFixed(2)} vs ${nginx.p99!.toFixed(2)} ms)`,
      );
    }
  }
  return checks;
}

/** Issue 16's throughput targets: share of nginx, strategies beside round-robin, --workers. */
function throughputChecks(results: TargetResult[], strategies: TargetResult[]): Check[] {
  const get = measured(results);
  const nginx = get("nginx");
  const rr = get("lb:round-robin");
  const { checks, check } = checkList();
  {
    const name = "lb round-robin ≥ 70% of nginx's req/s";
    const r = rr?.ratios?.vsNginx;
    if (!rr || !nginx || r === undefined) {
      check(name, undefined, "needs lb:round-robin and nginx in the same run");
    } else {
      check(name, r >= 0.7, `${fmtPct(r)} (median of per-round ratios)`);
    }
  }
  {
    const name = "every strategy within 10% of round-robin's req/s";
    const others = strategies.filter((t) => t.id !== "lb:round-robin");
    if (!rr || others.length === 0) check(name, undefined, "needs lb strategies");
    else {
      const worst = others.map((t) => ({ t, r: ratio(t, rr, "requestsPerSec") }))
        .reduce((a, b) => a.r <= b.r ? a : b);
      check(name, worst.r >= 0.9, `slowest: ${worst.t.label} ${fmtPct(worst.r)}`);
    }
  }
  {
    const name = "--workers 2 ≥ 1.3 × one process at wrk -t2 -c100";
    const [w2, w1, nginx2, nginx1] = TWO_THREAD_IDS.map(get);
    if (!w2 || !w1) check(name, undefined, "needs lb:round-robin+workers");
    else {
      const n = nginx2 && nginx1
        ? `; nginx 2 workers ${fmtX(ratio(nginx2, nginx1, "requestsPerSec"))} its 1 worker`
        : "";
      check(
        name,
        ratio(w2, w1, "requestsPerSec") >= 1.3,
        `${fmtX(ratio(w2, w1, "requestsPerSec"))} (${fmtInt(w2.median!.requestsPerSec)} vs ${
          fmtInt(w1.median!.requestsPerSec)
        } req/s${n})`,
      );
    }
  }
  return checks;
}

/** lb over TLS beside nginx over TLS, in each of the three measurements. */
const TLS_TARGETS: [TlsKind, number, string][] = [
  ["keepalive", 0.6, "lb HTTPS keep-alive ≥ 60% of nginx's req/s"],
  ["new-conn", 0.5, "lb new TLS connections/s ≥ 50% of nginx's"],
  ["h2", 0.5, "lb HTTP/2 ≥ 50% of nginx's req/s"],
];

function tlsChecks(results: TargetResult[]): Check[] {
  return TLS_TARGETS.map(([kind, min, name]): Check => {
    const lb = results.find((r) => r.id === `lb:tls/${kind}`);
    const nginx = results.find((r) => r.id === refId("nginx", kind));
    const r = lb?.ratios?.vsNginx;
    if (!lb?.median || !nginx?.median || r === undefined) {
      const why = lb?.skipped ?? nginx?.skipped;
      return {
        name,
        status: "SKIP",
        detail: `needs lb:tls and nginx:tls in the same run${why ? ` (skipped: ${why})` : ""}`,
      };
    }
    return {
      name,
      status: r >= min ? "PASS" : "MISS",
      detail: `${fmtPct(r)} (${fmtInt(lb.median!.requestsPerSec)} vs ${
        fmtInt(nginx.median!.requestsPerSec)
      } req/s, median of per-round ratios)`,
    };
  });
}

export function formatChecks(checks: Check[]): string {
  return checks.map((c) => `  ${c.status.padEnd(4)} ${c.name}: ${c.detail}`).join("\n");
}
