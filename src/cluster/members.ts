/**
 * Who is in the cluster: every instance renews a member key (`lb:{name}:member:{id}`, with a
 * TTL of `cluster.memberTtl`) every `cluster.heartbeat`, and lists the ids in the set
 * `lb:{name}:members`. An id whose key has expired is dropped from the set by whoever lists
 * it next, so an instance that dies disappears one TTL after its last heartbeat; one that
 * stops cleanly deletes its key at once.
 *
 * Redis's own TTLs decide who is alive, not the instances' clocks.
 */
import type { Redis } from "ioredis";
import { z } from "zod";

/** What an instance says about itself in its member key. */
export const memberInfoSchema = z.object({
  id: z.string(),
  host: z.string(),
  pid: z.number(),
  version: z.string(),
  startedAt: z.number(),
  /** The traffic listener's URL. */
  url: z.string(),
  /** Requests per second over the last heartbeat interval. */
  requestRate: z.number(),
  requests: z.number(),
  /** The view revision the instance runs. */
  revision: z.number(),
}).passthrough();

export type MemberInfo = z.infer<typeof memberInfoSchema>;

export class Members {
  readonly #set: string;
  readonly #prefix: string;
  #list: MemberInfo[] = [];

  constructor(prefix: string, readonly self: string, readonly ttlMs: number) {
    this.#set = `${prefix}members`;
    this.#prefix = `${prefix}member:`;
  }

  /** The members as last listed (sorted by id). */
  get list(): readonly MemberInfo[] {
    return this.#list;
  }

  /**
   * Renews this instance's key with `info`, then lists every live member. Returns whether
   * the list of ids changed. Throws when Redis does (the caller counts it).
   */
  async beat(redis: Redis, info: MemberInfo): Promise<boolean> {
    const r = await redis.multi()
      .set(this.#prefix + this.self, JSON.stringify(info), "PX", this.ttlMs)
      .sadd(this.#set, this.self)
      .smembers(this.#set)
      .exec();
    if (!r) throw new Error("the heartbeat transaction was aborted");
    for (const [e] of r) if (e) throw e;
    const ids = (r[2][1] as string[]).sort();
    const values = ids.length ? await redis.mget(ids.map((id) => this.#prefix + id)) : [];
    const live: MemberInfo[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => {
      const parsed = parseMember(values[i]);
      if (parsed && parsed.id === id) live.push(parsed);
      else gone.push(id);
    });
    if (gone.length) await redis.srem(this.#set, ...gone);
    const changed = live.map((m) => m.id).join("\n") !== this.#list.map((m) => m.id).join("\n");
    this.#list = live;
    return changed;
  }

  /** Leaves at once (a clean stop): deletes this instance's key and id. */
  async leave(redis: Redis): Promise<void> {
    await redis.multi().del(this.#prefix + this.self).srem(this.#set, this.self).exec();
  }
}

/** A member value from Redis, or undefined (expired, or not something lb wrote). */
function parseMember(raw: string | null): MemberInfo | undefined {
  if (raw === null) return undefined;
  try {
    const r = memberInfoSchema.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
