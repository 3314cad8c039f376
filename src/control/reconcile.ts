/**
 * Makes the running pools, their servers, strategies and TLS settings, and the routing table
 * match a config (with the state file over it): what a reload applies live. Every change goes
 * through the pool's named functions and the control's drains; each returns the lines that
 * say what it did.
 *
 * Order matters for requests in flight: new pools are built first, then the routing table
 * is swapped in one assignment, and only then do pools no route names any more drain
 * (their requests finish; they close once empty).
 */
import type { Server } from "../balancing/server.ts";
import { backendIdentity, type BackendSpec } from "../config/backend.ts";
import type { PoolConfig } from "../config/pools.ts";
import type { TlsClientSettings } from "../proxy/upstream_tls.ts";
import { initiallyHealthy, type PoolRuntime } from "../routing/pool_runtime.ts";
import { type Control, restoreAdminStates } from "./control.ts";
import { adminStateOf, type Applied, type AppliedPool, sameHash } from "./overlay.ts";

/**
 * Applies `applied` to `control`'s pools and routes, and each pool's TLS settings (`tls`,
 * files read, by pool name); returns what changed.
 */
export function reconcile(
  control: Control,
  applied: Applied,
  tls: ReadonlyMap<string, TlsClientSettings>,
): string[] {
  const { pools } = control;
  const changes: string[] = [];
  if (applied.stickySecret !== undefined) pools.setStickySecret(applied.stickySecret);
  const named = pools.size > 1 || applied.pools.length > 1;
  const wanted = new Set(applied.pools.map((a) => a.pool.name));
  for (const a of applied.pools) {
    const running = pools.get(a.pool.name);
    if (running) {
      const lines = reconcilePool(control, running, a, tls.get(a.pool.name));
      changes.push(...(named ? lines.map((l) => `${running.name}: ${l}`) : lines));
      continue;
    }
    const p = pools.add(a.pool, tls.get(a.pool.name));
    restoreAdminStates(p, a.adminStates);
    p.start(control.logger, control.random);
    changes.push(
      `added pool ${p.name} (${p.servers.servers.length} servers, ${p.settings.strategy})`,
    );
  }
  if (JSON.stringify(pools.router.routes.map((r) => r.config)) !== JSON.stringify(applied.routes)) {
    pools.setRoutes(applied.routes);
    changes.push(`routes replaced (${applied.routes.length})`);
  }
  for (const p of pools.list) {
    if (wanted.has(p.name)) continue;
    pools.delete(p.name);
    control.retire(p);
    changes.push(`removing pool ${p.name} (draining)`);
  }
  return changes;
}

/** One pool that stays: its servers, strategy and TLS settings as the config (and state file) say. */
function reconcilePool(
  control: Control,
  pool: PoolRuntime,
  a: AppliedPool,
  tls: TlsClientSettings | undefined,
): string[] {
  const wanted = new Map(a.pool.backends.map((b) => [backendIdentity(b).id, b]));
  const changes = removeUnwanted(control, pool, wanted);
  for (const [id, b] of wanted) {
    const s = pool.servers.get(id);
    if (s && s.url === backendIdentity(b).origin) changes.push(...update(control, pool, s, b, a));
    else changes.push(add(control, pool, id, b, a));
  }
  changes.push(...switchStrategy(pool, a.pool));
  if (tls && pool.upstream.setTls(tls)) changes.push("upstreamTls changed: new connections use it");
  return changes;
}

/** Servers no longer wanted (or wanted at another origin) drain, then go. */
function removeUnwanted(
  control: Control,
  pool: PoolRuntime,
  wanted: Map<string, BackendSpec>,
): string[] {
  const changes: string[] = [];
  for (const s of pool.servers.servers) {
    const b = wanted.get(s.id);
    if ((b && backendIdentity(b).origin === s.url) || control.drains.has(s)) continue;
    control.drains.start(pool, s, "removed from the config");
    changes.push(`removing ${s.id} (draining)`);
  }
  return changes;
}

/** A server that stays: weight, cap and admin state as the config and state file say. */
function update(
  control: Control,
  pool: PoolRuntime,
  s: Server,
  b: BackendSpec,
  a: AppliedPool,
): string[] {
  const servers = pool.servers;
  const changes: string[] = [];
  const want = a.adminStates.get(s.id) ?? "enabled";
  if (control.drains.cancel(s)) {
    servers.setAdminState(s, want, "back in the config");
    changes.push(`kept ${s.id} (it was being removed)`);
  }
  if (s.weight !== b.weight) {
    changes.push(`${s.id} weight ${s.weight} → ${b.weight}`);
    servers.setWeight(s, b.weight);
  }
  if (s.maxConnections !== b.maxConnections) {
    changes.push(`${s.id} maxConnections ${s.maxConnections} → ${b.maxConnections}`);
    servers.setMaxConnections(s, b.maxConnections);
  }
  // Admin states kept in the state file (e.g. set through the parent's admin API, for a
  // --workers worker). Without a state file they live in memory only and stay as they are.
  const have = adminStateOf(s);
  if (control.stateFile && want !== have && !control.drains.has(s)) {
    servers.setAdminState(s, want, "state file");
    changes.push(`${s.id} ${have} → ${want}`);
  }
  return changes;
}

/** A new server; one on its way out that holds its id or origin leaves at once. */
function add(control: Control, pool: PoolRuntime, id: string, b: BackendSpec, a: AppliedPool) {
  const servers = pool.servers;
  const origin = backendIdentity(b).origin;
  // Removal only stops new picks: the old server's in-flight requests are not cut.
  for (const old of servers.servers) {
    if (old.id === id || old.url === origin) {
      control.drains.cancel(old);
      servers.removeServer(old.id);
    }
  }
  const added = servers.addServer(b, { healthy: initiallyHealthy(pool.settings) });
  const st = a.adminStates.get(id);
  if (st && st !== "enabled") servers.setAdminState(added, st, "state file");
  return `added ${id} (${added.url}, weight ${added.weight})`;
}

/** The strategy and its hash options, when they differ from the running ones. */
function switchStrategy(pool: PoolRuntime, desired: PoolConfig): string[] {
  const { balancer } = pool;
  const from = balancer.strategy.name;
  const running = { ...pool.settings.hash, ...balancer.options.hash };
  if (from === desired.strategy && sameHash(running, desired.hash)) return [];
  balancer.setStrategy(desired.strategy, { ...balancer.options, hash: desired.hash });
  return [
    from === desired.strategy
      ? `${from} options changed`
      : `strategy ${from} → ${desired.strategy}`,
  ];
}
