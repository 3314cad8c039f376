/** Reading `simulate` pick logs in strategy tests. */

/** The fraction of picks in [from, to) that went to server `server`. */
export function shareOf(picks: Int32Array, server: number, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) if (picks[i] === server) count++;
  return count / (to - from);
}

/**
 * Picks after `from` until the first window of `window` picks in which `server` gets the
 * majority; -1 when that never happens.
 */
export function picksUntilMajority(
  picks: Int32Array,
  server: number,
  from: number,
  window: number,
): number {
  for (let start = from; start + window <= picks.length; start++) {
    if (shareOf(picks, server, start, start + window) > 0.5) return start - from;
  }
  return -1;
}
