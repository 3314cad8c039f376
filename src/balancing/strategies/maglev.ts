import type { Server } from "../server.ts";
import { hash32 } from "./_murmur3.ts";
import { loadCapPerWeight, underCap } from "./_bounded_load.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy, StrategyOptions } from "./types.ts";

const OFFSET_SEED = 0x4d41474c; // "MAGL"
const SKIP_SEED = 0x45562121; // "EV!!"
/** Rehashes of the key tried when its table entry is not eligible. */
const REHASHES = 4;

/**
 * Maglev hashing (Eisenbud et al., NSDI 2016), weighted as in Envoy's maglev load balancer:
 * a lookup table of M entries (M prime, default 65537; a non-prime is raised to the next
 * prime) filled in turns, each server taking the next free slot of its own permutation
 * `(offset + j × skip) mod M` (offset and skip from two hashes of its id), a server of
 * weight w taking a turn in w of every max-weight rounds. Servers take turns in id order, so
 * the table does not depend on config order. A pick is one table read: O(1).
 *
 * The table covers every server. When the entry is ineligible (down, excluded, or over the
 * bounded-load cap with `hash.balanceFactor` > 1), the key is rehashed with salts 1..4 (each
 * lands on a uniformly random entry, so a down server's keys spread over the others in
 * proportion to their share), then the servers are scanned in pool order from hash mod n.
 * Deterministic per key, and a key whose server is fine never moves.
 */
export function maglev(opts: StrategyOptions = {}): Strategy {
  const tableSize = opts.hash?.tableSize ?? 65537;
  const factor = opts.hash?.balanceFactor ?? 0;
  let built: readonly Server[] | undefined;
  let table: Int32Array = new Int32Array(0);
  let size = 0;

  function rebuild(servers: readonly Server[]): void {
    size = nextPrime(Math.max(tableSize, servers.length));
    table = buildTable(servers, size);
    built = servers;
  }

  return {
    name: "maglev",
    rebuild,
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      if (servers !== built) rebuild(servers);
      const n = servers.length;
      if (n === 0) return undefined;
      const cap = loadCapPerWeight(servers, ctx, factor);
      const key = ctx.key();
      const h = hash32(key);
      for (let salt = 0; salt <= REHASHES; salt++) {
        const s = servers[table[(salt === 0 ? h : hash32(key, salt)) % size]];
        if (eligible(s, ctx) && underCap(s, cap)) return s;
      }
      for (let i = 0; i < n; i++) {
        const s = servers[(h + i) % n];
        if (eligible(s, ctx) && underCap(s, cap)) return s;
      }
      return undefined;
    },
  };
}

/**
 * The Maglev table: entry → index into `servers`. Exported for tests.
 * `size` must be prime and at least servers.length.
 */
export function buildTable(servers: readonly Server[], size: number): Int32Array {
  const table = new Int32Array(size).fill(-1);
  const n = servers.length;
  if (n === 0) return table;
  const order = servers.map((_, i) => i).sort((a, b) => (servers[a].id < servers[b].id ? -1 : 1));
  const next = new Float64Array(n);
  const skip = new Float64Array(n);
  const target = new Float64Array(n);
  for (const i of order) {
    next[i] = hash32(servers[i].id, OFFSET_SEED) % size;
    skip[i] = (hash32(servers[i].id, SKIP_SEED) % (size - 1)) + 1;
  }
  const maxWeight = Math.max(...servers.map((s) => s.weight));
  let filled = 0;
  for (let round = 1; filled < size; round++) {
    for (const i of order) {
      // A server of weight w takes a turn whenever round × w has caught up with its target.
      if (round * servers[i].weight < target[i]) continue;
      target[i] += maxWeight;
      let c = next[i];
      while (table[c] !== -1) c = (c + skip[i]) % size;
      table[c] = i;
      next[i] = (c + skip[i]) % size;
      if (++filled === size) break;
    }
  }
  return table;
}

/** The smallest prime ≥ n (n ≥ 2). */
export function nextPrime(n: number): number {
  for (let p = Math.max(2, Math.ceil(n));; p++) {
    let prime = true;
    for (let d = 2; d * d <= p; d++) {
      if (p % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) return p;
  }
}
