/**
 * Slowloris: Debian's `slowhttptest` holds 500 connections open with headers that never end,
 * while ordinary clients keep being served. Bounded: the attack runs for 20 s.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import { testYaml } from "../_raw.ts";

/** Established TCP connections whose local port is `port` (the lb side). */
async function establishedTo(port: number): Promise<number> {
  const out = await new Deno.Command("ss", {
    args: ["-tnH", "state", "established", `( sport = :${port} )`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).length;
}

Deno.test({
  name: "with 500 slowloris connections open, ordinary clients are still served",
  async fn() {
    const be = await startDemoBackend({ port: 0, index: 1 });
    const lb = startLb({
      config: parseConfig(testYaml([be.url], "admin: { enabled: false }")),
    });
    const port = Number(new URL(lb.url).port);
    const attack = new Deno.Command("slowhttptest", {
      // -c 500 connections, -H slow headers, a follow-up header every 5 s, 100 new per second,
      // GET, up to 24 bytes per follow-up, probe timeout 3 s, 20 s in all.
      args: [
        ..."-c 500 -H -i 5 -r 100 -t GET -x 24 -p 3 -l 20".split(" "),
        "-u",
        `${lb.url}/`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const finished = attack.output();
    let over = false;
    finished.then(() => over = true, () => over = true);
    let served = 0;
    let failed = 0;
    let peak = 0;
    const errors: string[] = [];
    try {
      while (!over) {
        try {
          const res = await fetch(`${lb.url}/ordinary`, { signal: AbortSignal.timeout(3000) });
          await res.text();
          if (res.status === 200) served++;
          else {
            failed++;
            errors.push(`status ${res.status}`);
          }
        } catch (e) {
          failed++;
          errors.push((e as Error).message);
        }
        peak = Math.max(peak, await establishedTo(port));
        await new Promise((r) => setTimeout(r, 200));
      }
      const out = await finished;
      const report = new TextDecoder().decode(out.stdout);
      // The attack really held its connections (else this test proves nothing)…
      assert.ok(peak >= 400, `only ${peak} connections were open at the peak\n${report}`);
      // …and every ordinary request meanwhile was served.
      assert.equal(failed, 0, errors.join("\n"));
      assert.ok(served >= 20, `only ${served} ordinary requests completed`);
    } finally {
      if (!over) {
        try {
          attack.kill("SIGKILL");
        } catch {
          // already gone
        }
        await finished.catch(() => {});
      }
      await lb.shutdown(2000);
      await be.close();
    }
  },
});
