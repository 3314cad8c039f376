/**
 * Who checks which backend in a cluster: rendezvous (highest random weight) hashing. Every
 * member scores every key and the highest score owns it, so all members that see the same
 * member list agree without talking, each owns about 1/N of the keys, and when a member
 * leaves only its keys move (each to the member that scored second for it); when one joins
 * it takes about 1/(N+1) of the keys, from everyone alike. Ring and Maglev tables give the
 * same properties with a table to build; here N is at most a few hundred members, so
 * scoring them all per key is cheap: a key is hashed once (MurmurHash3) and each score is
 * one more MurmurHash3 block over that hash, seeded by the member's own hash.
 *
 * @example
 * ```ts
 * const r = new Rendezvous(link.members());
 * if (r.owner(ownershipKey("web", "10.0.0.7:80")) === link.self) { … check it … }
 * ```
 */
import { hash32, hashInt32 } from "../balancing/strategies/_murmur3.ts";

/**
 * The key of one backend: its pool's name and its id. Pool names have no `/`
 * (config/routes.ts nameSchema), so no two (pool, id) pairs share a key.
 */
export function ownershipKey(pool: string, id: string): string {
  return `${pool}/${id}`;
}

/** The owners of keys for one member list; build a new one when the list changes. */
export class Rendezvous {
  /** The members, sorted, without duplicates. */
  readonly members: readonly string[];
  readonly #seeds: Uint32Array;

  constructor(members: readonly string[]) {
    this.members = [...new Set(members)].sort();
    this.#seeds = Uint32Array.from(this.members, (m) => hash32(m, 0x9747b28c));
  }

  /** The member that owns `key`; undefined only when there are no members. */
  owner(key: string): string | undefined {
    const i = this.ownerIndex(hash32(key));
    return i < 0 ? undefined : this.members[i];
  }

  /**
   * The index in `members` of the owner of a key whose hash32 is `h`; -1 without members.
   * Ties (two 32-bit scores equal) go to the member sorted first, so they too agree.
   */
  ownerIndex(h: number): number {
    const seeds = this.#seeds;
    let best = -1;
    let bestScore = -1;
    for (let i = 0; i < seeds.length; i++) {
      const s = hashInt32(h, seeds[i]);
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    return best;
  }
}

/** The owner of `key` among `members` (a one-off; keep a {@link Rendezvous} for many keys). */
export function ownerOf(key: string, members: readonly string[]): string | undefined {
  return new Rendezvous(members).owner(key);
}
