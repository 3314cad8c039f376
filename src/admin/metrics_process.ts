/**
 * The process's own metrics, under the names Prometheus's client libraries use: memory,
 * open file descriptors and their limit, CPU time, start time. A leak of sockets or memory
 * (a connection stuck in CLOSE-WAIT, say) shows here first. Read at scrape time.
 *
 * prom-client's `collectDefaultMetrics` has these too, but starts an event-loop monitor
 * that cannot be stopped and adds Node-only series (`nodejs_*`) that mean little under Deno.
 */
import process from "node:process";
import client from "prom-client";

/** Open descriptors, from /proc/self/fd (Linux); undefined where there is no /proc. */
function openFds(): number | undefined {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1; // the directory listing's own descriptor
  } catch {
    return undefined;
  }
}

/** The soft limit on open descriptors, from /proc/self/limits (Linux). */
function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const startSeconds = Math.round(Date.now() / 1000 - performance.now() / 1000);

export function registerProcessMetrics(registry: client.Registry): void {
  const registers = [registry];
  const gauge = (name: string, help: string, read: () => number | undefined) =>
    new client.Gauge({
      name,
      help,
      registers,
      collect() {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
    () => Deno.memoryUsage().rss,
  );
  gauge("process_heap_bytes", "V8 heap in use, in bytes.", () => Deno.memoryUsage().heapUsed);
  gauge("process_open_fds", "Number of open file descriptors.", openFds);
  gauge("process_max_fds", "Maximum number of open file descriptors.", maxFds);
  gauge(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch, in seconds.",
    () => startSeconds,
  );
  new client.Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent, in seconds.",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
}
