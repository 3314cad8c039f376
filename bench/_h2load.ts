/** Runs h2load (nghttp2's HTTP/2 load generator) and reads its report. */
import type { Procs } from "./_procs.ts";
import { parseWrkTime, type WrkResult } from "./_wrk.ts";

/** What the TLS handshake agreed on, as h2load prints it. */
export interface Negotiated {
  /** `TLSv1.3` */
  protocol: string;
  /** `TLS_AES_128_GCM_SHA256` */
  cipher: string;
  /** `X25519 253 bits` */
  key: string;
  /** The ALPN protocol: `h2` for an HTTP/2 measurement. */
  alpn: string;
}

/**
 * h2load's report in the shape of wrk's, so rounds, medians and ratios treat both alike.
 * h2load prints no latency percentiles (only min, max, mean and sd of the time per
 * request), so p50 to p99 are NaN and `meanMs` is its mean.
 */
export interface H2loadResult extends WrkResult {
  meanMs: number;
  /**
   * h2load's `failed`: requests that ended without a 2xx answer, whether on a status or
   * on a stream or connection error (its `errored` and `timeout` are among them).
   */
  failed: number;
  negotiated?: Negotiated;
}

/**
 * Parses h2load's text report. Throws when it has no "finished in" line, or when the
 * server answered in another protocol than HTTP/2 (h2load then measures HTTP/1.1).
 */
export function parseH2load(out: string): H2loadResult {
  const finished = /^finished in ([\d.]+\w+), ([\d.]+) req\/s/m.exec(out);
  if (!finished) {
    const last = out.trim().split("\n").at(-1) ?? "";
    throw new Error(`h2load printed no "finished in" line: ${last}`);
  }
  const alpn = /^Application protocol: (\S+)/m.exec(out)?.[1];
  if (alpn !== undefined && alpn !== "h2") {
    throw new Error(`the server chose ${alpn} over h2 in ALPN: no HTTP/2 to measure`);
  }
  const codes = /^status codes: (.*)$/m.exec(out)?.[1] ?? "";
  const count = (name: string) => Number(new RegExp(`(\\d+) ${name}\\b`).exec(codes)?.[1] ?? 0);
  const requests = /^requests: (.*)$/m.exec(out)?.[1] ?? "";
  const inRequests = (name: string) =>
    Number(new RegExp(`(\\d+) ${name}\\b`).exec(requests)?.[1] ?? 0);
  const non2xx = count("3xx") + count("4xx") + count("5xx");
  const failed = inRequests("failed");
  const time = /^time for request:\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(out);
  const protocol = /^TLS Protocol: (.+)$/m.exec(out)?.[1].trim();
  return {
    requestsPerSec: Number(finished[2]),
    p50: NaN,
    p75: NaN,
    p90: NaN,
    p99: NaN,
    meanMs: time ? parseWrkTime(time[3]) : NaN,
    requests: inRequests("succeeded"),
    seconds: parseWrkTime(finished[1]) / 1000,
    errors: failed,
    non2xx,
    failed,
    negotiated: protocol === undefined ? undefined : {
      protocol,
      cipher: /^Cipher: (.+)$/m.exec(out)?.[1].trim() ?? "?",
      key: /^Server Temp Key: (.+)$/m.exec(out)?.[1].trim() ?? "?",
      alpn: alpn ?? "?",
    },
  };
}

export interface H2loadOptions {
  url: string;
  /** Concurrent clients (connections). */
  clients: number;
  /** Concurrent streams per connection. */
  streams: number;
  /** Seconds. */
  duration: number;
  /** Whether this h2load has `-D` (nghttp2 1.39 and later); see `h2loadHasDuration`. */
  hasDuration: boolean;
}

/**
 * Requests per second of duration when h2load has no `-D`: a fixed count instead, about
 * the duration's worth for a fast server, more for a slow one.
 */
const REQUESTS_PER_SECOND_WITHOUT_D = 20_000;

/** The arguments for one run: one thread, like wrk -t1. */
export function h2loadArgs(o: H2loadOptions): string[] {
  const length = o.hasDuration
    ? ["-D", String(o.duration)]
    : ["-n", String(o.duration * REQUESTS_PER_SECOND_WITHOUT_D)];
  return ["-t", "1", "-c", String(o.clients), "-m", String(o.streams), ...length, o.url];
}

/** Runs h2load as a tracked subprocess (so Ctrl-C stops it) and parses its report. */
export async function runH2load(procs: Procs, o: H2loadOptions): Promise<H2loadResult> {
  const { status, output } = await procs.run("h2load", "h2load", h2loadArgs(o));
  if (!status.success && !/^finished in/m.test(output)) {
    throw new Error(
      `h2load failed (exit ${status.code}): ${output.trim().split("\n").at(-1) ?? ""}`,
    );
  }
  return parseH2load(output);
}

/** Whether h2load is on PATH, and whether it takes `-D` (a duration). */
export async function h2loadFeatures(): Promise<{ duration: boolean } | undefined> {
  try {
    const out = await new Deno.Command("h2load", {
      args: ["--help"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!text.includes("h2load")) return undefined;
    return { duration: /--duration=/.test(text) };
  } catch {
    return undefined;
  }
}
