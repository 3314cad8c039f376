/**
 * The admin JSON API under `/api`: pools, their servers and strategies, and the routes.
 * `/api/pools/:pool/…` names the pool; `/api/servers` and `/api/strategy` are the same for
 * a config with one pool (and a 409 with several, where they would be ambiguous). Only
 * POST, PATCH, PUT and DELETE change anything; a request that is refused (bad JSON, wrong types, unknown fields, an
 * oversized body) changes nothing. Bodies are checked by the same rules as lb.yaml
 * (config/backend.ts, config/strategy.ts). Errors have the shape json.ts gives them.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Server } from "../balancing/server.ts";
import { STRATEGY_NAMES } from "../balancing/strategies/registry.ts";
import { adminStateSchema, backendSchema, weightSchema } from "../config/backend.ts";
import { hashOptionsSchema, strategyNameSchema } from "../config/strategy.ts";
import { type Control, ControlError, PersistError } from "../control/control.ts";
import { explain, explainRequestOf } from "../routing/explain.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import { ApiError, errorJson, readJson, validate } from "./json.ts";
import type { CertificateView, ServerView } from "./server_view.ts";
import type { ClusterView } from "./cluster_view.ts";

const PatchServer = z.object({
  weight: weightSchema.optional(),
  state: adminStateSchema.optional(),
}).strict().refine((v) => v.weight !== undefined || v.state !== undefined, {
  message: "give weight, state or both",
});

const ExplainBody = z.object({
  method: z.string().regex(/^[A-Za-z]{1,20}$/, "must be a method like GET"),
  url: z.string().min(1).max(8192),
  headers: z.record(
    z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "must be a header name"),
    z.string().max(8192).regex(/^[^\r\n\0]*$/, "must not contain CR, LF or NUL"),
  ).optional(),
  client: z.string().max(64).optional(),
}).strict();

const PutStrategy = hashOptionsSchema.extend({ name: strategyNameSchema }).strict();

export interface ApiOptions {
  control: Control;
  /** How a server of a pool is shown. */
  view: (pool: PoolRuntime, s: Server, now?: number) => ServerView;
  /** Who is asking: the client's address. */
  who: (c: Context) => string;
  /** The listeners' certificates. */
  tls?: () => CertificateView[];
  /** The cluster this lb is part of (`{enabled: false}` without one). */
  cluster?: () => ClusterView;
}

/** Picks the pool a route is about: named in the path, or the only one. */
type PoolOf = (c: Context) => PoolRuntime;

/** Builds the `/api` routes (mount with `app.route("/api", …)`). */
export function createApi(opts: ApiOptions): Hono {
  const api = new Hono();
  const { control } = opts;
  const named: PoolOf = (c) => control.pool(c.req.param("pool")!);
  const only: PoolOf = () => control.onlyPool();
  poolRoutes(api, opts);
  api.get("/cluster", (c) => c.json(opts.cluster?.() ?? { enabled: false }));
  for (const [prefix, poolOf] of [["/pools/:pool", named], ["", only]] as const) {
    serverRoutes(api, opts, prefix, poolOf);
    strategyRoutes(api, opts, prefix, poolOf);
  }
  // Known paths with a method they do not take: 405 with Allow (a GET never changes state).
  const allow: [string, string][] = [
    ["/servers", "GET, POST"],
    ["/servers/:id", "GET, PATCH, DELETE"],
    ["/strategy", "GET, PUT"],
    ["/pools", "GET"],
    ["/pools/:pool", "GET"],
    ["/pools/:pool/servers", "GET, POST"],
    ["/pools/:pool/servers/:id", "GET, PATCH, DELETE"],
    ["/pools/:pool/strategy", "GET, PUT"],
    ["/routes", "GET"],
    ["/tls", "GET"],
    ["/explain", "POST"],
    ["/cluster", "GET"],
  ];
  for (const [path, methods] of allow) {
    const message = `${path} takes ${methods}`;
    api.all(
      path,
      (c) => errorJson(c, 405, "method_not_allowed", message, undefined, { allow: methods }),
    );
  }
  api.onError(apiError);
  return api;
}

function apiError(err: Error, c: Context): Response {
  if (err instanceof ApiError) return errorJson(c, err.status, err.code, err.message, err.fields);
  if (err instanceof ControlError) {
    const code = {
      400: "bad_request",
      404: "not_found",
      409: "conflict",
      503: "cluster_unavailable",
    }[err.status];
    const message = err.field ? `${err.field}: ${err.message}` : err.message;
    return errorJson(
      c,
      err.status,
      code,
      message,
      err.field ? { [err.field]: err.message } : undefined,
    );
  }
  if (err instanceof PersistError) return errorJson(c, 500, "not_saved", err.message);
  throw err;
}

/** `GET /pools`, `GET /pools/:pool` and `GET /routes`: what runs, read-only. */
function poolRoutes(api: Hono, opts: ApiOptions): void {
  const { control, view } = opts;
  const poolJson = (p: PoolRuntime, now = Date.now()) => ({
    name: p.name,
    strategy: strategyJson(control, p),
    sticky: p.sticky ? { cookie: p.sticky.cookie } : null,
    servers: p.servers.servers.map((s) => view(p, s, now)),
  });
  api.get("/pools", (c) => c.json({ pools: control.pools.list.map((p) => poolJson(p)) }));
  api.get("/pools/:pool", (c) => c.json(poolJson(control.pool(c.req.param("pool")))));
  api.get("/routes", (c) => c.json({ routes: control.pools.router.routes.map((r) => r.config) }));
  api.get("/tls", (c) => c.json({ certificates: opts.tls?.() ?? [] }));
  // Changes nothing (a POST only because the request to explain has headers and a body shape).
  api.post("/explain", async (c) => {
    const input = validate(ExplainBody, await readJson(c.req.raw));
    let req;
    try {
      req = explainRequestOf(input);
    } catch (e) {
      throw new ApiError(400, "bad_request", `url: ${(e as Error).message}`, {
        url: (e as Error).message,
      });
    }
    return c.json(explain(control.pools, req));
  });
}

function serverRoutes(api: Hono, opts: ApiOptions, prefix: string, poolOf: PoolOf): void {
  const { control, who } = opts;
  const view = (c: Context, s: Server, now?: number) => opts.view(poolOf(c), s, now);
  api.get(`${prefix}/servers`, (c) => {
    const pool = poolOf(c);
    const now = Date.now();
    const servers = pool.servers.servers.map((s) => opts.view(pool, s, now));
    return c.json({ servers, tls: opts.tls?.() ?? [] });
  });
  api.post(`${prefix}/servers`, async (c) => {
    const pool = poolOf(c);
    const body = validate(backendSchema, await readJson(c.req.raw));
    const s = await control.addServer(pool, body, who(c));
    const at = prefix ? `/api/pools/${encodeURIComponent(pool.name)}` : "/api";
    return c.json(view(c, s), 201, { location: `${at}/servers/${encodeURIComponent(s.id)}` });
  });
  api.get(
    `${prefix}/servers/:id`,
    (c) => c.json(view(c, control.get(poolOf(c), c.req.param("id")))),
  );
  api.patch(`${prefix}/servers/:id`, async (c) => {
    const pool = poolOf(c);
    const id = c.req.param("id");
    control.get(pool, id); // 404 before reading the body
    const body = validate(PatchServer, await readJson(c.req.raw));
    return c.json(view(c, await control.updateServer(pool, id, body, who(c))));
  });
  api.delete(`${prefix}/servers/:id`, async (c) => {
    const s = await control.removeServer(poolOf(c), c.req.param("id"), who(c));
    const message = "draining: the server leaves once its in-flight requests have finished";
    // Removed: draining, or already gone when nothing was in flight.
    return c.json({ ...view(c, s), removing: true, message }, 202);
  });
}

/** A pool's strategy as the API shows it. */
function strategyJson(control: Control, pool: PoolRuntime) {
  const st = control.strategy(pool);
  return { name: st.name, options: st.options, available: STRATEGY_NAMES };
}

function strategyRoutes(api: Hono, opts: ApiOptions, prefix: string, poolOf: PoolOf): void {
  const { control, who } = opts;
  api.get(`${prefix}/strategy`, (c) => c.json(strategyJson(control, poolOf(c))));
  api.put(`${prefix}/strategy`, async (c) => {
    const pool = poolOf(c);
    const { name, ...hash } = validate(PutStrategy, await readJson(c.req.raw));
    await control.setStrategy(pool, name, hash, who(c));
    return c.json(strategyJson(control, pool));
  });
}
