/**
 * `GET /api/cluster` and the dashboard's cluster card: this instance's link to Redis and the
 * live members (from their heartbeat keys, cluster/members.ts).
 */
import type { ClusterStatus } from "../cluster/cluster.ts";

export interface MemberView {
  id: string;
  /** This instance. */
  self: boolean;
  host: string;
  pid: number;
  version: string;
  url: string;
  startedAt: string;
  uptimeSeconds: number;
  requestRate: number;
  requests: number;
  /** The view revision the member runs. */
  revision: number;
}

export type ClusterView =
  | { enabled: false }
  | {
    enabled: true;
    name: string;
    self: string;
    /** Connected to Redis and following the view. */
    connected: boolean;
    revision: number;
    /** Since when `connected` has been what it is. */
    since: string;
    lastError?: string;
    members: MemberView[];
  };

export function clusterView(status: ClusterStatus | undefined, now = Date.now()): ClusterView {
  if (!status) return { enabled: false };
  return {
    enabled: true,
    name: status.name,
    self: status.self,
    connected: status.connected,
    revision: status.revision,
    since: new Date(status.since).toISOString(),
    ...(status.lastError && !status.connected && { lastError: status.lastError }),
    members: status.members.map((m) => ({
      id: m.id,
      self: m.id === status.self,
      host: m.host,
      pid: m.pid,
      version: m.version,
      url: m.url,
      startedAt: new Date(m.startedAt).toISOString(),
      uptimeSeconds: Math.max(0, Math.round((now - m.startedAt) / 1000)),
      requestRate: m.requestRate,
      requests: m.requests,
      revision: m.revision,
    })),
  };
}
