/**
 * One pool as it runs: its servers' state, its strategy, its connections to backends, its
 * retry budget, its health loop and its sticky cookie, all built from the pool's settings
 * (config/pools.ts). The request path finds it through the route a request matched.
 */
import { Balancer } from "../balancing/balancer.ts";
import { type HealthChecks, type HealthShare, startHealthChecks } from "../balancing/health.ts";
import { ServerPool } from "../balancing/pool.ts";
import { DEFAULT_POOL, type PoolConfig } from "../config/pools.ts";
import type { Logger } from "../log.ts";
import { RetryBudget } from "../proxy/retry.ts";
import { Upstream } from "../proxy/upstream.ts";
import type { TlsClientSettings } from "../proxy/upstream_tls.ts";
import { Sticky } from "./sticky.ts";

/** What a pool takes from a cluster (cluster/health_share.ts); absent: it works alone. */
export interface PoolCluster {
  /** The share of health checks for the pool named `pool`, made as its health loop starts. */
  healthShare?(pool: string): HealthShare;
}

export class PoolRuntime {
  readonly name: string;
  /** The pool's settings as it was built (strategy and servers change live; see Control). */
  readonly settings: PoolConfig;
  readonly servers: ServerPool;
  readonly balancer: Balancer;
  readonly upstream: Upstream;
  readonly budget: RetryBudget;
  readonly retryOn: ReadonlySet<number>;
  readonly sticky: Sticky | undefined;
  #health: HealthChecks | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed: Promise<void> | undefined;
  readonly #cluster: PoolCluster | undefined;

  /**
   * `stickySecret`: the key for the sticky cookie when the pool's settings give none.
   * `tls`: the pool's upstreamTls with its files read (upstream_tls.ts); default: no files.
   * `cluster`: shares the pool's health checks with other instances.
   */
  constructor(
    cfg: PoolConfig,
    stickySecret: string,
    tls?: TlsClientSettings,
    cluster?: PoolCluster,
  ) {
    this.name = cfg.name;
    this.#cluster = cluster;
    this.settings = cfg;
    this.servers = new ServerPool(cfg.backends, { healthy: initiallyHealthy(cfg) });
    this.balancer = new Balancer(this.servers, cfg.strategy, {
      hash: cfg.hash,
      latencyTau: this.servers.latencyTau,
    });
    this.upstream = new Upstream({
      connectTimeout: cfg.timeouts.connect,
      headerTimeout: cfg.timeouts.header,
      idleTimeout: cfg.timeouts.idle,
      poolIdleTimeout: cfg.timeouts.upstreamIdle,
      tls,
    });
    this.budget = new RetryBudget(cfg.retry.budgetPercent, cfg.retry.minConcurrent);
    this.retryOn = new Set(cfg.retry.on);
    this.sticky = cfg.sticky && new Sticky(cfg.sticky, stickySecret, cfg.name, this.servers);
  }

  /** Starts the active health checks and logs every server state change (once). */
  start(logger: Logger, random?: () => number): void {
    if (this.#health) return;
    this.#health = startHealthChecks(this.servers, this.settings.health, logger, {
      random,
      connector: () => this.upstream.connector,
      share: this.settings.health.enabled ? this.#cluster?.healthShare?.(this.name) : undefined,
    });
    const pool = this.name;
    this.#unsubscribe = this.servers.subscribe((e) => {
      if (e.type !== "state") return;
      const { server, from, to, reason } = e;
      const who = pool === DEFAULT_POOL ? server.id : `${pool}/${server.id}`;
      logger.event("state", `${who} ${from} → ${to} (${reason})`, {
        pool,
        server: server.id,
        from,
        to,
        reason,
      });
    });
  }

  /** Stops the health loop and closes every connection to the pool's backends. */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      await this.#health?.stop();
      this.#unsubscribe?.();
      this.balancer.close();
      this.sticky?.close();
      this.upstream.close();
    })();
  }
}

/** Whether a pool's servers take traffic before their first health check. */
export function initiallyHealthy(cfg: Pick<PoolConfig, "health">): boolean {
  return cfg.health.assumeHealthy || !cfg.health.enabled;
}
