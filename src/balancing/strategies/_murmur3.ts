/**
 * The 32-bit hash behind consistent-hash and maglev: MurmurHash3 (x86_32) over the
 * string's UTF-16 code units, two per 32-bit block (for ASCII this is MurmurHash3 of the
 * UTF-16LE bytes). Deterministic across runs and machines, no allocation, and a good
 * avalanche, so similar keys ("10.0.0.1", "10.0.0.2") land far apart.
 *
 * `seed` gives independent hash functions over the same string: the ring uses it for
 * virtual nodes, Maglev for its offset/skip pair and its fallback rehashes.
 */
export function hash32(s: string, seed = 0): number {
  let h = seed | 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    h ^= mixK(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) h ^= mixK(s.charCodeAt(i));
  return fmix32(h ^ (n * 2));
}

/**
 * MurmurHash3 (x86_32) of one 32-bit block `k` (4 bytes long) under `seed`: for hashing a
 * number already hashed, such as rendezvous scores (cluster/ownership.ts), without a string.
 */
export function hashInt32(k: number, seed: number): number {
  let h = seed ^ mixK(k);
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  return fmix32(h ^ 4);
}

/** fmix32: the final avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixK(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}
