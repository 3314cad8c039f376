/**
 * A discrete-event simulation of a strategy in front of servers, in virtual time and
 * without any network: `concurrency` clients each send a request, wait for its answer and
 * send the next, until `requests` have been sent. Completions wait in a priority queue
 * ordered by virtual time. Everything random comes from one seed, so a run is reproducible.
 *
 * A request's latency is the server's mean × (1 + loadFactor × other requests in flight on
 * it) × a lognormal draw with mean 1, so a server slows down a little as it fills up and
 * load-aware strategies (least-conn, p2c, fastest) have something to win.
 *
 * @example
 * ```ts
 * const r = simulate({ strategy: "p2c", latency: [5, 50, 200], requests: 10_000 });
 * console.log(r.overall.p99, r.servers.map((s) => s.share));
 * ```
 */
import { ServerPool } from "./pool.ts";
import type { Server } from "./server.ts";
import { createStrategy } from "./strategies/registry.ts";
import { seededRandom } from "./strategies/seeded_random.ts";
import type { PickContext, Strategy, StrategyOptions } from "./strategies/types.ts";

export interface SimulateOptions {
  /** A strategy name (see STRATEGY_NAMES) or a strategy object. */
  strategy: string | Strategy;
  /** Options for a strategy given by name. */
  strategyOptions?: StrategyOptions;
  /** Mean latency per server in ms; one value applies to all. Default [5, 50, 200]. */
  latency?: number[];
  /** Number of servers. Default: latency.length (means repeat when there are more servers). */
  servers?: number;
  /** Weight per server (whole numbers 1-1000); one value applies to all. Default 1. */
  weights?: number[];
  /** Requests to send. Default 10,000. */
  requests?: number;
  /** Requests in flight at once (closed loop: one client per slot). Default 50. */
  concurrency?: number;
  /** Seed of every random draw. Default 1. */
  seed?: number;
  /** Latency growth per other request in flight on the server, as a fraction of its mean. Default 0.02. */
  loadFactor?: number;
  /** Spread of the lognormal latency draw (σ of ln latency). Default 0.5 (p99 ≈ 3 × p50). */
  sigma?: number;
  /** Distinct request keys (what hashing strategies hash). Default 1,000. */
  keys?: number;
  /** Zipf exponent of key popularity: 0 = uniform (default), 1 = a few hot keys. */
  keySkew?: number;
  /** Latency changes in the middle of a run: once `after` requests were sent, means become `latency`. */
  changes?: { after: number; latency: number[] }[];
  /** Keep the server index of every pick, in order, in `result.picks`. */
  recordPicks?: boolean;
  /** Decay constant of the servers' latency EWMAs (ms). Default 10,000. */
  latencyTau?: number;
}

export interface ServerResult {
  id: string;
  /** The configured mean latency (ms) at the end of the run. */
  meanLatency: number;
  weight: number;
  requests: number;
  /** Fraction of all answered requests, 0-1. */
  share: number;
  /** Latency percentiles in ms (0 when the server got no request). */
  p50: number;
  p99: number;
}

export interface SimulateResult {
  strategy: string;
  servers: ServerResult[];
  overall: { requests: number; p50: number; p99: number; mean: number };
  /** Requests no server could take (the strategy returned undefined). */
  unserved: number;
  /** Virtual time the run took (ms). */
  duration: number;
  /** With `recordPicks`: the index of the server each request went to, in order (-1 = none). */
  picks?: Int32Array;
}

/** Virtual start time: non-zero, since a latency EWMA taken at 0 would read as unmeasured. */
const T0 = 1_000_000;

/** Runs the simulation; throws an Error for options that make no sense. */
export function simulate(opts: SimulateOptions): SimulateResult {
  const latency = opts.latency ?? [5, 50, 200];
  const n = opts.servers ?? latency.length;
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`servers must be a whole number ≥ 1, got ${n}`);
  }
  if (latency.length === 0) throw new Error("latency needs at least one value");
  if (opts.weights && opts.weights.length !== 1 && opts.weights.length !== n) {
    throw new Error(`weights needs 1 or ${n} values, got ${opts.weights.length}`);
  }
  const pool = new ServerPool(
    Array.from({ length: n }, (_, i) => ({
      url: `http://10.0.${i >> 8}.${(i & 255) + 1}:80`,
      weight: opts.weights?.[opts.weights.length === 1 ? 0 : i] ?? 1,
    })),
    { latencyTau: opts.latencyTau },
  );
  const strategy = typeof opts.strategy === "string"
    ? createStrategy(opts.strategy, { latencyTau: opts.latencyTau, ...opts.strategyOptions })
    : opts.strategy;
  strategy.rebuild?.(pool.servers);
  const run = new Run(opts, pool, strategy, latency);
  run.go();
  return summarize(strategy.name, pool.servers, run);
}

/** One simulated run: clients in a closed loop, completions in virtual time. */
class Run {
  readonly n: number;
  readonly requests: number;
  readonly samples: number[][];
  readonly picks: Int32Array | undefined;
  means: Float64Array;
  sent = 0;
  unserved = 0;
  now = T0;
  readonly #queue = new CompletionQueue();
  readonly #changes: { after: number; latency: number[] }[];
  readonly #latencyRandom: () => number;
  readonly #keyOf: () => string;
  readonly #ctx: PickContext;
  readonly #indexOf: Map<Server, number>;
  #key = "";

  constructor(
    readonly opts: SimulateOptions,
    readonly pool: ServerPool,
    readonly strategy: Strategy,
    latency: number[],
  ) {
    const seed = opts.seed ?? 1;
    this.n = pool.servers.length;
    this.requests = opts.requests ?? 10_000;
    this.samples = Array.from({ length: this.n }, () => []);
    this.picks = opts.recordPicks ? new Int32Array(this.requests).fill(-1) : undefined;
    this.means = this.#meansOf(latency);
    this.#changes = [...(opts.changes ?? [])].sort((a, b) => a.after - b.after);
    this.#latencyRandom = seededRandom(seed);
    this.#keyOf = keyPicker(opts.keys ?? 1000, opts.keySkew ?? 0, seededRandom(seed ^ 0x5bd1e995));
    this.#ctx = { now: T0, random: seededRandom(seed ^ 0x9e3779b9), key: () => this.#key };
    this.#indexOf = new Map(pool.servers.map((s, i) => [s, i]));
  }

  #meansOf(latency: number[]): Float64Array {
    return Float64Array.from({ length: this.n }, (_, i) => latency[i % latency.length]);
  }

  go(): void {
    const concurrency = this.opts.concurrency ?? 50;
    for (let c = 0; c < concurrency && this.sent < this.requests; c++) this.#send();
    const servers = this.pool.servers;
    while (this.#queue.size > 0) {
      const { time, server, ms } = this.#queue.pop();
      this.now = time;
      this.pool.endRequest(servers[server], true, ms, time);
      this.samples[server].push(ms);
      this.#send();
    }
  }

  /** Sends requests until one is taken by a server (or none are left to send). */
  #send(): void {
    const loadFactor = this.opts.loadFactor ?? 0.02;
    const sigma = this.opts.sigma ?? 0.5;
    while (this.sent < this.requests) {
      while (this.#changes.length && this.#changes[0].after <= this.sent) {
        this.means = this.#meansOf(this.#changes.shift()!.latency);
      }
      const id = this.sent++;
      this.#key = this.#keyOf();
      this.#ctx.now = this.now;
      const s = this.strategy.pick(this.pool.servers, this.#ctx);
      if (s === undefined) {
        this.unserved++;
        continue;
      }
      const i = this.#indexOf.get(s)!;
      if (this.picks) this.picks[id] = i;
      this.pool.beginRequest(s);
      const load = 1 + loadFactor * (s.inflight - 1);
      const ms = this.means[i] * load * lognormal(this.#latencyRandom, sigma);
      this.#queue.push(this.now + ms, i, ms);
      return;
    }
  }
}

/** Shares and percentiles per server and overall. */
function summarize(name: string, servers: readonly Server[], run: Run): SimulateResult {
  const all = new Float64Array(run.samples.reduce((a, s) => a + s.length, 0));
  let k = 0;
  for (const list of run.samples) for (const v of list) all[k++] = v;
  all.sort();
  const answered = all.length;
  return {
    strategy: name,
    servers: servers.map((s, i) => {
      const sorted = Float64Array.from(run.samples[i]).sort();
      return {
        id: s.id,
        meanLatency: run.means[i],
        weight: s.weight,
        requests: sorted.length,
        share: answered ? sorted.length / answered : 0,
        p50: percentile(sorted, 0.5),
        p99: percentile(sorted, 0.99),
      };
    }),
    overall: {
      requests: answered,
      p50: percentile(all, 0.5),
      p99: percentile(all, 0.99),
      mean: answered ? all.reduce((a, v) => a + v, 0) / answered : 0,
    },
    unserved: run.unserved,
    duration: run.now - T0,
    picks: run.picks,
  };
}

/** Nearest-rank percentile of an ascending array (0 when empty). */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** A lognormal draw with mean 1 (Box-Muller). */
function lognormal(random: () => number, sigma: number): number {
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.exp(sigma * z - sigma * sigma / 2);
}

/** Draws keys "key-0".."key-(count-1)" with Zipf(skew) popularity (uniform at skew 0). */
function keyPicker(count: number, skew: number, random: () => number): () => string {
  const names = Array.from({ length: count }, (_, i) => `key-${i}`);
  const cdf = new Float64Array(count);
  let sum = 0;
  for (let i = 0; i < count; i++) cdf[i] = sum += 1 / (i + 1) ** skew;
  return () => {
    const r = random() * sum;
    let lo = 0;
    let hi = count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] > r) hi = mid;
      else lo = mid + 1;
    }
    return names[lo];
  };
}

/** A binary min-heap of completions by time (ties by insertion order, for determinism). */
class CompletionQueue {
  #time: number[] = [];
  #seq: number[] = [];
  #server: number[] = [];
  #ms: number[] = [];
  #next = 0;

  get size(): number {
    return this.#time.length;
  }

  push(time: number, server: number, ms: number): void {
    this.#time.push(time);
    this.#seq.push(this.#next++);
    this.#server.push(server);
    this.#ms.push(ms);
    let i = this.#time.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }

  pop(): { time: number; server: number; ms: number } {
    const top = { time: this.#time[0], server: this.#server[0], ms: this.#ms[0] };
    const last = this.#time.length - 1;
    this.#swap(0, last);
    this.#time.pop();
    this.#seq.pop();
    this.#server.pop();
    this.#ms.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < last && this.#less(l, m)) m = l;
      if (r < last && this.#less(r, m)) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return top;
  }

  #less(a: number, b: number): boolean {
    return this.#time[a] < this.#time[b] ||
      (this.#time[a] === this.#time[b] && this.#seq[a] < this.#seq[b]);
  }

  #swap(a: number, b: number): void {
    for (const arr of [this.#time, this.#seq, this.#server, this.#ms]) {
      [arr[a], arr[b]] = [arr[b], arr[a]];
    }
  }
}
