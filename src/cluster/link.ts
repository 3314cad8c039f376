/**
 * What the rest of lb sees of the cluster (`cluster.redis`): a Redis connection that may be
 * down at any moment, the key prefix, this instance's id and the live members. Everything
 * that uses Redis takes a ClusterLink and treats `redis()` returning undefined, or a command
 * failing, as "Redis is away": it falls back to what this instance knows alone (fail open).
 */
import type { Redis } from "ioredis";

export interface ClusterLink {
  /** Every key of this cluster starts with it: `lb:{name}:`. */
  readonly prefix: string;
  /** This instance's member id (unique among live members). */
  readonly self: string;
  /** The command connection while it is up; undefined while Redis is unreachable. */
  redis(): Redis | undefined;
  /** The ids of the live members (this one included), sorted; just [self] while Redis is away. */
  members(): readonly string[];
  /** Called when the member list changes; returns what unsubscribes. */
  onMembers(fn: (members: readonly string[]) => void): () => void;
}
