/**
 * Durations and sizes as lb.yaml writes them (`250ms`, `2s`, `64KiB`), and their zod
 * field types.
 */
import { z } from "zod";

/**
 * The longest duration lb accepts: timers take a signed 32-bit number of ms, and a longer
 * one fires after 1 ms instead (a 30-day header timeout would time out every request).
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Parses `250ms`, `2s`, `1.5m`, `1h` or a bare number of milliseconds. */
export function parseDuration(v: string | number): number {
  let ms: number;
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0) throw new Error(`must be a duration ≥ 0 like 250ms or 2s`);
    ms = v;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
    if (!m) throw new Error(`"${v}" is not a duration (use e.g. 250ms, 2s, 1m)`);
    const n = Number(m[1]);
    const unit = m[2] ?? "ms";
    ms = n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
  }
  if (ms > MAX_DURATION_MS) throw new Error(`"${v}" is too long: durations go up to 596h`);
  return ms;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1e6,
  mib: 1024 ** 2,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Parses `64KiB`, `1MiB`, `2GiB`, `100KB`, `512B` or a bare number of bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 0) throw new Error(`must be a whole number of bytes ≥ 0`);
    return v;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(v);
  if (!m) throw new Error(`"${v}" is not a size (use e.g. 64KiB, 1MiB)`);
  return Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? "b").toLowerCase()]);
}

/** A zod field parsed by `parse`, whose thrown message becomes the field's problem. */
function parsedBy(parse: (v: string | number) => number) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      return parse(v);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      return z.NEVER;
    }
  });
}

/**
 * Parses a long span in whole seconds: `365d`, `12h`, `90m`, `3600s` or a bare number of
 * seconds (HSTS max-age), not limited like timer durations.
 */
export function parseSeconds(v: string | number): number {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 0) throw new Error(`must be a whole number of seconds ≥ 0`);
    return v;
  }
  const m = /^\s*(\d+)\s*(s|m|h|d)?\s*$/.exec(v);
  if (!m) throw new Error(`"${v}" is not a span of time (use e.g. 365d, 12h, 3600s)`);
  const n = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] ?? "s"]!;
  if (n > 10 * 365 * 86_400) throw new Error(`"${v}" is too long: at most 3650d`);
  return n;
}

/** A duration field: milliseconds once parsed. */
export const duration = parsedBy(parseDuration);
/** A size field: bytes once parsed. */
export const size = parsedBy(parseSize);
/** A long span in whole seconds (`365d`). */
export const seconds = parsedBy(parseSeconds);
