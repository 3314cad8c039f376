import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { freePort, until } from "../_stack.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** The pids listening on a TCP port, from `ss`. */
async function listeners(port: number): Promise<Set<string>> {
  const out = await new Deno.Command("ss", {
    args: ["-ltnpH", `sport = :${port}`],
    stdout: "piped",
  }).output();
  return new Set([...new TextDecoder().decode(out.stdout).matchAll(/pid=(\d+)/g)].map((m) => m[1]));
}

Deno.test("lb serve --workers 2 shares the port between two processes that follow the admin API, and stops both", async () => {
  const b1 = await startDemoBackend({ port: 0, index: 1 });
  const b2 = await startDemoBackend({ port: 0, index: 2 });
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const adminPort = freePort();
  await Deno.writeTextFile(
    `${dir}/lb.yaml`,
    `listen: {port: ${port}}\nadmin: {port: ${adminPort}}\nlog: {access: false}\n` +
      `backends:\n  - {url: "${b1.url}", name: b1}\n  - {url: "${b2.url}", name: b2}\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--workers", "2"],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = new Response(child.stdout).text();
  const err = new Response(child.stderr).text();
  try {
    await until(async () => (await listeners(port)).size === 2, "two processes listening", 15_000);
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 200);
    await res.body?.cancel();

    // One admin API change reaches both workers (through the state file).
    const patch = await fetch(`http://127.0.0.1:${adminPort}/api/servers/b1`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ state: "disabled" }),
    });
    assert.equal(patch.status, 200);
    await patch.body?.cancel();
    await until(
      async () => {
        // New connections each time, so the kernel spreads them over both processes.
        for (let i = 0; i < 20; i++) {
          const client = Deno.createHttpClient({});
          try {
            const r = await fetch(`http://127.0.0.1:${port}/`, { client });
            if ((await r.json()).backend !== "backend-2") return false;
          } finally {
            client.close();
          }
        }
        return true;
      },
      "every worker to stop using b1",
      10_000,
    );
  } finally {
    child.kill("SIGTERM");
  }
  assert.equal((await child.status).code, 0, await err);
  await out;
  assert.equal((await listeners(port)).size, 0, "no worker is left listening");
  await b1.close();
  await b2.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--workers must be a whole number from 1 to 64", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--workers", "0"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 2);
  assert.match(new TextDecoder().decode(r.stderr), /--workers must be a whole number from 1 to 64/);
});
