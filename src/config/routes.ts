/**
 * The rules of `routes:` in lb.yaml: what a route matches (host, path prefix, method,
 * headers), the pool it sends to, and what it changes on the way (prefix stripping, header
 * rules, a rate limit). The router (routing/router.ts) compiles these; `lb check` and
 * `lb route` explain them.
 */
import { z } from "zod";
import { duration } from "./units.ts";

/**
 * Pool names and header names are keys of objects in lb.yaml. zod checks a key named
 * `__proto__` and then leaves it out of the object it returns, so a pool or a header
 * condition of that name would vanish without a word: it is refused instead.
 */
const notProto = [(s: string) => s !== "__proto__", "is reserved (use another name)"] as const;

/** Names of pools and routes: they appear in metrics labels, URLs and logs. */
export const nameSchema = z.string({ invalid_type_error: "must be a string" })
  .regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 letters, digits, . _ or -")
  .refine(...notProto);

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/** An HTTP field name (RFC 9110 token), lower-cased. */
export const headerNameSchema = z.string().regex(TOKEN, "must be a header name (a token)")
  .transform((s) => s.toLowerCase()).refine(...notProto);

/**
 * Header names a rule may not set or remove: they frame the message or belong to the
 * connection, so changing them would let a route desynchronise lb and a backend.
 */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "content-length",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "keep-alive",
  "proxy-connection",
  "http2-settings",
]);

const ruleHeaderName = headerNameSchema.refine((n) => !FRAMING_HEADERS.has(n), {
  message: "frames the message or the connection; a route may not change it",
});

const headerValue = z.string({ invalid_type_error: "must be a string" }).max(8192)
  .regex(/^[^\r\n\0]*$/, "must not contain CR, LF or NUL");

/** `{ set: { name: value }, remove: [name] }` for one direction. */
const headerRulesSchema = z.object({
  set: z.record(ruleHeaderName, headerValue).default({}),
  remove: z.array(ruleHeaderName).default([]),
}).strict();

export type HeaderRules = z.infer<typeof headerRulesSchema>;

/** `example.com` or `*.example.com`, lower-cased; the request's port is ignored. */
export const hostPatternSchema = z.string({ invalid_type_error: "must be a string" })
  .transform((s) => s.toLowerCase().replace(/\.$/, ""))
  .refine(
    (s) => /^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/.test(s),
    {
      message: "must be a host name like api.example.com or *.example.com (no port, no scheme)",
    },
  );

/** A path prefix: starts with `/`, no query, no `..` or `.` segments. */
export const pathPrefixSchema = z.string({ invalid_type_error: "must be a string" })
  .refine((s) => s.startsWith("/"), "must start with /")
  .refine((s) => !/[?#\s]/.test(s), "must be a path only (no query, fragment or spaces)")
  .refine((s) => !/(^|\/)\.\.?(\/|$)/.test(s), "must not contain . or .. segments");

const methodSchema = z.string().regex(/^[A-Z]{1,20}$/, "must be an upper-case method like GET");

/**
 * A header match: an exact value, or `/regex/` (flags after the last slash, e.g. `/^a/i`).
 * Kept as written; the router compiles it.
 */
const headerMatchSchema = z.string({ invalid_type_error: "must be a string" }).max(8192)
  .regex(/^[^\r\n\0]*$/, "must not contain CR, LF or NUL (no header value does)").superRefine(
    (v, ctx) => {
      const re = regexOf(v);
      if (re instanceof Error) ctx.addIssue({ code: "custom", message: re.message });
    },
  );

/** The RegExp a header match written as `/…/flags` stands for; undefined for an exact value. */
export function regexOf(v: string): RegExp | undefined | Error {
  const m = /^\/(.*)\/([a-z]*)$/s.exec(v);
  if (!m) return undefined;
  try {
    return new RegExp(m[1], m[2]);
  } catch (e) {
    return new Error(`is not a valid regular expression: ${(e as Error).message}`);
  }
}

const oneOrMore = <T extends z.ZodTypeAny>(t: T) =>
  z.union([t, z.array(t).min(1, "must name at least one")], {
    errorMap: () => ({ message: "must be a string or a list of strings" }),
  }).transform((v) => (Array.isArray(v) ? v : [v]) as z.output<T>[]);

export const matchSchema = z.object({
  host: oneOrMore(hostPatternSchema).optional(),
  path: pathPrefixSchema.optional(),
  method: oneOrMore(methodSchema).optional(),
  headers: z.record(headerNameSchema, headerMatchSchema).optional(),
}).strict();

export type RouteMatch = z.infer<typeof matchSchema>;

/** `key: ip | route | header:NAME`. */
const limitKeySchema = z.string().regex(
  /^(ip|route|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/,
  "must be ip, route or header:NAME",
).transform((s) => (s.startsWith("header:") ? `header:${s.slice(7).toLowerCase()}` : s));

export const rateLimitSchema = z.object({
  /** Requests allowed per `per`, on average. */
  rate: z.number().int().min(1).max(1_000_000),
  per: duration.refine((n) => n >= 1, "must be at least 1ms").default("1s"),
  /** Requests allowed at once after a quiet spell (the bucket's size). Default: rate. */
  burst: z.number().int().min(1).max(10_000_000).optional(),
  key: limitKeySchema.default("ip"),
  /** Buckets kept at most; past it the oldest are dropped (memory stays bounded). */
  maxKeys: z.number().int().min(1).max(10_000_000).default(100_000),
  /**
   * Keep the buckets in the cluster's Redis, so all instances share one budget (one Redis
   * call per request); while Redis is away or slow each instance uses its own bucket.
   * Without a cluster the limit is per instance, as with false.
   */
  shared: z.boolean().default(false),
}).strict().transform((r) => ({ ...r, burst: r.burst ?? r.rate }));

export type RateLimitConfig = z.infer<typeof rateLimitSchema>;

export const routeSchema = z.object({
  /** For metrics, logs and `lb route`; default `route-N` (N counts from 1). */
  name: nameSchema.optional(),
  /** Every given condition must hold; no `match` matches every request. */
  match: matchSchema.optional(),
  pool: nameSchema,
  /** Remove `match.path` from the path the backend sees (the query is kept). */
  stripPrefix: z.boolean().default(false),
  headers: z.object({
    request: headerRulesSchema.optional(),
    response: headerRulesSchema.optional(),
  }).strict().optional(),
  rateLimit: rateLimitSchema.optional(),
  /**
   * The Origins a WebSocket upgrade on this route may come from (`https://app.example.com`);
   * default: any. Browsers send Origin on every WebSocket, so this stops other sites' pages.
   */
  websocketOrigins: z.array(
    z.string().regex(/^https?:\/\/[^\s/]+$/, "must be an origin like https://app.example.com"),
  ).min(1).optional(),
}).strict().superRefine((r, ctx) => {
  if (r.stripPrefix && !r.match?.path) {
    ctx.addIssue({ code: "custom", path: ["stripPrefix"], message: "needs match.path" });
  }
});

export type RouteInput = z.infer<typeof routeSchema>;

/** A route with its name and defaults filled in: what the router compiles. */
export interface RouteConfig {
  name: string;
  match: RouteMatch;
  pool: string;
  stripPrefix: boolean;
  headers: { request: HeaderRules; response: HeaderRules };
  rateLimit?: RateLimitConfig;
  websocketOrigins?: string[];
}

const NO_RULES: HeaderRules = { set: {}, remove: [] };

/** Fills in names (`route-N`) and empty rules. */
export function resolveRoute(r: RouteInput, i: number): RouteConfig {
  return {
    name: r.name ?? `route-${i + 1}`,
    match: r.match ?? {},
    pool: r.pool,
    stripPrefix: r.stripPrefix,
    headers: {
      request: r.headers?.request ?? NO_RULES,
      response: r.headers?.response ?? NO_RULES,
    },
    ...(r.rateLimit && { rateLimit: r.rateLimit }),
    ...(r.websocketOrigins && { websocketOrigins: r.websocketOrigins }),
  };
}
