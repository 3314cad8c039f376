/**
 * Latency estimates that decay with time, not with the number of samples.
 *
 * `value` is a time-weighted EWMA (weight `exp(-dt/tau)`), so a burst of fast
 * answers after a long quiet spell counts as much as it should. `peak` is
 * Finagle's peak-EWMA: it jumps to any sample above it at once and decays
 * towards the samples below it, so a server that just got slow looks slow now.
 */
export interface Ewma {
  /** Smoothed latency in ms; 0 until the first sample. */
  value: number;
  /** Peak-sensitive smoothed latency in ms; 0 until the first sample. */
  peak: number;
  /** Time of the last sample (ms, the caller's clock); 0 until the first. */
  at: number;
}

/** The decay constant: after `tau` ms a sample's weight has fallen to 1/e. */
export const DEFAULT_TAU_MS = 10_000;

export function newEwma(): Ewma {
  return { value: 0, peak: 0, at: 0 };
}

/** Adds one latency sample (ms) taken at `now` (ms). */
export function observe(e: Ewma, sample: number, now: number, tau = DEFAULT_TAU_MS): void {
  if (e.at === 0) {
    e.value = sample;
    e.peak = sample;
    e.at = now;
    return;
  }
  const dt = Math.max(0, now - e.at);
  // Weight of the old estimate. A floor on the sample weight keeps high request
  // rates (dt ≈ 0) from freezing the estimate.
  const w = Math.min(Math.exp(-dt / tau), 0.9);
  e.value = e.value * w + sample * (1 - w);
  e.peak = sample > e.peak ? sample : e.peak * w + sample * (1 - w);
  e.at = now;
}

/**
 * The estimate as seen at `now`: it decays towards 0 while no sample arrives,
 * so a server that was slow once is eventually tried again (no starvation).
 */
export function estimate(
  e: Readonly<Ewma>,
  now: number,
  tau = DEFAULT_TAU_MS,
  which: "value" | "peak" = "value",
): number {
  if (e.at === 0) return 0;
  const idle = now - e.at;
  const v = which === "peak" ? e.peak : e.value;
  return idle <= 0 ? v : v * Math.exp(-idle / tau);
}
