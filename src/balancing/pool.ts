/**
 * The server-state map: every backend lb knows, and the ONLY functions that change it.
 * Everything else holds a read-only {@link Server} (server.ts), so `deno check` refuses a
 * write from anywhere but here.
 *
 * Who may call what:
 * - health results (`recordHealth`): the active health loop (health.ts);
 * - membership, weight, caps, enabled, draining (`addServer`, `removeServer`, `setWeight`,
 *   `setMaxConnections`, `setAdminState`): the control module (control/control.ts), for
 *   the admin API and config reload;
 * - in-flight, latency, request and error counts, ejection (`beginRequest`, `endRequest`,
 *   `eject`): the try stage of the request path, through its report.
 * Strategies only read, through the rules in availability.ts.
 */
import { backendIdentity, type BackendInput, checkWeight } from "../config/backend.ts";
import { stateOf } from "./availability.ts";
import { type Ewma, newEwma, observe } from "./ewma.ts";
import type { HealthRecord, Server, ServerStateName } from "./server.ts";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** The pool's own, writable form of a server. */
interface ServerState extends Mutable<Omit<Server, "latency" | "health">> {
  latency: Ewma;
  health: Mutable<HealthRecord>;
}
/** Every Server was made by a pool as a ServerState; only this module may write to it. */
const own = (s: Server) => s as ServerState;

export type PoolEvent =
  | { type: "membership" } // servers added, removed, or weights changed: rebuild tables
  | { type: "state"; server: Server; from: ServerStateName; to: ServerStateName; reason: string };

/** A server with that id or origin is already in the pool. */
export class DuplicateServerError extends Error {}

/**
 * The pool of servers. `servers` is replaced (never mutated in place) when membership
 * changes, so a strategy iterating over it never sees it change under its feet.
 */
export class ServerPool {
  #servers: readonly ServerState[] = [];
  /** The same servers by id and by origin, so lookups stay O(1) in pools of thousands. */
  #byId = new Map<string, ServerState>();
  #byOrigin = new Set<string>();
  #listeners = new Set<(e: PoolEvent) => void>();
  /** Decay constant for latency EWMAs (ms). */
  readonly latencyTau: number;

  /** `healthy`: whether the initial servers start healthy (health.assumeHealthy). */
  constructor(specs: BackendInput[] = [], opts: { latencyTau?: number; healthy?: boolean } = {}) {
    this.latencyTau = opts.latencyTau ?? 10_000;
    this.#servers = specs.map((s) => this.#create(s, opts.healthy ?? true));
  }

  get servers(): readonly Server[] {
    return this.#servers;
  }

  get(id: string): Server | undefined {
    return this.#byId.get(id);
  }

  subscribe(fn: (e: PoolEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(e: PoolEvent): void {
    for (const fn of this.#listeners) fn(e);
  }

  /** Emits a state event when `change` moved `s` to another state name. */
  #transition(s: ServerState, reason: string, now: number, change: () => void): void {
    const from = stateOf(s, now);
    change();
    const to = stateOf(s, now);
    if (from !== to) this.#emit({ type: "state", server: s, from, to, reason });
  }

  /** A new server's state, registered by id and origin (not yet in `servers`). */
  #create(spec: BackendInput, healthy: boolean): ServerState {
    const who = backendIdentity(spec);
    if (this.#byId.has(who.id)) {
      throw new DuplicateServerError(`a server with id "${who.id}" exists`);
    }
    if (this.#byOrigin.has(who.origin)) {
      throw new DuplicateServerError(`a server with url ${who.origin} exists`);
    }
    const s: ServerState = {
      id: who.id,
      url: who.origin,
      hostname: who.hostname,
      port: who.port,
      tls: who.tls,
      weight: checkWeight(spec.weight ?? 1),
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
      health: { at: 0, successes: 0, failures: 0, passedTotal: 0, failedTotal: 0 },
      removed: false,
    };
    this.#byId.set(s.id, s);
    this.#byOrigin.add(s.url);
    return s;
  }

  // ---- control: admin API and config reload ----

  /** Adds a server; throws DuplicateServerError, or Error for a bad URL or weight. */
  addServer(spec: BackendInput, opts: { healthy?: boolean } = {}): Server {
    const s = this.#create(spec, opts.healthy ?? true);
    this.#servers = [...this.#servers, s];
    this.#emit({ type: "membership" });
    return s;
  }

  /** Removes a server at once (callers drain first when they want in-flight requests to finish). */
  removeServer(id: string): boolean {
    const s = this.#byId.get(id);
    if (!s) return false;
    s.removed = true;
    this.#byId.delete(id);
    this.#byOrigin.delete(s.url);
    this.#servers = this.#servers.filter((x) => x !== s);
    this.#emit({ type: "membership" });
    return true;
  }

  /** Changes a weight; throws a user-facing Error for a bad one. */
  setWeight(s: Server, weight: number): void {
    checkWeight(weight);
    if (s.weight === weight) return;
    own(s).weight = weight;
    this.#emit({ type: "membership" });
  }

  setMaxConnections(s: Server, n: number): void {
    own(s).maxConnections = n;
  }

  /** enabled / disabled / draining, as the admin API says. */
  setAdminState(s: Server, state: "enabled" | "disabled" | "draining", reason = "admin"): void {
    const m = own(s);
    this.#transition(m, reason, Date.now(), () => {
      m.enabled = state !== "disabled";
      m.draining = state === "draining";
    });
  }

  // ---- the health loop ----

  /**
   * Records one active health-check result and applies rise/fall; passing checks also end
   * an ejection early. Returns true when the server's availability changed.
   */
  recordHealth(
    s: Server,
    ok: boolean,
    detail: string,
    rise: number,
    fall: number,
    now = Date.now(),
  ): boolean {
    const m = own(s);
    const h = m.health;
    h.ok = ok;
    h.at = now;
    h.detail = detail;
    if (ok) {
      h.successes++;
      h.failures = 0;
      h.passedTotal++;
    } else {
      h.failures++;
      h.successes = 0;
      h.failedTotal++;
    }
    let changed = false;
    this.#transition(m, `health check: ${detail}`, now, () => {
      if (m.healthy !== ok && (ok ? h.successes >= rise : h.failures >= fall)) {
        m.healthy = ok;
        changed = true;
      }
      if (ok && m.ejectedUntil > now && h.successes >= rise) {
        m.ejectedUntil = 0;
        m.consecutiveFailures = 0;
        changed = true;
      }
    });
    return changed;
  }

  // ---- the request path (the try stage's report) ----

  beginRequest(s: Server): void {
    const m = own(s);
    m.inflight++;
    m.requests++;
  }

  /** Ends a request: in-flight down, latency sample (ms) when the server answered. */
  endRequest(s: Server, ok: boolean, latencyMs: number | undefined, now: number): void {
    const m = own(s);
    m.inflight--;
    if (latencyMs !== undefined) observe(m.latency, latencyMs, now, this.latencyTau);
    if (ok) m.consecutiveFailures = 0;
    else {
      m.errors++;
      m.consecutiveFailures++;
    }
  }

  /** Passive ejection (outlier detection) until `until` (epoch ms). */
  eject(s: Server, until: number, reason: string, now = Date.now()): void {
    const m = own(s);
    this.#transition(m, reason, now, () => {
      m.ejectedUntil = until;
      m.ejections++;
      m.consecutiveFailures = 0;
      // Only checks that pass after the ejection may end it early (else a server that
      // fails real traffic but answers /health would be back on the very next check).
      m.health.successes = 0;
    });
  }
}
