/**
 * What every stage of the request path shares for one lb: its config, its pools and routes,
 * logger, and the per-lb state of the stages (guard, concurrency caps). What belongs to one
 * pool (its strategy, upstream connections, retry budget) is on the pool the request's route
 * names (routing/pool_runtime.ts). Built once by `createProxyHandler`; each request gets a
 * {@link Flight} of its own.
 */
import type { Config } from "../config/schema.ts";
import type { Logger, RequestRecord } from "../log.ts";
import { cidrMatcher } from "./cidr.ts";
import { ConcurrencyLimiter } from "./concurrency.ts";
import { createGuard, type Guard } from "./guard.ts";
import type { Pools } from "../routing/pools.ts";
import { WebSockets } from "./websocket.ts";

/** What the traffic app is built from (lb.ts passes these). */
export interface TrafficDeps {
  config: Config;
  pools: Pools;
  logger: Logger;
  /** Called once per request when it is over (metrics, events). */
  onRequest?: (rec: RequestRecord) => void;
  /** One lb's WebSockets (lb.ts closes them at shutdown; metrics read their counts). */
  websockets?: WebSockets;
  random?: () => number;
}

export interface ProxyContext {
  readonly config: Config;
  readonly pools: Pools;
  readonly logger: Logger;
  readonly onRequest: ((rec: RequestRecord) => void) | undefined;
  readonly random: () => number;
  readonly isTrusted: (ip: string) => boolean;
  readonly guard: Guard;
  readonly limiter: ConcurrencyLimiter;
  /** The traffic listener serves HTTPS: X-Forwarded-Proto https, sticky cookies `Secure`. */
  readonly secure: boolean;
  /** The Strict-Transport-Security value lb adds to every answer, if any (`listen.tls.hsts`). */
  readonly hsts: string | undefined;
  /** The WebSockets open now and their counts. */
  readonly websockets: WebSockets;
}

export function proxyContext(deps: TrafficDeps): ProxyContext {
  const { config } = deps;
  return {
    config,
    pools: deps.pools,
    logger: deps.logger,
    onRequest: deps.onRequest,
    random: deps.random ?? Math.random,
    isTrusted: cidrMatcher(config.trustedProxies),
    guard: createGuard(config.limits, Date.now, { tls: config.listen.tls !== undefined }),
    limiter: new ConcurrencyLimiter(config.limits),
    secure: config.listen.tls !== undefined,
    websockets: deps.websockets ?? new WebSockets(),
    hsts: config.listen.tls?.hsts === undefined ? undefined : `max-age=${config.listen.tls.hsts}`,
  };
}
