/**
 * Makes the running pool and strategy match a config (with the state file over it): what
 * a reload applies live. Every change goes through the pool's named functions and the
 * control's drains; each returns the lines that say what it did.
 */
import type { Server } from "../balancing/server.ts";
import { backendIdentity, type BackendSpec } from "../config/backend.ts";
import type { Control } from "./control.ts";
import { adminStateOf, type Applied, sameHash } from "./overlay.ts";

/** Applies `applied` to `control`'s pool and strategy; returns what changed. */
export function reconcile(control: Control, applied: Applied): string[] {
  const wanted = new Map(applied.config.backends.map((b) => [backendIdentity(b).id, b]));
  const changes = removeUnwanted(control, wanted);
  for (const [id, b] of wanted) {
    const s = control.pool.get(id);
    if (s && s.url === backendIdentity(b).origin) changes.push(...update(control, s, b, applied));
    else changes.push(add(control, id, b, applied));
  }
  changes.push(...switchStrategy(control, applied.config));
  return changes;
}

/** Servers no longer wanted (or wanted at another origin) drain, then go. */
function removeUnwanted(control: Control, wanted: Map<string, BackendSpec>): string[] {
  const changes: string[] = [];
  for (const s of control.pool.servers) {
    const b = wanted.get(s.id);
    if ((b && backendIdentity(b).origin === s.url) || control.drains.has(s)) continue;
    control.drains.start(s, "removed from the config");
    changes.push(`removing ${s.id} (draining)`);
  }
  return changes;
}

/** A server that stays: weight, cap and admin state as the config and state file say. */
function update(control: Control, s: Server, b: BackendSpec, applied: Applied): string[] {
  const { pool } = control;
  const changes: string[] = [];
  const want = applied.adminStates.get(s.id) ?? "enabled";
  if (control.drains.cancel(s)) {
    pool.setAdminState(s, want, "back in the config");
    changes.push(`kept ${s.id} (it was being removed)`);
  }
  if (s.weight !== b.weight) {
    changes.push(`${s.id} weight ${s.weight} → ${b.weight}`);
    pool.setWeight(s, b.weight);
  }
  if (s.maxConnections !== b.maxConnections) {
    changes.push(`${s.id} maxConnections ${s.maxConnections} → ${b.maxConnections}`);
    pool.setMaxConnections(s, b.maxConnections);
  }
  // Admin states kept in the state file (e.g. set through the parent's admin API, for a
  // --workers worker). Without a state file they live in memory only and stay as they are.
  const have = adminStateOf(s);
  if (control.stateFile && want !== have && !control.drains.has(s)) {
    pool.setAdminState(s, want, "state file");
    changes.push(`${s.id} ${have} → ${want}`);
  }
  return changes;
}

/** A new server; one on its way out that holds its id or origin leaves at once. */
function add(control: Control, id: string, b: BackendSpec, applied: Applied): string {
  const { pool } = control;
  const origin = backendIdentity(b).origin;
  // Removal only stops new picks: the old server's in-flight requests are not cut.
  for (const old of pool.servers) {
    if (old.id === id || old.url === origin) {
      control.drains.cancel(old);
      pool.removeServer(old.id);
    }
  }
  const health = applied.config.health;
  const added = pool.addServer(b, { healthy: health.assumeHealthy || !health.enabled });
  const st = applied.adminStates.get(id);
  if (st && st !== "enabled") pool.setAdminState(added, st, "state file");
  return `added ${id} (${added.url}, weight ${added.weight})`;
}

/** The strategy and its hash options, when they differ from the running ones. */
function switchStrategy(control: Control, desired: Applied["config"]): string[] {
  const { balancer } = control;
  const from = balancer.strategy.name;
  if (from === desired.strategy && sameHash(control.strategy().options, desired.hash)) return [];
  balancer.setStrategy(desired.strategy, { ...balancer.options, hash: desired.hash });
  return [
    from === desired.strategy
      ? `${from} options changed`
      : `strategy ${from} → ${desired.strategy}`,
  ];
}
