/**
 * A `--workers` worker's side of the channel (hub.ts): it joins the parent's socket and
 * answers with its metrics, its server counters, and by reloading the state file when the
 * parent's admin API has changed it. When the parent goes away (it crashed, or was killed
 * without stopping its workers), the channel closes and the worker stops too, so no orphan
 * keeps serving a port nobody administers.
 */
import type { Lb } from "../lb.ts";
import type { ConfigLoader } from "../control/reload.ts";
import { counterKey, type ServerCounters } from "./hub.ts";
import { Peer } from "./peer.ts";

/** The environment variable a worker finds the parent's channel by. */
export const CHANNEL_ENV = "LB_WORKERS_CHANNEL";

/** Joins the parent's channel at `path` as worker `worker`; `done` settles when it closes. */
export async function followParent(
  path: string,
  worker: number,
  lb: Lb,
  reload: ConfigLoader,
): Promise<Peer> {
  const conn = await Deno.connect({ transport: "unix", path });
  const peer = new Peer(conn, async (type, body) => {
    if (type === "metrics") return await lb.metrics.registry.getMetricsAsJSON();
    if (type === "counters") return counters(lb);
    if (type === "reload") {
      const r = await lb.reload(reload, String(body.why ?? "the parent's admin change"));
      if (!r.ok) throw new Error(r.problems.join("; "));
      return "reloaded";
    }
    throw new Error(`unknown request "${type}"`);
  });
  await peer.ask("hello", { worker, pid: Deno.pid });
  // A change saved between this worker's start (which read the state file) and its hello
  // was not sent to it: read the state file once more now that it will hear of the next.
  await lb.reload(reload, "joined the parent");
  return peer;
}

/** This process's counters of every server, keyed by pool and id. */
function counters(lb: Lb): Record<string, ServerCounters> {
  const out: Record<string, ServerCounters> = {};
  for (const p of lb.pools.list) {
    for (const s of p.servers.servers) {
      out[counterKey(p.name, s.id)] = {
        inflight: s.inflight,
        requests: s.requests,
        errors: s.errors,
        responses5xx: lb.metrics.responses5xx(p.name, s.id),
      };
    }
  }
  return out;
}
