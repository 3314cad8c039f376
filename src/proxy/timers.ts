/**
 * Cheap timers for the hot path. Every try has a connect or header deadline and every
 * response body an idle deadline; creating and clearing a timer per deadline was a
 * measurable share of lb's CPU, so timers of the usual delays are pooled and re-armed.
 */

type NodeTimeout = ReturnType<typeof setTimeout> & { refresh(): unknown; unref(): unknown };

/** A timer that is re-armed with `refresh()` and handed from request to request. */
interface PooledTimer {
  handle: NodeTimeout;
  /** What to run when it fires; null while it waits in the pool. */
  fire: (() => void) | null;
  pool: TimerPool | null;
}

/**
 * Timers of one fixed delay, reused. Creating and clearing a timer costs about 1.2 µs in
 * Deno 2.9, re-arming one with `refresh()` about 0.1 µs; with two deadlines per request that
 * difference was several percent of lb's CPU. A timer returned to the pool is not cleared
 * (a cleared timer cannot be refreshed): it may still fire, and then does nothing.
 */
export class TimerPool {
  #free: PooledTimer[] = [];
  #all: PooledTimer[] = [];

  constructor(readonly ms: number) {}

  acquire(fire: () => void): PooledTimer {
    let t = this.#free.pop();
    if (t === undefined) {
      const created: PooledTimer = { handle: undefined!, fire: null, pool: this };
      created.handle = setTimeout(() => created.fire?.(), this.ms) as NodeTimeout;
      // Pooled timers never keep the process alive by themselves; a request in flight does.
      created.handle.unref();
      this.#all.push(created);
      t = created;
    } else t.handle.refresh();
    t.fire = fire;
    return t;
  }

  release(t: PooledTimer): void {
    t.fire = null;
    this.#free.push(t);
  }

  close(): void {
    for (const t of this.#all) clearTimeout(t.handle);
    this.#all = [];
    this.#free = [];
  }
}

/**
 * One deadline at a time for one request: a connect or header deadline (`arm`), or an idle
 * deadline (`idle`) for which body chunks only bump a counter; when the timer fires it
 * re-arms itself if there was activity since, so a streaming body costs no timer work per
 * chunk.
 */
export class Watchdog {
  #timer: PooledTimer | undefined;
  activity = 0;

  constructor(readonly timers: (ms: number) => TimerPool | undefined) {}

  arm(ms: number, fire: () => void): void {
    this.clear();
    const pool = this.timers(ms);
    if (pool) this.#timer = pool.acquire(fire);
    else {
      // An unusual delay (a request's remaining overall deadline): a plain one-off timer.
      const t: PooledTimer = {
        handle: setTimeout(() => t.fire?.(), ms) as NodeTimeout,
        fire,
        pool: null,
      };
      this.#timer = t;
    }
  }

  /** From now on: fire `expire` after `ms` without activity. */
  idle(ms: number, expire: () => void): void {
    let seen = this.activity;
    this.arm(ms, () => {
      if (this.activity === seen) return expire();
      seen = this.activity;
      this.#timer?.handle.refresh();
    });
  }

  clear(): void {
    const t = this.#timer;
    if (t === undefined) return;
    this.#timer = undefined;
    if (t.pool) t.pool.release(t);
    else {
      t.fire = null;
      clearTimeout(t.handle);
    }
  }
}
