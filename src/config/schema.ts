/**
 * The schema of lb.yaml: every key, its rule and its default. The rules for backends and
 * strategies come from backend.ts and strategy.ts, which the state file and the admin API
 * use too; durations and sizes from units.ts.
 */
import { z } from "zod";
import { parseCidr } from "../proxy/cidr.ts";
import { backendSchema } from "./backend.ts";
import { clusterSection } from "./cluster.ts";
import { backendListSchema, poolSchema, refineTopology } from "./pools.ts";
import { nameSchema, routeSchema } from "./routes.ts";
import { certFilesSchema, listenTlsSchema, upstreamTlsSchema } from "./tls.ts";
import { hashSchema, strategyNameSchema } from "./strategy.ts";
import { duration, size } from "./units.ts";
import {
  healthSection,
  outlierSection,
  retrySection,
  stickySection,
  timeoutsSection,
} from "./sections.ts";

const port = z.number().int().min(0).max(65535);
const host = z.string().min(1).regex(/^[A-Za-z0-9.:\[\]-]+$/, "must be a host name or IP address");

const cidr = z.string().superRefine((v, ctx) => {
  try {
    parseCidr(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
  }
});

const DEMO_BACKENDS = [9001, 9002, 9003].map((p) => ({ url: `http://127.0.0.1:${p}` }));

export const ConfigSchema = z.object({
  listen: z.object({
    host: host.default("127.0.0.1"),
    port: port.default(8000),
    /** HTTPS on this listener (see tls.ts); without it, plain HTTP. */
    tls: listenTlsSchema.optional(),
    /** A plaintext port on the same host that answers 308 to https (and ACME http-01). */
    redirectHttp: port.optional(),
  }).strict().superRefine((l, ctx) => {
    if (l.redirectHttp !== undefined && !l.tls) {
      ctx.addIssue({ code: "custom", path: ["redirectHttp"], message: "needs listen.tls" });
    }
  }).default({}),
  strategy: strategyNameSchema.default("round-robin"),
  hash: hashSchema,
  /** The servers of the one pool of a config without `pools` (default: the demo servers). */
  backends: backendListSchema.optional(),
  /** Named pools, each with its backends and any setting that differs from the top level. */
  pools: z.record(nameSchema, poolSchema).optional(),
  /** Which requests go to which pool: the first route that matches (see routes.ts). */
  routes: z.array(routeSchema).optional(),
  timeouts: timeoutsSection.default({}),
  health: healthSection.default({}),
  outlier: outlierSection.default({}),
  retry: retrySection.default({}),
  /** When every server is unavailable, try them all anyway (Envoy's panic mode). */
  panicMode: z.boolean().default(true),
  /** Cookie stickiness for every pool that does not set its own. */
  sticky: stickySection.optional(),
  /** TLS to https:// backends, for every pool (each may override any of it). */
  upstreamTls: upstreamTlsSchema.default({}),
  limits: z.object({
    maxBodyBytes: size.default("1GiB"),
    maxUriBytes: size.default("8KiB"),
    maxHeaderBytes: size.default("32KiB"),
    maxConnections: z.number().int().min(1).default(10_000),
    maxConnectionsPerClient: z.number().int().min(1).default(1000),
  }).strict().default({}),
  /** Request header names with `_`: dropped (nginx's default), kept, or refused with 400. */
  underscoreHeaders: z.enum(["drop", "keep", "reject"]).default("drop"),
  /** CIDRs whose X-Forwarded-* headers are trusted (empty: trust nobody). */
  trustedProxies: z.array(cidr).default([]),
  admin: z.object({
    enabled: z.boolean().default(true),
    host: host.default("127.0.0.1"),
    port: port.default(8001),
    token: z.string().min(16, "must be at least 16 characters").optional(),
    stateFile: z.string().optional(),
    /** HTTPS for the admin listener. */
    tls: certFilesSchema.optional(),
  }).strict().default({}),
  log: z.object({
    format: z.enum(["auto", "json", "text"]).default("auto"),
    access: z.boolean().default(true),
  }).strict().default({}),
  shutdownTimeout: duration.default("15s"),
  /** How long a WebSocket on a draining or removed server may stay open before lb closes it. */
  drainTimeout: duration.default("5m"),
  /** Instances sharing one view through Redis (see cluster.ts); without it, lb stands alone. */
  cluster: clusterSection.optional(),
}).strict().superRefine(refineTopology).transform((c) =>
  c.pools || c.backends ? c : { ...c, backends: DEMO_BACKENDS.map((b) => backendSchema.parse(b)) }
);

/** A validated config: every key present, durations in ms, sizes in bytes. */
export type Config = z.infer<typeof ConfigSchema>;
