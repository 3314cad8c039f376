/**
 * The admin app, served on its own listener (never the traffic port):
 *
 * | path | what | token (when one is set) |
 * | --- | --- | --- |
 * | `GET /healthz` | the balancer itself | no |
 * | `GET /` | the dashboard page (it asks for the token and keeps it in sessionStorage) | no |
 * | `GET /assets/…` | the dashboard's script and stylesheet | no |
 * | `/api/…` | the JSON API (api.ts) | `Authorization: Bearer` |
 * | `GET /metrics` | Prometheus text | `Authorization: Bearer` |
 * | `GET /events` | Server-Sent Events | `Authorization: Bearer`, or `?access_token=` (RFC 6750 §2.3), because a browser's EventSource cannot send headers |
 *
 * Without a token the listener is loopback-only (lb refuses to start otherwise), and every
 * route but /healthz also requires a local Host name, so a web page cannot reach the API
 * through DNS rebinding. Changes need POST/PATCH/PUT/DELETE with a JSON body type, and a
 * cross-site Origin is refused, so a page cannot forge them either.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import type { Server } from "../balancing/server.ts";
import type { Control } from "../control/control.ts";
import type { Certificates } from "../tls/certificate.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import type { Logger } from "../log.ts";
import { createApi } from "./api.ts";
import { bearerToken, isLocalHostHeader, tokenMatches } from "./auth.ts";
import { DASHBOARD_CSP, DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from "./dashboard.ts";
import { EventHub } from "./events.ts";
import { errorJson } from "./json.ts";
import type { LbMetrics } from "./metrics.ts";
import { certificateViews, serverView, type ViewSources } from "./server_view.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { clusterView } from "./cluster_view.ts";
import type { WorkerTotals } from "../workers/hub.ts";

export interface AdminDeps {
  logger: Logger;
  /** The listeners' certificates, shown by /api/tls, /api/servers and the dashboard. */
  certificates?: Certificates;
  version: string;
  startedAt: number;
  control: Control;
  metrics: LbMetrics;
  /** Bearer token for /api, /metrics and /events; undefined: none (loopback only). */
  token?: string;
  /** The cluster this lb is part of (cluster.redis), if any. */
  cluster?: Cluster;
  /** The other `--workers` processes of this instance, whose counters views add. */
  workers?: WorkerTotals;
  /** Snapshot period of /events (ms). Default 1000. */
  eventsIntervalMs?: number;
}

export interface AdminApp {
  readonly app: Hono;
  readonly events: EventHub;
  fetch(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response>;
  /** Ends /events streams and stops the sampling timer (before the listener shuts down). */
  close(): void;
}

type ConnInfo = { remoteAddr?: Deno.NetAddr } | undefined;

/** The client's address, for "who" in admin event lines. */
function clientOf(c: Context): string {
  return (c.env as ConnInfo)?.remoteAddr?.hostname ?? "unknown";
}

export function createAdminApp(deps: AdminDeps): AdminApp {
  const { token, control, metrics } = deps;
  const { workers } = deps;
  const sources: ViewSources = {
    removing: (s) => control.drains.has(s),
    responses5xx: (pool, s) => metrics.responses5xx(pool, s.id),
    others: workers && ((pool, s) => workers.others(pool, s.id)),
  };
  const cluster = () => clusterView(deps.cluster?.status());
  const events = new EventHub({
    cluster,
    control,
    version: deps.version,
    startedAt: deps.startedAt,
    intervalMs: deps.eventsIntervalMs,
    sources,
    tls: () => certificateViews(deps.certificates),
  });
  const app = new Hono();
  app.use("*", securityHeaders);
  app.get("/healthz", (c) => c.json(health(deps)));
  app.use("*", localAndSameSite(token));
  for (const path of ["/api/*", "/api", "/metrics"]) app.use(path, requireToken(token, false));
  if (workers) {
    // Views of servers add the workers' counters as they are now.
    app.use("/api/*", async (_c, next) => {
      await workers.refresh();
      await next();
    });
  }
  app.use("/events", requireToken(token, true));
  pageRoutes(app);
  app.get(
    "/metrics",
    async (c) => c.body(await metrics.text(), 200, { "content-type": metrics.contentType }),
  );
  app.get("/events", () => events.response());
  const view = (pool: PoolRuntime, s: Server, now?: number) =>
    serverView(pool.name, s, sources, now);
  const tls = () => certificateViews(deps.certificates);
  app.route("/api", createApi({ control, view, who: clientOf, tls, cluster }));
  app.notFound((c) => errorJson(c, 404, "not_found", "no such admin route"));
  app.onError((err, c) => {
    deps.logger.error(`admin: ${err instanceof Error ? err.message : String(err)}`);
    return errorJson(c, 500, "internal", "the admin API failed");
  });
  return { app, events, fetch: (req, info) => app.fetch(req, info), close: () => events.close() };
}

/** `GET /healthz`: the balancer itself, for liveness probes (no token). */
function health(deps: AdminDeps) {
  const pools = deps.control.pools.list;
  const cluster = deps.cluster?.status();
  return {
    // Degraded: serving, but with the last view it had, since the cluster's Redis is away.
    status: cluster && !cluster.connected ? "degraded" : "ok",
    ...(cluster && { cluster: { connected: cluster.connected, revision: cluster.revision } }),
    version: deps.version,
    uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
    // The first pool's strategy: the one strategy of a config without pools.
    strategy: pools[0]?.balancer.strategy.name,
    pools: pools.length,
    servers: pools.reduce((n, p) => n + p.servers.servers.length, 0),
  };
}

/** The dashboard page and its two assets. */
function pageRoutes(app: Hono): void {
  app.get("/", (c) => {
    c.header("content-security-policy", DASHBOARD_CSP);
    c.header("cache-control", "no-cache");
    return c.html(DASHBOARD_HTML);
  });
  const asset = (type: string, text: string) => (c: Context) => {
    c.header("cache-control", "no-cache");
    return c.body(text, 200, { "content-type": type });
  };
  app.get("/assets/dashboard.js", asset("text/javascript; charset=utf-8", DASHBOARD_JS));
  app.get("/assets/dashboard.css", asset("text/css; charset=utf-8", DASHBOARD_CSS));
}

const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  c.header("x-content-type-options", "nosniff");
  c.header("referrer-policy", "no-referrer");
  if (!c.res.headers.has("cache-control")) c.header("cache-control", "no-store");
};

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Without a token, only a local Host is answered (no DNS rebinding); changes from another
 * site's page (a cross-site Origin) are refused either way.
 */
function localAndSameSite(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    // HTTP/2 (admin.tls) sends :authority, which Deno puts in the URL, instead of Host.
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    if (!token && !isLocalHostHeader(host)) {
      const why =
        "without an admin token, the admin listener only answers requests for localhost or 127.0.0.1";
      return errorJson(c, 403, "forbidden", why);
    }
    const origin = c.req.header("origin");
    if (
      MUTATING.has(c.req.method) && origin !== undefined && !sameHost(origin, host)
    ) {
      return errorJson(c, 403, "forbidden", "cross-site admin requests are refused");
    }
    return await next();
  };
}

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** The bearer token (or, where EventSource needs it, `?access_token=`) when one is set. */
function requireToken(token: string | undefined, queryToken: boolean): MiddlewareHandler {
  return async (c, next) => {
    if (!token) return await next();
    const presented = bearerToken(c.req.header("authorization")) ??
      (queryToken ? c.req.query("access_token") : undefined);
    if (tokenMatches(presented, token)) return await next();
    const message = presented === undefined
      ? "this admin route needs the header Authorization: Bearer <token>"
      : "wrong admin token";
    return errorJson(c, 401, "unauthorized", message, undefined, {
      "www-authenticate": 'Bearer realm="lb admin"',
    });
  };
}
