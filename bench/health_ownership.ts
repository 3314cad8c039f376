/**
 * The health-check ownership scheme at scale, without a network: 100 instances × 10,000
 * backends by default (issue 15).
 *
 *   deno run -A bench/health_ownership.ts [--instances 100] [--backends 10000] [--interval 2000]
 *
 * Prints, for the rendezvous owners (src/cluster/ownership.ts):
 * - checks per interval per instance (min / mean / max, and the spread) against the ideal
 *   backends / instances, and the same counted through the real PoolHealthShare.checks of
 *   every instance (what the health loop asks before each check);
 * - backends that change owner when one instance leaves (every instance in turn) or one
 *   joins (20 new ids), against the ideal backends / N and backends / (N + 1);
 * - the time to compute the owners of every backend (median of 7 runs), and per decision;
 * - the resulting load: checks per interval with and without ownership, and the Redis
 *   commands per second one instance sends for health (publishes and MGETs).
 */
import type { Redis } from "ioredis";
import type { Server } from "../src/balancing/server.ts";
import { ServerPool } from "../src/balancing/pool.ts";
import { ClusterHealth, type PoolHealthShare } from "../src/cluster/health_share.ts";
import type { ClusterLink } from "../src/cluster/link.ts";
import { ownershipKey, Rendezvous } from "../src/cluster/ownership.ts";
import { createLogger } from "../src/log.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a whole number ≥ 1`);
  return n;
}

const N = flag("instances", 100);
const B = flag("backends", 10_000);
const INTERVAL = flag("interval", 2000);
const POOL = "web";
const BATCH = 500;

const members = Array.from({ length: N }, (_, i) => `10.1.${i >> 8}.${i & 255}:8001-${i * 7919}`);
const ids = Array.from({ length: B }, (_, i) => `10.2.${i >> 8}.${i & 255}:8080`);
const keys = ids.map((id) => ownershipKey(POOL, id));

const fmt = (n: number, d = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function owners(list: readonly string[]): string[] {
  const r = new Rendezvous(list);
  return keys.map((k) => r.owner(k)!);
}

function countBy(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

function balance(): number[] {
  const base = owners(members);
  const counts = members.map((m) => countBy(base).get(m) ?? 0);
  const mean = B / N;
  const sd = Math.sqrt(counts.reduce((s, c) => s + (c - mean) ** 2, 0) / N);
  console.log(`\n## Checks per interval per instance (${fmt(N)} instances, ${fmt(B)} backends)`);
  console.log(
    `ideal ${fmt(mean, 1)}; min ${Math.min(...counts)}, mean ${fmt(mean, 1)}, max ` +
      `${Math.max(...counts)} (${fmt(Math.max(...counts) / mean, 2)}× ideal), sd ${fmt(sd, 1)} ` +
      `(binomial sd ${fmt(Math.sqrt(mean * (1 - 1 / N)), 1)})`,
  );
  console.log(`without ownership: ${fmt(B)} per instance, ${fmt(N * B)} in the cluster`);
  return counts;
}

function movement(): void {
  const base = owners(members);
  const leaves: number[] = [];
  let strayed = 0;
  for (const gone of members) {
    const after = owners(members.filter((m) => m !== gone));
    let moved = 0;
    after.forEach((o, i) => {
      if (o === base[i]) return;
      moved++;
      if (base[i] !== gone) strayed++;
    });
    leaves.push(moved);
  }
  const joins: number[] = [];
  for (let j = 0; j < 20; j++) {
    const after = owners([...members, `10.9.0.${j}:8001-new`]);
    joins.push(after.filter((o, i) => o !== base[i]).length);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`\n## Backends that change owner`);
  console.log(
    `one instance leaves (each of ${N} in turn): mean ${fmt(mean(leaves), 1)}, max ` +
      `${Math.max(...leaves)}; ideal ${fmt(B / N, 1)} (1/N = ${fmt(100 / N, 2)} %); backends ` +
      `moved that the leaver did not own: ${strayed}`,
  );
  console.log(
    `one instance joins (20 new ids): mean ${fmt(mean(joins), 1)}, max ` +
      `${Math.max(...joins)}; ideal ${fmt(B / (N + 1), 1)} (1/(N+1) = ${fmt(100 / (N + 1), 2)} %)`,
  );
}

function timing(): void {
  const runs: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    owners(members);
    runs.push(performance.now() - t0);
  }
  const ms = median(runs);
  console.log(`\n## Time to compute ownership`);
  console.log(
    `owners of ${fmt(B)} backends among ${N} members: ${fmt(ms, 1)} ms (median of 7; ` +
      `${fmt(ms * 1e6 / B)} ns per backend, ${fmt(ms * 1e6 / B / N, 1)} ns per member score)`,
  );
}

/** A link whose Redis answers every MGET with nothing (the shares only need it present). */
function quietLink(self: string): ClusterLink {
  const redis = {
    mget: (keys: string[]) => Promise.resolve(keys.map(() => null)),
    pipeline: () => ({ set() {}, exec: () => Promise.resolve([]) }),
  } as unknown as Redis;
  return {
    prefix: "lb:{bench}:",
    self,
    redis: () => redis,
    members: () => members,
    onMembers: () => () => {},
  };
}

/** The real shares of every instance: how many servers each one's health loop checks. */
async function throughShares(ideal: number[]): Promise<void> {
  const pool = new ServerPool(ids.map((id) => ({ url: `http://${id}`, name: id })));
  const servers: readonly Server[] = pool.servers;
  const logger = createLogger({ format: "json", access: false, write: () => {} });
  const shares: PoolHealthShare[] = [];
  const counts: number[] = [];
  const t0 = performance.now();
  for (const self of members) {
    const share = new ClusterHealth(quietLink(self), { logger }).forPool(POOL);
    share.start({ interval: INTERVAL, timeout: 1000, servers: () => servers, record() {} });
    shares.push(share);
    let n = 0;
    for (const s of servers) if (share.checks(s)) n++;
    counts.push(n);
  }
  const first = performance.now() - t0;
  const t1 = performance.now();
  for (const share of shares) for (const s of servers) share.checks(s);
  const again = performance.now() - t1;
  await Promise.all(shares.map((s) => s.stop()));
  const same = counts.every((c, i) => c === ideal[i]);
  console.log(`\n## Through PoolHealthShare.checks (each instance asks about every backend)`);
  console.log(
    `checked per interval: min ${Math.min(...counts)}, max ${Math.max(...counts)}; ` +
      `${same ? "the same as" : "DIFFERENT FROM"} the owner counts above`,
  );
  console.log(
    `one interval's decisions for ${fmt(B)} backends: ${fmt(first / N, 2)} ms per ` +
      `instance the first time (owners computed), ${fmt(again / N, 2)} ms after ` +
      `(${fmt(again * 1e6 / N / B)} ns per decision)`,
  );
}

function load(counts: number[]): void {
  const perSecond = 1000 / INTERVAL;
  const max = Math.max(...counts);
  const notOwned = B - Math.min(...counts);
  const mgets = Math.ceil(notOwned / BATCH);
  console.log(`\n## Load at health.interval ${INTERVAL} ms`);
  console.log(
    `checks in the cluster: ${fmt(B * perSecond)}/s with ownership, ` +
      `${fmt(N * B * perSecond)}/s without; the busiest instance ${fmt(max * perSecond, 1)}/s ` +
      `instead of ${fmt(B * perSecond)}/s`,
  );
  console.log(
    `Redis per instance for health: ≤ ${fmt(max * perSecond, 1)} SET/s (publishes, in ` +
      `pipelines of ${50} ms) + ${fmt(mgets * perSecond, 1)} MGET/s reading ` +
      `${fmt(notOwned * perSecond)} keys/s; cluster-wide ${fmt(N * mgets * perSecond)} MGET/s, ` +
      `${fmt(N * notOwned * perSecond)} keys read/s`,
  );
}

const counts = balance();
await throughShares(counts);
movement();
timing();
load(counts);
