/** Runs wrk and reads its `--latency` report. */
import type { Procs } from "./_procs.ts";

export interface WrkResult {
  requestsPerSec: number;
  /** Latency percentiles from wrk's "Latency Distribution", in ms. */
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  requests: number;
  seconds: number;
  /** Socket errors (connect + read + write + timeout) plus non-2xx/3xx responses. */
  errors: number;
  non2xx: number;
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** wrk's times (`812.00us`, `1.95ms`, `1.01s`, `2.00m`) in ms. */
export function parseWrkTime(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(s.trim());
  if (!m) throw new Error(`cannot read wrk time "${s}"`);
  return Number(m[1]) * TIME_UNITS[m[2]];
}

/** Parses wrk's text report (run with `--latency`). Throws when the report is incomplete. */
export function parseWrk(out: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  if (!rps) throw new Error(`wrk printed no Requests/sec: ${out.trim().split("\n").at(-1) ?? ""}`);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m").exec(out);
    return m ? parseWrkTime(m[1]) : NaN;
  };
  const total = /^\s+(\d+) requests in ([\d.]+\w+),/m.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sockErrors = sock ? sock.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    requestsPerSec: Number(rps[1]),
    p50: pct("50"),
    p75: pct("75"),
    p90: pct("90"),
    p99: pct("99"),
    requests: total ? Number(total[1]) : 0,
    seconds: total ? parseWrkTime(total[2]) / 1000 : 0,
    errors: sockErrors + non2xx,
    non2xx,
  };
}

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  /** Seconds. */
  duration: number;
  /** Request headers, like `Connection: close`. */
  headers?: string[];
}

/** Runs wrk as a tracked subprocess (so Ctrl-C stops it) and parses its report. */
export async function runWrk(procs: Procs, o: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.duration}s`,
    "--latency",
    "--timeout",
    "5s",
    ...(o.headers ?? []).flatMap((h) => ["-H", h]),
    o.url,
  ];
  const { status, output } = await procs.run("wrk", "wrk", args);
  if (!status.success && !/Requests\/sec/.test(output)) {
    throw new Error(`wrk failed (exit ${status.code}): ${output.trim().split("\n").at(-1) ?? ""}`);
  }
  return parseWrk(output);
}

/** Whether wrk is on PATH. */
export async function haveWrk(): Promise<boolean> {
  try {
    const out = await new Deno.Command("wrk", { args: ["-v"], stdout: "piped", stderr: "piped" })
      .output();
    return new TextDecoder().decode(out.stdout).includes("wrk") ||
      new TextDecoder().decode(out.stderr).includes("wrk");
  } catch {
    return false;
  }
}
