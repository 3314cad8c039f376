/**
 * Bounds on Redis calls. ioredis queues a command while it reconnects and waits as long as
 * the server takes; lb's users of Redis would rather fall back at once, so each call is
 * raced against a timer.
 */

/** Redis took longer than a call's bound. */
export class RedisTimeout extends Error {
  constructor(ms: number) {
    super(`no answer from Redis within ${ms}ms`);
  }
}

/**
 * `p`, or a RedisTimeout after `ms`. A late answer or failure of `p` is dropped (never an
 * unhandled rejection).
 */
export function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeout(ms)), ms);
  });
  p.catch(() => {});
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** One line about a failed call, for the log. */
export function errorText(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  const line = s.split("\n", 1)[0];
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
