import { estimate } from "../ewma.ts";
import type { Server } from "../server.ts";

/**
 * Cost of a server that has never answered but already has requests in flight: above any
 * measured cost, ordered by in-flight (Finagle's peak-EWMA `Penalty`). Without it, every
 * request would pile onto an unmeasured server until its first answer came back.
 */
export const UNMEASURED_BUSY_COST = 1e12;

/**
 * Expected cost of sending one more request to `s`: its latency estimate × (in-flight + 1)
 * ÷ weight, as Finagle's and Linkerd's peak-EWMA balancers score hosts.
 *
 * The estimate decays towards 0 only while the server is idle (see ewma.ts `estimate`): an
 * idle slow server is tried again in time, but once a request is out to it the estimate
 * holds until an answer arrives, so a slow server gets one probe at a time, not a rush.
 * A server never measured costs 0 while idle (tried at once) and
 * {@link UNMEASURED_BUSY_COST} + in-flight while its first request is out.
 */
export function latencyCost(s: Server, now: number, tau: number, which: "value" | "peak"): number {
  if (s.latency.at === 0) {
    return s.inflight === 0 ? 0 : UNMEASURED_BUSY_COST + s.inflight / s.weight;
  }
  const held = which === "peak" ? s.latency.peak : s.latency.value;
  const latency = s.inflight === 0 ? estimate(s.latency, now, tau, which) : held;
  return latency * (s.inflight + 1) / s.weight;
}
