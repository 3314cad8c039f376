/**
 * lb.yaml → a validated Config: schema, defaults, and errors named by field path.
 */
import YAML from "yaml";
import { z } from "zod";
import { parseCidr } from "../proxy/cidr.ts";
import { parseBackendUrl } from "../balancing/pool.ts";
import { STRATEGY_NAMES } from "../balancing/strategies/registry.ts";
import { DEFAULT_CONFIG_YAML } from "./default_config.ts";

/**
 * The longest duration lb accepts: timers take a signed 32-bit number of ms, and a longer
 * one fires after 1 ms instead (a 30-day header timeout would time out every request).
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Parses `250ms`, `2s`, `1.5m`, `1h` or a bare number of milliseconds. */
export function parseDuration(v: string | number): number {
  let ms: number;
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0) throw new Error(`must be a duration ≥ 0 like 250ms or 2s`);
    ms = v;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
    if (!m) throw new Error(`"${v}" is not a duration (use e.g. 250ms, 2s, 1m)`);
    const n = Number(m[1]);
    const unit = m[2] ?? "ms";
    ms = n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
  }
  if (ms > MAX_DURATION_MS) throw new Error(`"${v}" is too long: durations go up to 596h`);
  return ms;
}

/** Parses `64KiB`, `1MiB`, `2GiB`, `100KB`, `512B` or a bare number of bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 0) throw new Error(`must be a whole number of bytes ≥ 0`);
    return v;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(v);
  if (!m) throw new Error(`"${v}" is not a size (use e.g. 64KiB, 1MiB)`);
  const units: Record<string, number> = {
    b: 1,
    kb: 1000,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
  };
  return Math.floor(Number(m[1]) * units[(m[2] ?? "b").toLowerCase()]);
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
    return z.NEVER;
  }
});

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
    return z.NEVER;
  }
});

const port = z.number().int().min(0).max(65535);
const host = z.string().min(1).regex(/^[A-Za-z0-9.:\[\]-]+$/, "must be a host name or IP address");

const backendUrl = z.string().superRefine((v, ctx) => {
  try {
    parseBackendUrl(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
  }
});

const backend = z.object({
  url: backendUrl,
  name: z.string().min(1).max(100).regex(
    /^[A-Za-z0-9._:-]+$/,
    "may contain letters, digits and . _ : - only",
  )
    .optional(),
  weight: z.number().int().min(1).max(1000).default(1),
  maxConnections: z.number().int().min(0).default(0),
}).strict();

/** "200-399", "200", or a list of either: the statuses a health check accepts. */
const statusRanges = z.union([z.string(), z.number(), z.array(z.union([z.string(), z.number()]))])
  .transform((v, ctx) => {
    const parts = Array.isArray(v) ? v : String(v).split(",");
    const out: [number, number][] = [];
    for (const p of parts) {
      const m = /^\s*(\d{3})\s*(?:-\s*(\d{3}))?\s*$/.exec(String(p));
      if (
        !m || Number(m[1]) < 100 || Number(m[2] ?? m[1]) > 599 ||
        Number(m[2] ?? m[1]) < Number(m[1])
      ) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: `"${p}" is not a status or range like 200-399`,
        });
        return z.NEVER;
      }
      out.push([Number(m[1]), Number(m[2] ?? m[1])]);
    }
    return out;
  });

export const ConfigSchema = z.object({
  listen: z.object({
    host: host.default("127.0.0.1"),
    port: port.default(8000),
  }).strict().default({}),
  strategy: z.string().refine((s) => STRATEGY_NAMES.includes(s), {
    message: `must be one of: ${STRATEGY_NAMES.join(", ")}`,
  }).default("round-robin"),
  hash: z.object({
    key: z.string().regex(/^(ip|path|(header|cookie|query):[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/, {
      message: "must be ip, path, header:NAME, cookie:NAME or query:NAME",
    }).default("ip"),
    balanceFactor: z.number().refine(
      (n) => n === 0 || n > 1,
      "must be 0 (off) or greater than 1, like 1.25",
    )
      .default(0),
    vnodes: z.number().int().min(1).max(10_000).default(160),
    tableSize: z.number().int().min(7).max(1_000_003).default(65537),
  }).strict().default({}),
  backends: z.array(backend).min(1, "needs at least one backend").superRefine((list, ctx) => {
    const ids = new Map<string, number>();
    const urls = new Map<string, number>();
    list.forEach((b, i) => {
      let u: URL;
      try {
        u = new URL(b.url);
      } catch {
        return; // reported by the url field's own check
      }
      const id = b.name ?? `${u.hostname}:${u.port || "80"}`;
      const origin = `${u.protocol}//${u.host}`;
      if (ids.has(id)) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [i, "name"],
          message: `duplicate server id "${id}"`,
        });
      }
      if (urls.has(origin)) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [i, "url"],
          message: `duplicate backend ${origin}`,
        });
      }
      ids.set(id, i);
      urls.set(origin, i);
    });
  }).default([
    { url: "http://127.0.0.1:9001" },
    { url: "http://127.0.0.1:9002" },
    { url: "http://127.0.0.1:9003" },
  ]),
  timeouts: z.object({
    /** Time to wait for the backend's response headers (time to first byte). */
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
  /** CIDRs whose X-Forwarded-* headers are trusted (empty: trust nobody). */
  trustedProxies: z.array(
    z.string().superRefine((v, ctx) => {
      try {
        parseCidr(v);
      } catch (e) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      }
    }),
  ).default([]),
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

export type Config = z.infer<typeof ConfigSchema>;
export type BackendConfig = Config["backends"][number];

/** A config that could not be loaded: every problem, one per line, ready to print. */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    // One problem fits on one line; several get one line each.
    super(
      problems.length === 1
        ? `${source}: ${problems[0]}`
        : `${source}: ${problems.length} problems:\n  ${problems.join("\n  ")}`,
    );
  }
}

function formatPath(path: (string | number)[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${p}` : p;
  return out || "(top level)";
}

/** Validates an already-parsed object. */
export function validateConfig(raw: unknown, source = "config"): Config {
  const r = ConfigSchema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === "unrecognized_keys") {
      const where = i.path.length ? `${formatPath(i.path)}: ` : "";
      return `${where}unknown key${i.keys.length > 1 ? "s" : ""} ${
        i.keys.map((k) => `"${k}"`).join(", ")
      }`;
    }
    // Messages may quote the offending value: keep a pasted blob from flooding the terminal.
    const msg = i.message.length > 200 ? `${i.message.slice(0, 200)}…` : i.message;
    return `${formatPath(i.path)}: ${msg}`;
  });
  throw new ConfigError(source, problems);
}

/** Parses YAML text into a Config; YAML syntax errors name line and column. */
export function parseConfig(text: string, source = "config"): Config {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+.*$/, "");
        return pos ? `line ${pos.line}, column ${pos.col}: ${msg}` : msg;
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // e.g. a "billion laughs" alias bomb: yaml refuses to expand it.
    throw new ConfigError(source, [`the YAML cannot be expanded: ${(e as Error).message}`]);
  }
  if (raw !== null && raw !== undefined && (typeof raw !== "object" || Array.isArray(raw))) {
    throw new ConfigError(source, ["the file must be a YAML mapping (key: value lines)"]);
  }
  return validateConfig(raw, source);
}

/**
 * Loads the config: `path` if given (must exist), else ./lb.yaml when present,
 * else the embedded default. Returns the config and where it came from.
 */
export async function loadConfig(path?: string): Promise<{ config: Config; source: string }> {
  const file = path ?? "lb.yaml";
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (path === undefined && e instanceof Deno.errors.NotFound) {
      return {
        config: parseConfig(DEFAULT_CONFIG_YAML, "built-in defaults"),
        source: "built-in defaults",
      };
    }
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : (e as Error).message;
    throw new ConfigError(file, [`cannot read the config file: ${why}`]);
  }
  return { config: parseConfig(text, file), source: file };
}

/** Command-line overrides, applied over the file (flags win). */
export interface ConfigOverrides {
  strategy?: string;
  host?: string;
  port?: number;
  backends?: string[];
  adminPort?: number;
  logFormat?: "json" | "text";
}

/** Applies overrides and re-validates, so a bad flag value is reported like a bad file value. */
export function applyOverrides(
  config: Config,
  o: ConfigOverrides,
  source = "command line",
): Config {
  const raw = structuredClone(config) as Record<string, unknown> & Config;
  const out: Record<string, unknown> = {
    ...raw,
    timeouts: undefined,
    health: undefined,
    outlier: undefined,
    retry: undefined,
    shutdownTimeout: config.shutdownTimeout,
  };
  // Re-validation needs the raw (unparsed) forms of transformed fields; durations in ms and
  // sizes in bytes are valid raw inputs too, and status ranges are re-expressed as strings.
  out.timeouts = config.timeouts;
  out.health = {
    ...config.health,
    expectStatus: config.health.expectStatus.map(([a, b]) => `${a}-${b}`),
  };
  out.outlier = config.outlier;
  out.retry = config.retry;
  if (o.strategy !== undefined) out.strategy = o.strategy;
  if (o.host !== undefined || o.port !== undefined) {
    out.listen = {
      ...config.listen,
      ...(o.host !== undefined && { host: o.host }),
      ...(o.port !== undefined && { port: o.port }),
    };
  }
  if (o.backends !== undefined) out.backends = o.backends.map((url) => ({ url }));
  if (o.adminPort !== undefined) out.admin = { ...config.admin, port: o.adminPort };
  if (o.logFormat !== undefined) out.log = { ...config.log, format: o.logFormat };
  return validateConfig(out, source);
}
