/**
 * lb with `listen.tls.acme` against a real pebble: the redirect listener answers pebble's
 * http-01 validation, the issued certificate is served on the traffic port, and a restart
 * serves the stored one at once without a new order.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import { freePort, memoryLogger } from "../_stack.ts";
import { servedCn } from "./_certs.ts";
import { startPebble } from "./_pebble.ts";

Deno.test("lb gets its certificate from an ACME CA over http-01 on its redirect listener, serves it, and reuses it after a restart", async () => {
  const pebble = await startPebble({ alwaysValid: false });
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const storage = await Deno.makeTempDir({ prefix: "lb-acme-lb-" });
  const port = freePort();
  const config = parseConfig(`listen:
  port: ${port}
  redirectHttp: ${pebble.httpPort}
  tls:
    acme:
      directory: ${pebble.directory}
      domains: [lb.acme.test]
      storage: ${storage}
      caBundle: ${pebble.caFile}
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends: [{ url: "${backend.url}" }]`);
  const orders = () => pebble.count(/new-order|POST \/order-plz/i);
  try {
    let lb = startLb({ config, logger: memoryLogger() });
    await lb.ready;
    assert.equal(lb.url, `https://127.0.0.1:${port}`);
    const info = lb.certificates.get("traffic")!;
    assert.deepEqual(info.domains, ["lb.acme.test"]);
    assert.equal(await servedCn(port, "lb.acme.test"), "lb.acme.test");
    const out = await new Deno.Command("curl", {
      args: ["-sk", "--resolve", `lb.acme.test:${port}:127.0.0.1`, `https://lb.acme.test:${port}/`],
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(out.stdout), /"backend":"backend-1"/);
    const ordered = orders();
    assert.ok(ordered >= 1, pebble.log().slice(-500));
    await lb.shutdown(2000);

    lb = startLb({ config, logger: memoryLogger() });
    await lb.ready;
    assert.equal(lb.certificates.get("traffic")!.serial, info.serial, "the stored certificate");
    assert.equal(orders(), ordered, "no new order");
    await lb.shutdown(2000);
  } finally {
    await backend.close();
    await pebble.close();
    await Deno.remove(storage, { recursive: true });
  }
});
