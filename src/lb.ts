/**
 * One running lb: the server pool, the strategy, the traffic and admin listeners, the
 * health loop. `serve` builds it; tests build several side by side (no global state).
 */
import denoJson from "../deno.json" with { type: "json" };
import { type AdminApp, createAdminApp } from "./admin/routes.ts";
import { assertAdminSafe, resolveAdminToken } from "./admin/auth.ts";
import { createMetrics, type LbMetrics } from "./admin/metrics.ts";
import type { Balancer } from "./balancing/balancer.ts";
import type { ServerPool } from "./balancing/pool.ts";
import type { Config } from "./config/schema.ts";
import { Control, restoreAdminStates } from "./control/control.ts";
import { applyStateFile } from "./control/overlay.ts";
import { type ConfigLoader, createReloader, type ReloadResult } from "./control/reload.ts";
import { readStateFile, resolveStateFilePath } from "./control/state_file.ts";
import { createLogger, type Logger, type RequestRecord, resolveFormat } from "./log.ts";
import { createTrafficApp } from "./proxy/handler.ts";
import { Pools } from "./routing/pools.ts";
import { newStickySecret } from "./routing/sticky.ts";

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
  /** Read the state file but never write it: a --workers worker follows its parent's. */
  followStateFile?: boolean;
  /** Share the traffic port with other lb processes (SO_REUSEPORT; `lb serve --workers`). */
  reusePort?: boolean;
}

export interface Lb {
  readonly config: Config;
  /** Every pool and the routing table. */
  readonly pools: Pools;
  /** The first pool's servers (the only pool of a config without `pools`). */
  readonly pool: ServerPool;
  /** The first pool's balancer. */
  readonly balancer: Balancer;
  readonly logger: Logger;
  /** `http://host:port` of the traffic listener. */
  readonly url: string;
  /** `http://host:port` of the admin listener (undefined when disabled). */
  readonly adminUrl?: string;
  /** Where admin API changes are persisted (undefined: nowhere). */
  readonly stateFile?: string;
  readonly metrics: LbMetrics;
  /** Settles once what lb writes at start (a new sticky secret in the state file) is on disk. */
  readonly ready: Promise<void>;
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
  pools: Pools;
  metrics: LbMetrics;
  control: Control;
  ready: Promise<void>;
}

export function startLb(opts: LbOptions): Lb {
  const parts = build(opts);
  const { config, logger, pools } = parts;
  const onRequest = opts.onRequest;
  const traffic = createTrafficApp({
    config,
    pools,
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
    void pools.close();
    throw e;
  }
  for (const p of pools.list) p.start(logger, opts.random);
  return handle(parts, trafficServer, admin);
}

/** Config (with the state file over it), logger, pool, strategy, metrics, control, upstream. */
function build(opts: LbOptions): Parts {
  const base = opts.config;
  const token = resolveAdminToken(base);
  assertAdminSafe(base, token);
  const stateFile = opts.stateFile === false
    ? undefined
    : opts.stateFile ?? resolveStateFilePath(base, opts.configSource);
  const applied = applyStateFile(base, stateFile ? readStateFile(stateFile) : undefined);
  const config = base;
  const logger = opts.logger ??
    createLogger({ format: resolveFormat(config.log.format), access: config.log.access });
  const secret = applied.stickySecret ?? newStickySecret();
  const pools = new Pools(applied.pools.map((a) => a.pool), applied.routes, secret);
  const metrics = createMetrics({ pools, version: denoJson.version });
  const control = new Control({
    pools,
    config: base,
    logger,
    stateFile,
    follows: opts.followStateFile,
    random: opts.random,
  });
  for (const a of applied.pools) restoreAdminStates(pools.get(a.pool.name)!, a.adminStates);
  const ready = control.keepStickySecret(applied.stickySecret);
  return { config, token, stateFile, logger, pools, metrics, control, ready };
}

function startAdmin(parts: Parts): { app: AdminApp; server: Deno.HttpServer<Deno.NetAddr> } {
  const { config, logger } = parts;
  const app = createAdminApp({
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
): Lb {
  const { config, control, metrics } = parts;
  const reloader = createReloader(control, metrics);
  let stopping: Promise<boolean> | undefined;
  const shutdown = async (graceMs: number) => {
    const inTime = await withTimeout(trafficServer.shutdown(), graceMs);
    control.close();
    admin?.app.close();
    await admin?.server.shutdown();
    await parts.pools.close();
    parts.logger.flush();
    return inTime;
  };
  return {
    get config() {
      return control.config;
    },
    pools: parts.pools,
    get pool() {
      return parts.pools.list[0].servers;
    },
    get balancer() {
      return parts.pools.list[0].balancer;
    },
    logger: parts.logger,
    ready: parts.ready,
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
