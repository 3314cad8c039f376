/** The sticky cookie's value: what it names, what it hides, and what it refuses. */
import assert from "node:assert/strict";
import { ServerPool } from "../../src/balancing/pool.ts";
import { cookieValue, Sticky } from "../../src/routing/sticky.ts";

const SECRET = "a-secret-of-at-least-16";

function sticky(secret = SECRET, own?: string) {
  const pool = new ServerPool([
    { url: "http://10.0.0.1:8080", name: "web-1" },
    { url: "http://10.0.0.2:8080" },
  ]);
  return { pool, sticky: new Sticky({ cookie: "lb", secret: own }, secret, "web", pool) };
}

Deno.test("cookieValue finds a cookie among others, also in HTTP/2's comma-joined Cookie fields", () => {
  assert.equal(cookieValue("a=1; lb=xyz; b=2", "lb"), "xyz");
  assert.equal(cookieValue("a=1, lb=xyz, b=2", "lb"), "xyz");
  assert.equal(cookieValue("xlb=1; lb=2", "lb"), "2");
  assert.equal(cookieValue("a=1", "lb"), "");
  assert.equal(cookieValue(null, "lb"), "");
});

Deno.test("a sticky value names its server without its address or id, and only lb's key makes one", () => {
  const { pool, sticky: s } = sticky();
  const [one, two] = pool.servers;
  const v1 = s.tokenOf(one)!;
  const v2 = s.tokenOf(two)!;
  assert.notEqual(v1, v2);
  for (const v of [v1, v2]) {
    assert.match(v, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(!/10\.0\.0|8080|web/.test(v), v);
  }
  assert.equal(s.serverFor(`lb=${v2}`).server, two);
  assert.equal(s.setCookie(one, false), `lb=${v1}; Path=/; HttpOnly; SameSite=Lax`);
  assert.match(s.setCookie(one, true)!, /; Secure$/);
  // Another key (another lb, or after the key changed): the same server gets another value.
  const other = sticky("another-secret-16+");
  assert.notEqual(other.sticky.tokenOf(other.pool.servers[0]), v1);
  assert.equal(other.sticky.serverFor(`lb=${v1}`).server, undefined);
  for (const forged of ["web-1", "10.0.0.1:8080", v1.slice(0, -1), "", "%00", `${v1}x`]) {
    assert.equal(s.serverFor(`lb=${forged}`).server, undefined, forged);
  }
  s.close();
  other.sticky.close();
});

Deno.test("a removed server's value names nobody, and rekey keeps a pool's own secret", () => {
  const { pool, sticky: s } = sticky();
  const v = s.tokenOf(pool.servers[0])!;
  pool.removeServer("web-1");
  assert.equal(s.serverFor(`lb=${v}`).server, undefined);
  const second = s.tokenOf(pool.servers[0])!;
  s.rekey("a-new-lb-wide-key-16");
  assert.notEqual(s.tokenOf(pool.servers[0]), second);
  const own = sticky(SECRET, "the-pool-own-secret");
  const before = own.sticky.tokenOf(own.pool.servers[0]);
  own.sticky.rekey("a-new-lb-wide-key-16");
  assert.equal(own.sticky.tokenOf(own.pool.servers[0]), before);
  s.close();
  own.sticky.close();
});
