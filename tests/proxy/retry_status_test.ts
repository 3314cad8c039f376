import assert from "node:assert/strict";
import { startLb } from "../../src/lb.ts";
import { testConfig } from "../_stack.ts";

Deno.test("when every server answered a retryable status, the client gets the last answer with its Retry-After, not a 502", async () => {
  let seen = 0;
  const servers = [0, 1].map(() =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      seen++;
      return new Response("busy\n", { status: 503, headers: { "retry-after": "7" } });
    })
  );
  const lb = startLb({
    config: testConfig(servers.map((s) => `http://127.0.0.1:${s.addr.port}`), {
      retry: { attempts: 3 },
    }),
  });
  try {
    const res = await fetch(`${lb.url}/x`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "7");
    assert.equal(await res.text(), "busy\n");
    assert.equal(seen, 2, "each server was tried once");
  } finally {
    await lb.shutdown(1000);
    for (const s of servers) await s.shutdown();
  }
});
