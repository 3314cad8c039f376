/**
 * One running lb: the server pool, the strategy, the traffic and admin listeners, the
 * health loop. `serve` builds it; tests build several side by side (no global state).
 */
import denoJson from "../deno.json" with { type: "json" };
import { type AdminApp, createAdminApp } from "./admin/routes.ts";
import { assertAdminSafe, resolveAdminToken } from "./admin/auth.ts";
import { createMetrics, type LbMetrics } from "./admin/metrics.ts";
import { Balancer } from "./balancing/balancer.ts";
import { type HealthChecks, startHealthChecks } from "./balancing/health.ts";
import { ServerPool } from "./balancing/pool.ts";
import type { Config } from "./config/schema.ts";
import { Control } from "./control/control.ts";
import { applyOverlay } from "./control/overlay.ts";
import { type ConfigLoader, createReloader, type ReloadResult } from "./control/reload.ts";
import { readStateFile, resolveStateFilePath } from "./control/state_file.ts";
import { createLogger, type Logger, type RequestRecord, resolveFormat } from "./log.ts";
import { createTrafficApp } from "./proxy/handler.ts";
import { Upstream } from "./proxy/upstream.ts";

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
   * Default: admin.stateFile, else beside the config file (see control/state_file.ts);
   * none when there is no configSource.
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
  /** Applies a new config live (see control/reload.ts); never rejects, logs what it did. */
  reload(next: ConfigLoader, why?: string): Promise<ReloadResult>;
  /**
   * Stops accepting, lets in-flight requests finish (up to `graceMs`, default
   * config.shutdownTimeout), then closes everything. Resolves true when all finished in time.
   */
  shutdown(graceMs?: number): Promise<boolean>;
}

/** The parts of one lb that live as long as it does. */
interface Parts {
  /** The config with the state file over it: what lb runs with. */
  config: Config;
  token: string | undefined;
  stateFile: string | undefined;
  logger: Logger;
  pool: ServerPool;
  balancer: Balancer;
  metrics: LbMetrics;
  control: Control;
  upstream: Upstream;
  unsubscribe: () => void;
}

export function startLb(opts: LbOptions): Lb {
  const parts = build(opts);
  const { config, logger, upstream } = parts;
  const onRequest = opts.onRequest;
  const traffic = createTrafficApp({
    config,
    balancer: parts.balancer,
    upstream,
    logger,
    random: opts.random,
    onRequest: onRequest
      ? (rec) => (parts.metrics.observe(rec), onRequest(rec))
      : parts.metrics.observe,
  });
  const { host, port } = config.listen;
  const trafficServer = listen("traffic", host, port, traffic.fetch, logger, opts.reusePort);
  let admin: { app: AdminApp; server: Deno.HttpServer<Deno.NetAddr> } | undefined;
  try {
    admin = config.admin.enabled ? startAdmin(parts) : undefined;
  } catch (e) {
    trafficServer.shutdown();
    upstream.close();
    throw e;
  }
  const health = startHealthChecks(parts.pool, config.health, logger, { random: opts.random });
  return handle(parts, trafficServer, admin, health);
}

/** Config (with the state file over it), logger, pool, strategy, metrics, control, upstream. */
function build(opts: LbOptions): Parts {
  const base = opts.config;
  const token = resolveAdminToken(base);
  assertAdminSafe(base, token);
  const stateFile = opts.stateFile === false
    ? undefined
    : opts.stateFile ?? resolveStateFilePath(base, opts.configSource);
  const saved = applyOverlay(base, stateFile ? readStateFile(stateFile) : undefined);
  const config = saved.config;
  const logger = opts.logger ??
    createLogger({ format: resolveFormat(config.log.format), access: config.log.access });
  const pool = new ServerPool(config.backends, {
    healthy: config.health.assumeHealthy || !config.health.enabled,
  });
  const balancer = new Balancer(pool, config.strategy, {
    hash: config.hash,
    latencyTau: pool.latencyTau,
  });
  const metrics = createMetrics({ pool, balancer, version: denoJson.version });
  const control = new Control({ pool, balancer, config: base, logger, stateFile });
  control.restore(saved.adminStates);
  const upstream = new Upstream({
    connectTimeout: config.timeouts.connect,
    headerTimeout: config.timeouts.header,
    idleTimeout: config.timeouts.idle,
    poolIdleTimeout: config.timeouts.upstreamIdle,
  });
  const unsubscribe = pool.subscribe((e) => {
    if (e.type !== "state") return;
    const { server, from, to, reason } = e;
    logger.event("state", `${server.id} ${from} → ${to} (${reason})`, {
      server: server.id,
      from,
      to,
      reason,
    });
  });
  return {
    config,
    token,
    stateFile,
    logger,
    pool,
    balancer,
    metrics,
    control,
    upstream,
    unsubscribe,
  };
}

function startAdmin(parts: Parts): { app: AdminApp; server: Deno.HttpServer<Deno.NetAddr> } {
  const { config, logger } = parts;
  const app = createAdminApp({
    balancer: parts.balancer,
    logger,
    version: denoJson.version,
    startedAt: Date.now(),
    control: parts.control,
    metrics: parts.metrics,
    token: parts.token,
  });
  try {
    return {
      app,
      server: listen("the admin API", config.admin.host, config.admin.port, app.fetch, logger),
    };
  } catch (e) {
    app.close();
    throw e;
  }
}

/** The running lb as its callers see it, and its shutdown. */
function handle(
  parts: Parts,
  trafficServer: Deno.HttpServer<Deno.NetAddr>,
  admin: { app: AdminApp; server: Deno.HttpServer<Deno.NetAddr> } | undefined,
  health: HealthChecks,
): Lb {
  const { config, control, metrics } = parts;
  const reloader = createReloader(control, metrics);
  let stopping: Promise<boolean> | undefined;
  const shutdown = async (graceMs: number) => {
    const inTime = await withTimeout(trafficServer.shutdown(), graceMs);
    control.close();
    admin?.app.close();
    await admin?.server.shutdown();
    await health.stop();
    parts.unsubscribe();
    parts.balancer.close();
    parts.upstream.close();
    parts.logger.flush();
    return inTime;
  };
  return {
    get config() {
      return control.config;
    },
    pool: parts.pool,
    balancer: parts.balancer,
    logger: parts.logger,
    url: urlOf(trafficServer.addr),
    adminUrl: admin ? urlOf(admin.server.addr) : undefined,
    stateFile: parts.stateFile,
    metrics,
    reload: (next, why = "reload") => reloader.reload(next, why),
    shutdown: (graceMs = config.shutdownTimeout) => stopping ??= shutdown(graceMs),
  };
}

/** Whether `p` settled within `ms`. */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
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
    const where = `cannot listen for ${what} on ${host}:${port}`;
    if (e instanceof Deno.errors.AddrInUse) {
      throw new Error(`${where}: the address is already in use`);
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
    throw e;
  }
}
