/**
 * One running lb: the server pool, the strategy, the traffic and admin listeners, the
 * health loop. `serve` builds it; tests build several side by side (no global state).
 */
import denoJson from "../deno.json" with { type: "json" };
import { type AdminApp, createAdminApp } from "./admin/routes.ts";
import { assertAdminSafe, resolveAdminToken } from "./admin/auth.ts";
import { Control } from "./control/control.ts";
import { createMetrics, type LbMetrics } from "./admin/metrics.ts";
import { applyOverlay, readStateFile, resolveStateFilePath } from "./control/state_file.ts";
import { createTrafficApp } from "./proxy/handler.ts";
import { Balancer } from "./balancing/balancer.ts";
import type { Config } from "./config/config.ts";
import { startHealthChecks } from "./balancing/health.ts";
import { createLogger, type Logger, type RequestRecord, resolveFormat } from "./log.ts";
import { Upstream } from "./proxy/upstream.ts";
import { type ConfigLoader, createReloader, type ReloadResult } from "./control/reload.ts";
import { ServerPool } from "./balancing/pool.ts";

export interface LbOptions {
  config: Config;
  /** Where the config came from (for logs and reloads). */
  configSource?: string;
  logger?: Logger;
  random?: () => number;
  /** Called for every finished request (tests, metrics). */
  onRequest?: (rec: RequestRecord) => void;
  /**
   * The state file (admin API changes that survive a restart): a path, or false for none.
   * Default: admin.stateFile, else beside the config file (see admin/state_file.ts); none
   * when there is no configSource.
   */
  stateFile?: string | false;
  /** Share the traffic port with other lb processes (SO_REUSEPORT; `lb serve --workers`). */
  reusePort?: boolean;
}

export interface Lb {
  readonly config: Config;
  readonly pool: ServerPool;
  readonly balancer: Balancer;
  readonly logger: Logger;
  /** `http://host:port` of the traffic listener. */
  readonly url: string;
  /** `http://host:port` of the admin listener (undefined when disabled). */
  readonly adminUrl?: string;
  /** Where admin API changes are persisted (undefined: nowhere). */
  readonly stateFile?: string;
  readonly metrics: LbMetrics;
  /** Applies a new config live (see reload.ts); never rejects, logs what it did. */
  reload(next: ConfigLoader, why?: string): Promise<ReloadResult>;
  /**
   * Stops accepting, lets in-flight requests finish (up to `graceMs`, default
   * config.shutdownTimeout), then closes everything. Resolves true when all finished in time.
   */
  shutdown(graceMs?: number): Promise<boolean>;
}

function urlOf(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `http://${host}:${addr.port}`;
}

/** Listens on host:port, with a clear error when the port is taken. */
function listen(
  what: string,
  host: string,
  port: number,
  handler: Deno.ServeHandler<Deno.NetAddr>,
  logger: Logger,
  reusePort = false,
): Deno.HttpServer<Deno.NetAddr> {
  // Deno's default onError prints a stack trace, e.g. for every response body that fails
  // because a backend died mid-body (already in the access log): one line is enough.
  const onError = (e: unknown) => {
    logger.error(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    return new Response("internal error\n", { status: 500 });
  };
  try {
    return Deno.serve({ hostname: host, port, reusePort, onListen() {}, onError }, handler);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `cannot listen for ${what} on ${host}:${port}: the address is already in use`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
      throw new Error(`cannot listen for ${what} on ${host}:${port}: ${(e as Error).message}`);
    }
    throw e;
  }
}

export function startLb(opts: LbOptions): Lb {
  const { config: baseConfig } = opts;
  const adminToken = resolveAdminToken(baseConfig);
  assertAdminSafe(baseConfig, adminToken);
  // The state file (admin API changes) applies over the config; `config` is the result.
  const stateFile = opts.stateFile === false
    ? undefined
    : opts.stateFile ?? resolveStateFilePath(baseConfig, opts.configSource);
  const saved = applyOverlay(baseConfig, stateFile ? readStateFile(stateFile) : undefined);
  const config = saved.config;
  const logger = opts.logger ??
    createLogger({ format: resolveFormat(config.log.format), access: config.log.access });
  const pool = new ServerPool(config.backends, {
    healthy: config.health.assumeHealthy || !config.health.enabled,
  });
  for (const [id, st] of saved.adminStates) pool.setAdminState(pool.get(id)!, st, "state file");
  const balancer = new Balancer(pool, config.strategy, {
    hash: config.hash,
    latencyTau: pool.latencyTau,
  });
  const metrics = createMetrics({ pool, balancer, version: denoJson.version });
  const control = new Control({ pool, balancer, config: baseConfig, logger, stateFile, metrics });
  const reloader = createReloader({ control, metrics });
  const upstream = new Upstream({
    connectTimeout: config.timeouts.connect,
    headerTimeout: config.timeouts.header,
    idleTimeout: config.timeouts.idle,
    poolIdleTimeout: config.timeouts.upstreamIdle,
  });
  const unsubscribe = pool.subscribe((e) => {
    if (e.type === "state") {
      logger.event("state", `${e.server.id} ${e.from} → ${e.to} (${e.reason})`, {
        server: e.server.id,
        from: e.from,
        to: e.to,
        reason: e.reason,
      });
    }
  });

  const traffic = createTrafficApp({
    config,
    balancer,
    upstream,
    logger,
    random: opts.random,
    onRequest: opts.onRequest
      ? (rec) => {
        metrics.observe(rec);
        opts.onRequest!(rec);
      }
      : metrics.observe,
  });
  const trafficServer = listen(
    "traffic",
    config.listen.host,
    config.listen.port,
    traffic.fetch,
    logger,
    opts.reusePort,
  );
  let adminServer: Deno.HttpServer<Deno.NetAddr> | undefined;
  let admin: AdminApp | undefined;
  if (config.admin.enabled) {
    admin = createAdminApp({
      config,
      balancer,
      logger,
      version: denoJson.version,
      startedAt: Date.now(),
      control,
      metrics,
      token: adminToken,
    });
    try {
      adminServer = listen(
        "the admin API",
        config.admin.host,
        config.admin.port,
        admin.fetch,
        logger,
      );
    } catch (e) {
      admin.close();
      trafficServer.shutdown();
      upstream.close();
      throw e;
    }
  }

  const health = startHealthChecks(pool, config.health, logger, { random: opts.random });

  let stopping: Promise<boolean> | undefined;
  return {
    get config() {
      return control.config;
    },
    pool,
    balancer,
    logger,
    url: urlOf(trafficServer.addr),
    adminUrl: adminServer ? urlOf(adminServer.addr) : undefined,
    stateFile,
    metrics,
    reload: (next, why = "reload") => reloader.reload(next, why),
    shutdown(graceMs = config.shutdownTimeout) {
      return stopping ??= (async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const graceful = trafficServer.shutdown().then(() => true);
        const timeout = new Promise<boolean>((r) => timer = setTimeout(() => r(false), graceMs));
        const inTime = await Promise.race([graceful, timeout]);
        clearTimeout(timer);
        control.close();
        admin?.close();
        await adminServer?.shutdown();
        await health.stop();
        unsubscribe();
        balancer.close();
        upstream.close();
        logger.flush();
        return inTime;
      })();
    },
  };
}
