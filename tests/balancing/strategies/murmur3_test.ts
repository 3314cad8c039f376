import assert from "node:assert/strict";
import { hash32 } from "../../../src/balancing/strategies/_murmur3.ts";
import { seededRandom } from "../../../src/balancing/strategies/seeded_random.ts";

/** Textbook MurmurHash3 x86_32 over bytes, to check hash32 against. */
function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  let h = seed | 0;
  const blocks = bytes.length >> 2;
  const mix = (k: number) => Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
  for (let i = 0; i < blocks; i++) {
    const k = bytes[4 * i] | bytes[4 * i + 1] << 8 | bytes[4 * i + 2] << 16 |
      bytes[4 * i + 3] << 24;
    h = (Math.imul(rotl(h ^ mix(k), 13), 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const tail = bytes.length & 3;
  if (tail >= 3) k ^= bytes[4 * blocks + 2] << 16;
  if (tail >= 2) k ^= bytes[4 * blocks + 1] << 8;
  if (tail >= 1) h ^= mix(k ^ bytes[4 * blocks]);
  h ^= bytes.length;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function utf16le(s: string): Uint8Array {
  const out = new Uint8Array(s.length * 2);
  for (let i = 0; i < s.length; i++) {
    out[2 * i] = s.charCodeAt(i) & 255;
    out[2 * i + 1] = s.charCodeAt(i) >> 8;
  }
  return out;
}

Deno.test("the reference MurmurHash3 matches its published test vectors", () => {
  const ascii = (s: string) => new TextEncoder().encode(s);
  assert.equal(murmur3Bytes(ascii(""), 0), 0);
  assert.equal(murmur3Bytes(ascii(""), 1), 0x514e28b7);
  assert.equal(murmur3Bytes(ascii("The quick brown fox jumps over the lazy dog"), 0), 0x2e4ff723);
});

Deno.test("hash32 is MurmurHash3 x86_32 of the string's UTF-16LE code units", () => {
  const random = seededRandom(9);
  for (let i = 0; i < 500; i++) {
    const s = String.fromCharCode(
      ...Array.from({ length: Math.floor(random() * 20) }, () => Math.floor(random() * 0x3000)),
    );
    const seed = Math.floor(random() * 2 ** 32);
    assert.equal(hash32(s, seed), murmur3Bytes(utf16le(s), seed), `for ${JSON.stringify(s)}`);
  }
});

Deno.test("hash32 spreads similar keys evenly over 16 buckets", () => {
  const buckets = new Array(16).fill(0);
  for (let i = 0; i < 16_000; i++) buckets[hash32(`10.0.${i >> 8}.${i & 255}`) >>> 28]++;
  for (const b of buckets) assert.ok(b > 900 && b < 1100, `bucket of ${b}`);
});
