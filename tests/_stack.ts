/** Test helpers: a real lb in front of real demo backends, all on port 0. */
import { type DemoBackend, startDemoBackend } from "../backends/demo.ts";
import { type Config, validateConfig } from "../src/config.ts";
import { type Lb, startLb } from "../src/lb.ts";
import type { RequestRecord } from "../src/log.ts";

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

/** Reads a process's VmRSS in bytes (Linux). */
export function rssBytes(pid = Deno.pid): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}
