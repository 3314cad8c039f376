/**
 * The server-state map: every backend lb knows, and the ONLY functions that change it.
 *
 * Who may call what (see ../shared/STYLE.md):
 * - health results (`recordHealth`): the active health loop (health.ts);
 * - membership, weight, enabled, draining (`addServer`, `removeServer`, `setWeight`,
 *   `setAdminState`): the admin API and config reload;
 * - in-flight, latency, request and error counts (`beginRequest`, `endRequest`,
 *   `eject`): the proxy path.
 * Strategies only read, through `isAvailable`.
 */
import { type Ewma, newEwma, observe } from "./ewma.ts";

/** What the admin API shows for a server. */
export type ServerStateName = "healthy" | "unhealthy" | "ejected" | "draining" | "disabled";

export interface HealthRecord {
  /** Result of the last active check; undefined before the first one. */
  ok?: boolean;
  /** Time of the last check (epoch ms); 0 before the first. */
  at: number;
  /** Status code or error message of the last check. */
  detail?: string;
  /** Consecutive successes and failures, for rise/fall. */
  successes: number;
  failures: number;
  /** Checks passed and failed since the server was added (for metrics). */
  passedTotal?: number;
  failedTotal?: number;
}

export interface Server {
  /** Configured name, else host:port. Unique in a pool. */
  readonly id: string;
  /** The backend's origin, e.g. `http://127.0.0.1:9001` (no path, no trailing slash). */
  readonly url: string;
  readonly hostname: string;
  readonly port: number;
  weight: number;
  /** Cleared by the admin API ("disabled"). */
  enabled: boolean;
  /** No new requests; in-flight ones finish. */
  draining: boolean;
  /** Result of active health checking after rise/fall. */
  healthy: boolean;
  /** Passive ejection: unavailable until this time (epoch ms). */
  ejectedUntil: number;
  /** How many times this server has been ejected (multiplies the ejection time). */
  ejections: number;
  /** Circuit breaker: at most this many requests in flight (0 = no limit). */
  maxConnections: number;
  inflight: number;
  requests: number;
  errors: number;
  /** Consecutive failures on real traffic, for outlier detection. */
  consecutiveFailures: number;
  latency: Ewma;
  health: HealthRecord;
  /** Set when removed from the pool, so late `endRequest` calls are harmless. */
  removed: boolean;
}

export interface ServerSpec {
  url: string;
  name?: string;
  weight?: number;
  maxConnections?: number;
}

export type PoolEvent =
  | { type: "membership" } // servers added, removed, or weights changed: rebuild tables
  | { type: "state"; server: Server; from: ServerStateName; to: ServerStateName; reason: string };

/** `available` in one place: healthy, enabled, not draining, not ejected, not full. */
export function isAvailable(s: Server, now: number): boolean {
  return s.enabled && !s.draining && s.healthy && s.ejectedUntil <= now &&
    (s.maxConnections === 0 || s.inflight < s.maxConnections);
}

/** The state name the admin API and metrics report. */
export function stateOf(s: Server, now: number): ServerStateName {
  if (!s.enabled) return "disabled";
  if (s.draining) return "draining";
  if (s.ejectedUntil > now) return "ejected";
  return s.healthy ? "healthy" : "unhealthy";
}

/** Parses and normalises a backend URL; throws a user-facing Error when it is not http(s). */
export function parseBackendUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`"${raw}" is not a URL (expected e.g. http://127.0.0.1:9001)`);
  }
  if (u.protocol !== "http:") {
    throw new Error(`"${raw}" must use http:// (lb speaks plain HTTP/1.1 to backends)`);
  }
  if (u.username || u.password || (u.pathname !== "/" && u.pathname !== "") || u.search || u.hash) {
    throw new Error(
      `"${raw}" must be an origin only, like http://host:port (no path, query or credentials)`,
    );
  }
  return u;
}

function defaultId(u: URL): string {
  return `${u.hostname}:${u.port || "80"}`;
}

/**
 * The pool of servers. `servers` is replaced (never mutated in place) when membership
 * changes, so a strategy iterating over it never sees it change under its feet.
 */
export class ServerPool {
  #servers: readonly Server[] = [];
  #listeners = new Set<(e: PoolEvent) => void>();
  /** Bumped on every membership or weight change. */
  version = 0;
  /** Decay constant for latency EWMAs (ms). */
  latencyTau: number;

  /** `healthy`: whether the initial servers start healthy (health.assumeHealthy). */
  constructor(specs: ServerSpec[] = [], opts: { latencyTau?: number; healthy?: boolean } = {}) {
    this.latencyTau = opts.latencyTau ?? 10_000;
    for (const s of specs) this.#add(s, opts.healthy ?? true);
  }

  get servers(): readonly Server[] {
    return this.#servers;
  }

  get(id: string): Server | undefined {
    return this.#servers.find((s) => s.id === id);
  }

  subscribe(fn: (e: PoolEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(e: PoolEvent): void {
    for (const fn of this.#listeners) fn(e);
  }

  #add(spec: ServerSpec, healthy: boolean): Server {
    const u = parseBackendUrl(spec.url);
    const url = `${u.protocol}//${u.host}`;
    const id = spec.name ?? defaultId(u);
    if (this.#servers.some((s) => s.id === id)) {
      throw new DuplicateServerError(`a server with id "${id}" exists`);
    }
    if (this.#servers.some((s) => s.url === url)) {
      throw new DuplicateServerError(`a server with url ${url} exists`);
    }
    const weight = spec.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1 || weight > 1000) {
      throw new Error(`weight must be a whole number from 1 to 1000, got ${weight}`);
    }
    const s: Server = {
      id,
      url,
      hostname: u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname,
      port: Number(u.port || 80),
      weight,
      enabled: true,
      draining: false,
      healthy,
      ejectedUntil: 0,
      ejections: 0,
      maxConnections: spec.maxConnections ?? 0,
      inflight: 0,
      requests: 0,
      errors: 0,
      consecutiveFailures: 0,
      latency: newEwma(),
      health: { at: 0, successes: 0, failures: 0 },
      removed: false,
    };
    this.#servers = [...this.#servers, s];
    return s;
  }

  // ---- admin API and config reload ----

  /** Adds a server; throws DuplicateServerError or Error (bad URL/weight). */
  addServer(spec: ServerSpec, opts: { healthy?: boolean } = {}): Server {
    const s = this.#add(spec, opts.healthy ?? true);
    this.version++;
    this.#emit({ type: "membership" });
    return s;
  }

  /** Removes a server at once (callers drain first when they want in-flight requests to finish). */
  removeServer(id: string): boolean {
    const s = this.get(id);
    if (!s) return false;
    s.removed = true;
    this.#servers = this.#servers.filter((x) => x !== s);
    this.version++;
    this.#emit({ type: "membership" });
    return true;
  }

  setWeight(s: Server, weight: number): void {
    if (!Number.isInteger(weight) || weight < 1 || weight > 1000) {
      throw new Error(`weight must be a whole number from 1 to 1000, got ${weight}`);
    }
    if (s.weight === weight) return;
    s.weight = weight;
    this.version++;
    this.#emit({ type: "membership" });
  }

  setMaxConnections(s: Server, n: number): void {
    s.maxConnections = n;
  }

  /** enabled / disabled / draining, as the admin API says. */
  setAdminState(s: Server, state: "enabled" | "disabled" | "draining", reason = "admin"): void {
    const now = Date.now();
    const from = stateOf(s, now);
    s.enabled = state !== "disabled";
    s.draining = state === "draining";
    const to = stateOf(s, now);
    if (from !== to) this.#emit({ type: "state", server: s, from, to, reason });
  }

  // ---- health loop ----

  /**
   * Records one active health-check result and applies rise/fall.
   * Returns true when the server's health changed.
   */
  recordHealth(
    s: Server,
    ok: boolean,
    detail: string,
    rise: number,
    fall: number,
    now = Date.now(),
  ): boolean {
    const h = s.health;
    h.ok = ok;
    h.at = now;
    h.detail = detail;
    if (ok) {
      h.successes++;
      h.failures = 0;
      h.passedTotal = (h.passedTotal ?? 0) + 1;
    } else {
      h.failures++;
      h.successes = 0;
      h.failedTotal = (h.failedTotal ?? 0) + 1;
    }
    const from = stateOf(s, now);
    let changed = false;
    if (!s.healthy && ok && h.successes >= rise) {
      s.healthy = true;
      changed = true;
    } else if (s.healthy && !ok && h.failures >= fall) {
      s.healthy = false;
      changed = true;
    }
    // Passing active checks bring an ejected server back early.
    if (ok && s.ejectedUntil > now && h.successes >= rise) {
      s.ejectedUntil = 0;
      s.consecutiveFailures = 0;
      changed = true;
    }
    const to = stateOf(s, now);
    if (from !== to) {
      this.#emit({ type: "state", server: s, from, to, reason: `health check: ${detail}` });
    }
    return changed;
  }

  // ---- proxy path ----

  beginRequest(s: Server): void {
    s.inflight++;
    s.requests++;
  }

  /** Ends a request: in-flight down, latency sample (ms) when the server answered. */
  endRequest(s: Server, ok: boolean, latencyMs: number | undefined, now: number): void {
    s.inflight--;
    if (latencyMs !== undefined) observe(s.latency, latencyMs, now, this.latencyTau);
    if (ok) {
      s.consecutiveFailures = 0;
    } else {
      s.errors++;
      s.consecutiveFailures++;
    }
  }

  /** Passive ejection (outlier detection) until `until` (epoch ms). */
  eject(s: Server, until: number, reason: string, now = Date.now()): void {
    const from = stateOf(s, now);
    s.ejectedUntil = until;
    s.ejections++;
    s.consecutiveFailures = 0;
    // Only checks that pass after the ejection may end it early (else a server that fails
    // real traffic but answers /health would be back on the very next check).
    s.health.successes = 0;
    const to = stateOf(s, now);
    if (from !== to) this.#emit({ type: "state", server: s, from, to, reason });
  }
}

export class DuplicateServerError extends Error {}
