/**
 * How long a change through one instance's admin API takes to be in effect on the others:
 * `deno run -A bench/cluster_convergence.ts [--instances 3] [--changes 200] [--backends 3]`.
 *
 * Starts a real redis-server (tests/_redis.ts) and N lb instances in this process, then
 * PATCHes a server's weight through instance 0's API, alternating servers, and times from
 * sending the PATCH until every other instance's pool shows the new weight (a check every
 * 0.5 ms after the API's answer; often they already do when it answers). Prints p50, p99 and max, and Redis's commands per second meanwhile.
 * The instances share one process and one event loop, so this is an upper bound on what
 * separate processes on separate cores would see.
 */
import { parseArgs } from "node:util";
import { startCluster } from "../tests/cluster/_cluster.ts";
import { until } from "../tests/_stack.ts";

const { values } = parseArgs({
  options: {
    backends: { type: "string", default: "3" },
    instances: { type: "string", default: "3" },
    changes: { type: "string", default: "200" },
  },
});
const n = Number(values.instances), changes = Number(values.changes);
const idle = Math.max(0, Number(values.backends) - 3);
const rig = await startCluster(n, { backends: 3, idle });
try {
  await until(() => rig.instances.every((i) => i.lb.cluster!.status().connected), "sync", 10_000);
  const stats = async () =>
    Number(/total_commands_processed:(\d+)/.exec(await rig.redis.cli("INFO", "stats"))![1]);
  const commands0 = await stats();
  const t0 = performance.now();
  const times: number[] = [];
  for (let k = 0; k < changes; k++) {
    const id = `backend-${(k % 3) + 1}`;
    const weight = 2 + (k % 500);
    const sent = performance.now();
    const res = await fetch(`${rig.instances[0].admin}/api/servers/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ weight }),
    });
    if (res.status !== 200) throw new Error(`PATCH answered ${res.status}: ${await res.text()}`);
    await res.body?.cancel();
    const answered = performance.now();
    const others = rig.instances.slice(1);
    while (!others.every((i) => i.lb.pool.get(id)?.weight === weight)) {
      await new Promise((r) => setTimeout(r, 0.5));
      if (performance.now() - answered > 5000) throw new Error("no convergence within 5 s");
    }
    times.push(performance.now() - sent);
  }
  const seconds = (performance.now() - t0) / 1000;
  const commands = (await stats()) - commands0;
  times.sort((a, b) => a - b);
  const q = (p: number) =>
    times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  console.log(
    `${changes} changes through 1 of ${n} instances with ${values.backends} backends: ` +
      `in effect on the other ${n - 1} ` +
      `within p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${
        times.at(-1)!.toFixed(1)
      } ms of the PATCH; ` +
      `Redis ran ${(commands / seconds).toFixed(0)} commands/s (${
        (commands / changes).toFixed(1)
      } per change, heartbeats included)`,
  );
} finally {
  await rig.close();
}
