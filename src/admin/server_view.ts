/** How the admin API, /events and the dashboard show a server: plain JSON, times as ISO text. */
import { stateOf } from "../balancing/availability.ts";
import type { Server, ServerStateName } from "../balancing/server.ts";
import type { CertInfo } from "../tls/cert_info.ts";
import type { ServerCounters } from "../workers/hub.ts";

export interface ServerView {
  pool: string;
  id: string;
  url: string;
  weight: number;
  state: ServerStateName;
  /** True while a removed server drains before it goes. */
  removing: boolean;
  inflight: number;
  maxConnections: number;
  requests: number;
  /** Tries that failed (connection errors, timeouts, cut responses). */
  errors: number;
  /** 5xx answers the server sent. */
  responses5xx: number;
  latencyEwmaMs: number;
  ejections: number;
  ejectedUntil: string | null;
  lastHealth: { ok: boolean | null; at: string | null; detail: string | null };
}

/** What a view needs besides the server itself. */
export interface ViewSources {
  /** Whether the server has been removed and is draining. */
  removing(s: Server): boolean;
  /** 5xx answers the server of `pool` has sent (the metrics count them). */
  responses5xx(pool: string, s: Server): number;
  /** The same server's counters in the other `--workers` processes, summed. */
  others?(pool: string, s: Server): ServerCounters | undefined;
}

/** The JSON view of `s`, a server of `pool`, at `now`. */
export function serverView(
  pool: string,
  s: Server,
  from: ViewSources,
  now = Date.now(),
): ServerView {
  const o = from.others?.(pool, s);
  return {
    pool,
    id: s.id,
    url: s.url,
    weight: s.weight,
    state: stateOf(s, now),
    removing: from.removing(s),
    inflight: s.inflight + (o?.inflight ?? 0),
    maxConnections: s.maxConnections,
    requests: s.requests + (o?.requests ?? 0),
    errors: s.errors + (o?.errors ?? 0),
    responses5xx: from.responses5xx(pool, s) + (o?.responses5xx ?? 0),
    latencyEwmaMs: Math.round(s.latency.value * 100) / 100,
    ejections: s.ejections,
    ejectedUntil: s.ejectedUntil > now ? new Date(s.ejectedUntil).toISOString() : null,
    lastHealth: {
      ok: s.health.ok ?? null,
      at: s.health.at ? new Date(s.health.at).toISOString() : null,
      detail: s.health.detail ?? null,
    },
  };
}

/** A listener's certificate as the API, /events and the dashboard show it. */
export interface CertificateView {
  listener: string;
  subject: string;
  names: string[];
  issuer: string;
  notBefore: string;
  notAfter: string;
  daysLeft: number;
}

/** Every listener's certificate, for JSON. */
export function certificateViews(
  certs: { list(): (CertInfo & { listener: string })[] } | undefined,
  now = Date.now(),
): CertificateView[] {
  return (certs?.list() ?? []).map((c) => ({
    listener: c.listener,
    subject: c.subject,
    names: c.names,
    issuer: c.issuer,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    daysLeft: Math.floor((c.notAfter.getTime() - now) / 86_400_000),
  }));
}
