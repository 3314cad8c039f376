/**
 * The view's keys in Redis and the two scripts that change them. Every change is one Lua
 * script, so Redis runs it atomically: it writes the fields, bumps the revision and appends
 * the same fields to the change stream, all or nothing.
 *
 * | key                | type   | holds                                                 |
 * | ------------------ | ------ | ----------------------------------------------------- |
 * | `lb:{name}:view`   | hash   | the fields of records.ts, and `#epoch`, `#rev`         |
 * | `lb:{name}:changes`| stream | one entry per change: `rev`, `epoch`, then its fields |
 *
 * `#epoch` is a random id written when the view is seeded: a Redis that restarted empty
 * gets a new one, so an instance can tell "revision 3 of a new view" from "revision 3 of
 * the one I follow". Instances follow the stream with XREAD BLOCK and read the whole hash
 * (HGETALL) at start, on reconnect and whenever they see a gap; pub/sub and keyspace
 * notifications are not used because they drop messages while a client is away.
 */
import type { Redis } from "ioredis";

/** Entries kept in the change stream (approximately; readers that fall behind resync). */
const STREAM_LENGTH = 10_000;

/**
 * KEYS: view, changes. ARGV: deadline (ms, Redis's clock), then field, value, … ("" deletes).
 * Returns {epoch, rev}; {} when Redis holds no view; {"late"} when it runs after the deadline,
 * so a write whose caller has given up on it (and undone it) never lands later.
 */
const WRITE = `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return {'late'}
end
local epoch = redis.call('HGET', KEYS[1], '#epoch')
if not epoch then return {} end
local rev = redis.call('HINCRBY', KEYS[1], '#rev', 1)
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ${STREAM_LENGTH}, '*', 'rev', rev, 'epoch', epoch,
  unpack(ARGV, 2))
return {epoch, rev}
`;

/** KEYS: view, changes. ARGV: epoch, field, value, … Seeds an empty view; returns 1, or 0. */
const SEED = `
if redis.call('HEXISTS', KEYS[1], '#epoch') == 1 then return 0 end
redis.call('HSET', KEYS[1], '#epoch', ARGV[1], '#rev', 1)
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ${STREAM_LENGTH}, '*', 'rev', 1, 'epoch', ARGV[1])
return 1
`;

/** The whole view at one moment, and the stream position it corresponds to. */
export interface Snapshot {
  /** Undefined: Redis holds no view (new, or restarted empty). */
  epoch?: string;
  rev: number;
  fields: Map<string, string>;
  /** The last stream entry's id at that moment ("0" for none): follow from here. */
  streamId: string;
}

/** One entry of the change stream. */
export interface Change {
  id: string;
  rev: number;
  epoch: string;
  fields: [string, string][];
}

export class RedisView {
  readonly viewKey: string;
  readonly streamKey: string;

  constructor(prefix: string) {
    this.viewKey = `${prefix}view`;
    this.streamKey = `${prefix}changes`;
  }

  /** The hash and the stream's last id, read in one MULTI so they agree. */
  async snapshot(redis: Redis): Promise<Snapshot> {
    const r = await redis.multi().hgetall(this.viewKey).xrevrange(
      this.streamKey,
      "+",
      "-",
      "COUNT",
      1,
    )
      .exec();
    if (!r) throw new Error("the snapshot transaction was aborted");
    for (const [e] of r) if (e) throw e;
    const hash = r[0][1] as Record<string, string>;
    const last = r[1][1] as [string, string[]][];
    const fields = new Map(Object.entries(hash));
    const epoch = fields.get("#epoch");
    const rev = Number(fields.get("#rev") ?? 0);
    fields.delete("#epoch");
    fields.delete("#rev");
    return {
      epoch,
      rev: Number.isSafeInteger(rev) ? rev : 0,
      fields,
      streamId: last[0]?.[0] ?? "0",
    };
  }

  /** Seeds an empty view with `fields` under a new epoch; false when one already exists. */
  async seed(redis: Redis, epoch: string, fields: [string, string][]): Promise<boolean> {
    const r = await redis.eval(SEED, 2, this.viewKey, this.streamKey, epoch, ...fields.flat());
    return r === 1;
  }

  /**
   * Writes `fields` unless Redis runs the script after `deadline` (epoch ms on Redis's
   * clock): the new {epoch, rev}, "late", or undefined when Redis holds no view.
   */
  async write(
    redis: Redis,
    fields: [string, string][],
    deadline: number,
  ): Promise<{ epoch: string; rev: number } | "late" | undefined> {
    const args = [String(Math.floor(deadline)), ...fields.flat()];
    const r = await redis.eval(WRITE, 2, this.viewKey, this.streamKey, ...args) as unknown[];
    if (Array.isArray(r) && r[0] === "late") return "late";
    if (!Array.isArray(r) || r.length !== 2) return undefined;
    return { epoch: String(r[0]), rev: Number(r[1]) };
  }

  /** Redis's clock minus this machine's (ms), measured around one TIME command. */
  async clockOffset(redis: Redis): Promise<number> {
    const before = Date.now();
    const [s, us] = await redis.time();
    const after = Date.now();
    return Number(s) * 1000 + Number(us) / 1000 - (before + after) / 2;
  }

  /**
   * The changes after stream id `after`, waiting up to `blockMs` for one (XREAD BLOCK, on a
   * connection of its own: a blocked connection can do nothing else).
   */
  async follow(redis: Redis, after: string, blockMs: number): Promise<Change[]> {
    const r = await redis.xread("COUNT", 1000, "BLOCK", blockMs, "STREAMS", this.streamKey, after);
    if (!r) return [];
    return r[0][1].map(([id, flat]) => parseChange(id, flat));
  }
}

/** A stream entry's flat field list as a Change (rev NaN when the entry is malformed). */
function parseChange(id: string, flat: string[]): Change {
  const fields: [string, string][] = [];
  let rev = NaN, epoch = "";
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [k, v] = [flat[i], flat[i + 1]];
    if (i === 0 && k === "rev") rev = Number(v);
    else if (i === 2 && k === "epoch") epoch = v;
    else fields.push([k, v]);
  }
  return { id, rev, epoch, fields };
}
