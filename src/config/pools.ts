/**
 * `pools:` in lb.yaml, and how a config becomes its pools and routes. A pool is a set of
 * backends with its own strategy, health checks, outlier detection, retries, timeouts and
 * stickiness; each setting a pool leaves out comes from the top level. A config without
 * `pools` is one pool named `default` made of the top level, and without `routes` every
 * request goes to its only pool.
 */
import { z } from "zod";
import { backendSchema, type BackendSpec, refineUniqueBackends } from "./backend.ts";
import { resolveRoute, type RouteConfig, type RouteInput } from "./routes.ts";
import {
  healthSection,
  outlierSection,
  retrySection,
  type StickyConfig,
  stickySection,
  timeoutsSection,
} from "./sections.ts";
import { type UpstreamTls, upstreamTlsSchema } from "./tls.ts";
import {
  HASH_DEFAULTS,
  type HashOptions,
  hashOptionsSchema,
  strategyNameSchema,
} from "./strategy.ts";

/** The name of the pool a config without `pools` has. */
export const DEFAULT_POOL = "default";

export const backendListSchema = z.array(backendSchema).min(1, "needs at least one backend")
  .superRefine(refineUniqueBackends);

/** One entry of `pools:`: backends, and any per-pool setting that differs from the top level. */
export const poolSchema = z.object({
  backends: backendListSchema,
  strategy: strategyNameSchema.optional(),
  hash: hashOptionsSchema.optional(),
  timeouts: timeoutsSection.partial().optional(),
  health: healthSection.partial().optional(),
  outlier: outlierSection.partial().optional(),
  retry: retrySection.partial().optional(),
  panicMode: z.boolean().optional(),
  sticky: stickySection.optional(),
  upstreamTls: upstreamTlsSchema.optional(),
}).strict();

export type PoolInput = z.infer<typeof poolSchema>;

/** What a pool runs with: every setting present (the pool's own, else the top level's). */
export interface PoolConfig {
  name: string;
  backends: BackendSpec[];
  strategy: string;
  hash: HashOptions;
  timeouts: z.infer<typeof timeoutsSection>;
  health: z.infer<typeof healthSection>;
  outlier: z.infer<typeof outlierSection>;
  retry: z.infer<typeof retrySection>;
  panicMode: boolean;
  sticky?: StickyConfig;
  upstreamTls: UpstreamTls;
}

/** The top-level settings a pool inherits (a validated Config has them all). */
export interface PoolDefaults {
  backends?: BackendSpec[];
  strategy: string;
  hash: HashOptions;
  timeouts: PoolConfig["timeouts"];
  health: PoolConfig["health"];
  outlier: PoolConfig["outlier"];
  retry: PoolConfig["retry"];
  panicMode: boolean;
  sticky?: StickyConfig;
  upstreamTls: UpstreamTls;
  pools?: Record<string, PoolInput>;
  routes?: RouteInput[];
}

/** `over`'s defined fields over `base`. */
function merge<T extends object>(base: T, over: Partial<T> | undefined): T {
  if (!over) return base;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** One pool's settings: its own over the top level's. */
export function resolvePool(name: string, p: PoolInput, top: PoolDefaults): PoolConfig {
  return {
    name,
    backends: p.backends,
    strategy: p.strategy ?? top.strategy,
    hash: { ...HASH_DEFAULTS, ...top.hash, ...merge({}, p.hash) },
    timeouts: merge(top.timeouts, p.timeouts),
    health: merge(top.health, p.health),
    outlier: merge(top.outlier, p.outlier),
    retry: merge(top.retry, p.retry),
    panicMode: p.panicMode ?? top.panicMode,
    ...(p.sticky ?? top.sticky ? { sticky: p.sticky ?? top.sticky } : {}),
    // Key by key; a level gives cert and key together or neither (tls.ts), so a pool's
    // certificate never meets the top level's key.
    upstreamTls: merge(top.upstreamTls, p.upstreamTls),
  };
}

/** Every pool of a config, in the order lb.yaml lists them. */
export function resolvePools(config: PoolDefaults): PoolConfig[] {
  if (!config.pools) {
    return [resolvePool(DEFAULT_POOL, { backends: config.backends ?? [] }, config)];
  }
  return Object.entries(config.pools).map(([name, p]) => resolvePool(name, p, config));
}

/** Every route of a config, names filled in; without `routes`, one catch-all to the only pool. */
export function resolveRoutes(config: PoolDefaults): RouteConfig[] {
  if (config.routes) return config.routes.map(resolveRoute);
  const only = config.pools ? Object.keys(config.pools)[0] : DEFAULT_POOL;
  return [resolveRoute({ pool: only, stripPrefix: false }, 0)];
}

/**
 * The checks that span sections: pools or top-level backends (not both), routes naming
 * pools that exist, unique route names, and routes when there is more than one pool.
 */
export function refineTopology(c: PoolDefaults, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });
  if (c.pools && c.backends) {
    issue(["backends"], "with pools, each pool lists its own backends (move these into a pool)");
  }
  const names = c.pools ? Object.keys(c.pools) : [DEFAULT_POOL];
  if (c.pools && names.length === 0) issue(["pools"], "needs at least one pool");
  if (!c.routes && names.length > 1) {
    issue(["routes"], `needed with several pools: say which requests go to ${names.join(", ")}`);
  }
  const seen = new Set<string>();
  c.routes?.forEach((r, i) => {
    if (!names.includes(r.pool)) {
      issue(["routes", i, "pool"], `no pool named "${r.pool}" (pools: ${names.join(", ")})`);
    }
    const name = r.name ?? `route-${i + 1}`;
    if (seen.has(name)) issue(["routes", i, "name"], `duplicate route name "${name}"`);
    seen.add(name);
  });
}
