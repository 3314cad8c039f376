/**
 * The one home of a backend's identity and of every rule about it: what a backend URL may
 * be, its origin, its id, its name, weight and connection cap. lb.yaml, the state file, the
 * admin API, reload and the server pool all use these, so they cannot drift apart.
 */
import { z } from "zod";

/** The schemes a backend URL may have, and the port each implies when the URL gives none. */
const DEFAULT_PORTS: Record<string, number> = { "http:": 80, "https:": 443 };

/**
 * Parses and checks a backend URL; throws a user-facing Error when it is not an http:// or
 * https:// origin.
 */
export function parseBackendUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`"${raw}" is not a URL (expected e.g. http://127.0.0.1:9001)`);
  }
  if (!(u.protocol in DEFAULT_PORTS)) {
    throw new Error(
      `"${raw}" must use http:// or https:// (lb speaks HTTP/1.1 to backends, over TLS for https)`,
    );
  }
  if (u.username || u.password || (u.pathname !== "/" && u.pathname !== "") || u.search || u.hash) {
    throw new Error(
      `"${raw}" must be an origin only, like http://host:port (no path, query or credentials)`,
    );
  }
  return u;
}

/** What identifies a backend: its id (unique in a pool), origin, and how to connect. */
export interface BackendIdentity {
  /** The configured name, else `host:port`. */
  id: string;
  /**
   * `http://host:port` or `https://host:port` as the URL parser normalises it (no path, no
   * trailing slash, no default port): the scheme is part of it, so the same host and port
   * over TLS and in plaintext are two backends.
   */
  origin: string;
  /** Host to connect to (an IPv6 literal without brackets). */
  hostname: string;
  /** The URL's port, else 80 for http and 443 for https. */
  port: number;
  /** An https:// backend: lb speaks TLS to it (with its pool's `upstreamTls`). */
  tls: boolean;
}

/** Identities already worked out, by URL: reloads and cluster views ask again for every backend. */
const known = new Map<string, Readonly<Omit<BackendIdentity, "id">> & { defaultId: string }>();
const KNOWN_MAX = 100_000;

/** The identity of a backend given by URL and optional name; throws like {@link parseBackendUrl}. */
export function backendIdentity(b: { url: string; name?: string }): BackendIdentity {
  let k = known.get(b.url);
  if (k === undefined) {
    const u = parseBackendUrl(b.url);
    const port = Number(u.port || DEFAULT_PORTS[u.protocol]);
    k = {
      defaultId: `${u.hostname}:${port}`,
      origin: `${u.protocol}//${u.host}`,
      hostname: u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname,
      port,
      tls: u.protocol === "https:",
    };
    if (known.size >= KNOWN_MAX) known.clear();
    known.set(b.url, k);
  }
  const { defaultId, origin, hostname, port, tls } = k;
  return { id: b.name ?? defaultId, origin, hostname, port, tls };
}

/** Whether `name` is what a server's id would default to for `origin` (so need not be stored). */
export function isDefaultId(origin: string, id: string): boolean {
  return backendIdentity({ url: origin }).id === id;
}

export const MIN_WEIGHT = 1;
export const MAX_WEIGHT = 1000;
const WEIGHT_RULE = `must be a whole number from ${MIN_WEIGHT} to ${MAX_WEIGHT}`;

/** A checked weight, or a user-facing Error. */
export function checkWeight(weight: number): number {
  if (!Number.isInteger(weight) || weight < MIN_WEIGHT || weight > MAX_WEIGHT) {
    throw new Error(`weight ${WEIGHT_RULE}, got ${weight}`);
  }
  return weight;
}

/** A field that must hold a value of its type: friendlier messages than zod's defaults. */
const typed = { required_error: "is required" };

export const backendUrlSchema = z.string({ ...typed, invalid_type_error: "must be a string" })
  .superRefine((v, ctx) => {
    try {
      parseBackendUrl(v);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
    }
  });

export const serverNameSchema = z.string({ ...typed, invalid_type_error: "must be a string" })
  .min(1, "must not be empty").max(100, "must be at most 100 characters")
  .regex(/^[A-Za-z0-9._:-]+$/, "may contain letters, digits and . _ : - only");

export const weightSchema = z.number({ ...typed, invalid_type_error: "must be a number" })
  .int(WEIGHT_RULE).min(MIN_WEIGHT, WEIGHT_RULE).max(MAX_WEIGHT, WEIGHT_RULE);

export const maxConnectionsSchema = z.number({ ...typed, invalid_type_error: "must be a number" })
  .int("must be a whole number ≥ 0 (0 = no limit)").min(
    0,
    "must be a whole number ≥ 0 (0 = no limit)",
  );

/** The admin states an operator sets (health and ejection are lb's own). */
export const adminStateSchema = z.enum(["enabled", "disabled", "draining"], {
  errorMap: () => ({ message: "must be draining, disabled or enabled" }),
});
export type AdminState = z.infer<typeof adminStateSchema>;

/** One backend as lb.yaml, the state file and the admin API describe it. */
export const backendSchema = z.object({
  url: backendUrlSchema,
  name: serverNameSchema.optional(),
  weight: weightSchema.default(1),
  maxConnections: maxConnectionsSchema.default(0),
}).strict();

/** A backend with its defaults filled in. */
export type BackendSpec = z.infer<typeof backendSchema>;
/** A backend as given, before defaults (what the API and tests pass to the pool). */
export type BackendInput = z.input<typeof backendSchema>;

/**
 * Adds an issue for every backend that repeats an earlier one's id or origin: the check a
 * list of backends needs wherever it comes from (lb.yaml, the state file over it).
 */
export function refineUniqueBackends(list: { url: string; name?: string }[], ctx: z.RefinementCtx) {
  const ids = new Set<string>();
  const origins = new Set<string>();
  list.forEach((b, i) => {
    let who: BackendIdentity;
    try {
      who = backendIdentity(b);
    } catch {
      return; // reported by the url field's own check
    }
    if (ids.has(who.id)) {
      ctx.addIssue({
        code: "custom",
        path: [i, "name"],
        message: `duplicate server id "${who.id}"`,
      });
    }
    if (origins.has(who.origin)) {
      ctx.addIssue({
        code: "custom",
        path: [i, "url"],
        message: `duplicate backend ${who.origin}`,
      });
    }
    ids.add(who.id);
    origins.add(who.origin);
  });
}
