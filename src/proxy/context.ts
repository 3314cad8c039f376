/**
 * What every stage of the request path shares for one lb: its config, balancer, upstream,
 * logger, and the per-lb state of the stages (guard, concurrency caps, retry budget). Built
 * once by `createProxyHandler`; each request gets a {@link Flight} of its own.
 */
import type { Balancer } from "../balancing/balancer.ts";
import type { ServerPool } from "../balancing/pool.ts";
import type { Config } from "../config/schema.ts";
import type { Logger, RequestRecord } from "../log.ts";
import { cidrMatcher } from "./cidr.ts";
import { ConcurrencyLimiter } from "./concurrency.ts";
import { createGuard, type Guard } from "./guard.ts";
import { RetryBudget } from "./retry.ts";
import type { Upstream } from "./upstream.ts";

/** What the traffic app is built from (lb.ts passes these). */
export interface TrafficDeps {
  config: Config;
  balancer: Balancer;
  upstream: Upstream;
  logger: Logger;
  /** Called once per request when it is over (metrics, events). */
  onRequest?: (rec: RequestRecord) => void;
  random?: () => number;
}

export interface ProxyContext {
  readonly config: Config;
  readonly balancer: Balancer;
  readonly pool: ServerPool;
  readonly upstream: Upstream;
  readonly logger: Logger;
  readonly onRequest: ((rec: RequestRecord) => void) | undefined;
  readonly random: () => number;
  readonly isTrusted: (ip: string) => boolean;
  readonly guard: Guard;
  readonly limiter: ConcurrencyLimiter;
  readonly budget: RetryBudget;
  readonly retryOn: ReadonlySet<number>;
}

export function proxyContext(deps: TrafficDeps): ProxyContext {
  const { config } = deps;
  return {
    config,
    balancer: deps.balancer,
    pool: deps.balancer.pool,
    upstream: deps.upstream,
    logger: deps.logger,
    onRequest: deps.onRequest,
    random: deps.random ?? Math.random,
    isTrusted: cidrMatcher(config.trustedProxies),
    guard: createGuard(config.limits),
    limiter: new ConcurrencyLimiter(config.limits),
    budget: new RetryBudget(config.retry.budgetPercent, config.retry.minConcurrent),
    retryOn: new Set(config.retry.on),
  };
}
