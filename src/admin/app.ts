/**
 * The admin app, served on its own listener (never the traffic port).
 */
import { Hono } from "hono";
import type { Balancer } from "../balancer.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";

export interface AdminDeps {
  config: Config;
  balancer: Balancer;
  logger: Logger;
  version: string;
  startedAt: number;
}

export function createAdminApp(deps: AdminDeps): Hono {
  const app = new Hono();
  app.get("/healthz", (c) =>
    c.json({
      status: "ok",
      version: deps.version,
      uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
      strategy: deps.balancer.strategy.name,
      servers: deps.balancer.pool.servers.length,
    }));
  app.notFound((c) =>
    c.json({ error: { status: 404, code: "not_found", message: "no such admin route" } }, 404)
  );
  app.onError((err, c) => {
    deps.logger.error(`admin: ${err instanceof Error ? err.message : String(err)}`);
    return c.json(
      { error: { status: 500, code: "internal", message: "the admin API failed" } },
      500,
    );
  });
  return app;
}
