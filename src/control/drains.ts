/**
 * Servers on their way out: drained at once (no new requests), then removed from the pool
 * once nothing is in flight on them. Used by the admin API's DELETE and by reload.
 */
import type { Server } from "../balancing/server.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";

export class Drains {
  #removing = new Map<Server, ReturnType<typeof setInterval>>();
  #closed = false;

  constructor(
    readonly pollMs: number,
    /** Runs when a drained server has left its pool. */
    readonly onRemoved: (s: Server, pool: PoolRuntime, reason: string) => void,
  ) {}

  /** Whether `s` has been removed and is draining before it goes. */
  has(s: Server): boolean {
    return this.#removing.has(s);
  }

  /** Drains `s` and removes it from `pool` once nothing is in flight (or never, after close). */
  start(pool: PoolRuntime, s: Server, reason: string): void {
    if (this.#removing.has(s) || this.#closed) return;
    const servers = pool.servers;
    servers.setAdminState(s, "draining", reason);
    const finish = () => {
      if (!this.cancel(s)) return;
      if (servers.get(s.id) === s) servers.removeServer(s.id);
      this.onRemoved(s, pool, reason);
    };
    this.#removing.set(s, setInterval(() => s.inflight <= 0 && finish(), this.pollMs));
    if (s.inflight <= 0) queueMicrotask(finish);
  }

  /** Stops a pending removal (a reload put the server back); false when none was pending. */
  cancel(s: Server): boolean {
    const t = this.#removing.get(s);
    if (t === undefined) return false;
    clearInterval(t);
    this.#removing.delete(s);
    return true;
  }

  /** Clears the timers; servers still draining stay in the pool. */
  close(): void {
    this.#closed = true;
    for (const t of this.#removing.values()) clearInterval(t);
    this.#removing.clear();
  }
}
