/**
 * Test helper: lb instances in one process, each with its admin listener and its own state
 * file, joined into one cluster over a real redis-server (tests/_redis.ts), in front of the
 * same demo backends.
 */
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { call, memoryLogger, until } from "../_stack.ts";
import { type RedisProcess, startRedis } from "../_redis.ts";

export interface Instance {
  lb: Lb;
  admin: string;
  url: string;
  logs: string[];
  stateFile: string;
}

export interface ClusterRig {
  redis: RedisProcess;
  backends: DemoBackend[];
  instances: Instance[];
  /** Starts one more instance (or again one that was stopped, with `index`: same state file). */
  start(index?: number): Promise<Instance>;
  close(): Promise<void>;
}

/** lb.yaml of every instance: the backends, admin on port 0, cluster on `redis` as `instance`. */
export function clusterYaml(
  redis: string,
  backends: string[],
  extra = "",
  instance = "i0",
  health = "{ enabled: false }",
): string {
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { access: false, format: json }
health: ${health}
backends:
${backends.map((u, i) => `  - { url: "${u}", name: backend-${i + 1} }`).join("\n")}
cluster: { redis: "${redis}", name: t, instance: ${instance}, heartbeat: 200ms, memberTtl: 1s }
${extra}`;
}

export async function startCluster(
  count: number,
  opts: {
    backends?: number;
    /** More backends at addresses nothing listens on (never contacted: no health checks). */
    idle?: number;
    extra?: string;
    /** The `health` section (default: no checks). */
    health?: string;
    redis?: RedisProcess;
  } = {},
): Promise<ClusterRig> {
  const redis = opts.redis ?? await startRedis();
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= (opts.backends ?? 3); i++) {
    backends.push(await startDemoBackend({ port: 0, index: i }));
  }
  const dir = await Deno.makeTempDir({ prefix: "lb_cluster_" });
  const instances: Instance[] = [];
  const start = async (index = instances.length) => {
    const logger = memoryLogger();
    const idle = Array.from(
      { length: opts.idle ?? 0 },
      (_, i) => `http://127.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:9`,
    );
    const urls = [...backends.map((b) => b.url), ...idle];
    const yaml = clusterYaml(redis.url, urls, opts.extra, `i${index}`, opts.health);
    const stateFile = `${dir}/lb-${index}.state.json`;
    const lb = startLb({ config: parseConfig(yaml), logger, stateFile });
    await lb.ready;
    const i: Instance = { lb, admin: lb.adminUrl!, url: lb.url, logs: logger.lines, stateFile };
    instances[index] = i;
    return i;
  };
  for (let i = 0; i < count; i++) await start();
  return {
    redis,
    backends,
    instances,
    start,
    async close() {
      await Promise.all(instances.map((i) => i.lb.shutdown(1000)));
      await Promise.all(backends.map((b) => b.close()));
      if (!opts.redis) await redis.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Waits until every instance follows the view (connected) and sees `members` members. */
export async function untilConnected(instances: Instance[], members = instances.length) {
  for (const i of instances) {
    await until(
      async () => {
        const r = await call(i.admin, "GET", "/api/cluster");
        return r.json.connected && r.json.members.length === members;
      },
      `instance ${i.admin} to join a cluster of ${members}`,
      10_000,
    );
  }
}

/** One server as an instance's API shows it. */
export async function serverOf(i: Instance, id: string) {
  const r = await call(i.admin, "GET", `/api/servers/${id}`);
  return r.status === 200 ? r.json : undefined;
}
