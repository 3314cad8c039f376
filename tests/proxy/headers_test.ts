/** The header helpers of the request path, on their own (the end-to-end rules are in hostile_headers_test.ts). */
import assert from "node:assert/strict";
import { responseHeaderInit, upstreamRequestHeaders } from "../../src/proxy/headers.ts";

const fields = (init: HeadersInit) => [...new Response(null, { headers: init }).headers];

Deno.test("responseHeaderInit gives an object when no name repeats, and Response sees the same fields", () => {
  const pairs: [string, string][] = [["content-type", "text/plain"], ["via", "1.1 lb"], [
    "x-a",
    "é",
  ]];
  const init = responseHeaderInit(pairs);
  assert.ok(!Array.isArray(init));
  assert.deepEqual(Object.entries(init), pairs);
  assert.deepEqual(fields(init), fields(pairs));
});

Deno.test("responseHeaderInit keeps the pairs when a name repeats (Set-Cookie) or is __proto__", () => {
  const cookies: [string, string][] = [["set-cookie", "a=1"], ["via", "1.1 lb"], [
    "set-cookie",
    "b=2",
  ]];
  assert.equal(responseHeaderInit(cookies), cookies);
  assert.deepEqual(
    new Response(null, { headers: responseHeaderInit(cookies) }).headers.getSetCookie(),
    [
      "a=1",
      "b=2",
    ],
  );
  const proto: [string, string][] = [["__proto__", "x"], ["via", "1.1 lb"]];
  assert.equal(responseHeaderInit(proto), proto);
  assert.deepEqual(fields(responseHeaderInit(proto)), [["__proto__", "x"], ["via", "1.1 lb"]]);
});

Deno.test("upstreamRequestHeaders drops hop-by-hop and Connection-listed fields, replaces forwarding ones from an untrusted peer", () => {
  const h = new Headers({
    host: "example.com",
    connection: "keep-alive, x-secret",
    "x-secret": "1",
    "keep-alive": "timeout=5",
    "x-forwarded-for": "6.6.6.6",
    "x-request-id": "client-chosen",
    accept: "*/*",
  });
  const info = {
    peer: "10.0.0.9",
    trusted: false,
    requestId: "abc",
    proto: "http",
    underscores: "drop" as const,
    underscored: 0,
  };
  assert.deepEqual(upstreamRequestHeaders(h, info), {
    accept: "*/*",
    host: "example.com",
    "x-forwarded-for": "10.0.0.9",
    "x-forwarded-proto": "http",
    "x-forwarded-host": "example.com",
    via: "1.1 lb",
    "x-request-id": "abc",
  });
});
