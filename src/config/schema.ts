/**
 * The schema of lb.yaml: every key, its rule and its default. The rules for backends and
 * strategies come from backend.ts and strategy.ts, which the state file and the admin API
 * use too; durations and sizes from units.ts.
 */
import { z } from "zod";
import { parseCidr } from "../proxy/cidr.ts";
import { backendSchema, refineUniqueBackends } from "./backend.ts";
import { hashSchema, strategyNameSchema } from "./strategy.ts";
import { duration, size } from "./units.ts";

const port = z.number().int().min(0).max(65535);
const host = z.string().min(1).regex(/^[A-Za-z0-9.:\[\]-]+$/, "must be a host name or IP address");

/** "200-399", "200", or a list of either: the statuses a health check accepts. */
const statusRanges = z.union([z.string(), z.number(), z.array(z.union([z.string(), z.number()]))])
  .transform((v, ctx) => {
    const parts = Array.isArray(v) ? v : String(v).split(",");
    const out: [number, number][] = [];
    for (const p of parts) {
      const m = /^\s*(\d{3})\s*(?:-\s*(\d{3}))?\s*$/.exec(String(p));
      const [a, b] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [0, 0];
      if (!m || a < 100 || b > 599 || b < a) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `"${p}" is not a status or range like 200-399`,
        });
        return z.NEVER;
      }
      out.push([a, b]);
    }
    return out;
  });

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
  }).strict().default({}),
  strategy: strategyNameSchema.default("round-robin"),
  hash: hashSchema,
  backends: z.array(backendSchema).min(1, "needs at least one backend")
    .superRefine(refineUniqueBackends).default(DEMO_BACKENDS),
  timeouts: z.object({
    /** Time to wait for the backend's response headers once the request is sent. */
    header: duration.default("30s"),
    /** Time to establish a new connection to a backend. */
    connect: duration.default("5s"),
    /** Longest gap between two body chunks, either direction. */
    idle: duration.default("60s"),
    /** The whole request including retries (0 = no overall deadline). */
    request: duration.default("0"),
    /** Idle pooled upstream connections are closed after this; keep it below backends' keep-alive timeout. */
    upstreamIdle: duration.default("4s"),
  }).strict().default({}),
  health: z.object({
    enabled: z.boolean().default(true),
    path: z.string().startsWith("/").default("/health"),
    interval: duration.refine((n) => n >= 10, "must be at least 10ms").default("2s"),
    timeout: duration.refine((n) => n >= 1, "must be at least 1ms").default("1s"),
    expectStatus: statusRanges.default("200-399"),
    rise: z.number().int().min(1).max(100).default(2),
    fall: z.number().int().min(1).max(100).default(3),
    assumeHealthy: z.boolean().default(true),
  }).strict().default({}),
  outlier: z.object({
    enabled: z.boolean().default(true),
    consecutive: z.number().int().min(1).default(5),
    on5xx: z.boolean().default(false),
    baseEjection: duration.default("30s"),
    maxEjection: duration.default("300s"),
    maxEjectionPercent: z.number().min(0).max(100).default(50),
  }).strict().default({}),
  retry: z.object({
    attempts: z.number().int().min(1).max(10).default(3),
    on: z.array(z.number().int().min(500).max(599)).default([502, 503, 504]),
    backoffBase: duration.default("25ms"),
    backoffMax: duration.default("250ms"),
    budgetPercent: z.number().min(0).max(100).default(20),
    minConcurrent: z.number().int().min(0).default(3),
    bufferLimit: size.default("64KiB"),
  }).strict().default({}),
  /** When every server is unavailable, try them all anyway (Envoy's panic mode). */
  panicMode: z.boolean().default(true),
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
  }).strict().default({}),
  log: z.object({
    format: z.enum(["auto", "json", "text"]).default("auto"),
    access: z.boolean().default(true),
  }).strict().default({}),
  shutdownTimeout: duration.default("15s"),
}).strict();

/** A validated config: every key present, durations in ms, sizes in bytes. */
export type Config = z.infer<typeof ConfigSchema>;
