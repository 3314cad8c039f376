/**
 * Earliest deadline first over weights (Envoy's EDF scheduler), for weighted round-robin
 * in pools too large to scan on every pick: each server has a virtual deadline, the
 * earliest goes next, and its deadline moves on by 1 ÷ weight. Over any long window each
 * server gets its weight's share, like nginx's smooth round-robin, at O(log n) per pick
 * instead of O(n). Ties go to the lower index, so equal weights rotate in order.
 *
 * A server that is not eligible when its turn comes loses the turn (its deadline moves on
 * as if picked), so it builds no backlog to burst with when it returns.
 */
import { eligible } from "../availability.ts";
import type { Server } from "../server.ts";
import type { PickContext } from "./types.ts";

/** Turns looked at per pick before giving up (the caller then scans). */
const TURNS = 16;

export class EdfSchedule {
  readonly servers: readonly Server[];
  #deadline: Float64Array;
  #heap: Int32Array;

  constructor(servers: readonly Server[]) {
    this.servers = servers;
    const n = servers.length;
    this.#deadline = new Float64Array(n);
    this.#heap = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      this.#deadline[i] = 1 / servers[i].weight;
      this.#heap[i] = i;
    }
    for (let i = (n >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  /** The next eligible server in deadline order; undefined after TURNS ineligible turns. */
  pick(ctx: PickContext): Server | undefined {
    const n = this.servers.length;
    for (let t = 0; t < TURNS && n > 0; t++) {
      const i = this.#heap[0];
      const s = this.servers[i];
      this.#deadline[i] += 1 / s.weight;
      this.#down(0);
      if (eligible(s, ctx)) return s;
    }
    return undefined;
  }

  #before(a: number, b: number): boolean {
    const da = this.#deadline[a], db = this.#deadline[b];
    return da < db || (da === db && a < b);
  }

  #down(at: number): void {
    const heap = this.#heap;
    const n = heap.length;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && this.#before(heap[r], heap[l]) ? r : l;
      if (!this.#before(heap[c], heap[at])) return;
      [heap[c], heap[at]] = [heap[at], heap[c]];
      at = c;
    }
  }
}
