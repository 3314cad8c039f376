/**
 * The `--workers` parent's side of the channel to its workers (peer.ts): a Unix socket in a
 * directory only this user can enter, which each worker joins with `hello`. Through it the
 * parent's admin listener shows the whole instance, not just its own share:
 *
 * - `/metrics` adds every worker's metrics (prom-client's JSON, summed by
 *   `AggregatorRegistry.aggregate`, or taken from the parent where a sum means nothing);
 * - server views (`/api/servers`, `/events`, the dashboard) add every worker's in-flight,
 *   request, error and 5xx counts;
 * - an admin change is applied by every worker (it reloads the state file the parent has
 *   just written) before the API answers.
 *
 * Nothing here is on the request path: it runs when an operator or Prometheus asks.
 */
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { Peer } from "./peer.ts";
import { Retired } from "./retired.ts";

/** A server's counters in one process. */
export interface ServerCounters {
  inflight: number;
  requests: number;
  errors: number;
  responses5xx: number;
}

/** What the parent's lb reads from its workers. */
export interface WorkerTotals {
  /** Every worker's metrics as prom-client JSON (`registry.getMetricsAsJSON()`). */
  metrics(): Promise<unknown[][]>;
  /** Reads every worker's server counters; `others` then answers from them. */
  refresh(): Promise<void>;
  /** The workers' counters for a server (as of the last refresh), summed. */
  others(pool: string, id: string): ServerCounters | undefined;
  /** Every worker reloads the state file; resolves once all have (or given up on one). */
  propagate(why: string): Promise<void>;
}

/** How long the parent waits for a worker's answer. */
const ASK_MS = 2000;
const RELOAD_MS = 5000;

export class WorkerHub implements WorkerTotals {
  readonly path: string;
  readonly #dir: string;
  readonly #listener: Deno.Listener;
  readonly #peers = new Map<number, Peer>();
  /** Each worker's last answers, kept for when it exits (retired.ts). */
  readonly #last = new Map<
    Peer,
    { metrics?: unknown[]; counters?: Record<string, ServerCounters> }
  >();
  readonly #retired = new Retired();
  #totals = new Map<string, ServerCounters>();
  #accepting: Promise<void>;
  #closing = false;

  private constructor(dir: string, readonly logger: Logger) {
    this.#dir = dir;
    this.path = join(dir, "workers.sock");
    this.#listener = Deno.listen({ transport: "unix", path: this.path });
    this.#accepting = this.#accept();
  }

  /** Listens on a new socket in a fresh directory of mode 0700. */
  static async open(logger: Logger): Promise<WorkerHub> {
    const dir = await Deno.makeTempDir({ prefix: "lb-workers-" });
    await Deno.chmod(dir, 0o700);
    return new WorkerHub(dir, logger);
  }

  /** Workers connected now. */
  get size(): number {
    return this.#peers.size;
  }

  async metrics(): Promise<unknown[][]> {
    // Counters too, so what a worker that dies later had counted is known in both.
    const [replies] = await Promise.all([this.#askAll("metrics", ASK_MS), this.refresh()]) as [
      unknown[][],
      void,
    ];
    const retired = this.#retired.metrics();
    return retired ? [...replies, retired] : replies;
  }

  async refresh(): Promise<void> {
    const replies = (await this.#askAll("counters", ASK_MS)) as Record<string, ServerCounters>[];
    const totals = new Map<string, ServerCounters>();
    for (const r of [...replies, Object.fromEntries(this.#retired.servers)]) {
      for (const [key, c] of Object.entries(r)) {
        const t = totals.get(key);
        if (!t) totals.set(key, { ...c });
        else {
          t.inflight += c.inflight;
          t.requests += c.requests;
          t.errors += c.errors;
          t.responses5xx += c.responses5xx;
        }
      }
    }
    this.#totals = totals;
  }

  others(pool: string, id: string): ServerCounters | undefined {
    return this.#totals.get(counterKey(pool, id));
  }

  async propagate(why: string): Promise<void> {
    const asked = [...this.#peers].map(async ([n, peer]) => {
      try {
        await peer.ask("reload", { why }, RELOAD_MS);
      } catch (e) {
        this.logger.error(`worker ${n} did not apply the change: ${(e as Error).message}`, {
          worker: n,
        });
      }
    });
    await Promise.all(asked);
  }

  async close(): Promise<void> {
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const p of this.#peers.values()) p.close();
    await this.#accepting;
    await Promise.all([...this.#peers.values()].map((p) => p.done));
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  /** Answers from every worker that answers in time (the others are left out). */
  async #askAll(type: "metrics" | "counters", ms: number): Promise<unknown[]> {
    const replies = await Promise.allSettled([...this.#peers.values()].map(async (p) => {
      const reply = await p.ask(type, {}, ms);
      const last = this.#last.get(p);
      if (last) last[type] = reply as never;
      return reply;
    }));
    return replies.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) this.#join(conn);
    } catch {
      // closed
    }
  }

  /** A worker joins with `hello {worker}`; a later one with the same number replaces it. */
  #join(conn: Deno.Conn): void {
    let n: number | undefined;
    const peer = new Peer(conn, (type, body) => {
      if (type !== "hello" || typeof body.worker !== "number") {
        return Promise.reject(new Error(`unexpected "${type}"`));
      }
      n = body.worker;
      this.#peers.get(n)?.close();
      this.#peers.set(n, peer);
      this.#last.set(peer, {});
      return Promise.resolve("welcome");
    });
    void peer.done.then(() => {
      if (n !== undefined && this.#peers.get(n) === peer) this.#peers.delete(n);
      const last = this.#last.get(peer);
      this.#last.delete(peer);
      // Its counts stay in the totals, so they never go down (retired.ts).
      if (last && !this.#closing) this.#retired.add(last.metrics, last.counters);
    });
  }
}

/** How counters are keyed across processes. */
export function counterKey(pool: string, id: string): string {
  return `${pool}\n${id}`;
}
