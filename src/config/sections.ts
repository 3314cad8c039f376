/**
 * The per-pool sections of lb.yaml: timeouts, health checks, outlier detection, retries and
 * sticky cookies. At the top level they hold every key with its default; inside a pool
 * (pools.ts) any subset, over the top level's.
 */
import { z } from "zod";
import { duration, size } from "./units.ts";

/** "200-399", "200", or a list of either: the statuses a health check accepts. */
export const statusRanges = z.union([
  z.string(),
  z.number(),
  z.array(z.union([z.string(), z.number()])),
])
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

export const timeoutsSection = z.object({
  /** Time to wait for the backend's response headers once the request is sent. */
  header: duration.default("30s"),
  /** Time to establish a new connection to a backend. */
  connect: duration.default("5s"),
  /** Longest gap between two body chunks, either direction. */
  idle: duration.default("60s"),
  /** The whole request including retries (0 = no overall deadline). */
  request: duration.default("0"),
  /** A WebSocket with no message either way for this long is closed (0 = never). */
  websocketIdle: duration.default("0"),
  /** A WebSocket open this long is closed (0 = no limit). */
  websocketMax: duration.default("0"),
  /** Idle pooled upstream connections are closed after this; keep it below backends' keep-alive timeout. */
  upstreamIdle: duration.default("4s"),
}).strict();

export const healthSection = z.object({
  enabled: z.boolean().default(true),
  path: z.string().startsWith("/").default("/health"),
  interval: duration.refine((n) => n >= 10, "must be at least 10ms").default("2s"),
  timeout: duration.refine((n) => n >= 1, "must be at least 1ms").default("1s"),
  expectStatus: statusRanges.default("200-399"),
  rise: z.number().int().min(1).max(100).default(2),
  fall: z.number().int().min(1).max(100).default(3),
  assumeHealthy: z.boolean().default(true),
}).strict();

export const outlierSection = z.object({
  enabled: z.boolean().default(true),
  consecutive: z.number().int().min(1).default(5),
  on5xx: z.boolean().default(false),
  baseEjection: duration.default("30s"),
  maxEjection: duration.default("300s"),
  maxEjectionPercent: z.number().min(0).max(100).default(50),
}).strict();

export const retrySection = z.object({
  attempts: z.number().int().min(1).max(10).default(3),
  on: z.array(z.number().int().min(500).max(599)).default([502, 503, 504]),
  backoffBase: duration.default("25ms"),
  backoffMax: duration.default("250ms"),
  budgetPercent: z.number().min(0).max(100).default(20),
  minConcurrent: z.number().int().min(0).default(3),
  bufferLimit: size.default("64KiB"),
}).strict();

/** `sticky:` cookie-based stickiness: which server a client had is kept in a signed cookie. */
export const stickySection = z.object({
  /** The cookie's name. */
  cookie: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, "must be a cookie name (a token)"),
  /** HMAC key for the cookie's value; default: one generated and kept in the state file. */
  secret: z.string().min(16, "must be at least 16 characters").optional(),
}).strict();

export type StickyConfig = z.infer<typeof stickySection>;
