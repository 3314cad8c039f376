/** Test helpers: a real lb in front of real demo backends, all on port 0, and what tests share. */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../backends/demo.ts";
import { parseConfig, validateConfig } from "../src/config/load.ts";
import type { Config } from "../src/config/schema.ts";
import { type Lb, startLb } from "../src/lb.ts";
import { createLogger, type Logger, type RequestRecord } from "../src/log.ts";

/** A config for tests: port 0, no admin listener, no access log, no health checks, plus `extra`. */
export function testConfig(backends: string[], extra: Record<string, unknown> = {}): Config {
  return validateConfig({
    listen: { host: "127.0.0.1", port: 0 },
    backends: backends.map((url) => ({ url })),
    admin: { enabled: false },
    log: { access: false, format: "json" },
    health: { enabled: false },
    ...extra,
  }, "test");
}

/** An lb.yaml with port 0, no admin listener and no access log, then `extra` (YAML lines), parsed. */
export function lbConfig(urls: string[], extra = ""): Config {
  return parseConfig(
    `listen: { port: 0 }
admin: { enabled: false }
log: { access: false }
backends:
${urls.map((u) => `  - url: ${u}`).join("\n")}
${extra}`,
  );
}

/** A logger that keeps its lines, so tests stay quiet and can read the events. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ format: "json", access: false, write: (l) => lines.push(l) });
  return Object.assign(logger, { lines });
}

export interface Stack {
  lb: Lb;
  backends: DemoBackend[];
  records: RequestRecord[];
  close(): Promise<void>;
}

/** Starts `count` demo backends and an lb in front of them. */
export async function startStack(
  count: number,
  extra: Record<string, unknown> = {},
  backendOpts: { latencyMs?: number; failRate?: number } = {},
): Promise<Stack> {
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= count; i++) {
    backends.push(await startDemoBackend({ port: 0, index: i, ...backendOpts }));
  }
  const records: RequestRecord[] = [];
  const lb = startLb({
    config: testConfig(backends.map((b) => b.url), extra),
    onRequest: (r) => records.push(r),
  });
  return {
    lb,
    backends,
    records,
    async close() {
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

/** An admin API answer: its status, JSON body (null when empty) and headers. */
export interface AdminAnswer {
  status: number;
  // The tests poke at JSON answers field by field.
  // deno-lint-ignore no-explicit-any
  json: any;
  headers: Headers;
}

/** One admin API request; a body that is not a string is sent as JSON. */
export async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<AdminAnswer> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    (init.headers as Record<string, string>)["content-type"] ??= "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, headers: res.headers };
}

/** Polls `fn` until it returns a truthy value or the deadline passes (then throws). */
export async function until<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Polls `cond` every 10 ms until it holds; fails the test (`assert.fail`) with `what` after
 * `ms`. Unlike {@link until}, the condition is synchronous and nothing is returned.
 */
export async function assertEventually(
  cond: () => boolean,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port nothing listens on (bound, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves after `ms`, or as soon as `signal` aborts (a slow backend whose client left). */
export function delayOrAbort(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Reads `stream` as text and calls `onLine` with each complete line; resolves at its end. */
export async function eachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
  }
}

/** A deterministic PRNG (mulberry32), so a failure can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
