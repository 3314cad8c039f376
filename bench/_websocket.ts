/**
 * WebSockets through lb, nginx and HAProxy to one echo backend (bench/ws_echo.ts), with the
 * load client bench/ws_load.ts: messages per second and p99 round trip at 1,000 connections
 * (each sends a 64-byte message and waits for its echo), and lb's RSS holding 10,000 idle
 * WebSockets (fewer when `ulimit -n` cannot hold two descriptors each).
 */
import type { Upstream } from "./_configs.ts";
import { peerMissing, startHaproxy, startNginx } from "./_peers.ts";
import {
  fdLimit,
  memoryOf,
  type Proc,
  type Procs,
  readLog,
  sleep,
  waitForOutput,
} from "./_procs.ts";

export interface WebSocketRow {
  label: string;
  messagesPerSec?: number;
  p50?: number;
  p99?: number;
  skipped?: string;
}

export interface WebSocketResult {
  connections: number;
  seconds: number;
  rows: WebSocketRow[];
  /** lb's RSS with `idle` idle WebSockets open (bytes), and before them. */
  idle?: { connections: number; rssBefore: number; rss: number };
  notes: string[];
}

export interface WebSocketOptions {
  procs: Procs;
  dir: string;
  root: string;
  quick: boolean;
  startLb(upstreams: Upstream[]): Promise<{ proc: Proc; port: number }>;
}

export async function measureWebSockets(o: WebSocketOptions): Promise<WebSocketResult> {
  const connections = o.quick ? 200 : 1000;
  const seconds = o.quick ? 3 : 5;
  const out: WebSocketResult = { connections, seconds, rows: [], notes: [] };
  const echo = o.procs.spawn("ws-echo", Deno.execPath(), ["run", "-A", "bench/ws_echo.ts"], {
    cwd: o.root,
  });
  try {
    const [m] = await waitForOutput(echo, /listening (\d+)/, 1);
    const ups = [{ host: "127.0.0.1", port: Number(m[1]) }];
    const targets: [string, () => Promise<{ proc: Proc; port: number }>, string?][] = [
      ["nginx (1 worker)", () => startNginx(o.procs, o.dir, ups), "nginx"],
      ["HAProxy (1 thread)", () => startHaproxy(o.procs, o.dir, ups), "haproxy"],
      ["lb round-robin", () => o.startLb(ups)],
    ];
    for (const [label, start, peer] of targets) {
      const missing = peer ? await peerMissing(peer as "nginx" | "haproxy") : undefined;
      if (missing) {
        out.rows.push({ label, skipped: missing });
        continue;
      }
      const { proc, port } = await start();
      try {
        out.rows.push({ label, ...await load(o, port, connections, seconds) });
        if (!peer) {
          // Each idle WebSocket holds two descriptors in lb: keep within `ulimit -n`.
          const n = Math.min(o.quick ? 2000 : 10_000, Math.floor((fdLimit() - 200) / 2));
          out.idle = await idle(o, proc, port, n).catch((e) => {
            out.notes.push(`lb with idle WebSockets: ${(e as Error).message.split("\n")[0]}`);
            return undefined;
          });
        }
      } catch (e) {
        out.rows.push({ label, skipped: (e as Error).message });
      } finally {
        await o.procs.stop(proc);
      }
    }
  } finally {
    await o.procs.stop(echo);
  }
  return out;
}

async function load(o: WebSocketOptions, port: number, conns: number, seconds: number) {
  const { status, output } = await o.procs.run("ws-load", Deno.execPath(), [
    "run",
    "-A",
    "bench/ws_load.ts",
    `ws://127.0.0.1:${port}/`,
    String(conns),
    String(seconds),
  ], { cwd: o.root });
  const line = output.trim().split("\n").at(-1) ?? "";
  if (!status.success) throw new Error(`the load client failed: ${line}`);
  return JSON.parse(line) as { messagesPerSec: number; p50: number; p99: number };
}

/** lb's RSS before and while `n` idle WebSockets are open. */
async function idle(o: WebSocketOptions, lb: Proc, port: number, n: number) {
  const rssBefore = memoryOf(lb.pid)?.rss ?? 0;
  const client = o.procs.spawn("ws-idle", Deno.execPath(), [
    "run",
    "-A",
    "bench/ws_load.ts",
    `ws://127.0.0.1:${port}/`,
    String(n),
    "0",
    "idle",
  ], { cwd: o.root });
  try {
    await waitForOutput(client, /"open":\d+/, 1, 120_000);
    await sleep(1000);
    return { connections: n, rssBefore, rss: memoryOf(lb.pid)?.rss ?? 0 };
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${(await readLog(client)).slice(-200)}`);
  } finally {
    await o.procs.stop(client);
  }
}
