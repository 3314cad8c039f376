/**
 * The admin JSON API under `/api`: servers and strategy. Only POST, PATCH, PUT and DELETE
 * change anything; a request that is refused (bad JSON, wrong types, unknown fields, an
 * oversized body) changes nothing. Bodies are checked by the same rules as lb.yaml
 * (config/backend.ts, config/strategy.ts). Errors have the shape json.ts gives them.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Server } from "../balancing/server.ts";
import { STRATEGY_NAMES } from "../balancing/strategies/registry.ts";
import { adminStateSchema, backendSchema, weightSchema } from "../config/backend.ts";
import type { Config } from "../config/schema.ts";
import { hashOptionsSchema, strategyNameSchema } from "../config/strategy.ts";
import { type Control, ControlError, PersistError } from "../control/control.ts";
import { ApiError, errorJson, readJson, validate } from "./json.ts";
import type { ServerView } from "./server_view.ts";

const PatchServer = z.object({
  weight: weightSchema.optional(),
  state: adminStateSchema.optional(),
}).strict().refine((v) => v.weight !== undefined || v.state !== undefined, {
  message: "give weight, state or both",
});

const PutStrategy = hashOptionsSchema.extend({ name: strategyNameSchema }).strict();

export interface ApiOptions {
  control: Control;
  /** How a server is shown. */
  view: (s: Server, now?: number) => ServerView;
  /** The health state a server added through the API starts in. */
  initiallyHealthy: (config: Config) => boolean;
  /** Who is asking: the client's address. */
  who: (c: Context) => string;
}

/** Builds the `/api` routes (mount with `app.route("/api", …)`). */
export function createApi(opts: ApiOptions): Hono {
  const api = new Hono();
  serverRoutes(api, opts);
  strategyRoutes(api, opts.control, opts.who);
  // Known paths with a method they do not take: 405 with Allow (a GET never changes state).
  const allow: [string, string][] = [
    ["/servers", "GET, POST"],
    ["/servers/:id", "GET, PATCH, DELETE"],
    ["/strategy", "GET, PUT"],
  ];
  for (const [path, methods] of allow) {
    const message = `${path} takes ${methods}`;
    api.all(
      path,
      (c) => errorJson(c, 405, "method_not_allowed", message, undefined, { allow: methods }),
    );
  }
  api.onError((err, c) => {
    if (err instanceof ApiError) return errorJson(c, err.status, err.code, err.message, err.fields);
    if (err instanceof ControlError) {
      const code = { 400: "bad_request", 404: "not_found", 409: "conflict" }[err.status];
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
  });
  return api;
}

function serverRoutes(api: Hono, opts: ApiOptions): void {
  const { control, view, who } = opts;
  api.get("/servers", (c) => {
    const now = Date.now();
    return c.json({ servers: control.pool.servers.map((s) => view(s, now)) });
  });
  api.post("/servers", async (c) => {
    const body = validate(backendSchema, await readJson(c.req.raw));
    const s = await control.addServer(body, who(c), opts.initiallyHealthy(control.config));
    return c.json(view(s), 201, { location: `/api/servers/${encodeURIComponent(s.id)}` });
  });
  api.get("/servers/:id", (c) => c.json(view(control.get(c.req.param("id")))));
  api.patch("/servers/:id", async (c) => {
    const id = c.req.param("id");
    control.get(id); // 404 before reading the body
    const body = validate(PatchServer, await readJson(c.req.raw));
    return c.json(view(await control.updateServer(id, body, who(c))));
  });
  api.delete("/servers/:id", async (c) => {
    const s = await control.removeServer(c.req.param("id"), who(c));
    const message = "draining: the server leaves once its in-flight requests have finished";
    return c.json({ ...view(s), message }, 202);
  });
}

function strategyRoutes(api: Hono, control: Control, who: (c: Context) => string): void {
  const strategyJson = () => {
    const st = control.strategy();
    return { name: st.name, options: st.options, available: STRATEGY_NAMES };
  };
  api.get("/strategy", (c) => c.json(strategyJson()));
  api.put("/strategy", async (c) => {
    const { name, ...hash } = validate(PutStrategy, await readJson(c.req.raw));
    await control.setStrategy(name, hash, who(c));
    return c.json(strategyJson());
  });
}
