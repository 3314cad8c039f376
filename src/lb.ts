/**
 * One running lb: the server pool, the strategy, the traffic and admin listeners, the
 * health loop. `serve` builds it; tests build several side by side (no global state).
 */
import type http from "node:http";
import denoJson from "../deno.json" with { type: "json" };
import { createAdminApp } from "./admin/app.ts";
import { createTrafficApp } from "./app.ts";
import { Balancer } from "./balancer.ts";
import type { Config } from "./config.ts";
import { createLogger, type Logger, type RequestRecord, resolveFormat } from "./log.ts";
import { createUpstreamAgent } from "./proxy.ts";
import { ServerPool } from "./state.ts";

export interface LbOptions {
  config: Config;
  /** Where the config came from (for logs and reloads). */
  configSource?: string;
  logger?: Logger;
  random?: () => number;
  /** Called for every finished request (tests, metrics). */
  onRequest?: (rec: RequestRecord) => void;
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
): Deno.HttpServer<Deno.NetAddr> {
  try {
    return Deno.serve({ hostname: host, port, onListen() {} }, handler);
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
  const { config } = opts;
  const logger = opts.logger ??
    createLogger({ format: resolveFormat(config.log.format), access: config.log.access });
  const pool = new ServerPool(config.backends, {});
  for (const s of pool.servers) s.healthy = config.health.assumeHealthy || !config.health.enabled;
  const balancer = new Balancer(pool, config.strategy, { hash: config.hash });
  const agent: http.Agent = createUpstreamAgent({
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
    agent,
    logger,
    random: opts.random,
    onRequest: opts.onRequest,
  });
  const trafficServer = listen("traffic", config.listen.host, config.listen.port, traffic.fetch);
  let adminServer: Deno.HttpServer<Deno.NetAddr> | undefined;
  if (config.admin.enabled) {
    const admin = createAdminApp({
      config,
      balancer,
      logger,
      version: denoJson.version,
      startedAt: Date.now(),
    });
    try {
      adminServer = listen("the admin API", config.admin.host, config.admin.port, admin.fetch);
    } catch (e) {
      trafficServer.shutdown();
      agent.destroy();
      throw e;
    }
  }

  let stopping: Promise<boolean> | undefined;
  return {
    config,
    pool,
    balancer,
    logger,
    url: urlOf(trafficServer.addr),
    adminUrl: adminServer ? urlOf(adminServer.addr) : undefined,
    shutdown(graceMs = config.shutdownTimeout) {
      return stopping ??= (async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const graceful = trafficServer.shutdown().then(() => true);
        const timeout = new Promise<boolean>((r) => timer = setTimeout(() => r(false), graceMs));
        const inTime = await Promise.race([graceful, timeout]);
        clearTimeout(timer);
        await adminServer?.shutdown();
        unsubscribe();
        balancer.close();
        agent.destroy();
        return inTime;
      })();
    },
  };
}
