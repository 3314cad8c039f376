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
import {
  type ConfigLoader,
  createReloader,
  type Reloader,
  type ReloadResult,
} from "./control/reload.ts";
import { readStateFile, resolveStateFilePath } from "./control/state_file.ts";
import { createLogger, type Logger, type RequestRecord, resolveFormat } from "./log.ts";
import { createTrafficHandler } from "./proxy/handler.ts";
import { WebSockets } from "./proxy/websocket.ts";
import { readUpstreamTls } from "./proxy/upstream_tls.ts";
import { Pools } from "./routing/pools.ts";
import { newStickySecret } from "./routing/sticky.ts";
import { type AcmeConfig, type CertFiles, withTlsPaths } from "./config/tls.ts";
import { Listener } from "./listener.ts";
import { Certificates, keyFileWarning } from "./tls/certificate.ts";
import { resolvePools } from "./config/pools.ts";
import { configRelative } from "./config/paths.ts";
import { AcmeManager, ChallengeStore } from "./tls/acme.ts";
import type { PemPair } from "./tls/certificate.ts";
import { redirectHandler } from "./tls/redirect.ts";
import { reloadCertificates, startCertificate } from "./tls/serving.ts";
import { Cluster } from "./cluster/cluster.ts";
import { clusterRedisUrl } from "./config/cluster.ts";
import { registerClusterMetrics, registerSharingMetrics } from "./admin/metrics_cluster.ts";
import { type ClusterSharing, clusterSharing } from "./cluster/sharing.ts";
import type { WorkerTotals } from "./workers/hub.ts";

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
  /**
   * Join the cluster of `config.cluster` (default true); a --workers worker passes false and
   * follows its parent, which is the instance's one member.
   */
  cluster?: boolean;
  /**
   * The other processes of a `--workers` instance (this one being their parent): metrics,
   * server views and events add their counts, and every admin change reaches them before the
   * API answers.
   */
  workers?: WorkerTotals;
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
  /**
   * `http(s)://host:port` of the traffic listener; "" while an ACME lb waits for its first
   * certificate (see `ready`).
   */
  readonly url: string;
  /** `http(s)://host:port` of the admin listener (undefined when disabled). */
  readonly adminUrl?: string;
  /** `http://host:port` of the HTTP→HTTPS redirect listener (`listen.redirectHttp`). */
  readonly redirectUrl?: string;
  /** The certificates the listeners serve. */
  readonly certificates: Certificates;
  /** This instance's part in a cluster (`cluster.redis`), if it is in one. */
  readonly cluster?: Cluster;
  /** Where admin API changes are persisted (undefined: nowhere). */
  readonly stateFile?: string;
  readonly metrics: LbMetrics;
  /**
   * Settles once what lb does at start is done: a new sticky secret is on disk, and with
   * ACME the first certificate is served (or its order failed, which is logged and retried).
   */
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
  certificates: Certificates;
  /** Where the config came from (the files it names are relative to it). */
  source: string | undefined;
  /** The WebSockets open now, and their counts. */
  websockets: WebSockets;
  /** http-01 challenges the redirect listener answers. */
  challenges: ChallengeStore;
  /** Applies configs and views one at a time (SIGHUP, --watch, the cluster). */
  reloader: Reloader;
  cluster?: Cluster;
  /** Health checks and rate limits shared through the cluster. */
  sharing?: ClusterSharing;
  /** The other processes of a --workers instance. */
  workers?: WorkerTotals;
}

export function startLb(opts: LbOptions): Lb {
  const parts = build(opts);
  const { config, logger, pools } = parts;
  const onRequest = opts.onRequest;
  const traffic = createTrafficHandler({
    config,
    pools,
    logger,
    websockets: parts.websockets,
    random: opts.random,
    onRequest: onRequest
      ? (rec) => (parts.metrics.observe(rec), onRequest(rec))
      : parts.metrics.observe,
  });
  let started: Listeners;
  try {
    started = startListeners(parts, traffic, opts.reusePort);
  } catch (e) {
    parts.certificates.close();
    void pools.close();
    throw e;
  }
  for (const p of pools.list) p.start(logger, opts.random);
  const lb = handle(parts, started);
  parts.cluster?.start(() => lb.url);
  return lb;
}

/**
 * The listeners, in the order they need each other: the redirect listener first (it answers
 * the ACME CA's http-01 requests), then traffic, then admin. With ACME, the traffic listener
 * starts once the first certificate is installed (at once when one is stored).
 */
function startListeners(
  parts: Parts,
  handler: Deno.ServeHandler<Deno.NetAddr>,
  reusePort: boolean | undefined,
): Listeners {
  const { logger, certificates } = parts;
  const config = withTlsPaths(parts.config, parts.source);
  const { host, port, tls, redirectHttp } = config.listen;
  const started: Listeners = {};
  const startTraffic = (pair: PemPair | undefined) =>
    started.traffic = new Listener({
      what: "traffic",
      host,
      port,
      handler,
      logger,
      reusePort,
      tls: pair,
    });
  try {
    if (redirectHttp !== undefined) {
      const httpsPort = () => started.traffic?.port ?? port;
      started.redirect = new Listener({
        what: "the HTTP redirect",
        host,
        port: redirectHttp,
        handler: redirectHandler(httpsPort, parts.challenges),
        logger,
        reusePort,
      });
    }
    if (tls?.acme) {
      started.acme = startAcme(parts, tls.acme, (pair) => {
        if (started.traffic) started.traffic.swapCertificate(pair);
        else startTraffic(pair);
      });
    } else {
      startTraffic(
        tls ? startCertificate(certificates, logger, "traffic", tls as CertFiles) : undefined,
      );
    }
    if (config.admin.enabled) started.admin = startAdmin(parts);
    return started;
  } catch (e) {
    void closeListeners(started);
    throw e;
  }
}

/** Certificates from ACME: each one checked, then served (`serve` starts or swaps the listener). */
function startAcme(
  parts: Parts,
  config: AcmeConfig,
  serve: (pair: PemPair) => void,
): { manager: AcmeManager; first: Promise<void> } {
  const { logger, certificates } = parts;
  const manager = new AcmeManager({
    config,
    challenges: parts.challenges,
    log: logger,
    install(pair, why) {
      certificates.accept("traffic", pair, `ACME, ${why}`, () => serve(pair));
    },
  });
  const first = manager.start().catch((e) => {
    logger.error(
      `listen.tls.acme: ${(e as Error).message}; HTTPS starts once a certificate is issued`,
    );
  });
  return { manager, first };
}

/** The listeners of one lb. */
interface Listeners {
  traffic?: Listener;
  redirect?: Listener;
  admin?: { app: AdminApp; listener: Listener };
  /** `listen.tls.acme`: the manager, and its first certificate's arrival. */
  acme?: { manager: AcmeManager; first: Promise<void> };
}

async function closeListeners(l: Listeners): Promise<void> {
  l.acme?.manager.stop();
  l.admin?.app.close();
  await Promise.all([l.traffic?.shutdown(), l.redirect?.shutdown(), l.admin?.listener.shutdown()]);
}

/** Config (with the state file over it), logger, pool, strategy, metrics, control, upstream. */
function build(opts: LbOptions): Parts {
  const base = opts.config;
  const token = resolveAdminToken(base);
  assertAdminSafe(base, token);
  const stateFile = stateFileOf(opts);
  const applied = applyStateFile(base, stateFile ? readStateFile(stateFile) : undefined);
  const config = base;
  const logger = opts.logger ??
    createLogger({ format: resolveFormat(config.log.format), access: config.log.access });
  const tls = readUpstreamTls(base, opts.configSource);
  warnAboutKeyFiles(base, opts.configSource, logger);
  const secret = applied.stickySecret ?? newStickySecret();
  // In a cluster, the link comes first: every pool and route shares health and limits over it.
  const joined = base.cluster && opts.cluster !== false ? joinCluster(base, logger) : undefined;
  const { cluster, sharing } = joined ?? {};
  const pools = new Pools(applied.pools.map((a) => a.pool), applied.routes, secret, tls, sharing);
  const certificates = new Certificates(logger);
  const websockets = new WebSockets(base.drainTimeout);
  const workers = opts.workers;
  const metrics = createMetrics({
    pools,
    version: denoJson.version,
    certificates,
    websockets,
    others: workers && (() => workers.metrics()),
  });
  const control = new Control({
    pools,
    config: base,
    configSource: opts.configSource,
    logger,
    stateFile,
    follows: opts.followStateFile,
    random: opts.random,
    followers: workers && ((why) => workers.propagate(why)),
  });
  for (const a of applied.pools) restoreAdminStates(pools.get(a.pool.name)!, a.adminStates);
  const ready = control.keepStickySecret(applied.stickySecret);
  const challenges = new ChallengeStore();
  const reloader = createReloader(control, metrics);
  joined?.attach({ control, reloader, metrics });
  return {
    reloader,
    cluster,
    sharing,
    workers,
    config,
    token,
    stateFile,
    logger,
    pools,
    metrics,
    control,
    ready,
    certificates,
    challenges,
    source: opts.configSource,
    websockets,
  };
}

/** Where admin API changes are kept: the option, else resolveStateFilePath's answer. */
function stateFileOf(opts: LbOptions): string | undefined {
  if (opts.stateFile === false) return undefined;
  return opts.stateFile ?? resolveStateFilePath(opts.config, opts.configSource);
}

/** Warns about upstream client key files that others may read. */
function warnAboutKeyFiles(config: Config, source: string | undefined, logger: Logger): void {
  for (const pool of resolvePools(config)) {
    const key = pool.upstreamTls.key;
    const warning = key && keyFileWarning(configRelative(key, source));
    if (warning) logger.event("tls", `warning: ${warning}`, { pool: pool.name, key });
  }
}

/** What the cluster reaches through once build() has made it (the cluster comes first). */
interface Late {
  control: Control;
  reloader: Reloader;
  metrics: LbMetrics;
}

/**
 * This instance's part in the cluster: the link and what is shared over it, made before the
 * pools; `attach` wires it to the control, reloader and metrics made after them. The shared
 * view then stands where the state file does (the state file mirrors it, for a restart while
 * Redis is away).
 */
function joinCluster(config: Config, logger: Logger) {
  const late = {} as Late;
  const cluster = linkCluster(config, late, logger);
  const sharing = clusterSharing(cluster, { logger });
  const attach = (parts: Late) => {
    Object.assign(late, parts);
    parts.control.shared = cluster;
    registerClusterMetrics(parts.metrics.registry, cluster);
    registerSharingMetrics(parts.metrics.registry, sharing);
    cluster.onMembers(() => parts.control.notify());
  };
  return { cluster, sharing, attach };
}

/** The cluster link, reaching the rest of lb through `late` once it is there. */
function linkCluster(config: Config, late: Late, logger: Logger): Cluster {
  const url = clusterRedisUrl(config.cluster!);
  const startedAt = Date.now();
  return new Cluster(config.cluster!, url, {
    logger,
    config: () => late.control.config,
    running: () => late.control.overlay(),
    async apply(why) {
      await late.reloader.reload(() => late.control.config, why);
      await late.control.save().catch(() => {}); // logged by save
      await late.control.followers?.(why);
    },
    info: async () => ({
      version: denoJson.version,
      startedAt,
      requests: await requests(late.metrics),
    }),
  });
}

/** Requests answered so far (lb_requests_total over every label), for the member list. */
async function requests(metrics: LbMetrics): Promise<number> {
  const m = await metrics.registry.getSingleMetric("lb_requests_total")?.get();
  return m?.values.reduce((n, v) => n + v.value, 0) ?? 0;
}

function startAdmin(parts: Parts): { app: AdminApp; listener: Listener } {
  const { logger } = parts;
  const config = withTlsPaths(parts.config, parts.source);
  const tls = config.admin.tls
    ? startCertificate(parts.certificates, logger, "admin", config.admin.tls)
    : undefined;
  const app = createAdminApp({
    certificates: parts.certificates,
    logger,
    version: denoJson.version,
    startedAt: Date.now(),
    control: parts.control,
    metrics: parts.metrics,
    token: parts.token,
    cluster: parts.cluster,
    workers: parts.workers,
  });
  try {
    const { host, port } = config.admin;
    const what = "the admin API";
    return { app, listener: new Listener({ what, host, port, handler: app.fetch, logger, tls }) };
  } catch (e) {
    app.close();
    throw e;
  }
}

/** The running lb as its callers see it, and its shutdown. */
function handle(parts: Parts, listeners: Listeners): Lb {
  const { config, control, metrics } = parts;
  const reloader = parts.reloader;
  // /events and the dashboard add the workers' counts as of the last second.
  const workers = parts.workers;
  const refresh = workers && listeners.admin
    ? setInterval(() => void workers.refresh(), 1000)
    : undefined;
  let stopping: Promise<boolean> | undefined;
  const { admin } = listeners;
  const shutdown = (graceMs: number) => {
    clearInterval(refresh);
    return stop(parts, listeners, graceMs);
  };
  const reload = async (next: ConfigLoader, why: string) => {
    const r = await reloader.reload(next, why);
    if (r.ok) {
      r.changes.push(
        ...reloadCertificates(
          parts.certificates,
          parts.logger,
          listeners,
          withTlsPaths(control.config, parts.source),
        ),
      );
    }
    return r;
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
    ready: Promise.all([parts.ready, listeners.acme?.first]).then(() => {}),
    get url() {
      return listeners.traffic?.url ?? "";
    },
    adminUrl: admin?.listener.url,
    redirectUrl: listeners.redirect?.url,
    certificates: parts.certificates,
    cluster: parts.cluster,
    stateFile: parts.stateFile,
    metrics,
    reload: (next, why = "reload") => reload(next, why),
    shutdown: (graceMs = config.shutdownTimeout) => stopping ??= shutdown(graceMs),
  };
}

/**
 * Stops accepting, gives requests in flight (and WebSockets) `graceMs`, then closes the
 * cluster link, the admin and redirect listeners, the pools; true when all finished in time.
 */
async function stop(parts: Parts, listeners: Listeners, graceMs: number): Promise<boolean> {
  listeners.acme?.manager.stop();
  const until = Date.now() + graceMs;
  const stopped = listeners.traffic?.shutdown() ?? Promise.resolve();
  const inTime = await withTimeout(stopped, graceMs);
  // Deno.serve's shutdown closes upgraded connections with 1001 itself; any WebSocket
  // still open after the grace is closed the same way.
  while (parts.websockets.open.size > 0 && Date.now() < until) await delay(50);
  for (const ws of parts.websockets.open.keys()) ws.close(1001, "lb is shutting down");
  parts.websockets.open.clear();
  parts.websockets.stop();
  await parts.cluster?.stop();
  parts.control.close();
  parts.certificates.close();
  // The traffic listener had its grace above; what is still in flight there is cut.
  await closeListeners({ ...listeners, traffic: undefined });
  await parts.pools.close();
  parts.sharing?.close();
  parts.logger.flush();
  return inTime;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
