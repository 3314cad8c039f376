/**
 * A seeded uniform generator in [0, 1): mulberry32 (Tommy Ettinger's 32-bit generator).
 * Small and fast, and the same sequence on every run, so tests and `lb simulate` are
 * reproducible. Not for anything that needs unpredictability.
 *
 * @example
 * ```ts
 * const random = seededRandom(42);
 * random(); // the same first number on every run
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
