/** `lb serve` with TLS from the command line and with --watch: real subprocesses. */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { lb } from "../cli/_cli.ts";
import { until } from "../_stack.ts";
import { startLbProcess } from "../_serve.ts";
import { makeCa, servedCn } from "./_certs.ts";

Deno.test("lb serve --tls-cert/--tls-key serves HTTPS; either flag alone is a usage error", async () => {
  const ca = await makeCa();
  const cert = await ca.leaf("cli", ["localhost", "127.0.0.1"]);
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const proc = await startLbProcess(`backends: [{ url: "${backend.url}" }]`, {
    args: ["--tls-cert", cert.certFile, "--tls-key", cert.keyFile],
  });
  try {
    assert.match(proc.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const client = Deno.createHttpClient({ caCerts: [ca.caPem] });
    const res = await fetch(proc.url.replace("127.0.0.1", "localhost") + "/", { client });
    assert.equal((await res.json()).backend, "backend-1");
    client.close();
    const alone = await lb(["serve", "--tls-cert", cert.certFile]);
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /^lb: --tls-cert and --tls-key go together\n/);
  } finally {
    await proc.close();
    await backend.close();
    await ca.close();
  }
});

Deno.test("lb serve --watch swaps in certificate files replaced on disk", async () => {
  const ca = await makeCa();
  const cert = await ca.leaf("watched", ["localhost", "127.0.0.1"]);
  const next = await ca.leaf("renewed", ["localhost", "127.0.0.1"], { cn: "renewed" });
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const proc = await startLbProcess(
    `listen: { host: 127.0.0.1, port: 0, tls: { cert: ${cert.certFile}, key: ${cert.keyFile} } }
backends: [{ url: "${backend.url}" }]`,
    { args: ["--watch"] },
  );
  try {
    const port = Number(new URL(proc.url).port);
    assert.equal(await servedCn(port), "localhost");
    // As certbot does: the key first, then the certificate.
    Deno.copyFileSync(next.keyFile, cert.keyFile);
    Deno.copyFileSync(next.certFile, cert.certFile);
    await until(
      async () => (await servedCn(port)) === "renewed",
      "the renewed certificate",
      10_000,
    );
  } finally {
    await proc.close();
    await backend.close();
    await ca.close();
  }
});
