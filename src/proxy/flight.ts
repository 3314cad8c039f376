/**
 * One request on its way through lb: who sent it, what goes upstream, which servers it has
 * tried and why the last try failed, and the record that is logged once it is over. It is
 * also what a try sends (the {@link Outgoing} of upstream.ts), so a retry allocates nothing.
 */
import type { Server } from "../balancing/server.ts";
import type { PickContext } from "../balancing/strategies/types.ts";
import type { RequestRecord } from "../log.ts";
import type { ProxyContext } from "./context.ts";
import type { Failure } from "./failures.ts";
import type { BodySource } from "./request_body.ts";
import type { Outgoing } from "./upstream.ts";

export class Flight implements Outgoing {
  readonly started = performance.now();
  readonly rec: RequestRecord;
  readonly method: string;
  readonly signal: AbortSignal;
  body: BodySource | null = null;
  /** Servers tried so far (strategies skip them). */
  tried: Set<Server> | undefined;
  /** Why the last try failed, and where. */
  last: { failure: Failure; server: Server } | undefined;
  /** A stale pooled connection was already retried once, for free. */
  staleRetried = false;
  /** The next try holds a retry from the budget (released once it is over). */
  budgeted = false;
  /** When the whole request must be over (`timeouts.request`), or Infinity. */
  readonly deadline: number;
  /** What the strategy may know: reused for every pick of this request. */
  readonly pick: PickContext;
  /** Counted by the concurrency caps until {@link finish}. */
  #counted = false;
  #finished = false;

  constructor(
    readonly px: ProxyContext,
    readonly req: Request,
    readonly clientIp: string,
    readonly requestId: string,
    /** The path and query exactly as the client sent them. */
    readonly path: string,
    /** The headers to send upstream. */
    readonly headers: Record<string, string>,
    keyOf: (f: Flight) => string,
  ) {
    this.method = req.method;
    this.signal = req.signal;
    const timeout = px.config.timeouts.request;
    this.deadline = timeout > 0 ? this.started + timeout : Infinity;
    this.rec = {
      time: Date.now(),
      requestId,
      client: clientIp,
      method: this.method,
      path,
      status: 0,
      tries: 0,
      durationMs: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
    this.pick = { now: 0, random: px.random, key: () => keyOf(this) };
  }

  /** From now on the request counts against the concurrency caps, until it is finished. */
  count(): void {
    this.#counted = true;
  }

  /** Counts the request out of the caps (also when a bug ends it: see handler.ts). */
  leave(): void {
    if (!this.#counted) return;
    this.#counted = false;
    this.px.limiter.leave(this.clientIp);
  }

  /** The request is over: record it once (access log, metrics) and stop reading its body. */
  finish(status: number, error?: string, bytesOut = 0): void {
    if (this.#finished) return;
    this.#finished = true;
    this.leave();
    const rec = this.rec;
    rec.status = status;
    rec.durationMs = performance.now() - this.started;
    rec.bytesOut = bytesOut;
    if (error) rec.error = error;
    if (this.body) {
      rec.bytesIn = this.body.bytes;
      this.body.cancel();
    }
    this.px.logger.access(rec);
    this.px.onRequest?.(rec);
  }
}
