/**
 * Every pool of one lb and the routing table in front of them. The request path asks the
 * router which route a request takes; the route's target holds the pool, the rate limiter
 * and the header rules. Reload swaps the table whole (a request sees the old one or the new
 * one, never half of each) and adds or retires pools; see control/reconcile.ts.
 */
import type { PoolConfig } from "../config/pools.ts";
import type { RateLimitConfig, RouteConfig } from "../config/routes.ts";
import type { TlsClientSettings } from "../proxy/upstream_tls.ts";
import { type PoolCluster, PoolRuntime } from "./pool_runtime.ts";
import { RateLimiter, type SharedLimit } from "./rate_limit.ts";
import { type Route, Router } from "./router.ts";

/** What a route sends to: its pool, its rate limiter, its header rules ready to apply. */
export interface RouteTarget {
  readonly pool: PoolRuntime;
  /** The route's own bucket: its limit alone, or a shared limit's fallback and headers. */
  readonly limiter: RateLimiter | undefined;
  /** With `rateLimit.shared` in a cluster: the bucket in Redis. */
  readonly shared: SharedLimit | undefined;
  /** Request headers to set ([name, value]) and to remove, names lower-case. */
  readonly setRequest: readonly [string, string][];
  readonly removeRequest: readonly string[];
  readonly setResponse: readonly [string, string][];
  /** Response headers to leave out: those removed and those set anew. */
  readonly dropResponse: ReadonlySet<string>;
}

export type LbRoute = Route<RouteTarget>;

/** What pools and routes take from a cluster (src/cluster/); absent: each instance alone. */
export interface PoolsCluster extends PoolCluster {
  /** The shared form of a route's limit, falling back to `local`. */
  sharedLimit?(config: RateLimitConfig, route: string, local: RateLimiter): SharedLimit;
}

/** A route's limiters, kept across a reload that leaves its limit as it was. */
interface RouteLimiters {
  spec: string;
  limiter: RateLimiter;
  shared: SharedLimit | undefined;
}

export class Pools {
  #pools = new Map<string, PoolRuntime>();
  /** Pools taken out by a reload, until they have closed. */
  #retiring = new Set<PoolRuntime>();
  #router!: Router<RouteTarget>;
  /** Rate limiters by route name, kept across a reload that leaves the route's limit as it was. */
  #limiters = new Map<string, RouteLimiters>();

  #stickySecret: string;
  readonly #cluster: PoolsCluster | undefined;

  /**
   * `tls`: each pool's upstreamTls with its files read (upstream_tls.ts), by pool name.
   * `cluster`: shared health checks and rate limits (src/cluster/); default: none.
   */
  constructor(
    configs: PoolConfig[],
    routes: RouteConfig[],
    stickySecret: string,
    tls?: ReadonlyMap<string, TlsClientSettings>,
    cluster?: PoolsCluster,
  ) {
    this.#stickySecret = stickySecret;
    this.#cluster = cluster;
    for (const c of configs) this.add(c, tls?.get(c.name));
    this.setRoutes(routes);
  }

  /** The key of sticky cookies for pools whose settings give none. */
  get stickySecret(): string {
    return this.#stickySecret;
  }

  /**
   * Takes the state file's sticky key (a --workers worker adopting the one its parent kept,
   * after making up its own before any pool needed it): every pool without its own key signs
   * with it from now on.
   */
  setStickySecret(secret: string): void {
    if (secret === this.#stickySecret) return;
    this.#stickySecret = secret;
    for (const p of this.#pools.values()) p.sticky?.rekey(secret);
  }

  get router(): Router<RouteTarget> {
    return this.#router;
  }

  /** Every pool, in the order the config lists them. */
  get list(): PoolRuntime[] {
    return [...this.#pools.values()];
  }

  get size(): number {
    return this.#pools.size;
  }

  get(name: string): PoolRuntime | undefined {
    return this.#pools.get(name);
  }

  /** Builds a pool (its health loop is started by the caller). */
  add(cfg: PoolConfig, tls?: TlsClientSettings): PoolRuntime {
    const p = new PoolRuntime(cfg, this.#stickySecret, tls, this.#cluster);
    this.#pools.set(cfg.name, p);
    return p;
  }

  /** Takes a pool out (no route may name it any more); the caller drains and closes it. */
  delete(name: string): PoolRuntime | undefined {
    const p = this.#pools.get(name);
    this.#pools.delete(name);
    if (p) this.#retiring.add(p);
    return p;
  }

  /** A retired pool has closed: it leaves the metrics. */
  forget(p: PoolRuntime): void {
    this.#retiring.delete(p);
  }

  /** Every pool, and those a reload took out that still finish requests (for metrics). */
  get withRetiring(): PoolRuntime[] {
    return [...this.#pools.values(), ...this.#retiring];
  }

  /** Replaces the routing table; every route's pool must exist. */
  setRoutes(routes: readonly RouteConfig[]): void {
    const limiters = new Map<string, RouteLimiters>();
    this.#router = new Router(routes, (r) => {
      const pool = this.#pools.get(r.pool);
      if (!pool) throw new Error(`route ${r.name}: no pool named "${r.pool}"`);
      const limits = r.rateLimit && this.#limitersOf(r.name, r.rateLimit);
      if (limits) limiters.set(r.name, limits);
      const { request, response } = r.headers;
      return {
        pool,
        limiter: limits?.limiter,
        shared: limits?.shared,
        setRequest: Object.entries(request.set),
        removeRequest: request.remove,
        setResponse: Object.entries(response.set),
        dropResponse: new Set([...response.remove, ...Object.keys(response.set)]),
      };
    });
    for (const [name, old] of this.#limiters) {
      if (limiters.get(name) === old) continue;
      old.limiter.close();
      old.shared?.close();
    }
    this.#limiters = limiters;
  }

  /** The limiters of route `name`: the ones it had when its limit is unchanged, else new. */
  #limitersOf(name: string, config: RateLimitConfig): RouteLimiters {
    const spec = JSON.stringify(config);
    const old = this.#limiters.get(name);
    if (old?.spec === spec) return old;
    const limiter = new RateLimiter(config, name);
    const shared = config.shared ? this.#cluster?.sharedLimit?.(config, name, limiter) : undefined;
    return { spec, limiter, shared };
  }

  /** Closes every pool and limiter. */
  async close(): Promise<void> {
    for (const { limiter, shared } of this.#limiters.values()) {
      limiter.close();
      shared?.close();
    }
    await Promise.all(this.list.map((p) => p.close()));
  }
}
