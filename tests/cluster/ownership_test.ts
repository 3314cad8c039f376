import assert from "node:assert/strict";
import { ownerOf, ownershipKey, Rendezvous } from "../../src/cluster/ownership.ts";

const members = (n: number) => Array.from({ length: n }, (_, i) => `lb-${i}.example:${4000 + i}`);
const keys = (n: number) =>
  Array.from({ length: n }, (_, i) => ownershipKey("web", `10.0.${i >> 8}.${i & 255}:8080`));

Deno.test("rendezvous gives the same owner whatever the order of the member list", () => {
  const m = members(20);
  const a = new Rendezvous(m);
  const b = new Rendezvous([...m].reverse());
  for (const k of keys(2000)) assert.equal(a.owner(k), b.owner(k));
  assert.equal(ownerOf("web/a", m), a.owner("web/a"));
});

Deno.test("rendezvous gives each of 10 members between 0.8 and 1.2 times its share of 10,000 keys", () => {
  const m = members(10);
  const r = new Rendezvous(m);
  const counts = new Map<string, number>();
  for (const k of keys(10_000)) counts.set(r.owner(k)!, (counts.get(r.owner(k)!) ?? 0) + 1);
  assert.equal(counts.size, 10);
  for (const [who, n] of counts) assert.ok(n >= 800 && n <= 1200, `${who} owns ${n}`);
});

Deno.test("when a member leaves only its keys move, and when one joins it takes about 1/N from all", () => {
  const m = members(10);
  const all = keys(10_000);
  const before = new Rendezvous(m);
  const owners = all.map((k) => before.owner(k));
  const after = new Rendezvous(m.filter((x) => x !== m[3]));
  let moved = 0;
  all.forEach((k, i) => {
    const o = after.owner(k);
    if (o === owners[i]) return;
    moved++;
    assert.equal(owners[i], m[3], `${k} moved from ${owners[i]}, which stayed`);
  });
  assert.equal(moved, owners.filter((o) => o === m[3]).length);
  const joined = new Rendezvous([...m, "lb-new.example:5000"]);
  let taken = 0;
  all.forEach((k, i) => {
    const o = joined.owner(k);
    if (o === owners[i]) return;
    taken++;
    assert.equal(o, "lb-new.example:5000", "a key moved between two old members");
  });
  assert.ok(taken > 10_000 / 11 * 0.8 && taken < 10_000 / 11 * 1.2, `${taken} keys moved`);
});

Deno.test("rendezvous with one member gives it everything, and without members no owner", () => {
  assert.equal(ownerOf("web/a", ["only"]), "only");
  assert.equal(ownerOf("web/a", []), undefined);
  assert.equal(new Rendezvous(["a", "a", "b"]).members.length, 2);
});
