/** The guard and the concurrency limiter on their own, with an injected clock. */
import assert from "node:assert/strict";
import { ConcurrencyLimiter } from "../../src/proxy/concurrency.ts";
import { createGuard, POISON_MS } from "../../src/proxy/guard.ts";

const LIMITS = { maxUriBytes: 100, maxHeaderBytes: 1000, maxBodyBytes: 1000 };
const peer = (port: number): Deno.NetAddr => ({ transport: "tcp", hostname: "10.0.0.1", port });

function request(method: string, url: string, headers: Record<string, string>) {
  const req = new Request(url, { method, headers });
  const upstream: Record<string, string> = Object.fromEntries(req.headers);
  return { req, upstream };
}

Deno.test("a refused connection stays refused for POISON_MS, then is served again; other connections are not affected", () => {
  let now = 1_000;
  const guard = createGuard(LIMITS, () => now);
  const bad = request("POST", "http://a/", { host: "a", "transfer-encoding": "gzip, chunked" });
  assert.equal(guard(bad.req, peer(5000), bad.upstream)?.rule.status, 400);

  const good = () => request("GET", "http://a/", { host: "a" });
  const again = good();
  assert.equal(guard(again.req, peer(5000), again.upstream)?.rule.status, 400);
  const other = good();
  assert.equal(guard(other.req, peer(5001), other.upstream), undefined);

  now += POISON_MS + 1;
  const later = good();
  assert.equal(guard(later.req, peer(5000), later.upstream), undefined);
});

Deno.test("the guard amends Host from an absolute-form target and folds identical Content-Lengths", () => {
  const guard = createGuard(LIMITS);
  const abs = request("GET", "http://169.254.169.254/x", { host: "a.example" });
  abs.upstream["x-forwarded-host"] = "a.example";
  assert.equal(guard(abs.req, peer(1), abs.upstream), undefined);
  assert.equal(abs.upstream.host, "169.254.169.254");
  assert.equal(abs.upstream["x-forwarded-host"], "169.254.169.254");

  const dup = request("POST", "http://a/", { host: "a", "content-length": "3, 3" });
  assert.equal(guard(dup.req, peer(2), dup.upstream), undefined);
  assert.equal(dup.upstream["content-length"], "3");

  const differ = request("POST", "http://a/", { host: "a", "content-length": "3, 4" });
  assert.equal(guard(differ.req, peer(3), differ.upstream)?.rule.status, 400);
});

Deno.test("the guard answers 414, 431 and 413 at the configured limits, not below", () => {
  const guard = createGuard(LIMITS);
  const at = (path: string, headers: Record<string, string> = {}) => {
    const r = request("POST", `http://a${path}`, { host: "a", ...headers });
    return guard(r.req, undefined, r.upstream)?.rule.status;
  };
  assert.equal(at(`/${"a".repeat(99)}`), undefined);
  assert.equal(at(`/${"a".repeat(100)}`), 414);
  assert.equal(at("/", { "x-big": "v".repeat(900) }), undefined);
  assert.equal(at("/", { "x-big": "v".repeat(1000) }), 431);
  assert.equal(at("/", { "content-length": "1000" }), undefined);
  assert.equal(at("/", { "content-length": "1001" }), 413);
});

Deno.test("the concurrency limiter counts a request in until it leaves, per client and in all", () => {
  const limiter = new ConcurrencyLimiter({ maxConnections: 3, maxConnectionsPerClient: 2 });
  assert.equal(limiter.enter("a"), undefined);
  assert.equal(limiter.enter("a"), undefined);
  assert.equal(limiter.enter("a")?.rule.status, 503, "per-client cap");
  assert.equal(limiter.enter("b"), undefined);
  assert.equal(limiter.enter("c")?.rule.status, 503, "total cap");
  assert.equal(limiter.inflight, 3);
  limiter.leave("a");
  assert.equal(limiter.inflightFrom("a"), 1);
  assert.equal(limiter.enter("a"), undefined);
  limiter.leave("a");
  limiter.leave("a");
  limiter.leave("b");
  assert.equal(limiter.inflight, 0);
  assert.equal(limiter.inflightFrom("a"), 0);
});
