/**
 * Test helpers for configs with named pools: demo backends per pool (numbered across pools,
 * so `x-backend` says which pool answered), the config that names them, and traffic sent
 * with a chosen Host so host routes can be reached.
 */
import { type DemoBackend, startDemoBackend } from "../backends/demo.ts";
import { validateConfig } from "../src/config/load.ts";
import type { Config } from "../src/config/schema.ts";
import { type Lb, startLb } from "../src/lb.ts";
import { createLogger } from "../src/log.ts";

/** Demo backends by pool name. */
export type PoolBackends = Record<string, DemoBackend[]>;

/**
 * Starts `sizes[pool]` demo backends for each pool; backend-1… (from `opts.first`) go to
 * the first pool, the next numbers to the next, and so on.
 */
export async function startPoolBackends(
  sizes: Record<string, number>,
  opts: { latencyMs?: number; first?: number } = {},
): Promise<{ pools: PoolBackends; close(): Promise<void> }> {
  const out: PoolBackends = {};
  let index = (opts.first ?? 1) - 1;
  for (const [pool, n] of Object.entries(sizes)) {
    out[pool] = [];
    for (let i = 0; i < n; i++) {
      out[pool].push(
        await startDemoBackend({ port: 0, index: ++index, latencyMs: opts.latencyMs }),
      );
    }
  }
  const all = Object.values(out).flat();
  return { pools: out, close: async () => void await Promise.all(all.map((b) => b.close())) };
}

/**
 * The usual routes of these tests: `/api/…` (any host) to the pool `api`, its prefix
 * stripped and headers set and removed each way; the host `web.test` to the pool `web`.
 * Anything else matches no route.
 */
export const ROUTES = [
  {
    name: "api",
    match: { path: "/api/" },
    pool: "api",
    stripPrefix: true,
    headers: {
      request: { set: { "x-route": "api" }, remove: ["x-debug"] },
      response: { set: { "x-served-by": "lb-api" } },
    },
  },
  { name: "web", match: { host: "web.test" }, pool: "web" },
];

/** The `pools:` section for `backends`, each server named as it names itself (backend-N). */
export function poolsSection(
  backends: PoolBackends,
  settings: Record<string, Record<string, unknown>> = {},
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(backends).map(([pool, list]) => [
      pool,
      { backends: list.map((b) => ({ url: b.url, name: b.name })), ...settings[pool] },
    ]),
  );
}

/**
 * The config as lb.yaml would hold it (JSON is YAML too): traffic and admin on port 0, no
 * health checks, no access log, the pools of `backends` and `routes`, then `extra`.
 */
export function poolsRaw(
  backends: PoolBackends,
  opts: {
    settings?: Record<string, Record<string, unknown>>;
    routes?: unknown[];
    extra?: Record<string, unknown>;
  } = {},
): Record<string, unknown> {
  return {
    listen: { host: "127.0.0.1", port: 0 },
    admin: { host: "127.0.0.1", port: 0 },
    health: { enabled: false },
    log: { access: false, format: "json" },
    pools: poolsSection(backends, opts.settings),
    routes: opts.routes ?? ROUTES,
    ...opts.extra,
  };
}

/** {@link poolsRaw}, validated. */
export function poolsConfig(
  backends: PoolBackends,
  opts: Parameters<typeof poolsRaw>[1] = {},
): Config {
  return validateConfig(poolsRaw(backends, opts), "test");
}

/** What one request through lb got. */
export interface Hit {
  status: number;
  /** `x-backend` of the answer (null: lb answered itself). */
  backend: string | null;
  headers: Headers;
  // The tests poke at JSON answers field by field.
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** Sends requests to lb with the Host header the test chooses. Close it when done. */
export function trafficClient(lbUrl: string) {
  const client = Deno.createHttpClient({ allowHost: true });
  return {
    async get(path: string, host?: string, headers: Record<string, string> = {}): Promise<Hit> {
      const res = await fetch(lbUrl + path, {
        headers: { ...headers, ...(host && { host }) },
        client,
      });
      const text = await res.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON (a stream's bytes): the test reads status and headers
      }
      return {
        status: res.status,
        backend: res.headers.get("x-backend"),
        headers: res.headers,
        json,
      };
    },
    /** The backends `n` requests reached. */
    async backends(n: number, path: string, host?: string): Promise<Set<string | null>> {
      const seen = new Set<string | null>();
      for (let i = 0; i < n; i++) seen.add((await this.get(path, host)).backend);
      return seen;
    },
    close: () => client.close(),
  };
}

/** An lb with named pools in front of demo backends, its admin API on port 0. */
export interface PoolStack {
  lb: Lb;
  /** The admin API's origin. */
  admin: string;
  backends: PoolBackends;
  traffic: ReturnType<typeof trafficClient>;
  /** The log lines, as JSON. */
  log: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Starts the backends of `sizes` and an lb with them as pools (see {@link poolsRaw}). */
export async function startPoolStack(
  sizes: Record<string, number>,
  opts: Parameters<typeof poolsRaw>[1] & { latencyMs?: number } = {},
): Promise<PoolStack> {
  const b = await startPoolBackends(sizes, { latencyMs: opts.latencyMs });
  const log: Record<string, unknown>[] = [];
  const logger = createLogger({
    format: "json",
    access: false,
    write: (l) => log.push(JSON.parse(l)),
  });
  let lb: Lb;
  try {
    lb = startLb({ config: poolsConfig(b.pools, opts), logger });
  } catch (e) {
    await b.close();
    throw e;
  }
  const traffic = trafficClient(lb.url);
  return {
    lb,
    admin: lb.adminUrl!,
    backends: b.pools,
    traffic,
    log,
    async close() {
      traffic.close();
      await lb.shutdown(2000);
      await b.close();
    },
  };
}
