/**
 * One request on its way through lb: who sent it, what goes upstream, which servers it has
 * tried and why the last try failed, and the record that is logged once it is over. It is
 * also what a try sends (the {@link Outgoing} of upstream.ts), so a retry allocates nothing.
 */
import type { Server } from "../balancing/server.ts";
import type { PickContext } from "../balancing/strategies/types.ts";
import type { RequestRecord } from "../log.ts";
import { requestKey } from "./choose.ts";
import type { ProxyContext } from "./context.ts";
import type { Failure } from "./failures.ts";
import type { BodySource } from "./request_body.ts";
import type { Outgoing } from "./upstream.ts";
import type { PoolRuntime } from "../routing/pool_runtime.ts";
import type { LbRoute } from "../routing/pools.ts";
import type { RateDecision } from "../routing/rate_limit.ts";

/**
 * The access record, as a class: V8 pretenured the object literal it used to be (it moved
 * every record to its old space at birth), and a dead record there kept the request's young
 * strings alive through every scavenge until the next full GC.
 */
class AccessRecord implements RequestRecord {
  // Fields in the order access lines have always shown them.
  time = Date.now();
  requestId: string;
  client: string;
  method: string;
  path: string;
  status = 0;
  tries = 0;
  durationMs = 0;
  bytesIn = 0;
  bytesOut = 0;
  backend: string | undefined = undefined;
  error: string | undefined = undefined;
  droppedHeaders: number | undefined = undefined;
  pool: string | undefined = undefined;
  route: string | undefined = undefined;

  constructor(requestId: string, client: string, method: string, path: string) {
    this.requestId = requestId;
    this.client = client;
    this.method = method;
    this.path = path;
  }
}

/** The signal and headers of a finished Flight: nothing reads them any more. */
const FINISHED = AbortSignal.abort();
const NO_HEADERS: Record<string, string> = Object.freeze({});

export class Flight implements Outgoing, PickContext {
  readonly started = performance.now();
  readonly rec: RequestRecord;
  readonly method: string;
  signal: AbortSignal;
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
  deadline = Infinity;
  /** The route the request matched and its pool (set by the route stage). */
  route: LbRoute | undefined;
  pool!: PoolRuntime;
  /** The sticky cookie's value the client sent ("" when none). */
  stickyToken = "";
  /** The route's rate limit decision, for the RateLimit header of the answer. */
  rate: RateDecision | undefined;
  // What a strategy may know (PickContext): the Flight is its own, so a pick allocates nothing.
  now = 0;
  readonly random: () => number;
  exclude: ReadonlySet<Server> | undefined;
  panic = false;
  /** Counted by the concurrency caps until {@link finish}. */
  #counted = false;
  #finished = false;

  /** The client's request (undefined once the Flight is finished). */
  req: Request | undefined;
  /** The headers to send upstream. */
  headers: Record<string, string>;

  constructor(
    readonly px: ProxyContext,
    req: Request,
    readonly clientIp: string,
    readonly requestId: string,
    /**
     * The path and query to send upstream: as the client sent them (`rec.path` keeps that),
     * unless the route strips a prefix.
     */
    public path: string,
    headers: Record<string, string>,
  ) {
    this.req = req;
    this.headers = headers;
    this.method = req.method;
    this.signal = req.signal;
    this.rec = new AccessRecord(requestId, clientIp, this.method, path);
    this.random = px.random;
  }

  /** The request goes to `pool`: its overall deadline starts counting (`timeouts.request`). */
  routeTo(route: LbRoute | undefined, pool: PoolRuntime): void {
    this.route = route;
    this.pool = pool;
    this.rec.pool = pool.name;
    if (route) this.rec.route = route.config.name;
    const timeout = pool.settings.timeouts.request;
    this.deadline = timeout > 0 ? this.started + timeout : Infinity;
  }

  /** The request's hash key (`hash.key`), for consistent-hash and maglev. */
  key(): string {
    const key = this.pool.balancer.options.hash?.key ?? this.pool.settings.hash.key;
    return this.req ? requestKey(this.req.headers, key, this.clientIp, this.rec.path) : "";
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
    this.#letGo();
  }

  /**
   * A finished Flight lets go of the request's objects. V8 may have moved the Flight to its
   * old space (objects that live across a few scavenges are promoted, some allocation sites
   * pretenured); a dead Flight there still points at the request, headers and body until the
   * next full GC, and every scavenge until then copies them again (measured: scavenges 5×
   * longer and a fifth less throughput before this).
   */
  #letGo(): void {
    this.req = undefined;
    this.signal = FINISHED;
    this.headers = NO_HEADERS;
    this.body = null;
    this.tried =
      this.exclude =
      this.last =
      this.route =
      this.rate =
        undefined;
  }
}
