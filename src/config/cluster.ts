/**
 * `cluster`: several lb instances sharing one view (servers, weights, admin states, strategy
 * switches, the sticky-cookie secret) through Redis. See src/cluster/cluster.ts for how.
 *
 * @example
 * ```yaml
 * cluster:
 *   redis: redis://127.0.0.1:6379/0   # or rediss://, a password in the URL, or LB_CLUSTER_REDIS
 *   name: prod                        # keys are lb:{prod}:…; several clusters may share a Redis
 * ```
 */
import { z } from "zod";
import { nameSchema } from "./routes.ts";
import { duration } from "./units.ts";

/** A redis:// or rediss:// URL (the password, if any, in its user-info part). */
export const redisUrlSchema = z.string().superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: "custom", message: "must be a redis:// or rediss:// URL" });
    return;
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    ctx.addIssue({ code: "custom", message: `must be redis:// or rediss://, not ${u.protocol}//` });
  } else if (u.pathname.length > 1 && !/^\/\d{1,2}$/.test(u.pathname)) {
    ctx.addIssue({ code: "custom", message: "the path must be a database number, e.g. /0" });
  }
});

export const clusterSection = z.object({
  /** Where the shared view lives; LB_CLUSTER_REDIS (if set) is used when this is left out. */
  redis: redisUrlSchema.optional(),
  /** The key prefix: `lb:{name}:`. */
  name: nameSchema.default("default"),
  /** This instance's member id (default: host name and process id). */
  instance: nameSchema.optional(),
  /** How often this instance renews its member key. */
  heartbeat: duration.default("2s"),
  /** How long a member key lives without a heartbeat (then the instance is gone). */
  memberTtl: duration.default("6s"),
}).strict().superRefine((c, ctx) => {
  if (c.memberTtl <= c.heartbeat) {
    ctx.addIssue({
      code: "custom",
      path: ["memberTtl"],
      message: `must be longer than heartbeat (${c.heartbeat}ms)`,
    });
  }
});

export type ClusterConfig = z.infer<typeof clusterSection>;

/**
 * The Redis URL of a cluster: `cluster.redis`, else the LB_CLUSTER_REDIS environment variable
 * (so a password need not sit in lb.yaml). Throws one line when neither is usable.
 */
export function clusterRedisUrl(c: ClusterConfig): string {
  if (c.redis) return c.redis;
  let env: string | undefined;
  try {
    env = Deno.env.get("LB_CLUSTER_REDIS");
  } catch {
    env = undefined; // no --allow-env
  }
  if (!env) throw new Error("cluster.redis is not set and LB_CLUSTER_REDIS is empty");
  const r = redisUrlSchema.safeParse(env);
  if (!r.success) throw new Error(`LB_CLUSTER_REDIS ${r.error.issues[0].message}`);
  return env;
}
